// A result's per-layer profile: the slowest layers (chart and table, with the kernel the
// runtime chose), time by compute unit, and a note whenever the layers do not add up to the
// measured p50 (by more than NOTE_AT), saying by how much and why.
import { COLORS, plot } from "../charts.js";
import { clear, emptyState, fmtMs, fmtNum, h, notice, table } from "../ui.js";

/** A layer sum this far from the p50 (relative) gets an explanation. */
export const NOTE_AT = 0.15;
const TOP = 15;

/** Why the layer sum differs from the p50, from what the result itself records. */
function reason(total, p50, env) {
  const proto = env.protocol || {};
  const runs = proto.profile_iterations ? `${proto.profile_iterations} runs` : "runs";
  const wall = env.profile_wall_p50_ms;
  const pass = `The profile is a separate pass after the steady state: ${runs} with the runtime's profiler on${env.profile_warmup_runs ? ` (after ${env.profile_warmup_runs} warm-up runs)` : ""}.`;
  if (typeof wall === "number" && wall > 0) {
    const those = `Those runs took ${fmtMs(wall)} each (median, wall-clock)`;
    if (Math.abs(total - wall) <= NOTE_AT * wall) {
      return `${pass} ${those}, so the layer times do account for them: the profiled runs themselves were ${wall > p50 ? "slower" : "faster"} than the steady state (the profiler's own overhead, and whatever else ran on the host during the pass). Quote the p50; use the profile for where the time goes.`;
    }
    if (total < wall) {
      return `${pass} ${those}; the ${fmtMs(wall - total)} not in any layer is spent outside the operators (the runtime's scheduling, input and output handling).`;
    }
    return `${pass} ${those}; the layer times add up to more than that because layers run in parallel overlap, and each is counted in full.`;
  }
  if (total < p50) {
    return `${pass} The runtime's profiler times the operators only: the rest of each run (framework overhead between operators, input and output copies, thread scheduling) is in the p50 but in no layer.`;
  }
  return `${pass} Profiling adds overhead to every operator, and operators the runtime runs in parallel are each counted in full, so their sum can exceed the wall-clock time of a run. Quote the p50; use the profile for where the time goes.`;
}

/** The note when the layer sum and the p50 differ by more than NOTE_AT, else null. */
export function profileNote(total, p50, env = {}) {
  if (!(p50 > 0) || Math.abs(total - p50) <= NOTE_AT * p50) return null;
  const ratio = total / p50;
  const how = ratio > 1 ? `${fmtNum(ratio, 2)}× the p50` : `${fmtNum(100 * (1 - ratio), 0)}% below it`;
  const el = notice("info", h("strong", {}, `The layers sum to ${fmtMs(total)} per run; the measured p50 is ${fmtMs(p50)} (${how}). `), reason(total, p50, env));
  el.id = "profile-note";
  el.dataset.totalMs = String(total);
  el.dataset.p50Ms = String(p50);
  return el;
}

/** Draw the profile of result `r` into `el`. */
export function drawProfile(el, profile, r = {}) {
  const env = r.environment || {};
  if (!profile || !profile.layers.length) {
    const why = env.profile_note || env.profile_error || (env.protocol && env.protocol.profile_iterations === undefined ? "profiling was off for this measurement (settings.profile false) or the runtime has no per-layer profiler" : "the runtime reported no layers");
    clear(el, emptyState("profile", `No per-layer profile for this result: ${why}.`, "Benchmark again with profiling on (the default settings profile after the steady state) on a runtime that profiles: onnxruntime, OpenVINO, TFLite, TensorRT or PyTorch."));
    return;
  }
  const unitOf = (l) => l.compute_unit || "unknown";
  const layers = [...profile.layers].sort((a, b) => b.time_ms - a.time_ms);
  const total = layers.reduce((s, l) => s + l.time_ms, 0);
  const top = layers.slice(0, TOP);
  const units = [...new Set(layers.map(unitOf))];
  const traces = units.map((u, i) => {
    const mine = [...top].reverse().filter((l) => unitOf(l) === u);
    return {
      type: "bar",
      orientation: "h",
      name: u,
      x: mine.map((l) => l.time_ms),
      y: mine.map((l) => l.name),
      customdata: mine.map((l) => [l.type || "–", ((100 * l.time_ms) / total).toFixed(1), l.kernel ? ` · ${l.kernel}` : ""]),
      marker: { color: COLORS[(i + 2) % COLORS.length] },
      hovertemplate: "<b>%{y}</b><br>%{customdata[0]}%{customdata[2]} · %{x:.3f} ms (%{customdata[1]}%)<extra>%{fullData.name}</extra>",
    };
  });
  const byUnit = units.map((u) => {
    const mine = layers.filter((l) => unitOf(l) === u);
    return { unit: u, time: mine.reduce((s, l) => s + l.time_ms, 0), n: mine.length };
  });
  const share = (t) => `${fmtNum((100 * t) / total, 1)}%`;
  const chart = h("div", { class: "chart", id: "profile-chart" });
  const hasKernels = layers.some((l) => l.kernel);
  clear(
    el,
    profileNote(total, r.latency_ms?.p50, env),
    h("p", { class: "muted", id: "profile-total", dataset: { totalMs: total } }, `Top ${top.length} of ${layers.length} layers by time; the layers sum to ${fmtMs(total)} per run.`),
    env.profile_note ? h("p", { class: "muted small-print" }, env.profile_note) : null,
    chart,
    h(
      "div",
      { id: "profile-units" },
      table(
        [
          { label: "compute unit", value: (u) => u.unit },
          { label: "layers", class: "num", value: (u) => u.n },
          { label: "time", class: "num", value: (u) => fmtMs(u.time) },
          { label: "share", class: "num", value: (u) => share(u.time) },
        ],
        byUnit,
      ),
    ),
    h(
      "details",
      { class: "all-points", id: "profile-layers" },
      h("summary", {}, `The ${top.length} slowest layers${units.length === 1 ? ` (all on ${units[0]})` : ""}`),
      table(
        [
          { label: "layer", class: "layer-name", value: (l) => [h("code", { class: "block-key" }, l.name), h("div", { class: "muted" }, l.type || "–")] },
          hasKernels ? { label: "kernel", value: (l) => l.kernel || "–" } : null,
          units.length > 1 ? { label: "compute unit", value: unitOf } : null,
          { label: "time", class: "num", value: (l) => fmtMs(l.time_ms) },
          { label: "share", class: "num", value: (l) => share(l.time_ms) },
        ].filter(Boolean),
        top,
        { rowAttrs: (l) => ({ dataset: { layer: l.name } }) },
      ),
    ),
  );
  plot(chart, traces, {
    height: Math.max(260, 22 * top.length + 80),
    margin: { l: 170, r: 20, t: 10, b: 45 },
    barmode: "stack",
    xaxis: { title: { text: "time per run (ms)" }, gridcolor: "#e5e7eb" },
    yaxis: { automargin: true, categoryorder: "array", categoryarray: [...top].reverse().map((l) => l.name) },
    legend: { orientation: "h", y: -0.25 },
  });
}
