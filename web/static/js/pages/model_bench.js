// Submitting a benchmark (targets from what the fleet offers) and the live job pipeline.
import { api } from "../api.js";
import { measurePresets } from "../quality.js";
import { ago, badge, clear, emptyState, errorBox, field, h, measuringDevices, select } from "../ui.js";

const STAGES = ["queued", "converting", "measuring", "done"];
// Benchmark runtimes (a converter worker's "convert:*" capabilities are not targets).
const RUNTIMES = ["onnxruntime", "tflite", "coreml", "tensorrt", "openvino", "pytorch"];

export function benchmarkForm(model, devices, onSubmitted) {
  const status = h("div");
  // Converter workers convert, they never measure: no benchmark target.
  const measuring = measuringDevices(devices).filter((d) => Object.keys(d.runtimes || {}).some((r) => RUNTIMES.includes(r)));
  if (!measuring.length) {
    return emptyState("bench-devices", "No measuring device has registered yet, so there is nowhere to run a benchmark.", ["Start one: ", h("code", {}, "make run"), " starts a local agent; other machines join with ", h("code", {}, "latencylab agent --server URL --token T"), "."]);
  }
  const sorted = [...measuring].sort((a, b) => (a.status === b.status ? a.id - b.id : a.status === "online" ? -1 : 1));
  let checkedOne = false;
  const boxes = [];
  const targets = h(
    "div",
    { class: "targets", id: "bench-targets" },
    sorted.map((d) =>
      h(
        "div",
        { class: "target-device" },
        h("div", {}, h("strong", {}, d.name), " ", h("span", { class: "muted" }, d.class), " ", badge(d.status)),
        Object.entries(d.runtimes)
          .filter(([rt]) => RUNTIMES.includes(rt))
          .map(([rt, ver]) => {
          const check = !checkedOne && d.status === "online" && rt === "onnxruntime";
          checkedOne = checkedOne || check;
          const box = h("input", { type: "checkbox", name: "target", value: `${d.name}|${rt}`, checked: check, dataset: { device: d.name, runtime: rt } });
          boxes.push(box);
          return h("label", { class: "check" }, box, ` ${rt} `, h("span", { class: "muted" }, ver));
        }),
      ),
    ),
  );
  const precision = select(["fp32", "fp16", "int8"], "fp32", { name: "precision" });
  const batch = h("input", { type: "number", name: "batch_size", value: "1", min: "1", max: "4096", size: 4 });
  const threads = h("input", { type: "number", name: "threads", value: "1", min: "0", max: "1024", size: 4 });
  // The modes come from GET /presets (latencylab/presets.py); the recommended one is the default.
  const mode = select([], null, { name: "mode" });
  const modeHelp = h("span", { class: "muted", id: "bench-mode-help" });
  measurePresets()
    .then((all) => {
      const offered = all.filter((p) => p.kind === "benchmark");
      clear(mode, offered.map((p) => h("option", { value: p.name, selected: p.recommended, title: p.description }, `${p.name}${p.settings.repeats > 1 ? ` (${p.settings.repeats} processes)` : ""}${p.recommended ? " — recommended" : ""}`)));
      const describe = () => clear(modeHelp, (offered.find((p) => p.name === mode.value) || {}).description || "");
      mode.addEventListener("change", describe);
      describe();
    })
    .catch((err) => clear(modeHelp, `measurement modes unavailable: ${err.message}`));
  const button = h("button", { type: "submit", class: "primary", id: "bench-submit" }, "Benchmark");

  const onsubmit = async (ev) => {
    ev.preventDefault();
    clear(status);
    const chosen = boxes.filter((b) => b.checked);
    if (!chosen.length) {
      status.append(errorBox("Choose at least one device and runtime."));
      return;
    }
    const body = {
      model_id: model.id,
      targets: chosen.map((b) => ({
        device: b.dataset.device,
        runtime: b.dataset.runtime,
        precision: precision.value,
        batch_size: Number(batch.value || 1),
        threads: Number(threads.value || 0),
      })),
    };
    button.disabled = true;
    try {
      const all = await measurePresets();
      const chosen = all.find((p) => p.name === mode.value) || all.find((p) => p.kind === "benchmark" && p.recommended);
      if (chosen) body.settings = chosen.settings;
    } catch {
      /* the coordinator's defaults (standard) apply */
    }
    try {
      const bench = await api("/benchmarks", { method: "POST", body });
      await onSubmitted(bench);
    } catch (err) {
      status.append(errorBox(err));
    } finally {
      button.disabled = false;
    }
  };
  return h(
    "form",
    { id: "bench-form", onsubmit },
    field("Devices and runtimes", targets),
    h("div", { class: "row" }, field("Precision", precision), field("Batch", batch), field("Threads", threads, "0 = runtime default"), field("Measurement", mode, modeHelp)),
    h("div", { class: "row" }, button),
    status,
  );
}

