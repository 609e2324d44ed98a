// Every result of a model (device × runtime × precision), the raw-time histogram of the
// selected one with p50/p90/p99 marked, and its per-layer profile.
import { optional } from "../api.js";
import { COLORS, plot, vline } from "../charts.js";
import { drawProfile } from "./profile_view.js";
import { flagCell, flagNotices, hostLoadText, repeatsView } from "../quality.js";
import { ago, badge, card, clear, emptyState, fmtMs, fmtNum, h, notice, table } from "../ui.js";

function allResults(benches) {
  return benches.flatMap((b) => b.results.map((r) => ({ ...r, benchmark_id: b.id, created_at: b.created_at }))).sort((a, b) => b.id - a.id);
}

function paretoLink(r, model) {
  const metrics = Object.keys((model.metadata || {}).accuracy || {});
  if (r.status !== "succeeded" || !metrics.length) return "";
  const metric = metrics.includes("top1") ? "top1" : metrics[0];
  const qs = new URLSearchParams({ device: r.device, runtime: r.runtime, precision: r.precision, batch_size: r.batch_size, metric });
  return h("a", { href: `/pareto?${qs}`, title: "this target's latency-accuracy front" }, "Pareto →");
}

export async function resultsView(el, benches, preselect, model) {
  const results = allResults(benches);
  if (!results.length) {
    clear(el, emptyState("results", "No results yet: this model has not been measured.", "Benchmark it above; each finished job adds a row here with its latency distribution and per-layer profile."));
    return;
  }
  const detail = h("div", { id: "result-detail" });
  let selected = results.find((r) => String(r.id) === String(preselect)) || results.find((r) => r.status === "succeeded") || results[0];
  const rows = table(
    [
      { label: "device", class: "nowrap", value: (r) => r.device },
      { label: "runtime", value: (r) => r.runtime },
      { label: "precision", value: (r) => r.precision },
      { label: "batch", class: "num", value: (r) => r.batch_size },
      { label: "threads", class: "num", value: (r) => r.threads },
      { label: "status", value: (r) => (r.warnings?.length ? h("span", { class: "nowrap", title: r.warnings.join("\n") }, badge(r.status), h("span", { class: "result-warning", "aria-label": "warning" }, " ⚠")) : badge(r.status)) },
      { label: "p50", class: "num", value: (r) => fmtMs(r.latency_ms?.p50) },
      { label: "p90", class: "num", value: (r) => fmtMs(r.latency_ms?.p90) },
      { label: "p99", class: "num", value: (r) => fmtMs(r.latency_ms?.p99) },
      { label: "mean", class: "num", value: (r) => fmtMs(r.latency_ms?.mean) },
      { label: "CoV", class: "num", value: (r) => (r.latency_ms ? `${fmtNum(100 * r.latency_ms.cov, 1)}%` : "–") },
      { label: "runs", class: "num", value: (r) => r.runs },
      { label: "mode", value: (r) => (r.repeats ? `${r.mode} ×${r.repeats.count}` : r.mode || "–") },
      { label: "quality", value: (r) => (r.status === "succeeded" ? flagCell(r) : "–") },
      { label: "peak RSS", class: "num", value: (r) => (r.memory.peak_rss_mb ? `${fmtNum(r.memory.peak_rss_mb, 0)} MB` : "–") },
      { label: "load", class: "num", value: (r) => fmtMs(r.load_ms) },
      { label: "measured", value: (r) => ago(r.created_at) },
      { label: "", class: "nowrap", value: (r) => paretoLink(r, model) },
    ],
    results,
    {
      rowAttrs: (r) => ({
        class: `clickable${r.id === selected.id ? " selected" : ""}`,
        dataset: { resultId: r.id },
        title: r.error || "show the distribution and profile",
        onclick: (ev) => {
          selected = r;
          for (const tr of el.querySelectorAll("tr.selected")) tr.classList.remove("selected");
          ev.currentTarget.classList.add("selected");
          showDetail(detail, r);
        },
      }),
    },
  );
  clear(el, rows, detail);
  await showDetail(detail, selected);
}

