// Plotly.js (served by the coordinator from the installed `plotly` package) and its defaults.
import { h } from "./ui.js";

export const COLORS = ["#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2", "#dc2626", "#65a30d"];
const FONT = { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12, color: "#1f2937" };

export function plotlyReady() {
  return typeof window.Plotly !== "undefined";
}

export function baseLayout(extra = {}) {
  return {
    font: FONT,
    margin: { l: 60, r: 20, t: 30, b: 50 },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "#ffffff",
    hoverlabel: { bgcolor: "#111827", font: { color: "#f9fafb", family: FONT.family } },
    legend: { orientation: "h", y: -0.18 },
    ...extra,
  };
}

export const CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

/** Draw (or redraw) a chart into `el`; shows a message instead when Plotly did not load.
 * A chart built before its element is in the page is drawn once it is (to get its width). */
export async function plot(el, traces, layout) {
  if (!plotlyReady()) {
    el.replaceChildren(h("p", { class: "notice notice-error" }, "Charts unavailable: /static/vendor/plotly.min.js did not load (pip install plotly on the coordinator)."));
    return el;
  }
  for (let i = 0; i < 20 && !el.isConnected; i += 1) {
    await new Promise((resolve) => requestAnimationFrame(resolve));
  }
  return window.Plotly.react(el, traces, baseLayout(layout), CONFIG);
}

export function purge(el) {
  if (plotlyReady() && el) window.Plotly.purge(el);
}

/** A vertical marker line with a label at the top (percentiles on a histogram). */
export function vline(x, label, color) {
  return {
    shape: { type: "line", x0: x, x1: x, yref: "paper", y0: 0, y1: 1, line: { color, width: 2, dash: "dash" } },
    annotation: { x, yref: "paper", y: 1.02, text: label, showarrow: false, font: { color, size: 11 }, yanchor: "bottom" },
  };
}
