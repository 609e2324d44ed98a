// Pareto explorer: latency (p50, p90 whiskers) vs accuracy per target, front drawn and listed;
// more series (device × runtime × precision × batch) overlaid on the same chart, each with its
// own color, shape and front (one GET /pareto per series), or a second device side by side;
// everything kept in the query string (shareable: ?series=runtime:precision:batch:device, repeated).
import { api } from "../api.js";
import { setQuery } from "../nav.js";
import { card, clear, emptyState, errorBox, field, h, link, loading, notice, select } from "../ui.js";
import { drawSeries, seriesLabel, seriesStyle, seriesTable } from "./pareto_series.js";
import { allTable, compareTable, drawPareto, frontTable } from "./pareto_view.js";
import { predictedNotice } from "./pareto_predicted.js";

const PRECISIONS = ["fp32", "fp16", "int8"];

function unique(xs) {
  return [...new Set(xs)];
}

function stateFrom(query, opts) {
  const byModels = [...opts.targets].sort((a, b) => b.models - a.models);
  const first = byModels[0] || {};
  return {
    device: query.get("device") || first.device || "",
    runtime: query.get("runtime") || first.runtime || "onnxruntime",
    precision: query.get("precision") || first.precision || "fp32",
    batch_size: query.get("batch_size") || String(first.batch_size || 1),
    metric: query.get("metric") || (opts.metrics.includes("top1") ? "top1" : opts.metrics[0] || "top1"),
    tag: query.get("tag") || "",
    log: query.get("log") === "1",
    hide_flagged: query.get("hide_flagged") === "1",
    hide_predicted: query.get("hide_predicted") === "1",
    compare: query.get("compare") || "",
    series: query.getAll("series").filter((k) => parseSeries(k)),
  };
}

/** An overlaid series in the URL: "runtime:precision:batch:device" (a device name may hold ":"). */
export function seriesKey(t) {
  return `${t.runtime}:${t.precision}:${t.batch_size}:${t.device}`;
}

function parseSeries(key) {
  const m = /^([^:]+):([^:]+):(\d+):(.+)$/.exec(key);
  return m ? { runtime: m[1], precision: m[2], batch_size: m[3], device: m[4] } : null;
}

const primary = (s) => ({ device: s.device, runtime: s.runtime, precision: s.precision, batch_size: s.batch_size });

function paretoPath(s, device, ids) {
  return targetPath(s, { ...primary(s), device }, ids);
}

/** GET /pareto of one target with the page's metric, tag and filters. */
function targetPath(s, t, ids) {
  const qs = new URLSearchParams({ device: t.device, runtime: t.runtime, precision: t.precision, batch_size: t.batch_size, metric: s.metric });
  if (s.tag) qs.set("tag", s.tag);
  if (ids) qs.set("model_ids", ids.join(","));
  if (s.hide_flagged) qs.set("hide_flagged", "true");
  if (!s.hide_predicted) qs.set("include_predicted", "true");
  return `/pareto?${qs}`;
}

async function fetchViews(s) {
  const a = await api(paretoPath(s, s.device));
  const extra = s.series.filter((k) => k !== seriesKey(primary(s)));
  if (extra.length) {
    // Overlays: every series on its own, each with its own front; a failed one is reported.
    const overlays = await Promise.all(extra.map((k) => api(targetPath(s, parseSeries(k))).catch((err) => ({ error: err.message, key: k }))));
    return { a, b: null, hidden: 0, overlays };
  }
  if (!s.compare || s.compare === s.device) return { a, b: null, hidden: 0 };
  let b;
  try {
    b = await api(paretoPath(s, s.compare));
  } catch (err) {
    return { a, b: null, hidden: 0, compareError: err.message };
  }
  const inB = new Set(b.points.map((p) => p.model_id));
  const common = a.points.map((p) => p.model_id).filter((id) => inB.has(id));
  const hidden = a.points.length + b.points.length - 2 * common.length;
  if (!common.length) return { a, b, hidden: 0, disjoint: true };
  const [a2, b2] = await Promise.all([api(paretoPath(s, s.device, common)), api(paretoPath(s, s.compare, common))]);
  return { a: a2, b: b2, hidden };
}

