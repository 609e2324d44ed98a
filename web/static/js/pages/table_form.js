// The tables page's forms: build a table (space from /spaces, device + runtime from the fleet),
// predict with a table (paste architectures), and the export downloads (CSV, JSON, OFA YAML).
import { api, download } from "../api.js";
import { measurePresets } from "../quality.js";
import { card, clear, emptyState, errorBox, field, fmtNum, h, measuringDevices, select, table } from "../ui.js";

const TABLE_RUNTIMES = ["onnxruntime", "pytorch"]; // runtimes that run the generated ONNX blocks

export function buildForm(spaces, fleet, onCreated) {
  if (!spaces.length) return emptyState("spaces", "This coordinator serves no search spaces, so there is nothing to build.", "Search spaces come with the coordinator (latencylab.spaces): update it.");
  // Converter workers convert; they never measure: no table target.
  const devices = measuringDevices(fleet);
  if (!devices.length) return emptyState("table-devices", "No measuring device has registered yet: a table is measured block by block on one.", ["Start an agent (", h("code", {}, "make run"), " starts one here, ", h("code", {}, "latencylab agent --server URL --token T"), " elsewhere), then build the table on it."]);
  const usable = (d) => (d.status === "online" ? 0 : 2) + (TABLE_RUNTIMES.some((r) => r in (d.runtimes || {})) ? 0 : 1);
  const byName = Object.fromEntries(spaces.map((s) => [s.name, s]));
  const space = select(spaces.map((s) => s.name), spaces[0].name, { name: "space" });
  const resolution = select([], null, { name: "resolution" });
  const sorted = [...devices].sort((a, b) => usable(a) - usable(b) || a.name.localeCompare(b.name));
  const device = select(sorted.map((d) => [d.name, `${d.name} (${d.status})`]), sorted[0].name, { name: "device" });
  const runtime = select([], null, { name: "runtime" });
  const threads = h("input", { type: "number", name: "threads", value: "1", min: "0", max: "1024", size: 4 });
  const validateN = h("input", { type: "number", name: "validate_n", value: "100", min: "0", max: "2000", size: 5 });
  // Table modes from GET /presets (latencylab/presets.py): "table" (the default) and "table-quick".
  const measure = select([], null, { name: "measure" });
  measurePresets()
    .then((all) => clear(measure, all.filter((p) => p.kind === "table").map((p) => h("option", { value: p.name, selected: p.recommended }, `${p.name}: ${p.description}`))))
    .catch(() => clear(measure, h("option", { value: "" }, "the coordinator's default")));
  const fresh = h("input", { type: "checkbox", name: "fresh" });
  const about = h("p", { class: "muted" });
  const status = h("div");
  const submit = h("button", { type: "submit", class: "primary", id: "table-build" }, "Build");

  const onSpace = () => {
    const s = byName[space.value];
    clear(resolution, s.resolutions.map((r) => h("option", { value: r, selected: r === s.default_resolution }, `${r} px`)));
    clear(about, `${s.description} · ${s.num_unique_blocks} unique blocks at ${s.default_resolution} px · architectures: ${s.arch_format}`);
  };
  const onDevice = () => {
    const d = devices.find((x) => x.name === device.value);
    const have = TABLE_RUNTIMES.filter((r) => r in (d.runtimes || {}));
    clear(runtime, have.length ? have.map((r) => h("option", { value: r }, `${r} ${d.runtimes[r]}`)) : h("option", { value: "" }, "none (needs onnxruntime or pytorch)"));
    submit.disabled = !have.length;
  };
  space.addEventListener("change", onSpace);
  device.addEventListener("change", onDevice);
  onSpace();
  onDevice();

  const onsubmit = async (ev) => {
    ev.preventDefault();
    clear(status);
    submit.disabled = true;
    const body = { space: space.value, device: device.value, runtime: runtime.value, resolution: Number(resolution.value), threads: Number(threads.value), validate_n: Number(validateN.value), fresh: fresh.checked };
    const chosen = measure.value && (await measurePresets().catch(() => [])).find((p) => p.name === measure.value);
    if (chosen) body.settings = chosen.settings;
    try {
      await onCreated(await api("/tables", { method: "POST", body }));
    } catch (err) {
      status.append(errorBox(err));
    } finally {
      submit.disabled = false;
    }
  };
  return h(
    "form",
    { onsubmit, id: "table-form" },
    h("div", { class: "row" }, field("Space", space), field("Resolution", resolution), field("Device", device), field("Runtime", runtime), field("Threads", threads, "0 = runtime default"), field("Validation networks", validateN, "random archs measured whole")),
    h("div", { class: "row" }, field("Measurement", measure), h("label", { class: "check" }, fresh, "fresh (do not reuse an identical table)"), submit),
    about,
    status,
  );
}

