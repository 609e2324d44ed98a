// Overlaid series on the Pareto explorer: several targets (device × runtime × precision ×
// batch) on one chart, each in its own color and marker shape with its own front, one legend
// entry per series; and the table of every model across the series.
import { COLORS, plot } from "../charts.js";
import { isFlagged } from "../quality.js";
import { fmtNum, h, link, table } from "../ui.js";
import { FLAG_LEGEND, MAX_LABELS, hookClicks, labelPoints, logTicks, markerTrace } from "./pareto_view.js";
import { PREDICTED_LEGEND, frontLine, latencyCell, predictedTrace } from "./pareto_predicted.js";

/** Marker shapes of the overlaid series, in order (colors: COLORS, in order). */
export const SYMBOLS = ["diamond", "circle", "square", "triangle-up", "pentagon", "star", "hexagon", "cross"];

/** "device · runtime · precision · batch N" of a Pareto response (or a target). */
export function seriesLabel(v) {
  return `${v.device} · ${v.runtime} · ${v.precision} · batch ${v.batch_size}`;
}

/** The style of series `i`: its color and marker shape. */
export function seriesStyle(i) {
  return { color: COLORS[i % COLORS.length], symbol: SYMBOLS[i % SYMBOLS.length] };
}

/** Each model's name once on the chart: on the first series that has it on its front. */
function labelOnce(fronts) {
  const seen = new Set();
  return fronts.map((front) =>
    front.map((p) => {
      const first = !seen.has(p.model_id);
      seen.add(p.model_id);
      return first;
    }),
  );
}

/** Several targets' points on one chart: each series in its own color and shape with its own
 * front (staircase). The legend has one entry per series (a marker-only stand-in, so a flagged
 * first point does not restyle it); clicking it hides the whole series. Every trace carries
 * meta {series, role} (role: line, dominated, front, legend, predicted). */
export function drawSeries(el, views, { log = false, yRange, height = 520 }) {
  const traces = [];
  const all = views.flatMap((v) => v.points);
  // The staircase runs through every front point; markers and labels of predicted ones differ.
  const lines = views.map((v) => v.points.filter((p) => p.on_front).sort((a, b) => a.latency_ms - b.latency_ms));
  const fronts = lines.map((f) => f.filter((p) => !p.predicted));
  const named = labelOnce(fronts);
  const label = named.flat().filter(Boolean).length <= MAX_LABELS;
  views.forEach((v, i) => {
    const { color, symbol } = seriesStyle(i);
    const name = seriesLabel(v);
    const group = `series-${i}`;
    const front = fronts[i];
    const rest = v.points.filter((p) => !p.on_front && !p.predicted);
    const guessed = v.points.filter((p) => p.predicted);
    const line = frontLine(lines[i], { color, name: `${name} · front` });
    const dominated = markerTrace(rest, `${name} · dominated`, { color, opacity: 0.45, size: 9, symbol, line: { color, width: 1 } }, v.metric);
    const onFront = markerTrace(front, `${name} · on the front`, { color, size: 12, symbol, line: { color: "#111827", width: 1 } }, v.metric);
    const legend = { type: "scatter", mode: "lines+markers", name, x: [null], y: [null], customdata: [], line: { color, width: 2 }, marker: { color, symbol, size: 11, line: { color: "#111827", width: 1 } }, hoverinfo: "skip" };
    if (label) {
      labelPoints(onFront, front, { log, yRange, all, color });
      onFront.text = onFront.text.map((t, j) => (named[i][j] ? t : ""));
    }
    const parts = [[line, "line"], [dominated, "dominated"], [onFront, "front"], [legend, "legend"]];
    for (const [t, role] of parts) {
      t.legendgroup = group;
      t.showlegend = role === "legend";
      t.meta = { series: i, role };
      if (t.hovertemplate) t.hovertemplate = t.hovertemplate.replace("<extra></extra>", `<extra>${name}</extra>`);
    }
    if (guessed.length) {
      const t = predictedTrace(guessed, { color, dimColor: color, symbol, name: `${name} · predicted`, metric: v.metric, statistic: v.predictor_statistic || "min" });
      t.legendgroup = group;
      t.showlegend = false;
      t.meta = { series: i, role: "predicted" };
      t.hovertemplate = t.hovertemplate.replace("<extra></extra>", `<extra>${name}</extra>`);
      parts.push([t, "predicted"]);
    }
    traces.push(...parts.map(([t]) => t));
  });
  if (all.some(isFlagged)) traces.push(FLAG_LEGEND);
  if (all.some((p) => p.predicted)) traces.push({ type: "scatter", mode: "markers", name: PREDICTED_LEGEND, x: [null], y: [null], customdata: [], marker: { symbol: "circle-open-dot", color: "#6b7280", size: 11, line: { width: 2 } }, hoverinfo: "skip" });
  const layout = {
    height,
    xaxis: { title: { text: `latency p50 (ms)${all.some((p) => p.predicted) ? "; hollow: predicted" : ""}${log ? ", log scale" : ""}` }, type: log ? "log" : "linear", ...(log ? logTicks(all) : {}), gridcolor: "#e5e7eb", zeroline: false },
    yaxis: { title: { text: views[0].metric }, range: yRange, gridcolor: "#e5e7eb", zeroline: false },
    showlegend: true,
    legend: { orientation: "h", y: -0.18 },
    hovermode: "closest",
  };
  return plot(el, traces, layout).then(() => hookClicks(el));
}

/** One row per model measured on any series: its p50 on each, ◆ where it is on that front. */
export function seriesTable(views) {
  const models = new Map();
  views.forEach((v, i) => {
    for (const p of v.points) {
      const row = models.get(p.model_id) || { model_id: p.model_id, name: p.name, accuracy: p.accuracy, by: {} };
      row.by[i] = p;
      models.set(p.model_id, row);
    }
  });
  const rows = [...models.values()].sort((a, b) => b.accuracy - a.accuracy || a.name.localeCompare(b.name));
  const swatch = (i) => h("span", { class: "swatch", style: `background:${seriesStyle(i).color}` });
  const short = (v) => `${v.device === views[0].device ? v.runtime : `${v.device} · ${v.runtime}`}${v.precision !== views[0].precision ? ` ${v.precision}` : ""}${v.batch_size !== views[0].batch_size ? ` b${v.batch_size}` : ""}`;
  const cell = (p, i) => {
    if (!p) return h("span", { class: "muted" }, "not measured");
    const mark = p.on_front ? h("span", { class: "on-front", style: `color:${seriesStyle(i).color}`, title: "on this series' front" }, "◆ ") : null;
    return h("span", { dataset: { series: i, onFront: p.on_front ? "1" : "0", predicted: p.predicted ? "1" : "0" } }, mark, latencyCell(p));
  };
  return h(
    "div",
    { id: "series-list" },
    table(
      [
        { label: "model", value: (r) => link(`/models/${r.model_id}`, r.name) },
        { label: views[0].metric, class: "num", value: (r) => fmtNum(r.accuracy) },
        ...views.map((v, i) => ({ label: h("span", { class: "nowrap", title: seriesLabel(v) }, swatch(i), ` ${short(v)}`), class: "num", value: (r) => cell(r.by[i], i) })),
      ],
      rows,
      { rowAttrs: (r) => ({ dataset: { modelId: r.model_id } }) },
    ),
  );
}
