// The fleet: measuring devices with class, runtimes, status, current job, heartbeat and queue;
// converter workers under their own heading (they convert, they never measure); recent jobs.
import { api } from "../api.js";
import { ago, badge, card, clear, emptyState, h, isConverter, table } from "../ui.js";

const REFRESH_MS = 3000;

function info(d) {
  const i = d.info || {};
  return [i.cpu_model || i.cpu, (i.physical_cores || i.logical_cores) && `${i.physical_cores || i.logical_cores} cores`, i.memory_mb && `${Math.round(i.memory_mb / 1024)} GB`, i.os || i.platform].filter(Boolean).join(" · ") || "–";
}

function runtimes(d) {
  const rs = Object.entries(d.runtimes || {});
  if (!rs.length) return h("span", { class: "muted" }, "none");
  return h("span", { class: "tags" }, rs.map(([k, v]) => h("span", { class: "tag" }, `${k} ${v}`)));
}

const code = (text) => h("code", {}, text);

function deviceTable(devices) {
  return table(
    [
      { label: "device", class: "nowrap", value: (d) => h("strong", {}, d.name) },
      { label: "class", value: (d) => d.class },
      { label: "status", value: (d) => badge(d.status) },
      { label: "runtimes", value: runtimes },
      { label: "current job", value: (d) => (d.current_job ? h("span", { class: "badge badge-running" }, `job #${d.current_job}`) : h("span", { class: "muted" }, "idle")) },
      { label: "queue", class: "num", value: (d) => d.queue_depth },
      { label: "last heartbeat", value: (d) => ago(d.last_seen) },
      { label: "attributes", value: (d) => Object.entries(d.attributes || {}).map(([k, v]) => `${k}:${v}`).join(", ") || "–" },
      { label: "hardware", value: info },
    ],
    devices,
    {
      empty: emptyState("devices", "No measuring device has registered yet, so no benchmark or table can run.", ["Start one: ", code("make run"), " starts a local agent on this machine; other machines join with ", code("latencylab agent --server URL --token T"), " (an agent-scoped token)."]),
      rowAttrs: (d) => ({ dataset: { device: d.name, status: d.status } }),
    },
  );
}

function converterTable(converters) {
  const targets = (d) => Object.entries(d.runtimes || {}).map(([k, v]) => `${k.replace(/^convert:/, "")} ${v}`);
  return table(
    [
      { label: "worker", class: "nowrap", value: (d) => h("strong", {}, d.name) },
      { label: "status", value: (d) => badge(d.status) },
      { label: "converts to", value: (d) => h("span", { class: "tags" }, targets(d).map((t) => h("span", { class: "tag" }, t))) },
      { label: "current job", value: (d) => (d.current_job ? h("span", { class: "badge badge-running" }, `job #${d.current_job}`) : h("span", { class: "muted" }, "idle")) },
      { label: "queue", class: "num", value: (d) => d.queue_depth },
      { label: "last heartbeat", value: (d) => ago(d.last_seen) },
      { label: "hardware", value: info },
    ],
    converters,
    {
      empty: emptyState("converters", "No converter worker has registered: uploads run only on the runtimes that read their format as is (ONNX on onnxruntime), and conversions wait in the queue.", ["Start one: ", code("make run"), " starts a local converter worker; elsewhere run ", code("latencylab converter --server URL --token T"), "."]),
      rowAttrs: (d) => ({ dataset: { device: d.name, status: d.status } }),
    },
  );
}

function draw(el, all, jobs) {
  const devices = all.filter((d) => !isConverter(d));
  const converters = all.filter(isConverter);
  const online = (xs) => xs.filter((d) => d.status === "online").length;
  clear(
    el,
    card(`Devices (${online(devices)} online of ${devices.length})`, h("div", { id: "device-list" }, deviceTable(devices))),
    card(
      `Converter workers (${online(converters)} online of ${converters.length})`,
      h("p", { class: "muted lead-in" }, "They convert uploads into each runtime's format and check every conversion numerically; they never measure, so they are no benchmark or table target."),
      h("div", { id: "converter-list" }, converterTable(converters)),
    ),
    card(
      "Recent jobs",
      table(
        [
          { label: "#", class: "num", value: (j) => j.id },
          { label: "kind", value: (j) => j.kind },
          { label: "status", value: (j) => badge(j.status) },
          { label: "runtime", value: (j) => j.runtime },
          { label: "target", class: "nowrap", value: (j) => j.device },
          { label: "device", class: "nowrap", value: (j) => j.device_name || "–" },
          { label: "progress", value: (j) => (j.status === "running" ? [j.progress.phase, j.progress.runs !== undefined && `${j.progress.runs} runs`].filter(Boolean).join(" · ") : "") },
          { label: "attempts", class: "num", value: (j) => j.attempts },
          { label: "error", value: (j) => (j.error ? h("span", { class: j.status === "failed" ? "bad" : "muted" }, j.error) : "") },
        ],
        jobs.slice(0, 40),
        { empty: emptyState("jobs", "No job has run yet: jobs appear here when a benchmark, a conversion or a latency table is queued.", ["Open a model on ", h("a", { href: "/models" }, "Models"), " and press Benchmark, or build a table on ", h("a", { href: "/tables" }, "Tables"), "."]) },
      ),
    ),
  );
}

export async function renderDevices(root) {
  root.append(h("h1", {}, "Fleet"));
  const body = h("div");
  root.append(body);
  const load = async () => {
    const [devices, jobs] = await Promise.all([api("/devices"), api("/jobs")]);
    draw(body, devices, jobs);
  };
  await load();
  let stopped = false;
  let timer = null;
  const tick = async () => {
    try {
      await load();
    } catch {
      /* keep refreshing */
    }
    if (!stopped) timer = setTimeout(tick, REFRESH_MS);
  };
  timer = setTimeout(tick, REFRESH_MS);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
