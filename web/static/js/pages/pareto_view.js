// The Pareto chart (Plotly) and the tables of front members.
import { COLORS, plot } from "../charts.js";
import { navigate } from "../nav.js";
import { flagCell, flagHover, isFlagged } from "../quality.js";
import { fmtBytes, fmtMs, fmtNum, h, link, table } from "../ui.js";
import { frontLine, latencyCell, predictedTrace, splitPredicted } from "./pareto_predicted.js";

function customdata(points) {
  return points.map((p) => [p.name, p.p90_ms ?? p.latency_ms, fmtBytes(p.size), p.model_id, (p.tags || []).join(", ") || "–", isFlagged(p) ? `<br>${flagHover(p)}` : "", p.mode || "–"]);
}

/** Flagged points (a warning quality flag) get an open red marker of the same shape. */
const FLAG_COLOR = "#dc2626";
export const FLAG_LEGEND = { type: "scatter", mode: "markers", name: "⚑ flagged result (see hover)", x: [null], y: [null], customdata: [], marker: { symbol: "circle-open", color: FLAG_COLOR, size: 10, line: { width: 2.5 } }, hoverinfo: "skip" };
function flagMarker(points, marker) {
  const flagged = points.map(isFlagged);
  const base = marker.symbol || "circle";
  return {
    ...marker,
    color: points.map((_, i) => (flagged[i] ? FLAG_COLOR : marker.color)),
    symbol: points.map((_, i) => (flagged[i] ? `${base}-open` : base)),
    line: { ...marker.line, color: points.map((_, i) => (flagged[i] ? FLAG_COLOR : marker.line.color)), width: points.map((_, i) => (flagged[i] ? 2.5 : marker.line.width)) },
  };
}

export function markerTrace(points, name, marker, metric) {
  return {
    type: "scatter",
    mode: "markers",
    name,
    x: points.map((p) => p.latency_ms),
    y: points.map((p) => p.accuracy),
    customdata: customdata(points),
    error_x: {
      type: "data",
      symmetric: false,
      array: points.map((p) => Math.max(0, (p.p90_ms ?? p.latency_ms) - p.latency_ms)),
      arrayminus: points.map(() => 0),
      color: marker.color,
      thickness: 1.2,
      width: 4,
    },
    marker: flagMarker(points, marker),
    hovertemplate:
      "<b>%{customdata[0]}</b><br>" +
      "p50 %{x:.3f} ms · p90 %{customdata[1]:.3f} ms<br>" +
      `${metric} %{y:.2f}<br>` +
      "size %{customdata[2]} · tags %{customdata[4]} · mode %{customdata[6]}%{customdata[5]}<extra></extra>",
  };
}

/** Ticks at 1, 2, 5 × 10^k (plus 3 when the range is narrow) for a log latency axis. */
export function logTicks(points) {
  const xs = points.flatMap((p) => [p.latency_ms, p.p90_ms ?? p.latency_ms]).filter((x) => x > 0);
  const lo = Math.min(...xs) / 1.15;
  const hi = Math.max(...xs) * 1.15;
  const ratio = hi / lo;
  const mant = ratio < 5 ? [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8] : ratio < 20 ? [1, 1.5, 2, 3, 5, 7] : [1, 2, 5];
  const vals = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e += 1) {
    for (const m of mant) {
      const v = m * 10 ** e;
      if (v >= lo && v <= hi) vals.push(Number(v.toPrecision(3)));
    }
  }
  return { tickvals: vals, ticktext: vals.map((v) => String(v)), range: [Math.log10(lo), Math.log10(hi)] };
}

export const MAX_LABELS = 15;