function stageOf(job) {
  if (job.status === "waiting") return "converting";
  if (job.status === "queued") return "queued";
  if (job.status === "running") return "measuring";
  if (job.status === "succeeded") return "done";
  const phase = (job.progress || {}).phase;
  return phase === "convert" || phase === "converting" ? "converting" : "measuring";
}

function phaseText(job) {
  const p = job.progress || {};
  if (job.status === "queued") return job.candidates && job.candidates.length ? `waiting for ${job.candidates.join(", ")}` : "no online device can take it yet";
  if (job.status === "waiting") return "converting the model for this runtime";
  if (job.status !== "running") return "";
  const bits = [p.phase || "leased"];
  if (p.repeats !== undefined) bits.push(`process ${p.repeat} of ${p.repeats}`);
  if (p.runs !== undefined) bits.push(`${p.runs} runs`);
  if (p.elapsed_s !== undefined) bits.push(`${Number(p.elapsed_s).toFixed(1)} s`);
  return bits.join(" · ");
}

function pipeline(job, native) {
  const stage = stageOf(job);
  const at = STAGES.indexOf(stage);
  const failed = job.status === "failed";
  return h(
    "ol",
    { class: "pipeline" },
    STAGES.map((s, i) => {
      let cls = i < at ? "past" : i === at ? "current" : "future";
      if (failed && i === at) cls = "failed";
      if (job.status === "succeeded") cls = "past";
      if (s === "converting" && native) return h("li", { class: "skipped", title: "the model runs natively on this runtime" }, "no conversion needed");
      return h("li", { class: cls }, failed && i === at ? `${s} ✗` : s);
    }),
  );
}

// Formats each runtime runs without a conversion.
const NATIVE = { onnxruntime: ["onnx"], tflite: ["tflite"] };

export function jobsView(benches, model) {
  const jobs = benches.flatMap((b) => b.jobs.map((j) => ({ ...j, bench: b })));
  if (!jobs.length) return emptyState("jobs", "No benchmark of this model yet, so no job has run.", "Tick devices and runtimes under Benchmark above and press Benchmark: each target becomes a job here, with its progress.");
  return h(
    "div",
    { class: "jobs" },
    jobs.slice(0, 30).map((j) =>
      h(
        "div",
        { class: `job job-${j.status}`, dataset: { jobId: j.id, status: j.status } },
        h("div", { class: "job-head" }, h("strong", {}, `#${j.id} ${j.runtime}`), h("span", { class: "muted" }, ` on ${j.device_name || j.device} · ${j.precision} · batch ${j.batch_size} · threads ${j.threads}`), " ", badge(j.status), h("span", { class: "muted right" }, `benchmark ${j.bench.id} · `, ago(j.bench.created_at))),
        pipeline(j, j.status !== "waiting" && !(j.progress || {}).conversion_id && (NATIVE[j.runtime] || []).includes(model.format)),
        h("div", { class: "muted job-phase" }, phaseText(j)),
        j.error && j.status === "failed" ? h("div", { class: "notice notice-error job-error" }, j.error) : null,
        j.error && j.status !== "failed" ? h("div", { class: "notice notice-warn" }, j.error) : null,
      ),
    ),
  );
}
