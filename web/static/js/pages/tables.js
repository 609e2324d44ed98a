// Latency tables (NAS): list with build progress, the quality report (predicted vs measured,
// ±10% band), an entries browser. Degrades to a clear message while the API is absent.
import { api, optional } from "../api.js";
import { setQuery } from "../nav.js";
import { badge, card, clear, errorBox, fmtAgo, fmtNum, h, notice, table } from "../ui.js";
import { buildForm, entriesBrowser, qualityView } from "./table_view.js";

function progressBar(t) {
  const p = t.progress || {};
  const total = p.total || 0;
  const done = p.done || 0;
  const pct = total ? Math.round((100 * done) / total) : 0;
  return h("span", { class: "progress-row" }, h("progress", { max: 100, value: pct }), h("span", { class: "muted" }, total ? `${done} / ${total}` : "–"));
}

function quality(t) {
  const q = t.quality;
  if (!q) return h("span", { class: "muted" }, "not validated yet");
  return `n ${q.n ?? "–"} · ±5% ${fmtNum(100 * (q.acc5 ?? NaN), 0)}% · ±10% ${fmtNum(100 * (q.acc10 ?? NaN), 0)}% · ρ ${fmtNum(q.spearman, 3)}`;
}

export async function renderTables(root, { query }) {
  root.append(h("h1", {}, "Latency tables"), h("p", { class: "muted lead" }, "Per-block latency lookup tables for neural architecture search, measured on a device, validated against whole networks."));
  const tables = await optional("/tables");
  if (tables === null) {
    root.append(card(null, notice("info", "No tables yet: this coordinator does not serve the latency-tables API (/api/v1/tables) yet.")));
    return null;
  }
  const spaces = (await optional("/spaces")) || [];
  const [devices] = await Promise.all([api("/devices")]);
  const detail = h("div", { id: "table-detail" });
  let timer = null;
  let stopped = false;

  const show = async (id) => {
    if (timer) clearTimeout(timer);
    setQuery({ table: id });
    try {
      const t = await api(`/tables/${id}`);
      const entries = t.status === "succeeded" || (t.progress && t.progress.done) ? await optional(`/tables/${id}?format=json`) : null;
      clear(detail, h("h2", {}, `Table #${t.id}: ${t.space || ""} on ${t.device || ""}`), qualityView(t), entriesBrowser(entries));
      if (!stopped && ["queued", "running", "building", "validating"].includes(t.status)) timer = setTimeout(() => show(id), 2000);
    } catch (err) {
      clear(detail, errorBox(err));
    }
  };

  root.append(
    card(
      `Tables (${tables.length})`,
      table(
        [
          { label: "#", class: "num", value: (t) => t.id },
          { label: "space", value: (t) => t.space },
          { label: "device", value: (t) => t.device },
          { label: "runtime", value: (t) => [t.runtime, t.precision, t.resolution && `${t.resolution}px`, t.batch_size && `batch ${t.batch_size}`].filter(Boolean).join(" · ") },
          { label: "status", value: (t) => badge(t.status || "unknown") },
          { label: "progress", value: progressBar },
          { label: "quality", value: quality },
          { label: "created", value: (t) => fmtAgo(t.created_at) },
        ],
        tables,
        {
          empty: "No tables yet: build one below.",
          rowAttrs: (t) => ({ class: "clickable", dataset: { tableId: t.id }, onclick: () => show(t.id) }),
        },
      ),
    ),
    detail,
    card("Build a table", buildForm(spaces, devices)),
  );
  const want = query.get("table") || (tables[0] && tables[0].id);
  if (want) await show(want);
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}
