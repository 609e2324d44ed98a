// Kernel-level latency predictors: every build with its live progress and held-out accuracy.
// Polls while a build is running; a row opens the predictor's page.
import { api, optional } from "../api.js";
import { navigate } from "../nav.js";
import { ago, badge, card, clear, emptyState, errorBox, fmtNum, h, notice, table } from "../ui.js";
import { pct } from "./table_view.js";
import { BUILD_HINT, predictorForm } from "./predictor_form.js";

const POLL_MS = 1500;

export { BUILD_HINT };

/** Overall progress of a build: a bar with done / total (probes, samples, bias checks, networks). */
export function predictorProgress(p) {
  const { done = 0, total = 0 } = p.progress || {};
  const value = total ? Math.round((1000 * done) / total) / 10 : 0;
  return h("span", { class: "progress-row", dataset: { done, total } }, h("progress", { max: 100, value }), h("span", { class: "muted nowrap" }, total ? `${done} / ${total}` : "–"));
}

/** The predictor's overall figures, or null before validation. */
export function overall(p) {
  return (p.accuracy && p.accuracy.overall) || null;
}

export function threadsText(threads) {
  return threads ? String(threads) : "default";
}

function listView(rows) {
  return table(
    [
      { label: "#", class: "num", value: (p) => h("a", { href: `/predictors/${p.id}` }, `#${p.id}`) },
      { label: "device", class: "nowrap", value: (p) => p.device },
      { label: "runtime", value: (p) => p.runtime },
      { label: "threads", class: "num", value: (p) => threadsText(p.threads) },
      { label: "precision", value: (p) => p.precision },
      { label: "batch", class: "num", value: (p) => p.batch_size },
      { label: "status", value: (p) => badge(p.status) },
      { label: "phase", value: (p) => (p.status === "building" ? p.phase : h("span", { class: "muted" }, p.phase)) },
      { label: "progress", value: predictorProgress },
      { label: "±10%", class: "num", value: (p) => (overall(p) ? h("span", { dataset: { metric: "acc10" }, title: `${overall(p).n} held-out networks` }, pct(overall(p).acc10)) : h("span", { class: "muted" }, "–")) },
      { label: "ρ", class: "num", value: (p) => (overall(p) ? h("span", { dataset: { metric: "rho" } }, fmtNum(overall(p).rho, 3)) : h("span", { class: "muted" }, "–")) },
      { label: "created", class: "nowrap", value: (p) => ago(p.created_at) },
    ],
    rows,
    {
      empty: emptyState("predictors", "No predictors yet: no device has a kernel-level latency predictor on this coordinator.", ["Build one with ", h("code", {}, BUILD_HINT), " (it measures the kernels on that device, trains one regressor per kernel type and scores itself on whole networks it never saw)."]),
      rowAttrs: (p) => ({ class: "clickable", dataset: { predictorId: p.id, status: p.status }, onclick: (ev) => ev.target.closest("a") || navigate(`/predictors/${p.id}`) }),
    },
  );
}

export async function renderPredictors(root) {
  root.append(h("h1", {}, "Latency predictors"), h("p", { class: "muted lead" }, "Kernel-level predictors, each built on one device from that device's own measurements and scored on real architectures it never trained on. Every uploaded model gets a predicted latency on each device listed here."));
  const first = await optional("/predictors");
  if (first === null) {
    root.append(card(null, notice("info", "This coordinator does not serve the predictors API (/api/v1/predictors).")));
    return null;
  }
  const listCard = card(`Predictors (${first.length})`);
  const body = h("div", { id: "predictor-list" });
  listCard.append(body);
  const fleet = await api("/devices");
  root.append(listCard, card("Build a predictor", predictorForm(fleet), h("p", { class: "muted small-print" }, "Or from the command line, with a progress bar (", h("code", {}, "--option initial_per_type=20"), " and friends make it smaller): "), h("pre", { class: "cli" }, BUILD_HINT), h("p", { class: "muted small-print" }, "or POST /api/v1/predictors. An identical request returns the existing build (a failed one is resumed).")));
  let rows = first;
  let timer = null;
  let stopped = false;
  const draw = () => {
    listCard.querySelector("h2").textContent = `Predictors (${rows.length})`;
    clear(body, listView(rows));
  };
  const poll = async () => {
    timer = null;
    if (stopped) return;
    try {
      rows = await optional("/predictors");
      draw();
    } catch (err) {
      clear(body, errorBox(err));
    }
    if (!stopped && rows.some((p) => p.status === "building")) timer = setTimeout(poll, POLL_MS);
  };
  draw();
  if (rows.some((p) => p.status === "building")) timer = setTimeout(poll, POLL_MS);
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}
