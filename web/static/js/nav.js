// Client-side navigation without a cycle back to app.js: app.js listens for "ll:navigate".
export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  window.dispatchEvent(new CustomEvent("ll:navigate"));
}

/** Update the query string of the current page without re-rendering it (shareable views). */
export function setQuery(params) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.forEach((x) => qs.append(k, String(x))); // repeated: ?k=a&k=b
    else if (v !== undefined && v !== null && v !== "" && v !== false) qs.set(k, v === true ? "1" : String(v));
  }
  const s = qs.toString();
  history.replaceState(null, "", `${location.pathname}${s ? `?${s}` : ""}`);
}
