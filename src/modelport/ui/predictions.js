// Predictions: search the prediction log by prediction id (or request id), endpoint
// and time range; each row with its inputs (the feature values the server joined
// included, each marked "feature VIEW" against "sent" by the caller), output,
// variant, latency, status and label, if one was given.
//
// The search lives in the URL (#/predictions?id=...&endpoint=...&since=1h), so a
// result can be shared. Reads GET /v1/predictions.

import { get } from "./api.js";
import { count, duration, facts, h, replace, table, time } from "./dom.js";

const SINCE = [["15m", "last 15 minutes"], ["1h", "last hour"], ["6h", "last 6 hours"], ["1d", "last day"], ["7d", "last 7 days"], ["", "any time"]];
const FIELDS = ["id", "endpoint", "since", "until", "limit"];

function valueText(value) {
  if (value === null || value === undefined) return h("span", { class: "muted" }, "null");
  if (typeof value === "number") return String(Number(value.toPrecision(6)));
  if (Array.isArray(value)) return `[${value.map((item) => (typeof item === "number" ? Number(item.toPrecision(4)) : JSON.stringify(item))).join(", ")}]`;
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function pairs(values) {
  const entries = Object.entries(values || {});
  if (!entries.length) return h("span", { class: "muted" }, "none");
  return h("dl", { class: "kv values" }, entries.map(([name, value]) => [h("dt", {}, h("code", {}, name)), h("dd", {}, valueText(value))]));
}

/** Where an input came from: a feature view's lookup, or the caller's request. */
function origin(row, name) {
  const view = (row.features || {})[name];
  return view
    ? h("span", { class: "badge info", title: `looked up in feature view ${view}`, dataset: { origin: "feature" } }, `feature ${view}`)
    : h("span", { class: "badge plain", title: "sent by the caller", dataset: { origin: "sent" } }, "sent");
}

/** The inputs of one row: name, value and where each came from. */
function inputTable(row) {
  const entries = Object.entries(row.inputs || {});
  const looked = entries.filter(([name]) => (row.features || {})[name]).length;
  return table(
    ["input", "value", "from"],
    entries.map(([name, value]) => [h("code", {}, name), valueText(value), origin(row, name)]),
    {
      caption: looked ? `${entries.length - looked} sent by the caller, ${looked} looked up in feature views` : "All sent by the caller",
      empty: "No inputs logged.",
    },
  );
}

function inputSummary(row) {
  const all = Object.keys(row.inputs || {}).length;
  const looked = Object.keys(row.features || {}).length;
  return looked ? `${all} inputs (${looked} from features)` : `${all} inputs`;
}

function outputText(row) {
  if (row.status !== "ok") return h("span", { class: "muted" }, row.error || "no output");
  return Object.entries(row.outputs).map(([name, value]) => `${name}=${valueText(value)}`).join(", ");
}

function statusBadge(row) {
  return row.status === "ok" ? h("span", { class: "badge ok" }, "ok") : h("span", { class: "badge bad" }, row.status);
}

function labelText(label) {
  if (!label) return "–";
  return label.label;
}

function endpointLink(row) {
  return h("a", { href: `#/endpoints/${encodeURIComponent(row.environment)}/${encodeURIComponent(row.endpoint)}` }, row.endpoint);
}

/** One prediction in full: what came in, what went out, and what it was served by. */
function detail(row) {
  return h(
    "section",
    { class: "prediction", "aria-labelledby": `p-${row.prediction_id}`, dataset: { prediction: row.prediction_id } },
    h("h2", { id: `p-${row.prediction_id}` }, "Prediction ", h("code", {}, row.prediction_id)),
    facts([
      ["Time", time(row.ts)],
      ["Endpoint", [endpointLink(row), ` (${row.environment})`]],
      ["Variant", `${row.variant || "–"} (${row.model}/${row.version})${row.shadow ? " shadow" : ""}`],
      ["Status", [statusBadge(row), row.error ? ` ${row.error}` : null]],
      ["Latency", duration(row.latency_s)],
      ["Request", h("code", {}, row.request_id)],
      ["Stale features", row.stale_features && row.stale_features.length ? row.stale_features.join(", ") : null],
      ["Label", row.label ? [String(row.label.label), " given ", time(row.label.ts)] : "none yet"],
    ]),
    h(
      "div",
      { class: "prediction-io" },
      h("div", { class: "prediction-inputs" }, h("h3", {}, "Inputs"), inputTable(row)),
      h("div", {}, h("h3", {}, "Output"), pairs(row.outputs)),
    ),
  );
}

export function mount(root, ctx) {
  const q = ctx.query;
  const field = (name, attrs) => h("input", { id: `search-${name}`, name, type: "text", autocomplete: "off", value: q[name] || "", ...attrs });
  const id = field("id", { size: 30, placeholder: "prediction or request id", "aria-describedby": "search-help" });
  const endpoint = field("endpoint", { size: 14 });
  const since = h(
    "select",
    { id: "search-since", name: "since" },
    SINCE.map(([value, label]) => h("option", { value, selected: value === (q.since ?? "1h") }, label)),
  );
  const until = field("until", { size: 20, placeholder: "now" });
  const limit = h("input", { id: "search-limit", name: "limit", type: "number", min: 1, max: 500, value: q.limit || 50 });
  const slot = h("div");

  const form = h(
    "form",
    {
      class: "toolbar search",
      role: "search",
      "aria-label": "Search the prediction log",
      onsubmit: (event) => {
        event.preventDefault();
        const values = { id: id.value.trim(), endpoint: endpoint.value.trim(), since: since.value || "any", until: until.value.trim(), limit: limit.value };
        ctx.setQuery(Object.fromEntries(FIELDS.map((name) => [name, values[name]])));
      },
    },
    h("label", { for: "search-id" }, "Prediction id"),
    id,
    h("label", { for: "search-endpoint" }, "Endpoint"),
    endpoint,
    h("label", { for: "search-since" }, "From"),
    since,
    h("label", { for: "search-until" }, "Until"),
    until,
    h("label", { for: "search-limit" }, "Rows"),
    limit,
    h("button", { type: "submit", class: "primary", id: "search-go" }, "Search"),
  );

  root.append(
    h("h1", {}, "Predictions"),
    h("p", { class: "muted", id: "search-help" }, "Search the prediction log, newest first. A request id finds every row of the request; times are ISO (2024-05-01T10:30) or a duration back from now (30m)."),
    form,
    slot,
  );

  async function refresh() {
    const params = {
      id: q.id,
      endpoint: q.endpoint,
      since: q.since === undefined ? "1h" : q.since === "any" ? "" : q.since,
      until: q.until,
      limit: q.limit,
    };
    const body = await get("/v1/predictions", { signal: ctx.signal, params });
    const rows = body.rows;
    const found = `${count(rows.length)} row(s)${body.truncated ? `, the newest ${count(body.limit)}: narrow the search or raise Rows` : ""}.`;
    replace(
      slot,
      h("p", { role: "status" }, found),
      rows.length === 1 ? detail(rows[0]) : null,
      h("div", { class: "results" }, table(
        ["time", "prediction id", "endpoint", "variant", "status", "latency", "output", "label", "inputs"],
        rows.map((row) => [
          time(row.ts),
          h("a", { href: `#/predictions?id=${encodeURIComponent(row.prediction_id)}&since=any`, dataset: { key: `p-${row.prediction_id}` } }, h("code", {}, row.prediction_id)),
          endpointLink(row),
          [row.variant || "–", row.shadow ? h("span", { class: "muted" }, " shadow") : null],
          statusBadge(row),
          duration(row.latency_s),
          outputText(row),
          labelText(row.label),
          h("details", { dataset: { key: `in-${row.prediction_id}` } }, h("summary", {}, inputSummary(row)), pairs(row.inputs)),
        ]),
        {
          caption: h("span", { class: "visually-hidden" }, "Logged predictions, newest first"),
          numeric: [5],
          empty: "No logged prediction matches. Widen the time range, or check the id (a predict response's prediction_ids).",
        },
      )),
    );
  }

  return { title: "Predictions", refresh, destroy() {} };
}
