// The dashboard's router: one page per URL fragment, each refreshed on a timer.
//
//   #/                                  overview (overview.js)
//   #/endpoints/ENVIRONMENT/ENDPOINT    one endpoint (endpoint.js)
//   #/incidents, #/incidents/ID         incidents (incidents.js)
//   #/features                          feature views and a key lookup (features.js)
//   #/predictions                       prediction log search (predictions.js)
//   #/models, #/models/NAME             models, versions, reference profiles (model.js)
//   #/monitoring/ENVIRONMENT/ENDPOINT   drift heatmap, histograms, data quality (monitoring.js)
//
// A page module exports mount(main, ctx) -> {title, refresh(), destroy()}; ctx holds
// the route's params and query, an abort signal, setQuery() and reload(). Once a
// page has drawn its data, <html data-rendered="PAGE"> is set and the performance
// mark "modelport:rendered" is placed (what bench/ui_bench.py and the tests wait for).

import { get } from "./api.js";
import { applyScopes } from "./auth.js";
import { errorBox, h } from "./dom.js";
import * as overview from "./overview.js";
import * as endpoint from "./endpoint.js";
import * as incidents from "./incidents.js";
import * as features from "./features.js";
import * as predictions from "./predictions.js";
import * as model from "./model.js";
import * as monitoring from "./monitoring.js";

const main = document.getElementById("main");
const refreshSelect = document.getElementById("refresh");
let current = null; // {page, name, controller}
let timer = null;
let renders = 0;
let firstLoad = true;

const routes = [
  [/^\/?$/, () => ["overview", overview, {}]],
  [/^\/endpoints\/([^/]+)\/([^/]+)$/, (m) => ["endpoint", endpoint, { environment: m[1], endpoint: m[2] }]],
  [/^\/incidents$/, () => ["incidents", incidents, {}]],
  [/^\/incidents\/(\d+)$/, (m) => ["incident", incidents, { id: Number(m[1]) }]],
  [/^\/features$/, () => ["features", features, {}]],
  [/^\/predictions$/, () => ["predictions", predictions, {}]],
  [/^\/models$/, () => ["models", model, {}]],
  [/^\/models\/([^/]+)$/, (m) => ["model", model, { name: m[1] }]],
  [/^\/monitoring\/([^/]+)\/([^/]+)$/, (m) => ["monitoring", monitoring, { environment: m[1], endpoint: m[2] }]],
];

function parseHash() {
  const raw = location.hash.startsWith("#/") ? location.hash.slice(1) : "/";
  const [path, search] = raw.split("?");
  const query = Object.fromEntries(new URLSearchParams(search || ""));
  for (const [pattern, make] of routes) {
    const match = path.match(pattern);
    if (match) {
      const [name, module, params] = make(match.map((part) => part && decodeURIComponent(part)));
      return { name, module, params, query, path };
    }
  }
  return { name: "missing", module: null, params: {}, query, path };
}

/** Change the fragment's query (e.g. the window) without adding a history entry. */
function setQuery(changes) {
  const { path, query } = parseHash();
  const next = new URLSearchParams({ ...query, ...changes });
  for (const [key, value] of [...next.entries()]) if (value === "" || value === "null") next.delete(key);
  const text = next.toString();
  history.replaceState(null, "", `#${path}${text ? `?${text}` : ""}`);
  navigate();
}

function markNav(name) {
  const section = { incident: "incidents", endpoint: "overview", model: "models", monitoring: "models" }[name] || name;
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function refresh() {
  if (!current) return;
  const mine = current;
  try {
    await mine.page.refresh();
    if (mine !== current) return;
    mine.error.replaceChildren();
    delete document.documentElement.dataset.failed;
    renders += 1;
    document.documentElement.dataset.rendered = mine.name;
    document.documentElement.dataset.renders = String(renders);
    if (!mine.marked) {
      mine.marked = true;
      if (firstLoad) performance.mark("modelport:rendered");
      firstLoad = false;
    }
  } catch (err) {
    if (err.name === "AbortError" || mine !== current) return;
    console.error(err);
    mine.error.replaceChildren(errorBox(err));
    document.documentElement.dataset.failed = mine.name;
  }
}

async function navigate() {
  const route = parseHash();
  if (current) {
    current.controller.abort();
    current.page.destroy();
  }
  markNav(route.name);
  const moveFocus = !firstLoad;
  if (!route.module) {
    current = null;
    main.replaceChildren(
      h("h1", { tabindex: "-1" }, "No such page"),
      h("p", {}, "Nothing lives at ", h("code", {}, location.hash), ". ", h("a", { href: "#/" }, "Go to the overview.")),
    );
    return;
  }
  const controller = new AbortController();
  const error = h("div");
  const content = h("div");
  main.replaceChildren(error, content);
  const ctx = { ...route, signal: controller.signal, setQuery, reload: refresh };
  const page = route.module.mount(content, ctx);
  current = { page, name: route.name, controller, error, marked: false };
  document.title = `${page.title} · Modelport`;
  delete document.documentElement.dataset.rendered;
  await refresh();
  if (moveFocus) {
    const heading = main.querySelector("h1");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: false });
    }
  }
}

function schedule() {
  clearInterval(timer);
  const seconds = Number(refreshSelect.value);
  if (seconds > 0) {
    timer = setInterval(() => {
      // Never redraw under an open dialog or in a hidden tab.
      if (document.hidden || document.getElementById("confirm").open) return;
      refresh();
    }, seconds * 1000);
  }
}

const saved = localStorage.getItem("modelport.refresh");
if (saved !== null && [...refreshSelect.options].some((o) => o.value === saved)) refreshSelect.value = saved;
refreshSelect.addEventListener("change", () => {
  localStorage.setItem("modelport.refresh", refreshSelect.value);
  schedule();
});
document.getElementById("skip").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => refresh());
window.addEventListener("hashchange", navigate);
schedule();
navigate();
// What this tab's API key may do (every action when the server asks for no key).
get("/v1/auth/whoami").then(applyScopes, () => {});
// The environment this server serves, for the top bar (pages that read /v1/endpoints
// anyway keep it current).
get("/v1/endpoints").then(
  (served) => {
    document.getElementById("server").textContent = `serving ${served.environment}`;
  },
  () => {},
);
