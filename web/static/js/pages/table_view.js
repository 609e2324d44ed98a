// A table's quality report: nn-Meter's ±5% / ±10% accuracy, RMSPE and Spearman ρ of the plain
// LUT sum and of the calibrated predictor, and the predicted-vs-measured scatter with the ±10% band.
import { COLORS, plot } from "../charts.js";
import { card, fmtNum, h, table } from "../ui.js";

/** A fraction as a percentage (the API's accuracy figures are fractions: 0.97 = 97%). */
export function pct(x, digits = 1) {
  return typeof x === "number" ? `${(100 * x).toFixed(digits)}%` : "–";
}

const METRICS = [
  ["n", "networks", (q) => String(q.n)],
  ["acc5", "within ±5%", (q) => pct(q.acc5)],
  ["acc10", "within ±10%", (q) => pct(q.acc10)],
  ["rmspe", "RMSPE", (q) => pct(q.rmspe)],
  ["spearman", "Spearman ρ", (q) => fmtNum(q.spearman, 3)],
  ["bias", "bias", (q) => (typeof q.bias === "number" ? `${q.bias >= 0 ? "+" : ""}${pct(q.bias)}` : "–")],
];

function predictorRows(t) {
  const q = t.quality;
  const cal = t.calibration;
  const rows = [{ id: "lut_sum", label: "LUT sum (Σ blocks)", q: q.lut_sum || q }];
  if (q.calibrated) {
    const how = cal ? `a·sum + b (a ${fmtNum(cal.a, 3)}, b ${fmtNum(cal.b, 3)} ms)` : "a·sum + b";
    rows.push({ id: "linear", label: `calibrated: ${how}, out of sample`, q: q.calibrated });
  }
  return rows;
}

function reportTable(t) {
  const best = t.quality.predictor;
  return table(
    [
      { label: "predictor", value: (r) => [r.label, r.id === best ? h("span", { class: "tag", title: "what predict's latency_ms uses" }, "used") : null] },
      ...METRICS.map(([key, label, fmt]) => ({ label, class: "num", value: (r) => h("span", { dataset: { metric: key } }, fmt(r.q)) })),
    ],
    predictorRows(t),
    { rowAttrs: (r) => ({ dataset: { predictor: r.id }, class: r.id === best ? "selected" : "" }) },
  );
}

function stat(label, value, key) {
  return h("div", { class: "stat small", dataset: { stat: key } }, h("span", { class: "stat-value" }, value), h("span", { class: "stat-label" }, label));
}

function scatter(el, t, validation) {
  const pts = t.quality.points || [];
  const ok = (validation || []).filter((v) => v.status === "succeeded");
  const label = (p, i) => `network #${p.idx ?? (ok[i] ? ok[i].idx : i)}`;
  const all = pts.flatMap((p) => [p.measured_ms, p.lut_sum_ms, p.predicted_ms]);
  const lo = Math.min(...all) * 0.85;
  const hi = Math.max(...all) * 1.1;
  const xs = [lo, hi];
  const marker = (i) => ({ color: COLORS[i], size: 9, line: { color: "#fff", width: 1 } });
  const trace = (name, key, i) => ({
    x: pts.map((p) => p.measured_ms),
    y: pts.map((p) => p[key]),
    text: pts.map(label),
    mode: "markers",
    type: "scatter",
    name,
    marker: marker(i),
    hovertemplate: `<b>%{text}</b><br>measured %{x:.3f} ms<br>${name} %{y:.3f} ms<extra></extra>`,
  });
  const traces = [
    { x: xs, y: xs.map((x) => x * 0.9), mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false },
    { x: xs, y: xs.map((x) => x * 1.1), mode: "lines", line: { width: 0 }, fill: "tonexty", fillcolor: "rgba(5,150,105,0.14)", name: "±10%", hoverinfo: "skip" },
    { x: xs, y: xs, mode: "lines", line: { color: "#6b7280", dash: "dot", width: 1 }, name: "predicted = measured", hoverinfo: "skip" },
    trace("LUT sum", "lut_sum_ms", 0),
  ];
  if (t.quality.predictor === "linear") traces.push(trace("calibrated", "predicted_ms", 1));
  const axis = (text) => ({ title: { text }, range: xs, gridcolor: "#e5e7eb", zeroline: false });
  plot(el, traces, { height: 440, legend: { orientation: "h", y: -0.18, traceorder: "normal" }, xaxis: axis("measured latency (ms)"), yaxis: axis("predicted latency (ms)") });
}

export function qualityView(t, validation) {
  const q = t.quality;
  if (!q) {
    const why = t.status === "failed" ? "The table failed before it was validated." : t.settings.validate_n === 0 ? "This table was built without validation networks (validate_n 0)." : "The quality report appears once the validation networks have been measured whole.";
    return card("Quality", h("p", { class: "muted", id: "quality-report" }, why));
  }
  const chart = h("div", { class: "chart", id: "quality-chart" });
  const stats = h(
    "div",
    { class: "stats stats-col" },
    h("span", { class: "muted" }, `Predictor in use: ${q.predictor === "linear" ? "calibrated a·sum + b" : "LUT sum"}`),
    stat("networks measured whole", q.n, "n"),
    stat("within ±10%", pct(q.acc10), "acc10"),
    stat("within ±5%", pct(q.acc5), "acc5"),
    stat("RMSPE", pct(q.rmspe), "rmspe"),
    stat("Spearman ρ", fmtNum(q.spearman, 3), "spearman"),
  );
  const out = card(
    "Quality: predicted vs measured",
    h("div", { class: "quality" }, chart, stats),
    h("div", { id: "quality-report" }, reportTable(t)),
    h("p", { class: "muted small-print" }, q.method, ". Accuracy is nn-Meter's: the share of networks predicted within ±5% / ±10% of their measured latency."),
  );
  scatter(chart, t, validation);
  return out;
}
