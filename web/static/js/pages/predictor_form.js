// The predictors page's build form: device and runtime from the fleet (runtimes that run ONNX
// natively), threads, precision, batch, a size, and optional extra request fields as JSON
// (settings, network_settings, options) merged into POST /predictors.
import { api } from "../api.js";
import { navigate } from "../nav.js";
import { clear, emptyState, errorBox, field, h, measuringDevices, select } from "../ui.js";

export const BUILD_HINT = "latencylab predictor build --device local --runtime onnxruntime --threads 1";
const RUNTIMES = ["onnxruntime", "openvino"]; // the kernel models are ONNX, run natively
const SIZES = [
  ["full", "full build (the defaults: fusion discovery, 60 samples per kernel type, 1 refinement round, all held-out networks)"],
  ["small", "smaller: 20 samples per kernel type, no refinement, 4 random networks per NAS space"],
];
const SMALL = { initial_per_type: 20, refine_rounds: 0, validate_random: 4 };

export function predictorForm(fleet) {
  const devices = measuringDevices(fleet).filter((d) => RUNTIMES.some((r) => r in (d.runtimes || {})));
  if (!devices.length) return emptyState("predictor-devices", "No registered device runs onnxruntime or OpenVINO, so there is nothing to build a predictor on.", ["Start an agent (", h("code", {}, "make run"), " starts one here), then build from here or with ", h("code", {}, BUILD_HINT), "."]);
  const sorted = [...devices].sort((a, b) => (a.status === "online" ? 0 : 1) - (b.status === "online" ? 0 : 1) || a.name.localeCompare(b.name));
  const device = select(sorted.map((d) => [d.name, `${d.name} (${d.status})`]), sorted[0].name, { name: "device" });
  const runtime = select([], null, { name: "runtime" });
  const threads = h("input", { type: "number", name: "threads", value: "1", min: "0", max: "1024", size: 4 });
  const precision = select(["fp32", "fp16", "int8"], "fp32", { name: "precision" });
  const batch = h("input", { type: "number", name: "batch_size", value: "1", min: "1", max: "4096", size: 4 });
  const size = select(SIZES, "full", { name: "size" });
  const extra = h("textarea", { name: "extra", rows: 3, placeholder: '{"options": {"validate_only": ["mobilenet_v2", "resnet18"]}, "settings": {...}}' });
  const fresh = h("input", { type: "checkbox", name: "fresh" });
  const status = h("div", { id: "predictor-form-status" });
  const submit = h("button", { type: "submit", class: "primary", id: "predictor-build" }, "Build");
  const onDevice = () => {
    const d = devices.find((x) => x.name === device.value);
    clear(runtime, RUNTIMES.filter((r) => r in (d.runtimes || {})).map((r) => h("option", { value: r }, `${r} ${d.runtimes[r]}`)));
  };
  device.addEventListener("change", onDevice);
  onDevice();

  const onsubmit = async (ev) => {
    ev.preventDefault();
    clear(status);
    let more = {};
    if (extra.value.trim()) {
      try {
        more = JSON.parse(extra.value);
      } catch (err) {
        status.append(errorBox(`Extra fields: not JSON (${err.message}); give an object such as {"options": {"initial_per_type": 20}}`));
        return;
      }
    }
    const body = { device: device.value, runtime: runtime.value, threads: Number(threads.value), precision: precision.value, batch_size: Number(batch.value), fresh: fresh.checked, ...more };
    if (size.value === "small") body.options = { ...SMALL, ...(more.options || {}) };
    submit.disabled = true;
    try {
      const p = await api("/predictors", { method: "POST", body });
      navigate(`/predictors/${p.id}${p.reused ? "?reused=1" : ""}`);
    } catch (err) {
      status.append(errorBox(err));
    } finally {
      submit.disabled = false;
    }
  };
  return h(
    "form",
    { id: "predictor-form", onsubmit },
    h("div", { class: "grid-form" }, field("Device", device), field("Runtime", runtime, "runtimes that run the ONNX kernel models natively"), field("Threads", threads, "0 = runtime default"), field("Precision", precision), field("Batch", batch)),
    field("Size", size),
    field("Extra request fields (JSON, optional)", extra, "merged into the request: settings, network_settings, statistic, options (unknown keys are refused)"),
    h("div", { class: "row" }, h("label", { class: "check" }, fresh, " fresh (a new build even if an identical one exists; measured samples are still reused)"), submit),
    status,
  );
}
