// A predictor's accuracy report: acc5 / acc10 / RMSPE / Spearman ρ per family and overall, the
// predicted-vs-measured scatter of its held-out networks with the ±10% band (the table quality
// report's style), the batched-vs-single bias check, the networks and the failed samples.
import { COLORS, plot } from "../charts.js";
import { badge, card, emptyState, fmtMs, fmtNum, h, table } from "../ui.js";
import { pct } from "./table_view.js";

function signed(x) {
  return typeof x === "number" ? `${x >= 0 ? "+" : ""}${pct(x)}` : "–";
}

const COLUMNS = [
  ["n", "networks", (a) => String(a.n)],
  ["acc5", "within ±5%", (a) => pct(a.acc5)],
  ["acc10", "within ±10%", (a) => pct(a.acc10)],
  ["rmspe", "RMSPE", (a) => pct(a.rmspe)],
  ["rho", "Spearman ρ", (a) => (a.rho === null || a.rho === undefined ? "–" : fmtNum(a.rho, 3))],
  ["mean_error", "mean error", (a) => signed(a.mean_error)],
  ["worst_error", "worst", (a) => signed(a.worst_error)],
];

/** A sample key ({"params": {...}, "type": ...} as JSON) as "cin=16 cout=32 …"; else as is. */
export function keyText(key) {
  try {
    const params = JSON.parse(key).params || {};
    return Object.entries(params).map(([k, v]) => `${k}=${v}`).join(" ");
  } catch {
    return key;
  }
}

function stat(label, value, key) {
  return h("div", { class: "stat small", dataset: { stat: key } }, h("span", { class: "stat-value" }, value), h("span", { class: "stat-label" }, label));
}

function familyTable(acc) {
  const rows = [...Object.entries(acc.families || {}).map(([family, a]) => ({ family, a })), { family: "overall", a: acc.overall }];
  return table(
    [{ label: "family", value: (r) => (r.family === "overall" ? h("b", {}, "overall") : r.family) }, ...COLUMNS.map(([key, label, fmt]) => ({ label, class: "num", value: (r) => h("span", { dataset: { metric: key } }, fmt(r.a)) }))],
    rows,
    { rowAttrs: (r) => ({ dataset: { family: r.family }, class: r.family === "overall" ? "selected" : "" }) },
  );
}

/** Predicted against measured, one color per family, the ±10% band and the diagonal. */
export function scatter(el, points) {
  const ok = points.filter((p) => p.predicted_ms > 0 && p.measured_ms > 0);
  const all = ok.flatMap((p) => [p.predicted_ms, p.measured_ms]);
  const lo = Math.min(...all) * 0.85;
  const hi = Math.max(...all) * 1.1;
  const xs = [lo, hi];
  const families = [...new Set(ok.map((p) => p.family))];
  const log = hi / lo > 20;
  const traces = [
    { x: xs, y: xs.map((x) => x * 0.9), mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false },
    { x: xs, y: xs.map((x) => x * 1.1), mode: "lines", line: { width: 0 }, fill: "tonexty", fillcolor: "rgba(5,150,105,0.14)", name: "±10%", hoverinfo: "skip" },
    { x: xs, y: xs, mode: "lines", line: { color: "#6b7280", dash: "dot", width: 1 }, name: "predicted = measured", hoverinfo: "skip" },
    ...families.map((f, i) => {
      const pts = ok.filter((p) => p.family === f);
      return {
        type: "scatter",
        mode: "markers",
        name: f,
        x: pts.map((p) => p.measured_ms),
        y: pts.map((p) => p.predicted_ms),
        text: pts.map((p) => p.name),
        customdata: pts.map((p) => signed((p.predicted_ms - p.measured_ms) / p.measured_ms)),
        marker: { color: COLORS[i % COLORS.length], size: 9, line: { color: "#fff", width: 1 } },
        hovertemplate: "<b>%{text}</b><br>measured %{x:.3f} ms<br>predicted %{y:.3f} ms (%{customdata})<extra></extra>",
      };
    }),
  ];
  const axis = (text) => ({ title: { text: `${text}${log ? ", log scale" : ""}` }, type: log ? "log" : "linear", range: log ? xs.map(Math.log10) : xs, gridcolor: "#e5e7eb", zeroline: false });
  return plot(el, traces, { height: 440, legend: { orientation: "h", y: -0.18, traceorder: "normal" }, xaxis: axis("measured latency (ms)"), yaxis: axis("predicted latency (ms)") });
}