async function showDetail(el, r) {
  const title = `${r.device} · ${r.runtime} · ${r.precision} · batch ${r.batch_size} · threads ${r.threads}`;
  if (r.status !== "succeeded") {
    clear(el, h("h3", {}, title), notice("error", r.error || "the measurement failed"));
    return;
  }
  const histEl = h("div", { class: "chart", id: "histogram" });
  const profEl = h("div", { id: "profile" });
  const env = r.environment || {};
  const envLine = [env.cpu_model, env.physical_cores && `${env.physical_cores} cores`, env.os && `${env.os} ${env.kernel || ""}`.trim(), env.cpufreq_governor && `governor ${env.cpufreq_governor}`, r.stop_reason && `stopped: ${r.stop_reason}`, hostLoadText(env) && `host at start: ${hostLoadText(env)}`, r.mode && `mode ${r.mode}`].filter(Boolean).join(" · ");
  const warnings = (r.warnings || []).map((w) => notice("warn", `warning: ${w}`));
  const flags = h("div", { id: "result-flags" }, flagNotices(r));
  const repeats = r.repeats ? card("Fresh processes", repeatsView(r.repeats)) : null;
  const energy = energyView(env);
  clear(el, h("h3", {}, title), ...warnings, flags, envLine ? h("p", { class: "muted" }, envLine) : null, energy, repeats, h("div", { class: "two-col" }, card("Latency distribution", histEl), card("Per-layer profile", profEl)));
  const [raw, profile] = await Promise.all([optional(`/benchmarks/${r.benchmark_id}/results/${r.id}/raw`), optional(`/benchmarks/${r.benchmark_id}/results/${r.id}/profile`)]);
  drawHistogram(histEl, raw, r.latency_ms);
  drawProfile(profEl, profile, r);
}

/** Power and energy per inference (Jetson tegrastats, phone fuel gauge): the same fields. */
function energyView(env) {
  const p = env.power;
  if (!p) return null;
  if (p.mean_mw === undefined || p.mean_mw === null) {
    return notice("info", p.note || p.error || "energy not reported");
  }
  const mj = env.energy_per_inference_mj;
  const bits = [`${fmtNum(p.mean_mw, 0)} mW average${p.baseline_subtracted ? " above idle" : ""}`, mj !== undefined && mj !== null && `${fmtNum(mj, 3)} mJ per inference`, p.samples && `${p.samples} samples`, p.method || p.source].filter(Boolean);
  const coarse = p.coarse ? " (fuel-gauge based: coarse)" : "";
  return h("p", { class: "energy", id: "result-energy" }, `Energy: ${bits.join(" · ")}${coarse}`);
}

function drawHistogram(el, raw, lat) {
  if (!raw || !raw.times_ms.length) {
    clear(el, emptyState("histogram", "No raw iteration times stored for this result (a device tool that prints only aggregates, or a result stored before raw times were kept).", "The statistics above still hold; measure again on a local runtime for the distribution."));
    return;
  }
  const times = raw.times_ms;
  const lo = Math.min(...times);
  const hi = Math.max(...times);
  // The axis covers the bulk; a heavy tail (p99 far out) is clipped and pointed at instead.
  const spread = Math.max(lat.p90 - lat.p50, lat.p50 * 0.02);
  const bulk = lat.p90 + 6 * spread;
  const cap = Math.min(hi, lat.p99 <= bulk ? Math.max(lat.p99 * 1.05, lat.p99 + spread) : bulk);
  const clipped = times.filter((t) => t > cap).length;
  const shown = clipped ? times.filter((t) => t <= cap) : times;
  const note = clipped ? `; ${clipped} slower run(s), up to ${fmtMs(hi)}, off the axis` : "";
  const pcts = [
    ["p50", lat.p50, "#059669"],
    ["p90", lat.p90, "#d97706"],
    ["p99", lat.p99, "#dc2626"],
  ];
  const shapes = [];
  const annotations = [];
  pcts.forEach(([name, x, color], i) => {
    const label = `${name} ${fmtMs(x)}`;
    if (x <= cap) {
      const m = vline(x, label, color);
      m.annotation.y = 1.02 + 0.08 * i; // staggered: close percentiles stay readable
      m.annotation.xanchor = x > (lo + cap) / 2 ? "right" : "left";
      shapes.push(m.shape);
      annotations.push(m.annotation);
    } else {
      annotations.push({ x: cap, xanchor: "right", yref: "paper", y: 0.9 - 0.1 * i, text: `${label} →`, showarrow: false, font: { color, size: 11 } });
    }
  });
  const size = (cap - lo) / 60 || 1e-3;
  plot(
    el,
    [{ type: "histogram", x: shown, xbins: { start: lo, end: cap + size, size }, marker: { color: COLORS[0], line: { color: "#1e40af", width: 0.5 } }, name: "iterations", hovertemplate: "%{x} ms: %{y} runs<extra></extra>" }],
    {
      height: 340,
      margin: { l: 50, r: 20, t: 64, b: 45 },
      xaxis: { title: { text: `iteration time (ms), ${times.length} runs${note}` }, range: [lo - size, cap + size], gridcolor: "#e5e7eb" },
      yaxis: { title: { text: "runs" }, gridcolor: "#e5e7eb" },
      shapes,
      annotations,
      bargap: 0.03,
      showlegend: false,
    },
  );
}
