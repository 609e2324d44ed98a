// The dashboard shell: sign-in, navigation (History API, deep links) and page dispatch.
import { api, ApiError, token } from "./api.js";
import { navigate } from "./nav.js";
import { clear, errorBox, h, refreshAgo } from "./ui.js";
import { renderOverview } from "./pages/overview.js";
import { renderPareto } from "./pages/pareto.js";
import { renderModels } from "./pages/models.js";
import { renderModel } from "./pages/model.js";
import { renderDevices } from "./pages/devices.js";
import { renderTables } from "./pages/tables.js";
import { renderPredictors } from "./pages/predictors.js";
import { renderPredictor } from "./pages/predictor.js";

const ROUTES = [
  [/^\/$/, renderOverview, "Overview"],
  [/^\/pareto\/?$/, renderPareto, "Pareto"],
  [/^\/models\/?$/, renderModels, "Models"],
  [/^\/models\/(\d+)\/?$/, renderModel, "Model"],
  [/^\/devices\/?$/, renderDevices, "Fleet"],
  [/^\/tables\/?$/, renderTables, "Latency tables"],
  [/^\/predictors\/?$/, renderPredictors, "Predictors"],
  [/^\/predictors\/(\d+)\/?$/, renderPredictor, "Predictor"],
];
const NAV = [
  ["/", "Overview"],
  ["/pareto", "Pareto"],
  ["/models", "Models"],
  ["/devices", "Fleet"],
  ["/tables", "Tables"],
  ["/predictors", "Predictors"],
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
let cleanup = null;
let me = null;
let generation = 0;


function drawNav() {
  const here = location.pathname;
  nav.hidden = !me;
  clear(
    nav,
    NAV.map(([href, label]) => {
      const active = href === "/" ? here === "/" : here.startsWith(href);
      return h("a", { href, class: active ? "active" : "", "aria-current": active ? "page" : false }, label);
    }),
  );
  if (me) {
    clear(
      who,
      h("span", { class: "muted", title: `token ${me.prefix}…` }, `${me.name || "token"} · ${me.scope}`),
      h("button", { class: "link", type: "button", onclick: signOut }, "Sign out"),
    );
  } else {
    clear(who);
  }
}

function signOut() {
  token.clear();
  me = null;
  render();
}

function signIn(reason) {
  document.title = "Sign in · LatencyLab";
  const input = h("input", { type: "password", name: "token", id: "token-input", autocomplete: "off", required: true, placeholder: "paste the token", size: 50 });
  const status = h("div");
  const form = h(
    "form",
    {
      class: "signin",
      onsubmit: async (ev) => {
        ev.preventDefault();
        token.set(input.value.trim());
        try {
          await checkToken();
          render();
        } catch (err) {
          token.clear();
          clear(status, errorBox(err));
        }
      },
    },
    h("h1", {}, "Sign in to LatencyLab"),
    h("p", {}, "Paste an API token. ", h("code", {}, "make run"), " printed the admin token when it started; it is also in ", h("code", {}, ".latencylab/admin.token"), " (", h("code", {}, "cat .latencylab/admin.token"), "). Create more with ", h("code", {}, "latencylab token create --scope user"), "."),
    h("p", { class: "muted" }, "The token stays in this browser tab only (sessionStorage) and is sent as a bearer token to the API."),
    reason ? h("p", { class: "notice notice-warn" }, reason) : null,
    h("div", { class: "row" }, input, h("button", { type: "submit", class: "primary" }, "Sign in")),
    status,
  );
  clear(main, form);
  input.focus();
}

async function checkToken() {
  me = await api("/tokens/me");
  if (me.scope === "agent") {
    me = null;
    throw new ApiError(403, "That is an agent token: sign in with a user or admin token.");
  }
}

async function render() {
  const gen = ++generation;
  document.body.dataset.ready = "0";
  if (cleanup) {
    try {
      cleanup();
    } catch {
      /* a page's cleanup must not block navigation */
    }
    cleanup = null;
  }
  if (!token.get()) {
    me = null;
    drawNav();
    signIn();
    return;
  }
  if (!me) {
    try {
      await checkToken();
    } catch (err) {
      token.clear();
      drawNav();
      signIn(err.message);
      return;
    }
  }
  drawNav();
  const path = location.pathname;
  for (const [re, page, title] of ROUTES) {
    const m = path.match(re);
    if (!m) continue;
    document.title = `${title} · LatencyLab`;
    const root = h("div", { class: "page" });
    clear(main, root);
    let done = null;
    try {
      done = (await page(root, { params: m.slice(1), query: new URLSearchParams(location.search) })) || null;
    } catch (err) {
      root.append(errorBox(err));
    }
    if (gen !== generation) {
      if (done) done(); // a newer navigation already replaced this page
      return;
    }
    cleanup = done;
    document.body.dataset.page = title;
    document.body.dataset.ready = "1";
    return;
  }
  clear(main, h("h1", {}, "Not found"), h("p", {}, "No such page. ", h("a", { href: "/" }, "Go to the overview.")));
}

document.addEventListener("click", (ev) => {
  const a = ev.target.closest("a");
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
  const href = a.getAttribute("href");
  if (!href || !href.startsWith("/") || href.startsWith("/api/") || href.startsWith("/docs") || a.target || a.hasAttribute("download")) return;
  ev.preventDefault();
  navigate(href);
});
window.addEventListener("popstate", render);
window.addEventListener("ll:navigate", render);
window.addEventListener("ll:signed-out", () => {
  if (!me) return; // a sign-in attempt reports its own error
  me = null;
  render();
});
// Relative times ("6 s ago") stay true after a page stops polling: re-rendered every second.
const AGO_MS = 1000;
setInterval(() => refreshAgo(main), AGO_MS);

render();
