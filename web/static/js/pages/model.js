// One model: its facts, a benchmark form, live jobs, every result, distributions, profile,
// conversions. Polls while any job of the model is unfinished.
import { api, ApiError } from "../api.js";
import { accuracyText, card, clear, errorBox, fmtBytes, fmtDate, h, notice, tagList } from "../ui.js";
import { benchmarkForm, jobsView } from "./model_bench.js";
import { resultsView } from "./model_results.js";
import { conversionsView } from "./model_conversions.js";
import { modelActions } from "./model_edit.js";
import { predictedSection } from "./model_predicted.js";

const POLL_MS = 1000;

function facts(m) {
  const rows = [
    ["id", m.id],
    ["format", `${m.format}${m.opset ? ` (opset ${m.opset})` : ""}`],
    ["size", fmtBytes(m.size)],
    ["sha256", h("code", { title: m.sha256 }, `${m.sha256.slice(0, 16)}…`)],
    ["inputs", m.inputs.map((i) => `${i.name} [${i.shape.join("×")}] ${i.dtype}`).join(", ")],
    ["outputs", m.outputs.map((o) => `${o.name} [${o.shape.join("×")}] ${o.dtype}`).join(", ")],
    ["accuracy", Object.keys((m.metadata || {}).accuracy || {}).length ? accuracyText(m.metadata) : h("span", { class: "muted" }, "not set: the Pareto page plots only models with an accuracy")],
    ["tags", tagList(m.metadata)],
    ["uploaded", fmtDate(m.created_at)],
  ];
  return h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function active(benches) {
  return benches.some((b) => b.jobs.some((j) => ["waiting", "queued", "running"].includes(j.status)));
}

export async function renderModel(root, { params, query }) {
  const id = Number(params[0]);
  let model;
  try {
    model = await api(`/models/${id}`);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 410)) {
      const title = err.status === 410 ? "Model deleted" : "Model not found";
      root.append(h("h1", {}, title), notice("error", err.message), h("p", {}, h("a", { href: "/models" }, "All models")));
      return null;
    }
    throw err;
  }
  const devices = await api("/devices");
  let benches = await api(`/benchmarks?model_id=${id}`);
  const jobsEl = h("div", { id: "jobs" });
  const resultsEl = h("div", { id: "results" });
  const convEl = h("div", { id: "conversions" });
  const predEl = h("div", { id: "predicted" }, h("p", { class: "muted" }, "Loading predictions…"));
  const predicted = predictedSection(predEl, id);
  let timer = null;
  let stopped = false;
  let resultsKey = null; // null: draw the results (or their empty state) on the first refresh

  const refresh = async () => {
    clear(jobsEl, jobsView(benches, model));
    const key = benches.map((b) => `${b.id}:${b.results.map((r) => r.id).join(",")}`).join(";");
    if (key !== resultsKey) {
      resultsKey = key;
      predicted.setResults(benches.flatMap((b) => b.results));
      await resultsView(resultsEl, benches, query.get("result"), model);
    }
  };
  const poll = async () => {
    timer = null;
    if (stopped) return;
    try {
      benches = await api(`/benchmarks?model_id=${id}`);
      await refresh();
      await conversionsView(convEl, id);
    } catch {
      /* transient: keep polling */
    }
    if (!stopped && active(benches)) timer = setTimeout(poll, POLL_MS);
  };
  const onSubmitted = async (bench) => {
    benches = [bench, ...benches.filter((b) => b.id !== bench.id)];
    await refresh();
    if (!timer) timer = setTimeout(poll, POLL_MS / 2);
  };

  const crumb = h("span", {}, model.name);
  const title = h("h1", {}, model.name);
  const factsEl = h("div", { id: "model-facts" }, facts(model));
  const render = (m) => {
    model = m;
    crumb.textContent = m.name;
    title.textContent = m.name;
    clear(factsEl, facts(m));
  };
  root.append(
    ...[
    h("p", { class: "crumbs" }, h("a", { href: "/models" }, "Models"), " / ", crumb),
    h("div", { class: "title-row" }, title, modelActions(model, { factsEl, render })),
    query.get("uploaded") ? notice("ok", "Uploaded and validated. Benchmark it below.") : null,
    h("div", { class: "two-col" }, card("Model", factsEl), card("Benchmark", benchmarkForm(model, devices, onSubmitted))),
    card("Jobs", jobsEl),
    card("Predicted latency", predEl),
    card("Results", resultsEl),
    card("Conversions", convEl),
    ].filter(Boolean),
  );
  await Promise.all([refresh(), predicted.load().catch((err) => clear(predEl, errorBox(err)))]);
  await conversionsView(convEl, id);
  if (active(benches)) timer = setTimeout(poll, POLL_MS);
  return () => {
    stopped = true;
    predicted.stop();
    if (timer) clearTimeout(timer);
  };
}
