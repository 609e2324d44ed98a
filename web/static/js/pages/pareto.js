// Pareto explorer: latency (p50, p90 whiskers) vs accuracy per target, front drawn and listed,
// a second device side by side, everything kept in the query string (shareable).
import { api } from "../api.js";
import { setQuery } from "../nav.js";
import { card, clear, errorBox, field, h, link, loading, notice, select } from "../ui.js";
import { allTable, compareTable, drawPareto, frontTable } from "./pareto_view.js";

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
    compare: query.get("compare") || "",
  };
}

function paretoPath(s, device, ids) {
  const qs = new URLSearchParams({ device, runtime: s.runtime, precision: s.precision, batch_size: s.batch_size, metric: s.metric });
  if (s.tag) qs.set("tag", s.tag);
  if (ids) qs.set("model_ids", ids.join(","));
  return `/pareto?${qs}`;
}

async function fetchViews(s) {
  const a = await api(paretoPath(s, s.device));
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
  const opts = await api("/pareto/options");
  if (!opts.targets.length) {
    root.append(
      card(
        null,
        notice("info", "Nothing to plot yet: no model has a succeeded benchmark."),
        h("p", {}, "1. Upload a model with an accuracy metric on ", link("/models", "Models"), ". 2. Open it and press Benchmark. 3. Come back here."),
      ),
    );
    return null;
  }
  const s = stateFrom(query, opts);
  const controls = h("form", { class: "controls", id: "pareto-controls", onsubmit: (ev) => ev.preventDefault() });
  const body = h("div", { id: "pareto-body" });
  root.append(card(null, controls), body);

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
    clear(
      controls,
      field("Device", select(devices.includes(s.device) ? devices : [s.device, ...devices], s.device, { name: "device", onchange: on("device") })),
      field("Runtime", select(runtimes, s.runtime, { name: "runtime", onchange: on("runtime") })),
      field("Precision", select(PRECISIONS, s.precision, { name: "precision", onchange: on("precision") })),
      field("Batch", select(batches, s.batch_size, { name: "batch_size", onchange: on("batch_size") })),
      field("Metric", select(metrics, s.metric, { name: "metric", onchange: on("metric") })),
      field("Tag", select([["", "all models"], ...opts.tags], s.tag, { name: "tag", onchange: on("tag") })),
      field("Compare with", select([["", "—"], ...others, ...(s.compare && !others.includes(s.compare) ? [s.compare] : [])], s.compare, { name: "compare", onchange: on("compare") })),
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "log", checked: s.log, onchange: on("log", (el) => el.checked) }), " log latency axis"),
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
  }

  await update();
  return () => {
    delete document.body.dataset.paretoReady;
  };
}

function showView(body, s, { a, b, hidden, disjoint, compareError }) {
  clear(body);
  if (compareError) body.append(notice("warn", `Cannot compare with ${s.compare}: ${compareError}`));
  if (disjoint) {
    body.append(notice("warn", `No model has results on both ${s.device} and ${s.compare} for ${s.runtime} ${s.precision} batch ${s.batch_size}.`));
  } else if (hidden) {
    body.append(notice("info", `Comparing the ${a.points.length} models measured on both devices (${hidden} measured on only one are left out).`));
  }
  if (!a.points.length) {
    const why = a.metrics.length
      ? `Models measured here carry: ${a.metrics.join(", ")}; pick one under Metric.`
      : "The models measured here have no accuracy: upload models with an accuracy value (Models → Upload) to place them on the front.";
    body.append(notice("info", `No model with metric “${s.metric}”${s.tag ? ` and tag “${s.tag}”` : ""} has a result on ${s.device} (${s.runtime}, ${s.precision}, batch ${s.batch_size}). ${why}`));
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
