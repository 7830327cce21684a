// Overview: every environment and endpoint, what it serves, its health, its traffic
// over the window (requests/s, error rate, p50/p99 latency, with sparklines) and its
// open incidents.
//
// Reads GET /v1/deployments, /v1/endpoints, /v1/stats and /v1/incidents?status=firing.

import { get } from "./api.js";
import { cssColor, sparkline } from "./charts.js";
import {
  count, duration, h, missing, percent, rate, replace, sortableTable, specText, stateBadge, tile,
} from "./dom.js";

export const WINDOWS = ["5m", "15m", "1h", "6h", "24h", "7d"];
const SERIES = "requests_per_s,error_rate,p99_s";
const HEALTH_ORDER = { failed: 0, loading: 1, "not loaded": 2, ready: 3 };

/** A <select> of windows; `value` is kept even when it is not one of the usual ones. */
export function windowPicker(id, value, onChange) {
  const options = WINDOWS.includes(value) ? WINDOWS : [value, ...WINDOWS];
  return [
    h("label", { for: id }, "Window"),
    h(
      "select",
      { id, onchange: (event) => onChange(event.target.value) },
      options.map((w) => h("option", { value: w, selected: w === value }, `last ${w}`)),
    ),
  ];
}

function health(served) {
  if (!served) return { state: "elsewhere", node: h("span", { class: "badge plain", title: "Another server serves this environment" }, "not served here") };
  const states = [served.state, ...(served.variants || []).map((v) => v.state)];
  const worst = states.sort((a, b) => (HEALTH_ORDER[a] ?? 9) - (HEALTH_ORDER[b] ?? 9))[0];
  const node = [stateBadge(worst)];
  if (served.pending_revision) node.push(" ", h("span", { class: "badge warn" }, `updating to r${served.pending_revision}`));
  if (served.error) node.push(h("div", { class: "muted" }, served.error));
  return { state: worst, node };
}

function figureCell(value, text, series, label, color) {
  return [
    h("span", {}, text),
    series ? sparkline(series, { label, color }) : null,
  ];
}

function rows(data) {
  const served = new Map(data.served.endpoints.map((e) => [e.endpoint, e]));
  const stats = new Map(data.stats.endpoints.map((s) => [`${s.environment}/${s.endpoint}`, s]));
  const firing = new Map();
  for (const incident of data.incidents) {
    if (incident.endpoint) firing.set(incident.endpoint, (firing.get(incident.endpoint) || 0) + 1);
  }
  const seen = new Set();
  const out = [];
  for (const d of data.deployments.deployments) {
    const key = `${d.environment}/${d.endpoint}`;
    seen.add(key);
    const here = d.environment === data.served.environment;
    out.push({
      key,
      environment: d.environment,
      endpoint: d.endpoint,
      deployment: d,
      served: here ? served.get(d.endpoint) : null,
      here,
      stats: stats.get(key) || null,
      incidents: here ? firing.get(d.endpoint) || 0 : null,
    });
  }
  for (const s of data.stats.endpoints) {
    const key = `${s.environment}/${s.endpoint}`;
    if (!seen.has(key)) {
      out.push({ key, environment: s.environment, endpoint: s.endpoint, deployment: null, served: null, here: false, stats: s, incidents: null });
    }
  }
  return out;
}

function columns(windowText) {
  const stat = (row, name) => (row.stats ? row.stats[name] : null);
  const series = (row, name) => (row.stats ? row.stats.series[name] : null);
  return [
    {
      key: "endpoint",
      label: "Endpoint",
      value: (r) => r.endpoint,
      cell: (r) => h("a", { href: `#/endpoints/${encodeURIComponent(r.environment)}/${encodeURIComponent(r.endpoint)}`, dataset: { key: `link-${r.key}` } }, r.endpoint),
    },
    {
      key: "serves",
      label: "Serves",
      value: (r) => (r.deployment ? specText(r.deployment.spec) : ""),
      cell: (r) => (r.deployment ? h("span", { class: "mono" }, specText(r.deployment.spec)) : h("span", { class: "muted" }, "not deployed (logged traffic only)")),
    },
    {
      key: "health",
      label: "Health",
      value: (r) => (r.served ? HEALTH_ORDER[health(r.served).state] : 8),
      cell: (r) => {
        if (!r.deployment) return missing;
        if (r.here && !r.served) return h("span", { class: "badge warn" }, "starting");
        return health(r.served).node;
      },
    },
    {
      key: "rps",
      label: "Requests/s",
      numeric: true,
      class: "cell-figure",
      value: (r) => stat(r, "requests_per_s"),
      cell: (r) => figureCell(stat(r, "requests_per_s"), rate(stat(r, "requests_per_s")), series(r, "requests_per_s"), `requests per second over the last ${windowText}`, cssColor("--s1")),
    },
    {
      key: "errors",
      label: "Error rate",
      numeric: true,
      class: "cell-figure",
      value: (r) => stat(r, "error_rate"),
      cell: (r) => figureCell(stat(r, "error_rate"), percent(stat(r, "error_rate")), series(r, "error_rate"), `error rate over the last ${windowText}`, cssColor("--bad")),
    },
    { key: "p50", label: "p50 latency", numeric: true, value: (r) => stat(r, "p50_s"), cell: (r) => duration(stat(r, "p50_s")) },
    {
      key: "p99",
      label: "p99 latency",
      numeric: true,
      class: "cell-figure",
      value: (r) => stat(r, "p99_s"),
      cell: (r) => figureCell(stat(r, "p99_s"), duration(stat(r, "p99_s")), series(r, "p99_s"), `p99 latency over the last ${windowText}`, cssColor("--s2")),
    },
    {
      key: "incidents",
      label: "Open incidents",
      numeric: true,
      value: (r) => r.incidents,
      cell: (r) =>
        r.incidents === null
          ? missing
          : r.incidents > 0
            ? h("a", { href: `#/incidents?status=firing&endpoint=${encodeURIComponent(r.endpoint)}`, class: "badge bad", dataset: { key: `incidents-${r.key}` } }, `${r.incidents} firing`)
            : h("span", { class: "muted" }, "0"),
    },
  ];
}

