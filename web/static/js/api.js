// The JSON API under /api/v1 with the bearer token kept in sessionStorage (this tab only).
const KEY = "latencylab.token";

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

function authHeaders() {
  const t = token.get();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

function detailOf(body, fallback) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  }
  return fallback;
}

function signedOut() {
  token.clear();
  window.dispatchEvent(new CustomEvent("ll:signed-out"));
}

/** GET/POST a JSON route; throws ApiError with the server's `detail` on a non-2xx answer. */
export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = authHeaders();
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const r = await fetch(`/api/v1${path}`, { method, headers, body: payload, signal });
  if (r.status === 401) signedOut();
  if (!r.ok) {
    let parsed = null;
    try {
      parsed = await r.json();
    } catch {
      /* not JSON */
    }
    throw new ApiError(r.status, detailOf(parsed, `${r.status} ${r.statusText}`));
  }
  if (r.status === 204) return null;
  const type = r.headers.get("content-type") || "";
  return type.includes("json") ? r.json() : r.text();
}

/** Like api(), but null when the route does not exist (yet) on this coordinator. */
export async function optional(path) {
  try {
    return await api(path);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 405)) return null;
    throw err;
  }
}

/** Multipart upload with progress events (fetch cannot report upload progress). */
export function upload(path, formData, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/v1${path}`);
    const t = token.get();
    if (t) xhr.setRequestHeader("Authorization", `Bearer ${t}`);
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (ev) => {
      if (ev.lengthComputable) onProgress(ev.loaded, ev.total);
    });
    xhr.upload.addEventListener("load", () => onProgress(1, 1, true));
    xhr.addEventListener("load", () => {
      if (xhr.status === 401) signedOut();
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.response);
      else reject(new ApiError(xhr.status, detailOf(xhr.response, `upload failed (${xhr.status})`)));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "network error during upload")));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "upload aborted")));
    xhr.send(formData);
  });
}

/** Download an authenticated URL (artifacts, logs) as a file. */
export async function download(url, filename) {
  const r = await fetch(url, { headers: authHeaders() });
  if (!r.ok) throw new ApiError(r.status, `download failed (${r.status})`);
  const blob = await r.blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}
