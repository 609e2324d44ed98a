// Quality flags and measurement modes of results, shared by the pages (docs/measurement.md).
import { api } from "./api.js";
import { fmtMs, fmtNum, h, notice, table } from "./ui.js";

/** The warning-severity flags of a result or Pareto point (info flags mark nothing). */
export function warningFlags(x) {
  return (x.flags || []).filter((f) => f.severity === "warning");
}

export function isFlagged(x) {
  return warningFlags(x).length > 0;
}

/** A compact marker for tables: "⚑ high_cov, multimodal" with the messages as a tooltip. */
export function flagCell(x) {
  const flags = warningFlags(x);
  if (!flags.length) return h("span", { class: "muted quality-ok" }, "ok");
  return h("span", { class: "quality-flags nowrap", title: flags.map((f) => `${f.code}: ${f.message}`).join("\n"), dataset: { flags: flags.map((f) => f.code).join(",") } }, `⚑ ${flags.map((f) => f.code).join(", ")}`);
}

/** Hover lines for a chart: one per warning flag. */
export function flagHover(x) {
  return warningFlags(x)
    .map((f) => `⚑ ${f.code}: ${f.message.length > 90 ? `${f.message.slice(0, 88)}…` : f.message}`)
    .join("<br>");
}

/** Notices for a result's detail view: warnings, then info notes. */
/** Flags the result's own warnings already state (the protocol's short-run warning). */
export function shownFlags(r) {
  const said = (r.warnings || []).length ? new Set(["too_few_runs"]) : new Set();
  return (r.flags || []).filter((f) => !said.has(f.code));
}

export function flagNotices(r) {
  return shownFlags(r).map((f) => notice(f.severity === "warning" ? "warn" : "info", `${f.code}: ${f.message}`));
}

/** The host's load when measuring started, from environment.host_load / loadavg. */
export function hostLoadText(env) {
  const hl = env.host_load || {};
  const load = hl.loadavg_1m ?? (env.loadavg || [])[0];
  const bits = [];
  if (load !== undefined && load !== null) bits.push(`load ${fmtNum(load, 2)} on ${hl.logical_cores || env.logical_cores || "?"} CPUs`);
  if (hl.other_share !== undefined) bits.push(`others' CPU ${fmtNum(100 * hl.other_share, 0)}%`);
  return bits.join(", ");
}

/** Per-repeat figures and the between-run spread of a repeated measurement. */
export function repeatsView(rep) {
  if (!rep) return null;
  const ci = rep.p50_ci95_low !== null && rep.p50_ci95_low !== undefined ? `${fmtMs(rep.p50_ci95_low)} – ${fmtMs(rep.p50_ci95_high)} (±${fmtNum(100 * rep.ci_rel_halfwidth, 2)}%)` : "–";
  return h(
    "div",
    { id: "repeats" },
    h("p", {}, `${rep.count} fresh processes: medians span ${fmtNum(100 * rep.p50_spread, 2)}% (CoV ${fmtNum(100 * rep.p50_cov, 2)}%); 95% CI of the median across runs ${ci}.`),
    table(
      [
        { label: "repeat", class: "num", value: (x) => x.index + 1 },
        { label: "p50", class: "num", value: (x) => fmtMs(x.p50_ms) },
        { label: "mean", class: "num", value: (x) => fmtMs(x.mean_ms) },
        { label: "runs", class: "num", value: (x) => x.runs },
        { label: "CoV", class: "num", value: (x) => (x.cov === null || x.cov === undefined ? "–" : `${fmtNum(100 * x.cov, 1)}%`) },
        { label: "stopped", value: (x) => x.stop_reason || "–" },
        { label: "host", value: (x) => hostLoadText({ host_load: x.host_load }) || "–" },
      ],
      rep.runs,
    ),
  );
}

let cached = null;

/** The named measurement modes from GET /presets (fetched once per page load). */
export async function measurePresets() {
  cached = cached || api("/presets");
  try {
    return await cached;
  } catch (err) {
    cached = null;
    throw err;
  }
}