export function mount(root, ctx) {
  const windowText = ctx.query.window || "1h";
  const sort = { key: ctx.query.sort || "endpoint", dir: ctx.query.dir || "ascending" };
  let filter = "";
  let data = null;
  const tiles = h("div");
  const tables = h("div");
  const updated = h("span", { class: "muted" });
  const filterBox = h("input", {
    id: "filter",
    type: "search",
    placeholder: "name, model or environment",
    oninput: (event) => {
      filter = event.target.value.trim().toLowerCase();
      draw();
    },
  });
  root.append(
    h("h1", {}, "Overview"),
    h("p", { class: "muted" }, `Every environment and endpoint, with its traffic over the last ${windowText}.`),
    h(
      "div",
      { class: "toolbar" },
      windowPicker("window", windowText, (value) => ctx.setQuery({ window: value })),
      h("label", { for: "filter" }, "Filter"),
      filterBox,
      updated,
    ),
    tiles,
    tables,
  );

  function draw() {
    const all = rows(data);
    const shown = filter
      ? all.filter((r) => `${r.environment} ${r.endpoint} ${r.deployment ? specText(r.deployment.spec) : ""}`.toLowerCase().includes(filter))
      : all;
    const live = all.filter((r) => r.stats);
    const requests = live.reduce((sum, r) => sum + r.stats.requests, 0);
    const errors = live.reduce((sum, r) => sum + r.stats.errors, 0);
    const rps = live.reduce((sum, r) => sum + (r.stats.requests_per_s || 0), 0);
    const environments = [...new Set(all.map((r) => r.environment))].sort((a, b) =>
      a === data.served.environment ? -1 : b === data.served.environment ? 1 : a.localeCompare(b),
    );
    replace(
      tiles,
      h(
        "ul",
        { class: "tiles", "aria-label": "Totals" },
        tile("Environments", count(environments.length)),
        tile("Endpoints", count(all.filter((r) => r.deployment).length)),
        tile(`Requests/s (${windowText})`, rate(rps)),
        tile("Error rate", percent(requests ? errors / requests : null)),
        tile(
          "Open incidents",
          data.incidents.length ? h("a", { href: "#/incidents?status=firing", dataset: { key: "tile-incidents" } }, count(data.incidents.length)) : "0",
        ),
      ),
    );
    const cols = columns(windowText);
    const onSort = (key, dir) => {
      sort.key = key;
      sort.dir = dir;
      draw();
    };
    replace(
      tables,
      environments.map((env) => {
        const envRows = shown.filter((r) => r.environment === env);
        const here = env === data.served.environment;
        return h(
          "section",
          { "aria-labelledby": `env-${env}` },
          h("h2", { id: `env-${env}` }, env, " ", here ? h("span", { class: "badge info" }, "served here") : h("span", { class: "badge plain" }, "served by another server")),
          sortableTable({
            caption: h("span", { class: "visually-hidden" }, `Endpoints of ${env}`),
            columns: cols,
            rows: envRows,
            state: sort,
            onSort,
            rowKey: (r) => r.key,
            className: "endpoints",
            empty: filter ? "No endpoint matches the filter." : "Nothing deployed.",
          }),
        );
      }),
      environments.length ? null : h("p", { class: "empty" }, "Nothing is deployed yet: modelport deploy ENDPOINT models:/NAME/VERSION"),
    );
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  async function refresh() {
    const options = { signal: ctx.signal };
    const [deployments, served, stats, incidents] = await Promise.all([
      get("/v1/deployments", options),
      get("/v1/endpoints", options),
      get("/v1/stats", { ...options, params: { window: windowText, series: SERIES } }),
      get("/v1/incidents", { ...options, params: { status: "firing", limit: 1000 } }),
    ]);
    data = { deployments, served, stats, incidents };
    document.getElementById("server").textContent = `serving ${served.environment}`;
    draw();
  }

  return { title: "Overview", refresh, destroy() {} };
}