export async function renderPareto(root, { query }) {
  root.append(h("h1", {}, "Pareto explorer"), h("p", { class: "muted lead" }, "Latency (p50, whiskers to p90) against accuracy for every model measured on a target. The front holds the models no other model beats on both."));
  const opts = await api("/pareto/options?include_predicted=true");
  if (!opts.targets.length) {
    root.append(card(null, emptyState("pareto", "Nothing to plot yet: no model has a succeeded benchmark, so there is no latency to place.", ["1. Upload a model with an accuracy metric on ", link("/models", "Models"), ". 2. Open it and press Benchmark. 3. Come back here: each model becomes a point, the best trade-offs form the front."])));
    document.body.dataset.paretoReady = "1";
    return () => {
      delete document.body.dataset.paretoReady;
    };
  }
  const s = stateFrom(query, opts);
  const controls = h("form", { class: "controls", id: "pareto-controls", onsubmit: (ev) => ev.preventDefault() });
  const chips = h("div", { class: "series-chips", id: "pareto-series" });
  const body = h("div", { id: "pareto-body" });
  root.append(card(null, controls, chips), body);

  const update = async () => {
    setQuery(s);
    drawControls();
    clear(body, loading());
    try {
      const view = await fetchViews(s);
      showView(body, s, view);
    } catch (err) {
      clear(body, errorBox(err));
    }
    document.body.dataset.paretoReady = "1";
  };

  function drawControls() {
    const targets = opts.targets;
    const devices = unique(targets.map((t) => t.device));
    const onDevice = targets.filter((t) => t.device === s.device);
    const runtimes = unique(onDevice.map((t) => t.runtime).concat(s.runtime));
    const batches = unique(onDevice.filter((t) => t.runtime === s.runtime).map((t) => String(t.batch_size)).concat(s.batch_size));
    const others = unique(targets.filter((t) => t.device !== s.device && t.runtime === s.runtime && t.precision === s.precision && String(t.batch_size) === s.batch_size).map((t) => t.device));
    const metrics = unique(opts.metrics.concat(s.metric));
    const on = (key, fn = (el) => el.value) => (ev) => {
      s[key] = fn(ev.target);
      document.body.dataset.paretoReady = "0";
      update();
    };
    // Overlays: any other target; "every runtime" adds this device's other runtimes at once.
    const shown = new Set([seriesKey(primary(s)), ...s.series]);
    const candidates = targets.filter((t) => !shown.has(seriesKey(t))).sort((x, y) => (x.device === s.device ? 0 : 1) - (y.device === s.device ? 0 : 1) || seriesLabel(x).localeCompare(seriesLabel(y)));
    const sameDevice = candidates.filter((t) => t.device === s.device && t.precision === s.precision && String(t.batch_size) === s.batch_size);
    const addSeries = (keys) => {
      s.series = unique([...s.series, ...keys]);
      document.body.dataset.paretoReady = "0";
      update();
    };
    const overlayTitle = s.compare ? "Overlays draw on one chart; clear “Compare with” first" : "Draw another device × runtime × precision on the same chart, with its own front";
    clear(
      controls,
      field("Device", select(devices.includes(s.device) ? devices : [s.device, ...devices], s.device, { name: "device", onchange: on("device") })),
      field("Runtime", select(runtimes, s.runtime, { name: "runtime", onchange: on("runtime") })),
      field("Precision", select(PRECISIONS, s.precision, { name: "precision", onchange: on("precision") })),
      field("Batch", select(batches, s.batch_size, { name: "batch_size", onchange: on("batch_size") })),
      field("Metric", select(metrics, s.metric, { name: "metric", onchange: on("metric") })),
      field("Tag", select([["", "all models"], ...opts.tags], s.tag, { name: "tag", onchange: on("tag") })),
      field("Compare with", select([["", "—"], ...others, ...(s.compare && !others.includes(s.compare) ? [s.compare] : [])], s.compare, { name: "compare", onchange: on("compare"), disabled: s.series.length > 0, title: s.series.length ? "Side by side is for one series; remove the overlays first" : "The same runtime on another device, side by side" })),
      field("Overlay", select([["", candidates.length ? "+ add a series…" : "no other target"], ...candidates.map((t) => [seriesKey(t), `${seriesLabel(t)} (${t.models} models)`])], "", { name: "add_series", disabled: !candidates.length || Boolean(s.compare), title: overlayTitle, onchange: (ev) => ev.target.value && addSeries([ev.target.value]) })),
      h("button", { type: "button", class: "secondary", name: "all_runtimes", disabled: !sameDevice.length || Boolean(s.compare), title: sameDevice.length ? `Overlay ${sameDevice.map((t) => t.runtime).join(", ")} on ${s.device}` : `No other runtime measured on ${s.device} at ${s.precision}, batch ${s.batch_size}`, onclick: () => addSeries(sameDevice.map(seriesKey)) }, "Overlay every runtime here"),
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "log", checked: s.log, onchange: on("log", (el) => el.checked) }), " log latency axis"),
      h("label", { class: "check", title: "Predicted points (hollow markers) place the models not measured on this target yet, from its predictor; a measured result replaces each" }, h("input", { type: "checkbox", name: "hide_predicted", checked: s.hide_predicted, onchange: on("hide_predicted", (el) => el.checked) }), " hide predicted"),
      h("label", { class: "check", title: "Leave out models whose latest result has a quality flag (open red markers): high CoV, several modes, CI not converged, too few runs, busy host, repeats disagreeing" }, h("input", { type: "checkbox", name: "hide_flagged", checked: s.hide_flagged, onchange: on("hide_flagged", (el) => el.checked) }), " hide flagged"),
      h(
        "button",
        {
          type: "button",
          class: "secondary",
          title: "Copy a link to this view",
          onclick: async (ev) => {
            try {
              await navigator.clipboard.writeText(location.href);
              ev.target.textContent = "Link copied";
            } catch {
              ev.target.textContent = "Copy the address bar";
            }
          },
        },
        "Share view",
      ),
    );
    drawChips();
  }

  /** The series on the chart: color and shape as plotted, × removes an overlay. */
  function drawChips() {
    const extra = s.series.filter((k) => k !== seriesKey(primary(s)));
    if (!extra.length) {
      clear(chips);
      return;
    }
    const chip = (t, i, key) => {
      const { color, symbol } = seriesStyle(i);
      return h(
        "span",
        { class: "series-chip", dataset: { series: key || "primary" } },
        h("span", { class: "swatch", style: `background:${color}`, title: symbol }),
        seriesLabel(t),
        key ? h("button", { type: "button", title: "Remove this series", "aria-label": `remove ${seriesLabel(t)}`, onclick: () => { s.series = s.series.filter((x) => x !== key); document.body.dataset.paretoReady = "0"; update(); } }, "×") : h("span", { class: "muted" }, "(the target above)"),
      );
    };
    clear(chips, h("span", { class: "field-label" }, "Series"), chip(primary(s), 0, null), extra.map((k, i) => chip(parseSeries(k), i + 1, k)));
  }

  await update();
  return () => {
    delete document.body.dataset.paretoReady;
  };
}

