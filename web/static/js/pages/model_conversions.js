// Conversions of a model (when the coordinator has the conversions API): validation errors,
// failures with their hint, downloadable logs and artifacts.
import { download, optional } from "../api.js";
import { badge, clear, emptyState, errorBox, fmtBytes, h, notice, table } from "../ui.js";

function dl(url, filename, label) {
  return h(
    "button",
    {
      type: "button",
      class: "link",
      onclick: async (ev) => {
        try {
          await download(url, filename);
        } catch (err) {
          ev.target.after(errorBox(err));
        }
      },
    },
    label,
  );
}

function fmtErr(v) {
  return v === null || v === undefined ? "–" : Number(v).toExponential(2);
}

function validation(v) {
  if (!v) return "–";
  const verdict = v.passed === true ? h("span", { class: "ok" }, "passed") : v.passed === false ? h("span", { class: "bad" }, "FAILED") : h("span", { class: "muted" }, "not run");
  const sqnr = v.sqnr_db === null || v.sqnr_db === undefined ? "" : ` · SQNR ${Number(v.sqnr_db).toFixed(1)} dB`;
  return h("span", {}, verdict, ` abs ${fmtErr(v.max_abs_err)} · rel ${fmtErr(v.max_rel_err)}${sqnr}`, v.note ? h("div", { class: "muted" }, v.note) : null);
}

export async function conversionsView(el, modelId) {
  let convs;
  try {
    convs = await optional(`/models/${modelId}/conversions`);
  } catch (err) {
    clear(el, errorBox(err));
    return;
  }
  if (convs === null) {
    clear(el, notice("info", "This coordinator has no conversions API yet: ONNX models run natively on onnxruntime."));
    return;
  }
  clear(
    el,
    table(
      [
        { label: "#", class: "num", value: (c) => c.id },
        { label: "target", value: (c) => c.target },
        { label: "precision", value: (c) => c.precision },
        { label: "batch", class: "num", value: (c) => c.batch_size },
        { label: "status", value: (c) => badge(c.status) },
        { label: "validation", value: (c) => validation(c.validation) },
        { label: "error", value: (c) => (c.error ? h("div", { class: "bad" }, c.error, c.error_detail?.hint ? h("div", { class: "muted" }, `hint: ${c.error_detail.hint}`) : null) : "–") },
        { label: "seconds", class: "num", value: (c) => (c.seconds ? c.seconds.toFixed(1) : "–") },
        {
          label: "downloads",
          value: (c) =>
            h(
              "span",
              { class: "row" },
              c.log ? dl(c.log, `conversion-${c.id}.log`, "log") : null,
              c.artifact ? dl(`/api/v1/artifacts/${c.artifact.sha256}`, `model-${modelId}-${c.target}-${c.precision}.${c.artifact.format}`, `artifact (${fmtBytes(c.artifact.size)})`) : null,
            ),
        },
      ],
      convs,
      { empty: emptyState("conversions", "No conversion of this model yet: nothing has asked for another format.", "A benchmark on a runtime that reads another format (TFLite, OpenVINO, TensorRT, CoreML) starts its conversion by itself; a converter worker (see Fleet) runs it.") },
    ),
  );
}