export function accuracyCard(p) {
  const acc = p.accuracy;
  if (!acc || !acc.overall) {
    const why = p.status === "failed" ? "The build failed before its held-out networks were scored." : "The accuracy report appears once the held-out networks (real architectures and random NAS-space networks it never trained on) have been measured whole.";
    return card("Accuracy on held-out networks", h("p", { class: "muted", id: "predictor-accuracy", dataset: { state: "pending" } }, why));
  }
  const o = acc.overall;
  const chart = h("div", { class: "chart", id: "predictor-scatter" });
  const stats = h("div", { class: "stats stats-col" }, stat("networks measured whole", o.n, "n"), stat("within ±10%", pct(o.acc10), "acc10"), stat("within ±5%", pct(o.acc5), "acc5"), stat("RMSPE", pct(o.rmspe), "rmspe"), stat("Spearman ρ", o.rho === null || o.rho === undefined ? "–" : fmtNum(o.rho, 3), "rho"));
  const out = card(
    "Accuracy on held-out networks: predicted vs measured",
    h("div", { class: "quality" }, chart, stats),
    h("div", { id: "predictor-accuracy", dataset: { state: "ready" } }, familyTable(acc)),
    h("p", { class: "muted small-print" }, `Statistic ${p.settings.statistic || "min"} of each network measured end to end in a fresh process on ${p.device} with the build's settings. acc5 / acc10: share of networks predicted within ±5% / ±10% (nn-Meter's measure); ρ needs 3 networks or more.`),
  );
  scatter(chart, p.points);
  return out;
}

export function networksCard(p) {
  const err = (x) => (x.predicted_ms > 0 && x.measured_ms > 0 ? (x.predicted_ms - x.measured_ms) / x.measured_ms : null);
  return card(
    `Validation networks (${p.points.length})`,
    table(
      [
        { label: "network", value: (x) => x.name },
        { label: "family", value: (x) => x.family },
        { label: "status", value: (x) => badge(x.status) },
        { label: "predicted", class: "num", value: (x) => fmtMs(x.predicted_ms) },
        ...(p.calibration ? [{ label: "before calibration", class: "num", value: (x) => fmtMs(x.predicted_uncalibrated_ms) }] : []),
        { label: "measured", class: "num", value: (x) => fmtMs(x.measured_ms) },
        { label: "error", class: "num", value: (x) => { const e = err(x); return e === null ? "–" : h("span", { class: Math.abs(e) <= 0.1 ? "ok" : "bad" }, signed(e)); } },
        { label: "", value: (x) => (x.error ? h("span", { class: "bad" }, x.error) : "") },
      ],
      p.points,
      { empty: "The networks are chosen once the regressors are trained.", rowAttrs: (x) => ({ dataset: { network: x.name, status: x.status } }) },
    ),
  );
}

export function biasCard(p) {
  const b = p.bias;
  const g = p.progress;
  if (!b || !b.n) {
    const why = g.bias_total ? `${g.bias_done} of ${g.bias_total} kernels measured alone so far.` : "No bias check in this build (options.bias_check_n 0).";
    return card("Batched vs single-process bias", h("p", { class: "muted", id: "predictor-bias", dataset: { state: "pending" } }, why));
  }
  return card(
    "Batched vs single-process bias",
    h("p", { id: "predictor-bias", dataset: { state: "ready", median: b.median_ratio } }, `${b.n} kernel${b.n === 1 ? "" : "s"} measured both inside a batch job and alone in a fresh process: median batched / single ${fmtNum(b.median_ratio, 3)}, largest deviation ${pct(b.max_abs_dev)}. A ratio near 1 means measuring many kernels in one process does not bias them.`),
    table(
      [
        { label: "type", value: (x) => x.type },
        { label: "kernel", value: (x) => h("code", { class: "block-key", title: x.key }, keyText(x.key)) },
        { label: "batched", class: "num", value: (x) => fmtMs(x.batched_ms) },
        { label: "single", class: "num", value: (x) => fmtMs(x.single_ms) },
        { label: "ratio", class: "num", value: (x) => h("span", { class: Math.abs(x.ratio - 1) <= 0.1 ? "" : "bad" }, fmtNum(x.ratio, 3)) },
      ],
      b.points,
    ),
  );
}