function showView(body, s, { a, b, hidden, disjoint, compareError, overlays }) {
  clear(body);
  if (overlays) {
    showSeries(body, s, [a, ...overlays]);
    return;
  }
  if (compareError) body.append(notice("warn", `Cannot compare with ${s.compare}: ${compareError}`));
  if (disjoint) {
    body.append(notice("warn", `No model has results on both ${s.device} and ${s.compare} for ${s.runtime} ${s.precision} batch ${s.batch_size}.`));
  } else if (hidden) {
    body.append(notice("info", `Comparing the ${a.points.length} models measured on both devices (${hidden} measured on only one are left out).`));
  }
  const note = predictedNotice(a);
  if (note) body.append(note);
  if (a.hidden_flagged) body.append(Object.assign(notice("info", `${a.hidden_flagged} model(s) with flagged results hidden (hide flagged); the front is computed without them.`), { id: "pareto-hidden-flagged" }));
  if (!a.points.length) {
    const why = a.metrics.length
      ? `Models measured here carry: ${a.metrics.join(", ")}; pick one under Metric.`
      : "The models measured here have no accuracy: upload models with an accuracy value (Models → Upload) to place them on the front.";
    body.append(card(null, emptyState("pareto-points", `No model with metric “${s.metric}”${s.tag ? ` and tag “${s.tag}”` : ""} has a result on ${s.device} (${s.runtime}, ${s.precision}, batch ${s.batch_size}), so there is no point to plot.`, why)));
    return;
  }
  const views = b && !disjoint ? [a, b] : [a];
  const grid = h("div", { class: views.length > 1 ? "chart-grid two" : "chart-grid" });
  body.append(card(null, grid));
  const charts = views.map((v, i) => {
    const el = h("div", { class: "chart pareto-chart", id: i === 0 ? "pareto-chart" : "pareto-chart-b", dataset: { device: v.device } });
    grid.append(h("div", {}, h("h3", {}, `${v.device} · ${v.runtime} · ${v.precision} · batch ${v.batch_size}`), el));
    return el;
  });
  const all = views.flatMap((v) => v.points.map((p) => p.accuracy));
  const pad = Math.max(0.5, (Math.max(...all) - Math.min(...all)) * 0.08);
  const yRange = [Math.min(...all) - pad, Math.max(...all) + pad];
  views.forEach((v, i) => drawPareto(charts[i], v, { log: s.log, yRange, colorIndex: i }));
  if (views.length > 1) body.append(card("Both fronts", compareTable(a, b)));
  else body.append(card(`On the front (${a.front.length} of ${a.points.length} models)`, frontTable(a), allTable(a)));
}

