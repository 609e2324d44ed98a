// The fleet: devices with class, runtimes, status, current job, heartbeat and queue; recent jobs.
import { api } from "../api.js";
import { badge, card, clear, fmtAgo, fmtDate, h, table } from "../ui.js";

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

function draw(el, devices, jobs) {
  const online = devices.filter((d) => d.status === "online").length;
  clear(
    el,
    card(
      `Devices (${online} online of ${devices.length})`,
      table(
        [
          { label: "device", class: "nowrap", value: (d) => h("strong", {}, d.name) },
          { label: "class", value: (d) => d.class },
          { label: "status", value: (d) => badge(d.status) },
          { label: "runtimes", value: runtimes },
          { label: "current job", value: (d) => (d.current_job ? h("span", { class: "badge badge-running" }, `job #${d.current_job}`) : h("span", { class: "muted" }, "idle")) },
          { label: "queue", class: "num", value: (d) => d.queue_depth },
          { label: "last heartbeat", value: (d) => h("span", { title: fmtDate(d.last_seen) }, fmtAgo(d.last_seen)) },
          { label: "attributes", value: (d) => Object.entries(d.attributes || {}).map(([k, v]) => `${k}:${v}`).join(", ") || "–" },
          { label: "hardware", value: info },
        ],
        devices,
        { empty: "No device has registered yet. make run starts a local agent; others join with latencylab agent --server URL --token T.", rowAttrs: (d) => ({ dataset: { device: d.name, status: d.status } }) },
      ),
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
        { empty: "No jobs yet." },
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
