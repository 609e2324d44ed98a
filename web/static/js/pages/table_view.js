// Pieces of the latency-tables page: quality report, entries browser, build form.
import { api } from "../api.js";
import { COLORS, plot } from "../charts.js";
import { navigate } from "../nav.js";
import { card, clear, errorBox, field, fmtNum, h, select, table } from "../ui.js";

const PRED = ["predicted_ms", "predicted", "prediction_ms", "pred_ms", "lut_ms", "latency_ms"];
const MEAS = ["measured_ms", "measured", "actual_ms", "true_ms", "real_ms"];

function pick(obj, keys) {
  for (const k of keys) if (typeof obj[k] === "number") return obj[k];
  return undefined;
}

/** The validation points of a table, wherever the API puts them: [{predicted, measured, label}]. */
export function validationPoints(t) {
  const q = t.quality || {};
  const v = t.validation || {};
  const candidates = [t.validation_points, q.points, q.validation, v.points, t.validation, t.points];
  for (const c of candidates) {
    if (!Array.isArray(c) || !c.length) continue;
    const pts = c
      .map((p, i) => ({ predicted: pick(p, PRED), measured: pick(p, MEAS), label: p.name || p.arch_id || p.key || `network ${i + 1}` }))
      .filter((p) => p.predicted !== undefined && p.measured !== undefined);
    if (pts.length) return pts;
  }
  return [];
}

function stat(label, value) {
  return h("div", { class: "stat small" }, h("span", { class: "stat-value" }, value), h("span", { class: "stat-label" }, label));
}

export function qualityView(t) {
  const q = t.quality;
  const pts = validationPoints(t);
  const pct = (x) => (typeof x === "number" ? `${fmtNum(100 * x, 1)}%` : "–");
  const stats = q
    ? h("div", { class: "stats stats-col" }, stat("networks", q.n ?? "–"), stat("within ±5%", pct(q.acc5)), stat("within ±10%", pct(q.acc10)), stat("RMSPE", pct(q.rmspe)), stat("Spearman ρ", fmtNum(q.spearman, 3)))
    : h("p", { class: "muted" }, "The quality report appears once the table has been validated against whole networks.");
  const chart = h("div", { class: "chart", id: "quality-chart" });
  const out = card("Quality: predicted vs measured", h("div", { class: "quality" }, pts.length ? chart : h("p", { class: "muted" }, "No validation points yet."), stats));
  if (pts.length) {
    const hi = Math.max(...pts.flatMap((p) => [p.predicted, p.measured])) * 1.08;
    const xs = [0, hi];
    plot(
      chart,
      [
        { x: xs, y: xs.map((x) => x * 0.9), mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false },
        { x: xs, y: xs.map((x) => x * 1.1), mode: "lines", line: { width: 0 }, fill: "tonexty", fillcolor: "rgba(5,150,105,0.15)", name: "±10%", hoverinfo: "skip" },
        { x: xs, y: xs, mode: "lines", line: { color: "#6b7280", dash: "dot" }, name: "predicted = measured", hoverinfo: "skip" },
        {
          x: pts.map((p) => p.measured),
          y: pts.map((p) => p.predicted),
          text: pts.map((p) => p.label),
          mode: "markers",
          type: "scatter",
          name: "networks",
          marker: { color: COLORS[0], size: 8 },
          hovertemplate: "<b>%{text}</b><br>measured %{x:.3f} ms<br>predicted %{y:.3f} ms<extra></extra>",
        },
      ],
      { height: 460, xaxis: { title: { text: "measured latency (ms)" }, range: xs, gridcolor: "#e5e7eb" }, yaxis: { title: { text: "predicted latency (ms)" }, range: xs, gridcolor: "#e5e7eb" } },
    );
  }
  return out;
}

function entryRows(data) {
  if (!data) return [];
  if (Array.isArray(data)) return data.filter((r) => r && typeof r === "object");
  if (typeof data === "object") {
    if (data.entries) return entryRows(data.entries);
    return Object.entries(data)
      .filter(([, v]) => v && typeof v === "object" && !Array.isArray(v))
      .map(([key, v]) => ({ key, ...v }));
  }
  return [];
}

export function entriesBrowser(data) {
  const rows = entryRows(data);
  if (!rows.length) return card("Entries", h("p", { class: "muted" }, "No entries yet."));
  const cols = Object.keys(rows[0]).filter((k) => typeof rows[0][k] !== "object").slice(0, 7);
  const search = h("input", { type: "search", placeholder: "filter keys, e.g. expand:6-kernel:5" });
  const list = h("div");
  const draw = () => {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    const hits = rows.filter((r) => words.every((w) => JSON.stringify(r).toLowerCase().includes(w)));
    clear(
      list,
      h("p", { class: "muted" }, `${hits.length} of ${rows.length} entries${hits.length > 200 ? " (first 200 shown)" : ""}`),
      table(
        cols.map((c) => ({ label: c, class: typeof rows[0][c] === "number" ? "num" : "", value: (r) => (typeof r[c] !== "number" ? String(r[c] ?? "") : Number.isInteger(r[c]) ? String(r[c]) : fmtNum(r[c], 4)) })),
        hits.slice(0, 200),
      ),
    );
  };
  search.addEventListener("input", draw);
  draw();
  return card("Entries", field("Filter", search), list);
}

export function buildForm(spaces, devices, onCreated) {
  const list = Array.isArray(spaces) ? spaces : (spaces && (spaces.spaces || Object.keys(spaces))) || [];
  const names = list.map((s) => (typeof s === "string" ? s : s.name || s.id)).filter(Boolean);
  if (!names.length) return h("p", { class: "muted" }, "No search spaces are served by this coordinator yet.");
  const space = select(names, names[0], { name: "space" });
  const device = select(devices.map((d) => d.name), devices[0] && devices[0].name, { name: "device" });
  const runtime = select(["onnxruntime", "tflite", "openvino", "tensorrt", "coreml"], "onnxruntime", { name: "runtime" });
  const resolution = h("input", { type: "number", name: "resolution", value: "224", min: "32", size: 5 });
  const threads = h("input", { type: "number", name: "threads", value: "1", min: "0", size: 4 });
  const status = h("div");
  const onsubmit = async (ev) => {
    ev.preventDefault();
    clear(status);
    try {
      const t = await api("/tables", { method: "POST", body: { space: space.value, device: device.value, runtime: runtime.value, resolution: Number(resolution.value), threads: Number(threads.value), batch_size: 1, precision: "fp32" } });
      onCreated ? onCreated(t) : navigate(`/tables?table=${t.id}`);
    } catch (err) {
      status.append(errorBox(err));
    }
  };
  return h("form", { onsubmit }, h("div", { class: "row" }, field("Space", space), field("Device", device), field("Runtime", runtime), field("Resolution", resolution), field("Threads", threads), h("button", { type: "submit", class: "primary" }, "Build")), status);
}