/** One architecture or a list of them, as pasted: an OFA dict, an FBNet op list, or a list. */
export function parseArchs(text) {
  const v = JSON.parse(text);
  if (!Array.isArray(v)) return [v];
  return v.length && v.every((x) => typeof x === "number" || typeof x === "string") ? [v] : v;
}

export function predictBox(t, validation) {
  const ok = (validation || []).filter((v) => v.status === "succeeded");
  const measured = new Map(ok.map((v) => [JSON.stringify(v.arch), v.measured_ms]));
  const input = h("textarea", { name: "archs", rows: 6, spellcheck: false, placeholder: t.space.startsWith("ofa") ? '{"ks": [...], "e": [...], "d": [...]}' : "[op indices]" });
  if (ok.length) input.value = JSON.stringify(ok[0].arch);
  const out = h("div", { id: "predict-result" });
  const onsubmit = async (ev) => {
    ev.preventDefault();
    clear(out);
    let archs;
    try {
      archs = parseArchs(input.value);
    } catch (err) {
      out.append(errorBox(`Not JSON: ${err.message}`));
      return;
    }
    try {
      const r = await api(`/tables/${t.id}/predict`, { method: "POST", body: { architectures: archs } });
      const rows = archs.map((a, i) => ({ i, pred: r.latency_ms[i], lut: r.lut_sum_ms[i], meas: measured.get(JSON.stringify(a)) }));
      const cols = [
        { label: "#", class: "num", value: (x) => x.i + 1 },
        { label: r.predictor === "linear" ? "predicted (calibrated)" : "predicted", class: "num", value: (x) => h("span", { dataset: { value: "latency_ms" } }, `${fmtNum(x.pred, 3)} ms`) },
        { label: "LUT sum", class: "num", value: (x) => h("span", { dataset: { value: "lut_sum_ms" } }, `${fmtNum(x.lut, 3)} ms`) },
      ];
      if (rows.some((x) => x.meas !== undefined)) cols.push({ label: "measured (validation)", class: "num", value: (x) => (x.meas === undefined ? "–" : `${fmtNum(x.meas, 3)} ms`) });
      clear(out, table(cols, rows.slice(0, 50)), rows.length > 50 ? h("p", { class: "muted" }, `first 50 of ${rows.length}`) : null);
    } catch (err) {
      out.append(errorBox(err));
    }
  };
  const hint = t.status === "succeeded" ? "Paste one architecture or a JSON list of them; prefilled with a validation network." : "Predictions need every block measured: available once the blocks are done.";
  return card("Predict", h("form", { onsubmit, id: "predict-form" }, field("Architecture(s), JSON", input, hint), h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "Predict"))), out);
}

export function exportLinks(t) {
  const base = `/api/v1/tables/${t.id}`;
  const stem = `latency-table-${t.id}-${t.space}-${t.resolution}`;
  const formats = [
    ["csv", "CSV", `${stem}.csv`, "one row per block: kind, shapes, status, statistics, error"],
    ["json", "JSON", `${stem}.json`, "the table and every entry (what the SDK's LocalPredictor reads)"],
  ];
  if (t.space.startsWith("ofa-")) formats.push(["ofa-yaml", "OFA YAML", `${stem}.yaml`, "Once-for-All / ProxylessNAS LUT format: {key: {mean, count, var}}"]);
  const status = h("div");
  const link = ([fmt, label, file, what]) =>
    h("li", {}, h("a", { href: `${base}?format=${fmt}`, download: file, dataset: { format: fmt }, onclick: (ev) => { ev.preventDefault(); download(`${base}?format=${fmt}`, file).catch((err) => clear(status, errorBox(err))); } }, label), h("span", { class: "muted" }, ` ${what}`));
  return card("Export", h("ul", { class: "exports" }, formats.map(link)), h("p", { class: "muted" }, "In Python: ", h("code", {}, `Client().latency_table(${t.id}).predict(archs)`), " downloads it once and predicts locally."), status);
}