/** Where a point sits in the plot, 0..1 along each axis (log-aware on x). */
function fractions(points, { log, yRange }) {
  const xs = points.flatMap((p) => [p.latency_ms, p.p90_ms ?? p.latency_ms]).filter((x) => (log ? x > 0 : Number.isFinite(x)));
  const f = log ? Math.log10 : (x) => x;
  const [x0, x1] = [f(Math.min(...xs)), f(Math.max(...xs))];
  const ys = points.map((p) => p.accuracy);
  const [y0, y1] = yRange || [Math.min(...ys), Math.max(...ys)];
  return (p) => [x1 > x0 ? (f(p.latency_ms) - x0) / (x1 - x0) : 0.5, y1 > y0 ? (p.accuracy - y0) / (y1 - y0) : 0.5];
}

/** Name the front's models next to their markers (ties share one label), each label on the
 * side of its point that faces the middle of the plot, so none runs off the axes or the
 * figure (a label left of the fastest model would be cut at the y axis). */
export function labelPoints(trace, front, { log, yRange, all, color = "#374151" }) {
  const where = fractions(all, { log, yRange });
  const names = new Map();
  const first = new Map();
  for (const p of front) {
    const key = `${p.latency_ms}|${p.accuracy}`;
    names.set(key, names.has(key) ? `${names.get(key)}, ${p.name}` : p.name);
    if (!first.has(key)) first.set(key, p);
  }
  trace.mode = "markers+text";
  trace.text = front.map((p) => (first.get(`${p.latency_ms}|${p.accuracy}`) === p ? names.get(`${p.latency_ms}|${p.accuracy}`) : ""));
  trace.textposition = front.map((p) => {
    const [fx, fy] = where(p);
    return `${fy > 0.8 ? "bottom" : "top"} ${fx < 0.5 ? "right" : "left"}`;
  });
  trace.textfont = { size: 11, color };
  trace.cliponaxis = false;
}

/** Draw one target's points, its front (staircase) and hook clicks to the model page. */
export function drawPareto(el, view, { log = false, yRange, colorIndex = 0, height = 460, legend = true }) {
  const color = COLORS[colorIndex % COLORS.length];
  const front = view.points.filter((p) => p.on_front).sort((a, b) => a.latency_ms - b.latency_ms);
  const { measured, predicted } = splitPredicted(view.points);
  const measuredFront = front.filter((p) => !p.predicted);
  const rest = measured.filter((p) => !p.on_front);
  const traces = [
    frontLine(front, { color }),
    markerTrace(rest, "dominated", { color: "#9ca3af", size: 9, line: { color: "#6b7280", width: 1 } }, view.metric),
    markerTrace(measuredFront, "on the front", { color, size: 12, symbol: "diamond", line: { color: "#111827", width: 1 } }, view.metric),
  ];
  if (measuredFront.length <= MAX_LABELS) labelPoints(traces[2], measuredFront, { log, yRange, all: view.points });
  if (predicted.length) {
    const t = predictedTrace(predicted, { color, symbol: "circle", frontSymbol: "diamond", metric: view.metric, statistic: view.predictor_statistic || "min" });
    if (front.length <= MAX_LABELS) {
      labelPoints(t, predicted, { log, yRange, all: view.points });
      t.text = t.text.map((x, j) => (predicted[j].on_front && x ? `${x} (predicted)` : ""));
    }
    traces.push(t);
  }
  if (view.points.some(isFlagged)) traces.push(FLAG_LEGEND);
  const ticks = log ? logTicks(view.points) : {};
  const layout = {
    height,
    xaxis: { title: { text: `latency p50 (ms)${predicted.length ? `; hollow: predicted ${view.predictor_statistic || "min"}` : ""}${log ? ", log scale" : ""}` }, type: log ? "log" : "linear", ...ticks, gridcolor: "#e5e7eb", zeroline: false },
    yaxis: { title: { text: view.metric }, range: yRange, gridcolor: "#e5e7eb", zeroline: false },
    showlegend: legend,
    hovermode: "closest",
  };
  return plot(el, traces, layout).then(() => hookClicks(el));
}

