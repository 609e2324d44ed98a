// One predictor: its live build (phases, probes, samples, bias checks, networks, failures), the
// accuracy report with the predicted-vs-measured scatter, the bias check and the fusion rules.
// Polls while building; redraws the report when the status or the progress moves.
import { api, ApiError } from "../api.js";
import { ago, badge, card, clear, errorBox, h, notice } from "../ui.js";
import { BUILD_HINT, predictorProgress, threadsText } from "./predictors.js";
import { accuracyCard, biasCard, calibrationCard, failedCard, networksCard, trackedCard } from "./predictor_view.js";

const POLL_MS = 1500;
const PHASES = [
  ["discovery", "fusion rules"],
  ["initial", "initial samples"],
  ["refine", "refinement"],
  ["calibrate", "calibration"],
  ["validate", "held-out networks"],
  ["done", "done"],
];

function pipeline(p) {
  const opts = (p.settings && p.settings.options) || {};
  const at = PHASES.findIndex(([k]) => k === p.phase);
  const skipped = (k) => (k === "discovery" && opts.discover_fusion === false) || (k === "refine" && opts.refine_rounds === 0) || (k === "calibrate" && opts.calibrate === false);
  return h(
    "ol",
    { class: "pipeline", id: "predictor-phases", dataset: { phase: p.phase } },
    PHASES.map(([k, label], i) => {
      let cls = i < at ? "past" : i === at ? "current" : "";
      if (skipped(k) && i !== at) cls = "skipped";
      if (p.status === "failed" && i === at) cls = "failed";
      if (p.status === "succeeded") cls = skipped(k) ? "skipped" : "past";
      const round = k === "refine" && p.round ? ` (round ${p.round})` : "";
      return h("li", { class: cls, dataset: { phase: k } }, `${label}${round}`);
    }),
  );
}

function counts(p) {
  const g = p.progress;
  const item = (key, label, done, total, extra) => h("div", { class: "stat small", dataset: { stat: key, done, total } }, h("span", { class: "stat-value" }, total ? `${done} / ${total}` : "–"), h("span", { class: "stat-label" }, label), extra ? h("span", { class: "stat-sub muted" }, extra) : null);
  const bits = (...xs) => xs.filter(Boolean).join(", ");
  return h(
    "div",
    { class: "stats", id: "predictor-counts" },
    item("probes", "fusion probes", g.probes_done, g.probes_total),
    item("samples", "kernel samples", g.samples_done, g.samples_total, bits(g.samples_failed && `${g.samples_failed} failed`, g.samples_reused && `${g.samples_reused} reused`)),
    item("bias", "measured alone (bias check)", g.bias_done, g.bias_total),
    item("calibration", "calibration networks", g.calibration_done, g.calibration_total, g.calibration_failed ? `${g.calibration_failed} failed` : ""),
    item("networks", "held-out networks", g.networks_done, g.networks_total, g.networks_failed ? `${g.networks_failed} failed` : ""),
    h("div", { class: "stat small", dataset: { stat: "jobs" } }, h("span", { class: "stat-value" }, String(g.jobs)), h("span", { class: "stat-label" }, "measurement jobs")),
  );
}

function statusCard(p, onResume) {
  const s = p.settings || {};
  const notes = s.notes || [];
  return card(
    null,
    h("div", { class: "row table-head" }, h("h2", {}, `Predictor #${p.id}: ${p.runtime} on ${p.device}`), badge(p.status)),
    h("p", { class: "muted" }, `${threadsText(p.threads)} thread${p.threads === 1 ? "" : "s"} · ${p.precision} · batch ${p.batch_size} · statistic ${s.statistic || "min"} · selector ${p.device_selector} · created `, ago(p.created_at), p.finished_at ? [" · finished ", ago(p.finished_at)] : null),
    pipeline(p),
    h("div", { id: "predictor-progress", dataset: { status: p.status, phase: p.phase } }, predictorProgress(p), counts(p)),
    notes.map((n) => notice("info", n)),
    p.error ? notice("error", p.error) : null,
    p.status === "failed" ? h("button", { type: "button", id: "predictor-resume", onclick: onResume }, "Resume (re-measure what failed)") : null,
  );
}

function fusionCard(p) {
  const r = p.fusion_rules;
  if (!r) return card("Fusion rules", h("p", { class: "muted" }, "Found by measurement in the first phase: a pair that fuses costs less than its parts."));
  const patterns = (r.patterns || []).map((x) => x.join(" → "));
  return card(
    "Fusion rules",
    h("p", {}, r.source === "measured" ? `Measured on ${p.device}: ${(r.probes || []).length} probes (each candidate timed alone and fused).` : `Source: ${r.source} (assumed, not measured).`),
    h("ul", { class: "fusion-rules", id: "fusion-rules", dataset: { source: r.source, patterns: patterns.length } }, patterns.length ? patterns.map((x) => h("li", {}, h("code", {}, x))) : h("li", { class: "muted" }, "no fusion")),
  );
}

export async function renderPredictor(root, { params, query }) {
  const id = Number(params[0]);
  let p;
  try {
    p = await api(`/predictors/${id}`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      root.append(h("h1", {}, "Predictor not found"), notice("error", err.message), h("p", {}, h("a", { href: "/predictors" }, "All predictors"), " · build one with ", h("code", {}, BUILD_HINT)));
      return null;
    }
    throw err;
  }
  const parts = { status: h("div", { id: "predictor-status" }), report: h("div", { id: "predictor-report" }) };
  const reused = query && query.get("reused") ? notice("info", `An identical build exists (#${id}): showing it instead of building it again. Tick “fresh” to build a new one (its measured samples are reused).`) : null;
  if (reused) reused.id = "predictor-reused";
  root.append(h("p", { class: "crumbs" }, h("a", { href: "/predictors" }, "Predictors"), " / ", `#${id}`), h("h1", {}, `Predictor #${id}`), reused, parts.status, parts.report);
  let timer = null;
  let stopped = false;
  let drawn = null; // what the report shows: status and progress at the last redraw

  const draw = async () => {
    clear(parts.status, statusCard(p, () => api(`/predictors/${id}/resume`, { method: "POST" }).then((x) => { p = x; draw(); schedule(); }, (err) => parts.status.append(errorBox(err)))));
    root.dataset.status = p.status;
    const key = `${p.status}:${p.progress.done}:${p.phase}`;
    if (key !== drawn) {
      drawn = key;
      const tracked = h("div", { id: "predictor-tracked" }, trackedCard(null));
      clear(parts.report, accuracyCard(p), tracked, h("div", { class: "two-col" }, biasCard(p), fusionCard(p)), calibrationCard(p), networksCard(p), failedCard(p));
      if (p.status === "succeeded") api(`/predictors/${id}/tracked`).then((r) => clear(tracked, trackedCard(r)), (err) => tracked.append(errorBox(err)));
    }
  };
  const schedule = () => {
    if (!timer && !stopped && p.status === "building") timer = setTimeout(poll, POLL_MS);
  };
  const poll = async () => {
    timer = null;
    if (stopped) return;
    try {
      p = await api(`/predictors/${id}`);
      await draw();
    } catch (err) {
      parts.status.append(errorBox(err));
    }
    schedule();
  };
  await draw();
  schedule();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}
