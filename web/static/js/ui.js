// Small DOM helpers and formatters shared by the pages.

/** h("div", {class: "x", onclick: fn}, child, "text", [more]) → an element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key in el && typeof value !== "string") {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function fmtMs(v, digits) {
  if (v === undefined || v === null || Number.isNaN(v)) return "–";
  const d = digits ?? (v >= 100 ? 1 : v >= 10 ? 2 : 3);
  return `${v.toFixed(d)} ms`;
}

export function fmtNum(v, digits = 2) {
  if (v === undefined || v === null || Number.isNaN(v)) return "–";
  return Number(v).toFixed(digits);
}

export function fmtBytes(n) {
  if (n === undefined || n === null) return "–";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function fmtAgo(iso, now = Date.now()) {
  if (!iso) return "–";
  const s = (now - new Date(iso).getTime()) / 1000;
  if (s < 0 || s < 2) return "just now";
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

/** A relative time ("3 min ago") that stays true: app.js re-renders every <time class="ago">
 * on a timer, whether or not the page still polls; the absolute time is its tooltip. */
export function ago(iso) {
  if (!iso) return h("span", { class: "muted" }, "–");
  return h("time", { class: "ago", datetime: iso, title: fmtDate(iso) }, fmtAgo(iso));
}

/** Re-render the relative times under `root` (called by app.js on a timer). */
export function refreshAgo(root = document) {
  const now = Date.now();
  for (const el of root.querySelectorAll("time.ago[datetime]")) {
    const text = fmtAgo(el.getAttribute("datetime"), now);
    if (el.textContent !== text) el.textContent = text;
  }
}

export function fmtDate(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

export function badge(status) {
  return h("span", { class: `badge badge-${status}` }, status);
}

export function accuracyText(meta) {
  const acc = (meta && meta.accuracy) || {};
  const parts = Object.entries(acc).map(([k, v]) => `${k} ${v}`);
  return parts.length ? parts.join(", ") : "–";
}

export function tagList(meta) {
  const tags = (meta && meta.tags) || [];
  return h("span", { class: "tags" }, tags.map((t) => h("span", { class: "tag" }, t)));
}

export function card(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, children);
}

export function notice(kind, ...children) {
  return h("div", { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" }, children);
}

export function errorBox(err) {
  return notice("error", err && err.message ? err.message : String(err));
}

export function loading(what = "Loading…") {
  return h("p", { class: "muted" }, what);
}

/** What an empty card or list shows: why it is empty and what to do about it.
 * `why` and `todo` are text or nodes; `name` becomes data-empty (tests find it by that). */
export function emptyState(name, why, todo) {
  return h("div", { class: "empty-state muted empty", dataset: { empty: name } }, h("p", { class: "empty-why" }, why), todo ? h("p", { class: "empty-todo" }, todo) : null);
}

/** A table from column specs [{label, value: row => node|text, class}] and rows; `empty` is a
 * sentence or an emptyState() shown instead when there are no rows. */
export function table(columns, rows, { rowAttrs, empty = "Nothing yet." } = {}) {
  if (!rows.length) return empty instanceof Node ? empty : h("p", { class: "muted empty" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.class }, c.label)))),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h("tr", rowAttrs ? rowAttrs(row) : {}, columns.map((c) => h("td", { class: c.class }, c.value(row)))),
        ),
      ),
    ),
  );
}

export function link(href, text) {
  return h("a", { href }, text);
}

export function select(options, value, attrs = {}) {
  return h(
    "select",
    attrs,
    options.map((o) => {
      const [v, label] = Array.isArray(o) ? o : [o, o];
      return h("option", { value: v, selected: String(v) === String(value) }, label);
    }),
  );
}

export function field(label, control, hint) {
  return h("label", { class: "field" }, h("span", { class: "field-label" }, label), control, hint ? h("small", { class: "muted" }, hint) : null);
}

/** Converter workers (class "converter", `convert:<target>` capabilities) convert models;
 * they never measure, so they are no benchmark or table target. */
export function isConverter(device) {
  const caps = Object.keys(device.runtimes || {});
  return device.class === "converter" || (caps.length > 0 && caps.every((r) => r.startsWith("convert:")));
}

export function measuringDevices(devices) {
  return devices.filter((d) => !isConverter(d));
}