/** A click on a marker opens its model (customdata[3] is the model id). */
export function hookClicks(el) {
  if (el.on && !el.dataset.clicks) {
    el.dataset.clicks = "1";
    el.on("plotly_click", (ev) => {
      const pt = ev.points && ev.points[0];
      if (pt && pt.customdata) navigate(`/models/${pt.customdata[3]}`);
    });
  }
}

export function frontTable(view) {
  const front = view.points.filter((p) => p.on_front).sort((a, b) => a.latency_ms - b.latency_ms);
  return h(
    "div",
    { id: "front-list" },
    table(
      [
        { label: "#", value: (p) => front.indexOf(p) + 1 },
        { label: "model", value: (p) => link(`/models/${p.model_id}`, p.name) },
        { label: "p50", class: "num", value: (p) => latencyCell(p) },
        { label: "p90", class: "num", value: (p) => fmtMs(p.p90_ms) },
        { label: view.metric, class: "num", value: (p) => fmtNum(p.accuracy) },
        { label: "size", class: "num", value: (p) => fmtBytes(p.size) },
        { label: "tags", value: (p) => (p.tags || []).join(", ") },
        { label: "quality", value: (p) => (p.predicted ? h("span", { class: "muted" }, "predicted") : flagCell(p)) },
      ],
      front,
      { rowAttrs: (p) => ({ class: `front-row${p.predicted ? " predicted" : ""}`, dataset: { modelId: p.model_id, predicted: p.predicted ? "1" : "0" } }) },
    ),
  );
}

export function allTable(view) {
  return h(
    "details",
    { class: "all-points" },
    h("summary", {}, `All ${view.points.length} models on this target`),
    table(
      [
        { label: "model", value: (p) => link(`/models/${p.model_id}`, p.name) },
        { label: "front", value: (p) => (p.on_front ? h("span", { class: "on-front" }, "◆ front") : h("span", { class: "muted" }, "dominated")) },
        { label: "p50", class: "num", value: (p) => latencyCell(p) },
        { label: "p90", class: "num", value: (p) => fmtMs(p.p90_ms) },
        { label: "p99", class: "num", value: (p) => fmtMs(p.p99_ms) },
        { label: view.metric, class: "num", value: (p) => fmtNum(p.accuracy) },
        { label: "size", class: "num", value: (p) => fmtBytes(p.size) },
        { label: "threads", class: "num", value: (p) => p.threads ?? "–" },
        { label: "tags", value: (p) => (p.tags || []).join(", ") },
        { label: "quality", value: (p) => (p.predicted ? h("span", { class: "muted" }, "predicted") : flagCell(p)) },
      ],
      view.points,
      { rowAttrs: (p) => ({ dataset: { modelId: p.model_id, predicted: p.predicted ? "1" : "0" } }) },
    ),
  );
}

export function compareTable(a, b) {
  const byB = Object.fromEntries(b.points.map((p) => [p.model_id, p]));
  const rows = a.points.filter((p) => byB[p.model_id]);
  const mark = (on) => (on ? h("span", { class: "on-front" }, "◆ front") : h("span", { class: "muted" }, "–"));
  return h(
    "div",
    { id: "compare-list" },
    table(
      [
        { label: "model", value: (p) => link(`/models/${p.model_id}`, p.name) },
        { label: a.metric, class: "num", value: (p) => fmtNum(p.accuracy) },
        { label: `${a.device} p50`, class: "num", value: (p) => latencyCell(p) },
        { label: `on ${a.device}`, value: (p) => mark(p.on_front) },
        { label: `${b.device} p50`, class: "num", value: (p) => latencyCell(byB[p.model_id]) },
        { label: `on ${b.device}`, value: (p) => mark(byB[p.model_id].on_front) },
        { label: `${b.device} / ${a.device}`, class: "num", value: (p) => `${fmtNum(byB[p.model_id].latency_ms / p.latency_ms)}×` },
      ],
      rows,
      { rowAttrs: (p) => ({ dataset: { modelId: p.model_id } }) },
    ),
  );
}
