// Models: searchable, sortable list and the upload form (with upload progress).
import { api, upload } from "../api.js";
import { navigate } from "../nav.js";
import { accuracyText, ago, card, clear, emptyState, errorBox, field, fmtBytes, h, link, notice, select, table, tagList } from "../ui.js";

const SORTS = [
  ["newest", "newest first"],
  ["name", "name"],
  ["size", "size"],
  ["accuracy", "best accuracy"],
];

function bestAccuracy(m) {
  const acc = (m.metadata || {}).accuracy || {};
  const v = acc.top1 ?? Object.values(acc)[0];
  return typeof v === "number" ? v : -Infinity;
}

function sortModels(models, how) {
  const xs = [...models];
  if (how === "name") xs.sort((a, b) => a.name.localeCompare(b.name));
  else if (how === "size") xs.sort((a, b) => b.size - a.size);
  else if (how === "accuracy") xs.sort((a, b) => bestAccuracy(b) - bestAccuracy(a));
  else xs.sort((a, b) => b.id - a.id);
  return xs;
}

function matches(m, q) {
  if (!q) return true;
  const hay = [m.name, m.format, ...((m.metadata || {}).tags || []), String(m.id)].join(" ").toLowerCase();
  return q.toLowerCase().split(/\s+/).every((w) => hay.includes(w));
}

export async function renderModels(root, { query }) {
  const models = await api("/models");
  const search = h("input", { type: "search", name: "q", placeholder: "search name, tag, format", value: query.get("q") || "" });
  const sort = select(SORTS, query.get("sort") || "newest", { name: "sort" });
  const list = h("div", { id: "model-list" });
  const draw = () => {
    const rows = sortModels(models.filter((m) => matches(m, search.value.trim())), sort.value);
    clear(
      list,
      table(
        [
          { label: "#", class: "num", value: (m) => m.id },
          { label: "name", value: (m) => link(`/models/${m.id}`, m.name) },
          { label: "format", value: (m) => m.format },
          { label: "size", class: "num", value: (m) => fmtBytes(m.size) },
          { label: "accuracy", value: (m) => accuracyText(m.metadata) },
          { label: "tags", value: (m) => tagList(m.metadata) },
          { label: "inputs", value: (m) => m.inputs.map((i) => `${i.name} [${i.shape.join("×")}]`).join(", ") },
          { label: "uploaded", value: (m) => ago(m.created_at) },
        ],
        rows,
        { empty: models.length ? emptyState("models-filter", `No model matches “${search.value.trim()}”.`, "Search by name, tag, format or id, or clear the search to see all of them.") : emptyState("models", "No model has been uploaded yet.", "Upload an ONNX file, a torch.export .pt2, a .tflite or a zipped model below; give it an accuracy to place it on the Pareto page.") },
      ),
    );
  };
  search.addEventListener("input", draw);
  sort.addEventListener("change", draw);
  const deleted = query.get("deleted");
  if (deleted) {
    const kept = query.get("results") !== "delete";
    root.append(notice("ok", kept ? `Model ${deleted} was deleted; its benchmarks and results stay readable by id.` : `Model ${deleted} and its results were deleted.`));
  }
  root.prepend(h("h1", {}, "Models"));
  root.append(
    card(`Uploaded models (${models.length})`, h("div", { class: "row toolbar" }, field("Search", search), field("Sort by", sort)), list),
    card("Upload a model", uploadForm()),
  );
  draw();
  return null;
}

function uploadForm() {
  const file = h("input", { type: "file", name: "file", accept: ".onnx,.zip,.pt2,.tflite", required: true });
  const name = h("input", { type: "text", name: "name", placeholder: "default: the file name" });
  const metric = h("input", { type: "text", name: "metric", value: "top1", size: 8 });
  const value = h("input", { type: "number", name: "accuracy", step: "any", placeholder: "e.g. 75.3" });
  const tags = h("input", { type: "text", name: "tags", placeholder: "comma-separated, e.g. mbv2, mobile" });
  const bar = h("progress", { max: 100, value: 0, id: "upload-progress" });
  const pct = h("span", { class: "muted", id: "upload-status" });
  const status = h("div");
  const button = h("button", { type: "submit", class: "primary" }, "Upload");
  const progress = h("div", { class: "progress-row", hidden: true }, bar, pct);

  const onsubmit = async (ev) => {
    ev.preventDefault();
    clear(status);
    if (!file.files.length) return;
    const meta = {};
    if (value.value !== "") meta.accuracy = { [metric.value.trim() || "top1"]: Number(value.value) };
    const tagList = tags.value.split(",").map((t) => t.trim()).filter(Boolean);
    if (tagList.length) meta.tags = tagList;
    const form = new FormData();
    form.append("file", file.files[0]);
    if (name.value.trim()) form.append("name", name.value.trim());
    form.append("metadata", JSON.stringify(meta));
    progress.hidden = false;
    button.disabled = true;
    try {
      const model = await upload("/models", form, (loaded, total, done) => {
        const p = Math.round((100 * loaded) / total);
        bar.value = p;
        document.body.dataset.uploadProgress = String(p);
        pct.textContent = done ? "uploaded; validating the model…" : `${p}% of ${fmtBytes(total)}`;
      });
      pct.textContent = "done";
      navigate(`/models/${model.id}?uploaded=1`);
    } catch (err) {
      status.append(errorBox(err));
      pct.textContent = "failed";
    } finally {
      button.disabled = false;
    }
  };
  return h(
    "form",
    { class: "upload", id: "upload-form", onsubmit },
    h("div", { class: "grid-form" }, field("Model file", file, ".onnx, .tflite, .pt2, or a .zip (ONNX + external data, .mlpackage)"), field("Name", name), field("Accuracy metric", metric, "top1, top5, mAP, …"), field("Accuracy value", value, "shown on the Pareto page"), field("Tags", tags)),
    h("div", { class: "row" }, button, progress),
    status,
  );
}
