// Every result of a model (device × runtime × precision), the raw-time histogram of the
// selected one with p50/p90/p99 marked, and its per-layer profile.
import { optional } from "../api.js";
import { COLORS, plot, vline } from "../charts.js";
import { badge, card, clear, fmtAgo, fmtMs, fmtNum, h, notice, table } from "../ui.js";

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
    clear(el, h("p", { class: "muted empty" }, "No results yet."));
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
      { label: "status", value: (r) => badge(r.status) },
      { label: "p50", class: "num", value: (r) => fmtMs(r.latency_ms?.p50) },
      { label: "p90", class: "num", value: (r) => fmtMs(r.latency_ms?.p90) },
      { label: "p99", class: "num", value: (r) => fmtMs(r.latency_ms?.p99) },
      { label: "mean", class: "num", value: (r) => fmtMs(r.latency_ms?.mean) },
      { label: "CoV", class: "num", value: (r) => (r.latency_ms ? `${fmtNum(100 * r.latency_ms.cov, 1)}%` : "–") },
      { label: "runs", class: "num", value: (r) => r.runs },
      { label: "peak RSS", class: "num", value: (r) => (r.memory.peak_rss_mb ? `${fmtNum(r.memory.peak_rss_mb, 0)} MB` : "–") },
      { label: "load", class: "num", value: (r) => fmtMs(r.load_ms) },
      { label: "measured", value: (r) => fmtAgo(r.created_at) },
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
  const envLine = [env.cpu_model, env.physical_cores && `${env.physical_cores} cores`, env.os && `${env.os} ${env.kernel || ""}`.trim(), env.cpufreq_governor && `governor ${env.cpufreq_governor}`, r.stop_reason && `stopped: ${r.stop_reason}`].filter(Boolean).join(" · ");
  clear(el, h("h3", {}, title), envLine ? h("p", { class: "muted" }, envLine) : null, h("div", { class: "two-col" }, card("Latency distribution", histEl), card("Per-layer profile", profEl)));
  const [raw, profile] = await Promise.all([optional(`/benchmarks/${r.benchmark_id}/results/${r.id}/raw`), optional(`/benchmarks/${r.benchmark_id}/results/${r.id}/profile`)]);
  drawHistogram(histEl, raw, r.latency_ms);
  drawProfile(profEl, profile);
}

function drawHistogram(el, raw, lat) {
  if (!raw || !raw.times_ms.length) {
    clear(el, h("p", { class: "muted" }, "No raw times stored for this result."));
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

function drawProfile(el, profile) {
  if (!profile || !profile.layers.length) {
    clear(el, h("p", { class: "muted" }, "No per-layer profile for this result (the runtime could not profile, or profiling was off)."));
    return;
  }
  const layers = [...profile.layers].sort((a, b) => b.time_ms - a.time_ms);
  const total = layers.reduce((s, l) => s + l.time_ms, 0);
  const top = layers.slice(0, 15).reverse();
  const units = [...new Set(layers.map((l) => l.compute_unit || "unknown"))];
  const traces = units.map((u, i) => {
    const mine = top.filter((l) => (l.compute_unit || "unknown") === u);
    return {
      type: "bar",
      orientation: "h",
      name: u,
      x: mine.map((l) => l.time_ms),
      y: mine.map((l) => l.name),
      customdata: mine.map((l) => [l.type || "–", ((100 * l.time_ms) / total).toFixed(1)]),
      marker: { color: COLORS[(i + 2) % COLORS.length] },
      hovertemplate: "<b>%{y}</b><br>%{customdata[0]} · %{x:.3f} ms (%{customdata[1]}%)<extra>%{fullData.name}</extra>",
    };
  });
  const byUnit = units.map((u) => {
    const t = layers.filter((l) => (l.compute_unit || "unknown") === u).reduce((s, l) => s + l.time_ms, 0);
    return { unit: u, time: t, n: layers.filter((l) => (l.compute_unit || "unknown") === u).length };
  });
  const chart = h("div", { class: "chart", id: "profile-chart" });
  clear(
    el,
    h("p", { class: "muted" }, `Top ${top.length} of ${layers.length} layers by time (total ${fmtMs(total)}).`),
    chart,
    table(
      [
        { label: "compute unit", value: (u) => u.unit },
        { label: "layers", class: "num", value: (u) => u.n },
        { label: "time", class: "num", value: (u) => fmtMs(u.time) },
        { label: "share", class: "num", value: (u) => `${fmtNum((100 * u.time) / total, 1)}%` },
      ],
      byUnit,
    ),
  );
  plot(chart, traces, {
    height: Math.max(260, 22 * top.length + 80),
    margin: { l: 170, r: 20, t: 10, b: 45 },
    barmode: "stack",
    xaxis: { title: { text: "time per run (ms)" }, gridcolor: "#e5e7eb" },
    yaxis: { automargin: true, categoryorder: "array", categoryarray: top.map((l) => l.name) },
    legend: { orientation: "h", y: -0.25 },
  });
}