export function failedCard(p) {
  const rows = p.failed_samples || [];
  const g = p.progress;
  return card(
    `Failed samples (${Math.max(rows.length, g.samples_failed)})`,
    table(
      [
        { label: "type", value: (x) => x.type },
        { label: "kernel", value: (x) => h("code", { class: "block-key", title: x.key }, keyText(x.key)) },
        { label: "error", value: (x) => h("span", { class: "bad" }, x.error || "–") },
      ],
      rows,
      { empty: emptyState("failed-samples", "No sample failed.", null) },
    ),
    rows.length < g.samples_failed ? h("p", { class: "muted small-print" }, `The first ${rows.length} shown.`) : null,
  );
}

/** The users' own benchmarked models on this predictor's device and settings (GET /tracked). */
export function trackedCard(report) {
  if (!report) return card("Your models", h("p", { class: "muted" }, "Shown once the predictor is trained: every model benchmarked on this device with the same runtime, precision, batch and threads, predicted beside measured."));
  const pts = report.points || [];
  const acc = report.accuracy;
  const err = (p) => (p.predicted_ms ? (p.predicted_ms - p.measured_ms) / p.measured_ms : null);
  return card(
    "Your models",
    h("p", { class: "muted" }, `Newest measured result (${report.statistic}) of each user model on this device and settings, with its prediction. Each benchmark you run adds a point.`),
    acc ? h("div", { class: "stats" }, stat("models", String(acc.overall.n), "tracked-n"), stat("within ±10%", pct(acc.overall.acc10), "tracked-acc10"), stat("RMSPE", pct(acc.overall.rmspe), "tracked-rmspe")) : null,
    table(
      [
        { label: "model", value: (p) => h("a", { href: `/models/${p.model_id}` }, p.name) },
        { label: "measured", class: "num", value: (p) => fmtMs(p.measured_ms) },
        { label: "predicted", class: "num", value: (p) => (p.predicted_ms ? fmtMs(p.predicted_ms) : h("span", { class: "muted", title: p.error || "" }, "–")) },
        { label: "error", class: "num", value: (p) => signed(err(p)) },
      ],
      pts,
      { rowAttrs: (p) => ({ dataset: { modelId: p.model_id } }), empty: "No model benchmarked on this device and settings yet." },
    ),
  );
}

export function calibrationCard(p) {
  const c = p.calibration;
  const opts = (p.settings && p.settings.options) || {};
  const title = "Network-level calibration";
  if (!c) {
    const g = p.progress;
    const why = opts.calibrate === false ? "No calibration in this build (options.calibrate false): a network is predicted as the sum of its kernels." : g.calibration_total ? `${g.calibration_done} of ${g.calibration_total} calibration networks measured so far.` : "Fitted once the kernels are trained, on whole networks measured end to end (width 1.0, several input sizes; never the held-out networks the build is scored on).";
    return card(title, h("p", { class: "muted", id: "predictor-calibration", dataset: { state: "pending" } }, why));
  }
  const loo = c.leave_one_out_rmspe;
  const plain = p.accuracy_uncalibrated && p.accuracy_uncalibrated.overall;
  const after = p.accuracy && p.accuracy.overall;
  const held = plain && after ? ` On the held-out networks: RMSPE ${pct(plain.rmspe)} before calibration, ${pct(after.rmspe)} after.` : "";
  return card(
    title,
    h("p", { id: "predictor-calibration", dataset: { state: "ready", networks: c.networks.length } }, `Fitted on ${c.networks.length} whole networks measured end to end${c.failed ? ` (${c.failed} failed)` : ""}: RMSPE on them ${pct(c.uncalibrated_rmspe)} before, ${pct(c.fit_rmspe)} after${loo === null || loo === undefined ? "" : `, leave-one-out ${pct(loo)}`}.${held}`),
    table(
      [
        { label: "term", value: (x) => h("code", {}, x.term) },
        { label: "coefficient", class: "num", value: (x) => fmtNum(x.coef, 4) },
      ],
      c.terms.map((term, i) => ({ term, coef: c.coef[i] })),
      { empty: "no terms" },
    ),
  );
}
