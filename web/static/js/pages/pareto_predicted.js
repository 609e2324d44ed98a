// Predicted Pareto points (GET /pareto?include_predicted=true): models not measured on the
// target yet, placed by the target's predictor. Drawn hollow with a centre dot ("predicted" in the
// legend), the front dashed where it runs through them; a measured result replaces the point.
import { fmtMs, fmtNum, h, notice } from "../ui.js";
import { pct } from "./table_view.js";

export const PREDICTED_LEGEND = "predicted (not measured yet)";

export function splitPredicted(points) {
  return { measured: points.filter((p) => !p.predicted), predicted: points.filter((p) => p.predicted) };
}

/** A marker trace of predicted points: open markers (front ones in `color`, larger); the same
 * customdata layout as pareto_view's markerTrace (index 3 = model id, for clicks). */
export function predictedTrace(points, { color, dimColor = "#6b7280", symbol = "circle", frontSymbol = symbol, name = PREDICTED_LEGEND, metric, statistic = "min" }) {
  // "-open-dot": a ring with a centre dot, unlike a flagged result's plain red "-open" ring.
  const open = (s) => `${s.replace(/-open(-dot)?$/, "")}-open-dot`;
  return {
    type: "scatter",
    mode: "markers",
    name,
    x: points.map((p) => p.latency_ms),
    y: points.map((p) => p.accuracy),
    customdata: points.map((p) => [p.name, p.latency_ms, "", p.model_id, (p.tags || []).join(", ") || "–", "", p.predictor_id]),
    marker: { symbol: points.map((p) => open(p.on_front ? frontSymbol : symbol)), size: points.map((p) => (p.on_front ? 13 : 10)), color: points.map((p) => (p.on_front ? color : dimColor)), line: { width: 2, color: points.map((p) => (p.on_front ? color : dimColor)) } },
    meta: { role: "predicted" },
    hovertemplate: `<b>%{customdata[0]}</b> (predicted)<br>predicted ${statistic} %{x:.3f} ms by predictor #%{customdata[6]}<br>${metric} %{y:.2f}<br>tags %{customdata[4]} · not measured on this target yet<extra></extra>`,
  };
}

/** "12.3 ms" for a measured point, "≈ 12.3 ms predicted" (hollow ring) for a predicted one. */
export function latencyCell(p) {
  if (!p.predicted) return fmtMs(p.latency_ms);
  return h("span", { class: "predicted-latency", title: `predicted by predictor #${p.predictor_id}: no measured result on this target yet`, dataset: { predicted: "1" } }, h("span", { class: "ring", "aria-hidden": "true" }, "○ "), `≈ ${fmtMs(p.latency_ms)}`);
}

/** What the predicted points are, the predictor's accuracy, and the models it could not place. */
export function predictedNotice(view) {
  const n = view.points.filter((p) => p.predicted).length;
  const failed = view.predicted_failed || [];
  if (!view.predictor_id) return null;
  const acc = view.predictor_accuracy;
  const accText = acc ? `; within ±10% on ${pct(acc.acc10)} of its ${acc.n} held-out networks${acc.rho === null || acc.rho === undefined ? "" : `, ρ ${fmtNum(acc.rho, 3)}`}` : "";
  const head = `${n} model(s) not measured on ${view.device} yet are placed by predictor #${view.predictor_id} (its ${view.predictor_statistic || "min"} estimate${accText}): hollow markers, “${PREDICTED_LEGEND}” in the legend. A benchmark replaces each with its measured point.`;
  const out = notice("info", head, failed.length ? h("details", {}, h("summary", {}, `${failed.length} model(s) could not be predicted`), h("ul", {}, failed.map((f) => h("li", {}, h("a", { href: `/models/${f.model_id}` }, f.name), `: ${f.error}`)))) : null);
  out.classList.add("predicted-note");
  out.dataset.predicted = n;
  return out;
}

/** The front staircase: solid through measured points only, dashed once a predicted one is on it. */
export function frontLine(front, { color, name = "front" }) {
  const guessed = front.some((p) => p.predicted);
  return { type: "scatter", mode: "lines", name: guessed ? `${name} (incl. predicted)` : name, x: front.map((p) => p.latency_ms), y: front.map((p) => p.accuracy), line: { color, width: 2, shape: "hv", dash: guessed ? "dash" : "solid" }, hoverinfo: "skip" };
}
