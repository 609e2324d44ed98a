// The model page's "Predicted latency": the model's prediction on every device with a succeeded
// predictor (GET /models/{id}/predictions), next to the measured result of the same device,
// runtime, precision, batch and threads when there is one, with the predictor's held-out
// accuracy and the per-kernel breakdown. Shown before any benchmark; checks back while a
// predictor is still building.
import { optional } from "../api.js";
import { clear, emptyState, fmtMs, fmtNum, h, notice, table } from "../ui.js";
import { BUILD_HINT, threadsText } from "./predictors.js";
import { pct } from "./table_view.js";

const TOP = 8;
const BUILDING_POLL_MS = 3000;

/** The latest succeeded result of the model on the predictor's target; `exact` when the
 * threads match too (else the newest on that device/runtime/precision/batch, any threads). */
function measuredFor(results, p) {
  const same = results.filter((r) => r.status === "succeeded" && r.latency_ms && r.device === p.device && r.runtime === p.runtime && r.precision === p.precision && r.batch_size === p.batch_size).sort((a, b) => b.id - a.id);
  const exact = same.find((r) => r.threads === p.threads);
  return exact ? { r: exact, exact: true } : same[0] ? { r: same[0], exact: false } : null;
}

function accuracyTag(acc, predictorId) {
  if (!acc) return h("a", { class: "muted", href: `/predictors/${predictorId}` }, "accuracy not scored");
  const title = `held-out networks: ${acc.n}; within ±5% ${pct(acc.acc5)}; RMSPE ${pct(acc.rmspe)}; Spearman ρ ${acc.rho === null || acc.rho === undefined ? "–" : fmtNum(acc.rho, 3)}`;
  return h("a", { class: "tag predictor-accuracy", href: `/predictors/${predictorId}`, title, dataset: { acc10: acc.acc10 } }, `±10%: ${pct(acc.acc10)} of ${acc.n}`);
}

function errorCell(pred, m, stat) {
  if (!m) return h("span", { class: "muted" }, "not measured yet");
  const v = m.r.latency_ms[stat];
  if (!(v > 0)) return "–";
  const e = (pred.latency_ms - v) / v;
  return h("span", { class: Math.abs(e) <= 0.1 ? "ok" : "bad", dataset: { error: e } }, `${e >= 0 ? "+" : ""}${pct(e)}`);
}

/** The configuration that tells kernels apart: shapes, null and false values only in the tooltip. */
const HIDDEN = new Set(["input_shape", "output_shape", "hw_w", "out_hw", "padding", "dilation"]);
function configText(config) {
  return Object.entries(config || {})
    .filter(([k, v]) => !HIDDEN.has(k) && v !== null && v !== false && !(k === "dilation" && v === 1))
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("×") : v}`)
    .join(" ");
}

function kernelTable(kernels, total) {
  return table(
    [
      { label: "kernel", value: (k) => k.name },
      { label: "type", value: (k) => h("code", {}, k.type) },
      { label: "config", value: (k) => h("code", { class: "block-key", title: JSON.stringify(k.config || {}) }, configText(k.config)) },
      { label: "predicted", class: "num", value: (k) => fmtMs(k.latency_ms) },
      { label: "share", class: "num", value: (k) => h("span", { class: "share" }, h("span", { class: "share-bar", style: `width:${(5 * (k.latency_ms / total || 0)).toFixed(2)}rem` }), `${fmtNum(100 * (k.latency_ms / total || 0), 1)}%`) },
    ],
    kernels,
    { rowAttrs: (k) => ({ class: "kernel-row", dataset: { kernelType: k.type } }) },
  );
}

function breakdown(pred) {
  const kernels = [...pred.kernels].sort((a, b) => b.latency_ms - a.latency_ms);
  const total = pred.latency_ms;
  const label = `${pred.device} · ${pred.runtime}`;
  return h(
    "details",
    { class: "kernel-breakdown", dataset: { predictorId: pred.predictor_id } },
    h("summary", {}, `Per-kernel breakdown on ${label}: top ${Math.min(TOP, kernels.length)} of ${kernels.length} kernels`),
    kernelTable(kernels.slice(0, TOP), total),
    kernels.length > TOP ? h("details", { class: "all-kernels" }, h("summary", {}, `All ${kernels.length} kernels`), kernelTable(kernels, total)) : null,
    pred.notes && pred.notes.length ? h("ul", { class: "muted small-print" }, pred.notes.map((n) => h("li", {}, n))) : null,
  );
}

function predictionTable(preds, byId, results) {
  const rows = preds.map((pred) => {
    const p = byId.get(pred.predictor_id) || { device: pred.device, runtime: pred.runtime, precision: "fp32", batch_size: 1, threads: 0, settings: {} };
    const stat = (p.settings && p.settings.statistic) || "min";
    return { pred, p, stat, m: measuredFor(results, p) };
  });
  return table(
    [
      { label: "device", class: "nowrap", value: (x) => x.pred.device },
      { label: "runtime", value: (x) => x.pred.runtime },
      { label: "threads", class: "num", value: (x) => threadsText(x.p.threads) },
      { label: "precision · batch", class: "nowrap", value: (x) => `${x.p.precision} · ${x.p.batch_size}` },
      { label: "predicted", class: "num", value: (x) => h("b", { class: "predicted-ms", title: `the predictor's estimate of the ${x.stat}` }, fmtMs(x.pred.latency_ms)) },
      { label: "measured", class: "num", value: (x) => (x.m ? h("span", { class: "measured-ms", title: `${x.stat} of result #${x.m.r.id} (p50 ${fmtMs(x.m.r.latency_ms.p50)})${x.m.exact ? "" : ` (measured with ${threadsText(x.m.r.threads)} threads, the predictor with ${threadsText(x.p.threads)})`}` }, fmtMs(x.m.r.latency_ms[x.stat]), x.m.exact ? "" : " *") : h("span", { class: "muted" }, "–")) },
      { label: "statistic", value: (x) => x.stat },
      { label: "predicted − measured", class: "num", value: (x) => errorCell(x.pred, x.m, x.stat) },
      { label: "predictor accuracy", value: (x) => accuracyTag(x.pred.accuracy, x.pred.predictor_id) },
    ],
    rows,
    { rowAttrs: (x) => ({ class: "prediction-row", dataset: { predictorId: x.pred.predictor_id, device: x.pred.device, runtime: x.pred.runtime, measured: x.m ? "1" : "0" } }) },
  );
}

