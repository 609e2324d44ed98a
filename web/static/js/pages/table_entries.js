// The entries browser of a table (from ?format=json): one row per block under the key OFA's
// tables and our ofa-yaml export use (`ofa_key`, built by latencylab.spaces Block.ofa_key),
// with LatencyLab's own key beneath it; kind and shapes (parsed from our key), the table's
// statistic in ms, run count and variance; failed blocks (from the table's failed_blocks) with
// their error. Keeps its filters on update.
import { card, clear, emptyState, fmtNum, h, select, table } from "../ui.js";

const SHOW = 200;
const KEY = /^([a-z_0-9]+)-in:([0-9x]+)-out:([0-9x]+)-k(\d+)-s(\d+)-e(\d+)/;

/** kind, shapes, kernel / stride / expand of a LatencyLab block key. */
export function parseKey(key) {
  const m = KEY.exec(key);
  if (!m) return { kind: key.split("-")[0] || "?", shape: "", kernel: "", stride: "", expand: "" };
  return { kind: m[1], shape: `${m[2]} → ${m[3]}`, kernel: m[4], stride: m[5], expand: m[6] };
}

/** Rows of an export: measured entries first (in the space's order), then failed blocks. */
export function entryRows(exp) {
  const rows = Object.entries(exp.entries || {}).map(([key, e]) => ({ key, ...parseKey(key), ...e, ofa_key: e.ofa_key || "", status: "measured", error: "" }));
  const seen = new Set(rows.map((r) => r.key));
  for (const f of exp.failed_blocks || []) {
    if (!seen.has(f.key)) rows.push({ key: f.key, ...parseKey(f.key), ofa_key: f.ofa_key || "", status: "failed", error: f.error || "" });
  }
  return rows;
}

const ms = (v) => (typeof v === "number" ? fmtNum(v, v >= 10 ? 2 : 4) : "–");

/** The OFA key first (what ofa-yaml and OFA's LatencyTable use), ours beneath it. */
function keyCell(r) {
  const ours = h("code", { class: r.ofa_key ? "block-key ll-key" : "block-key", title: "LatencyLab key (json/csv exports, predict)" }, r.key);
  if (!r.ofa_key) return ours;
  return h("div", {}, h("code", { class: "block-key ofa-key", title: "OFA key (ofa-yaml export, OFA's LatencyTable)" }, r.ofa_key), ours);
}

function columns(stat, ofa) {
  return [
    { label: ofa ? "OFA key · LatencyLab key" : "block key", value: keyCell },
    { label: "kind", value: (r) => r.kind },
    { label: "shape (H×W×C)", class: "nowrap", value: (r) => r.shape },
    { label: "k · s · e", class: "nowrap", value: (r) => (r.kernel ? `${r.kernel} · ${r.stride} · ${r.expand}` : "") },
    { label: `${stat} ms`, class: "num", value: (r) => ms(r.mean) },
    { label: "count", class: "num", value: (r) => (typeof r.count === "number" ? r.count : "–") },
    { label: "var (ms²)", class: "num", value: (r) => (typeof r.var === "number" ? r.var.toExponential(2) : "–") },
    { label: "status", value: (r) => h("span", { class: `badge badge-${r.status === "measured" ? "succeeded" : "failed"}` }, r.status) },
    { label: "error", value: (r) => (r.error ? h("span", { class: "bad" }, r.error) : "") },
  ];
}

/** {el, update(export)}: the card, and a redraw that keeps the filter text and selects. */
export function entriesBrowser() {
  const search = h("input", { type: "search", name: "entry-filter", placeholder: "filter, e.g. kernel:7-stride:2, k7-s2 or 16x16x40", size: 40 });
  const kind = select([["", "all kinds"]], "", { name: "entry-kind" });
  const status = select([["", "all"], ["measured", "measured"], ["failed", "failed"]], "", { name: "entry-status" });
  const summary = h("p", { class: "muted" }, "Loading entries…");
  const list = h("div", { id: "entries-list" });
  let rows = [];
  let stat = "mean";
  let ofa = false;
  let pending = 0;

  const draw = () => {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    const hits = rows.filter((r) => (!kind.value || r.kind === kind.value) && (!status.value || r.status === status.value) && words.every((w) => `${r.key} ${r.ofa_key || ""} ${r.error}`.toLowerCase().includes(w)));
    const failed = rows.filter((r) => r.status === "failed").length;
    summary.textContent = `${rows.length - failed} measured${failed ? `, ${failed} failed` : ""}${pending ? `, ${pending} still to measure` : ""} · showing ${Math.min(hits.length, SHOW)} of ${hits.length} matching`;
    const empty = rows.length ? emptyState("entries-filter", "No entry matches the filter.", "Filter by either key (OFA's or ours), a shape such as 16x16x40, or an error; clear it to see every entry.") : emptyState("entries", pending ? "No block measured yet: the build has not finished its first block." : "This table has no measured block.", pending ? "Entries appear here as the agent measures them; the list refreshes by itself." : "Resume the table to measure its blocks again.");
    clear(list, table(columns(stat, ofa), hits.slice(0, SHOW), { empty, rowAttrs: (r) => ({ dataset: r.ofa_key ? { key: r.key, ofaKey: r.ofa_key, status: r.status } : { key: r.key, status: r.status } }) }));
  };

  const update = (exp) => {
    rows = entryRows(exp);
    ofa = rows.some((r) => r.ofa_key);
    stat = (exp.settings && exp.settings.statistic) || "mean";
    pending = Math.max(0, exp.progress.blocks_total - exp.progress.blocks_done);
    const kinds = [...new Set(rows.map((r) => r.kind))];
    const was = kind.value;
    clear(kind, h("option", { value: "" }, "all kinds"), kinds.map((k) => h("option", { value: k, selected: k === was }, k)));
    draw();
  };

  for (const el of [search, kind, status]) el.addEventListener("input", draw);
  const el = card("Entries", h("div", { class: "row" }, h("label", { class: "field" }, h("span", { class: "field-label" }, "Filter"), search), h("label", { class: "field" }, h("span", { class: "field-label" }, "Kind"), kind), h("label", { class: "field" }, h("span", { class: "field-label" }, "Status"), status)), summary, list);
  el.id = "entries";
  return { el, update };
}
