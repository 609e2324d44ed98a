// Overview: what is there, what runs now, and the three steps to a first Pareto front.
import { api } from "../api.js";
import { ago, badge, card, clear, emptyState, fmtMs, h, isConverter, link, table } from "../ui.js";
import { drawPareto } from "./pareto_view.js";

const REFRESH_MS = 2000;

function stat(label, value, href, sub) {
  return h("a", { class: "stat", href }, h("span", { class: "stat-value" }, value), h("span", { class: "stat-label" }, label), sub ? h("span", { class: "stat-sub muted" }, sub) : null);
}

function step(done, n, title, body) {
  return h("li", { class: done ? "step done" : "step" }, h("span", { class: "step-n" }, done ? "✓" : n), h("div", {}, h("strong", {}, title), h("p", { class: "muted" }, body)));
}

/** The front of the target with the most measured models, built once into `el`;
 * returns the function that draws its chart, or null when there is nothing to plot. */
async function miniPareto(el) {
  const opts = await api("/pareto/options");
  const t = [...opts.targets].sort((a, b) => b.models - a.models)[0];
  const metric = opts.metrics.includes("top1") ? "top1" : opts.metrics[0];
  if (!t || !metric) return null;
  const qs = new URLSearchParams({ device: t.device, runtime: t.runtime, precision: t.precision, batch_size: t.batch_size, metric });
  const view = await api(`/pareto?${qs}`);
  if (!view.points.length) return null;
  const chart = h("div", { class: "chart", id: "overview-pareto" });
  clear(el, card(`Pareto front · ${t.device} · ${t.runtime} · ${t.precision} · batch ${t.batch_size}`, chart, h("p", {}, link(`/pareto?${qs}`, "Open in the Pareto explorer →"))));
  return () => drawPareto(chart, view, { height: 340, legend: false }); // once the card is in the page
}

async function draw(root, paretoEl, hasFront) {
  const [models, devices, benches, jobs] = await Promise.all([api("/models"), api("/devices"), api("/benchmarks?limit=15"), api("/jobs")]);
  const names = Object.fromEntries(models.map((m) => [m.id, m.name]));
  const measuring = devices.filter((d) => !isConverter(d));
  const converters = devices.length - measuring.length;
  const online = measuring.filter((d) => d.status === "online").length;
  const running = jobs.filter((j) => j.status === "running").length;
  const queued = jobs.filter((j) => j.status === "queued" || j.status === "waiting").length;
  const withAcc = models.filter((m) => Object.keys((m.metadata || {}).accuracy || {}).length);
  const measured = new Set(benches.filter((b) => b.results.some((r) => r.status === "succeeded")).map((b) => b.model_id));
  const onPareto = hasFront || withAcc.some((m) => measured.has(m.id));
  const fleet = card(
    "Fleet",
    table(
      [
        { label: "device", value: (d) => d.name },
        { label: "class", value: (d) => d.class },
        { label: "status", value: (d) => badge(d.status) },
        { label: "current job", value: (d) => (d.current_job ? `#${d.current_job}` : "idle") },
        { label: "queue", class: "num", value: (d) => d.queue_depth },
        { label: "last seen", value: (d) => ago(d.last_seen) },
      ],
      measuring,
      { empty: emptyState("fleet", "No measuring device has registered yet, so nothing can be benchmarked.", ["Start one: ", h("code", {}, "make run"), " starts a local agent; other machines join with ", h("code", {}, "latencylab agent --server URL --token T"), "."]) },
    ),
  );

  clear(
    root,
    h("h1", {}, "Overview"),
    h(
      "div",
      { class: "stats" },
      stat("models", models.length, "/models", `${withAcc.length} with accuracy`),
      stat("devices online", `${online} / ${measuring.length}`, "/devices", converters ? `+ ${converters} converter worker${converters === 1 ? "" : "s"}` : null),
      stat("jobs running", running, "/devices", `${queued} queued`),
      stat("benchmarks", benches.length >= 15 ? "15+" : benches.length, "/models"),
    ),
    card(
      "Getting started",
      h(
        "ol",
        { class: "steps" },
        step(withAcc.length > 0, 1, "Upload a model", h("span", {}, "On ", link("/models", "Models"), ", upload an ONNX file with its accuracy (e.g. top1) and tags.")),
        step(measured.size > 0, 2, "Benchmark it", "Open the model and pick devices and runtimes from the fleet; progress shows live."),
        step(onPareto, 3, "Compare on the Pareto front", h("span", {}, "The ", link("/pareto", "Pareto explorer"), " plots latency against accuracy and marks the front.")),
      ),
    ),
    hasFront ? h("div", { class: "two-col" }, paretoEl, fleet) : fleet,
    card(
      "Recent benchmarks",
      table(
        [
          { label: "#", value: (b) => b.id },
          { label: "model", value: (b) => link(`/models/${b.model_id}`, names[b.model_id] || `model ${b.model_id}`) },
          { label: "status", value: (b) => badge(b.status) },
          { label: "targets", value: (b) => b.jobs.map((j) => `${j.runtime} @ ${j.device_name || j.device}`).join(", ") },
          { label: "p50", class: "num", value: (b) => b.results.filter((r) => r.latency_ms).map((r) => fmtMs(r.latency_ms.p50)).join(", ") || "–" },
          { label: "created", value: (b) => ago(b.created_at) },
        ],
        benches,
        { empty: emptyState("benchmarks", "No benchmark has been submitted yet.", ["Open a model on ", link("/models", "Models"), " (upload one first if the list is empty) and press Benchmark."]) },
      ),
    ),
  );
  return running + queued > 0;
}

export async function renderOverview(root) {
  const paretoEl = h("div");
  let drawMini = null;
  try {
    drawMini = await miniPareto(paretoEl);
  } catch {
    /* the overview works without it */
  }
  const hasFront = drawMini !== null;
  let active = await draw(root, paretoEl, hasFront);
  if (drawMini) await drawMini();
  let stopped = false;
  let timer = null;
  const tick = async () => {
    try {
      active = await draw(root, paretoEl, hasFront);
    } catch {
      /* keep refreshing */
    }
    if (!stopped && active) timer = setTimeout(tick, REFRESH_MS);
  };
  if (active) timer = setTimeout(tick, REFRESH_MS);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
