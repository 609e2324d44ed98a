// Latency tables (NAS): the list with live build progress, one table's detail (quality report,
// scatter, entries, exports, predict) and the build form. Polls while a build is running.
import { api, optional } from "../api.js";
import { setQuery } from "../nav.js";
import { ago, badge, card, clear, emptyState, errorBox, h, notice, table } from "../ui.js";
import { buildForm, exportLinks, predictBox } from "./table_form.js";
import { entriesBrowser } from "./table_entries.js";
import { pct, qualityView } from "./table_view.js";

const POLL_MS = 1500;
const ACTIVE = ["building", "validating"];

export function progressBar(t) {
  const { done = 0, total = 0 } = t.progress || {};
  const value = total ? Math.round((1000 * done) / total) / 10 : 0;
  return h("span", { class: "progress-row", dataset: { done, total } }, h("progress", { max: 100, value }), h("span", { class: "muted nowrap" }, total ? `${done} / ${total}` : "–"));
}

const setting = (t) => [t.runtime, `${t.threads || "default"} thread${t.threads === 1 ? "" : "s"}`, t.precision, t.batch_size > 1 && `batch ${t.batch_size}`].filter(Boolean).join(" · ");

function listView(tables, selected, show) {
  return table(
    [
      { label: "#", class: "num", value: (t) => t.id },
      { label: "space", value: (t) => t.space },
      { label: "device", class: "nowrap", value: (t) => t.device },
      { label: "runtime", value: (t) => t.runtime },
      { label: "resolution", class: "num", value: (t) => `${t.resolution} px` },
      { label: "threads", class: "num", value: (t) => (t.threads ? t.threads : "default") },
      { label: "status", value: (t) => badge(t.status) },
      { label: "progress", value: progressBar },
      { label: "±10%", class: "num", value: (t) => (t.quality ? h("span", { title: `${t.quality.n} networks, ${t.quality.predictor}` }, pct(t.quality.acc10)) : h("span", { class: "muted" }, "–")) },
      { label: "created", class: "nowrap", value: (t) => ago(t.created_at) },
    ],
    tables,
    {
      empty: emptyState("tables", "No tables yet: no latency table has been built on this coordinator.", "Build one below: pick a search space and a measuring device; the blocks are measured there and the table is validated against whole networks."),
      rowAttrs: (t) => ({ class: `clickable${t.id === selected ? " selected" : ""}`, dataset: { tableId: t.id, status: t.status }, onclick: () => show(t.id) }),
    },
  );
}

function phaseText(t) {
  const p = t.progress;
  if (t.status === "building") return `Measuring blocks: ${p.blocks_done} of ${p.blocks_total}${p.blocks_reused ? ` (${p.blocks_reused} reused from earlier builds)` : ""}${p.blocks_failed ? `, ${p.blocks_failed} failed` : ""}; then ${p.networks_total} whole networks.`;
  if (t.status === "validating") return `Blocks done (${p.blocks_done - p.blocks_failed} measured). Validating: ${p.networks_done} of ${p.networks_total} whole networks measured${p.networks_failed ? `, ${p.networks_failed} failed` : ""}.`;
  if (t.status === "succeeded") return `${p.blocks_total} blocks, ${p.networks_done} validation networks${t.build_seconds ? ` · blocks built in ${Math.round(t.build_seconds)} s` : ""}.`;
  return `${p.blocks_failed} of ${p.blocks_total} blocks failed${p.networks_failed ? `, ${p.networks_failed} networks failed` : ""}.`;
}

function statusCard(t, onResume) {
  return card(
    null,
    h("div", { class: "row table-head" }, h("h2", {}, `Table #${t.id}: ${t.space} at ${t.resolution} px on ${t.device}`), badge(t.status)),
    h("p", { class: "muted" }, setting(t), ` · statistic ${t.settings.statistic || "mean"} · created `, ago(t.created_at)),
    h("div", { id: "table-progress", dataset: { status: t.status } }, progressBar(t), h("p", {}, phaseText(t))),
    t.error ? notice("error", t.error) : null,
    t.status === "failed" ? h("button", { type: "button", onclick: onResume }, "Resume (re-measure what failed)") : null,
  );
}

