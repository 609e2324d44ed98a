// Correcting a model in place (name, accuracy, tags: PATCH /models/{id}) and deleting it
// after a confirm dialog that asks what happens to its results (DELETE ?results=keep|delete).
import { api } from "../api.js";
import { navigate } from "../nav.js";
import { clear, errorBox, field, h } from "../ui.js";

/** "top1=75.3, top5=92.1" for the accuracy input. */
function accuracyText(meta) {
  return Object.entries((meta && meta.accuracy) || {})
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");
}

/** {value} (an object, or null for "no accuracy") or {error} from the accuracy input. */
export function parseAccuracy(text) {
  const parts = text.split(",").map((p) => p.trim()).filter(Boolean);
  if (!parts.length) return { value: null };
  const value = {};
  for (const part of parts) {
    const m = part.match(/^([^=\s][^=]*?)\s*=\s*(\S+)$/);
    const num = m ? Number(m[2]) : NaN;
    if (!m || !Number.isFinite(num)) {
      return { error: `accuracy: '${part}' is not metric=number (e.g. top1=75.3)` };
    }
    value[m[1]] = num;
  }
  return { value };
}

function editForm(model, onSaved, onCancel) {
  const meta = model.metadata || {};
  const name = h("input", { type: "text", name: "name", value: model.name, required: true, maxlength: 200 });
  const accuracy = h("input", { type: "text", name: "accuracy", value: accuracyText(meta), placeholder: "top1=75.3, top5=92.1" });
  const tags = h("input", { type: "text", name: "tags", value: ((meta.tags || []).join(", ")), placeholder: "comma-separated" });
  const status = h("div");
  const save = h("button", { type: "submit", class: "primary", id: "model-edit-save" }, "Save");
  const onsubmit = async (ev) => {
    ev.preventDefault();
    clear(status);
    const acc = parseAccuracy(accuracy.value);
    if (acc.error) {
      status.append(errorBox(new Error(acc.error)));
      return;
    }
    const tagList = tags.value.split(",").map((t) => t.trim()).filter(Boolean);
    const body = { name: name.value.trim(), accuracy: acc.value, tags: tagList.length ? tagList : null };
    save.disabled = true;
    try {
      onSaved(await api(`/models/${model.id}`, { method: "PATCH", body }));
    } catch (err) {
      status.append(errorBox(err));
    } finally {
      save.disabled = false;
    }
  };
  return h(
    "form",
    { id: "model-edit", class: "edit", onsubmit },
    field("Name", name),
    field("Accuracy", accuracy, "metric=value, comma-separated; empty: none (the model leaves the Pareto page)"),
    field("Tags", tags, "comma-separated"),
    h("div", { class: "row" }, save, h("button", { type: "button", id: "model-edit-cancel", onclick: onCancel }, "Cancel")),
    status,
  );
}

function deleteDialog(model) {
  const choice = (value, label, hint, checked) =>
    h("label", { class: "choice" }, h("input", { type: "radio", name: "results", value, checked }), h("span", {}, h("strong", {}, label), h("br"), h("small", { class: "muted" }, hint)));
  const status = h("div");
  const confirm = h("button", { type: "submit", class: "danger", id: "delete-confirm" }, "Delete");
  const dialog = h("dialog", { id: "delete-dialog", "aria-labelledby": "delete-title" });
  const onsubmit = async (ev) => {
    ev.preventDefault();
    clear(status);
    const results = dialog.querySelector("input[name=results]:checked").value;
    confirm.disabled = true;
    try {
      await api(`/models/${model.id}?results=${results}`, { method: "DELETE" });
      dialog.close();
      navigate(`/models?deleted=${model.id}&results=${results}`);
    } catch (err) {
      status.append(errorBox(err));
    } finally {
      confirm.disabled = false;
    }
  };
  dialog.append(
    h(
      "form",
      { method: "dialog", onsubmit },
      h("h2", { id: "delete-title" }, `Delete model ${model.id}?`),
      choice("keep", "Keep its results", "Its benchmarks and results stay readable by id (links keep working); the model leaves the lists and the Pareto page.", true),
      choice("delete", "Delete its results too", "Its benchmarks, jobs, results and conversions are removed for good.", false),
      h("p", { class: "muted" }, "Queued jobs of the model are cancelled; the file is freed once nothing else uses it."),
      status,
      h("div", { class: "row" }, confirm, h("button", { type: "button", id: "delete-cancel", onclick: () => dialog.close() }, "Cancel")),
    ),
  );
  return dialog;
}

/**
 * The Edit and Delete buttons of a model page. `factsEl` shows the model's facts (the form
 * replaces them while editing); `render(model)` redraws what shows the model after a save.
 */
export function modelActions(model, { factsEl, render }) {
  let current = model;
  const dialog = deleteDialog(model);
  const edit = h("button", { type: "button", id: "model-edit-button" }, "Edit");
  edit.addEventListener("click", () => {
    edit.disabled = true;
    const done = (updated) => {
      edit.disabled = false;
      if (updated) current = updated;
      render(current);
    };
    clear(factsEl, editForm(current, done, () => done(null)));
    factsEl.querySelector("input[name=name]").focus();
  });
  const openDialog = () => {
    dialog.querySelector("#delete-title").textContent = `Delete model ${current.id} (${current.name})?`;
    dialog.showModal();
  };
  const del = h("button", { type: "button", class: "danger", id: "model-delete-button", onclick: openDialog }, "Delete…");
  return h("div", { class: "row actions" }, edit, del, dialog);
}