function emptyView(predictors) {
  const building = predictors.filter((p) => p.status === "building");
  if (building.length) {
    return emptyState("predictions", `No prediction yet: ${building.length === 1 ? "a predictor is" : `${building.length} predictors are`} still being built (${building.map((p) => `${p.runtime} on ${p.device}, ${p.phase}`).join("; ")}).`, ["The predicted latency appears here when the build succeeds. ", h("a", { href: `/predictors/${building[0].id}` }, "Follow the build →")]);
  }
  return emptyState("predictions", predictors.length ? "No succeeded predictor can place this model yet." : "No latency predictor on this coordinator yet, so this model cannot be estimated before it is measured.", ["Build one with ", h("code", {}, "latencylab predictor build --device … --runtime …"), ` (e.g. ${BUILD_HINT}); then every uploaded model shows its predicted latency here, before any benchmark runs.`]);
}

/** Draw the section into `el`; returns a stop function (it checks back while a build runs). */
export function predictedSection(el, modelId) {
  let results = [];
  let timer = null;
  let stopped = false;
  let data = null;
  const draw = () => {
    if (!data) return;
    const { preds, predictors } = data;
    const byId = new Map(predictors.map((p) => [p.id, p]));
    const errors = (preds.errors || []).map((e) => notice("warn", `${e.device}: ${e.error}`));
    if (!preds.predictions.length) {
      clear(el, emptyView(predictors), errors);
      return;
    }
    clear(el, predictionTable(preds.predictions, byId, results), h("p", { class: "muted small-print" }, "Predicted from the device's own kernel measurements; compared with the same statistic of the latest result on the same device, runtime, precision, batch and threads (* other threads). The accuracy is the predictor's on held-out real architectures."), errors, preds.predictions.map(breakdown));
  };
  const load = async () => {
    timer = null;
    if (stopped) return;
    const [preds, predictors] = await Promise.all([optional(`/models/${modelId}/predictions`), optional("/predictors")]);
    if (stopped) return;
    if (preds === null) {
      clear(el, notice("info", "This coordinator does not serve predictions (/api/v1/models/{id}/predictions)."));
      return;
    }
    data = { preds, predictors: predictors || [] };
    el.dataset.predictions = preds.predictions.length;
    draw();
    if (data.predictors.some((p) => p.status === "building")) timer = setTimeout(() => load().catch(() => {}), BUILDING_POLL_MS);
  };
  return {
    load,
    /** New results of the model: redraw the measured column (predictions stay). */
    setResults(next) {
      const changed = data && next.length !== results.length;
      results = next;
      draw();
      // A benchmark may have converted the model to ONNX: what could not be predicted may now be.
      if (changed && data.preds.errors && data.preds.errors.length && !timer) load().catch(() => {});
    },
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