export async function renderTables(root, { query }) {
  root.append(h("h1", {}, "Latency tables"), h("p", { class: "muted lead" }, "Per-block latency lookup tables for neural architecture search, measured on one device and validated against whole networks measured on the same device."));
  const tables = await optional("/tables");
  if (tables === null) {
    root.append(card(null, notice("info", "This coordinator does not serve the latency-tables API (/api/v1/tables).")));
    return null;
  }
  const [spaces, devices] = await Promise.all([api("/spaces"), api("/devices")]);
  const listCard = card(`Tables (${tables.length})`);
  const listBody = h("div", { id: "table-list" });
  listCard.append(listBody);
  const detail = h("div", { id: "table-detail" });
  let rows = tables;
  let wanted = null; // the table shown (a click can change it while a poll is in flight)
  let current = null; // {id, status, blocksDone, parts} of what is drawn
  let timer = null;
  let stopped = false;

  const drawList = () => {
    listCard.querySelector("h2").textContent = `Tables (${rows.length})`;
    clear(listBody, listView(rows, wanted, (id) => show(id)));
  };

  const refresh = async () => {
    timer = null;
    if (stopped) return;
    try {
      rows = await api("/tables");
      drawList();
      if (wanted) await update(wanted);
    } catch (err) {
      clear(detail, errorBox(err));
    }
    if (rows.some((t) => ACTIVE.includes(t.status))) poll();
  };
  const poll = () => {
    if (!timer && !stopped) timer = setTimeout(refresh, POLL_MS);
  };

  // Redraws what changed: the status card always, entries when blocks move, the rest on a new status.
  const update = async (id) => {
    const t = await api(`/tables/${id}`);
    if (id !== wanted) return;
    if (!current || current.id !== id) {
      const parts = { status: h("div"), quality: h("div"), entries: entriesBrowser(), tools: h("div") };
      current = { id, status: null, blocksDone: -1, parts };
      clear(detail, parts.status, parts.quality, parts.entries.el, parts.tools);
      detail.dataset.tableId = id;
    }
    const { parts } = current;
    clear(parts.status, statusCard(t, () => api(`/tables/${id}/resume`, { method: "POST" }).then(refresh, (err) => parts.status.append(errorBox(err)))));
    detail.dataset.status = t.status;
    const moved = t.progress.blocks_done !== current.blocksDone || t.status !== current.status;
    if (moved) {
      const exp = await api(`/tables/${id}?format=json`);
      if (id !== wanted || current.id !== id) return;
      parts.entries.update(exp);
      if (t.status !== current.status) {
        clear(parts.quality, qualityView(t, exp.validation));
        clear(parts.tools, h("div", { class: "two-col" }, predictBox(t, exp.validation), exportLinks(t)));
      }
      current.status = t.status;
      current.blocksDone = t.progress.blocks_done;
    }
    if (ACTIVE.includes(t.status)) poll();
  };

  const show = async (id) => {
    id = Number(id);
    wanted = id;
    setQuery({ table: id });
    if (current && current.id !== id) current = null;
    drawList();
    try {
      await update(id);
    } catch (err) {
      clear(detail, errorBox(err));
    }
  };

  const onCreated = async (t) => {
    rows = [t, ...rows.filter((r) => r.id !== t.id)];
    await show(t.id);
    if (t.reused) detail.prepend(notice("info", `An identical table exists (#${t.id}): showing it instead of building it again. Tick "fresh" to build a new one.`));
    detail.scrollIntoView({ block: "start" });
  };

  drawList();
  root.append(listCard, detail, card("Build a table", buildForm(spaces, devices, onCreated)));
  const want = query.get("table") || (tables[0] && tables[0].id);
  if (want) await show(want);
  if (rows.some((t) => ACTIVE.includes(t.status))) poll();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}