/** Several series on one chart, each with its own front, and the models across them. */
function showSeries(body, s, all) {
  // A series that failed keeps its place (its color and shape stay those of its chip), empty.
  for (const f of all.filter((v) => v.error)) body.append(notice("warn", `Series ${seriesLabel(parseSeries(f.key))} has nothing to draw: ${f.error}`));
  const views = all.map((v) => (v.error ? { ...parseSeries(v.key), metric: s.metric, points: [], front: [] } : v));
  for (const v of views) {
    const note = predictedNotice(v);
    if (note) body.append(note);
  }
  for (const v of views) if (v.hidden_flagged) body.append(notice("info", `${seriesLabel(v)}: ${v.hidden_flagged} model(s) with flagged results hidden (hide flagged).`));
  const empty = all.filter((v) => !v.error && !v.points.length);
  if (empty.length) body.append(notice("info", `No model with metric “${s.metric}”${s.tag ? ` and tag “${s.tag}”` : ""} on ${empty.map(seriesLabel).join("; ")}: ${empty.length === 1 ? "that series is in the legend but has" : "those series are in the legend but have"} nothing to draw.`));
  if (!views.some((v) => v.points.length)) {
    body.append(card(null, emptyState("pareto-points", `No model with metric “${s.metric}” has a result on any of these series.`, "Pick another metric or tag, or benchmark models that carry this accuracy metric on these targets.")));
    return;
  }
  const el = h("div", { class: "chart pareto-chart", id: "pareto-chart", dataset: { series: views.length } });
  body.append(card(null, h("h3", {}, `${views.length} series · ${s.metric}`), el, h("p", { class: "muted small-print" }, "Each series has its own color, marker and front (filled markers and the staircase); faded markers are dominated within their own series. Click a legend entry to hide a series.")));
  const accs = views.flatMap((v) => v.points.map((p) => p.accuracy));
  const pad = Math.max(0.5, (Math.max(...accs) - Math.min(...accs)) * 0.08);
  drawSeries(el, views, { log: s.log, yRange: [Math.min(...accs) - pad, Math.max(...accs) + pad] });
  body.append(card(`Models across ${views.length} series (◆ on that series' front)`, seriesTable(views)));
}
