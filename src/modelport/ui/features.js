// Feature views: every registered view (entity, features, TTL, source, policies) and a
// lookup of one entity key: the values the online store holds, their event time, age
// and whether they are stale (older than the view's TTL).
//
// Freshness is per key: the API keeps no "newest value" per view, so the list shows
// the TTL a value must be younger than and the lookup shows a key's own age. Each
// stream view's processor shows how far it is behind its stream (its consumer group:
// events behind, pending, when the newest and the last processed events were added)
// and whether it reads at all.
//
// Reads GET /v1/features, GET /v1/features/{view}/stream/status and
// GET /v1/features/{view}/{key}.

import { ApiError, get } from "./api.js";
import { announce, count, facts, h, replace, span, table, time } from "./dom.js";

const STREAM_STATES = {
  reading: ["ok", "reading"],
  caught_up: ["ok", "caught up"],
  stopped: ["bad", "not running"],
  not_started: ["bad", "not running"],
  no_stream: ["plain", "no Redis stream"],
};

/** Seconds between when the newest event and the last processed one were added. */
function behindBy(status) {
  if (!status.newest_event_at) return null;
  if (!status.last_delivered_at) return null;
  return Math.max(0, (new Date(status.newest_event_at) - new Date(status.last_delivered_at)) / 1000);
}

function streamRow(view, status) {
  if (status instanceof Error) return [h("strong", {}, view.name), view.source.stream, "–", h("span", { class: "badge warn" }, "unknown"), h("span", { class: "muted" }, status.message), "–", "–", "–", "–"];
  const [tone, text] = STREAM_STATES[status.state] || ["plain", status.state];
  const waiting = status.lag === null || status.lag === undefined ? "–" : count(status.lag);
  const behind = behindBy(status);
  return [
    h("strong", {}, view.name),
    h("code", {}, status.stream),
    h("code", {}, status.group),
    h("span", { class: `badge ${tone}`, dataset: { streamState: status.state } }, text),
    [status.message || (status.state === "reading" ? "catching up" : "every event processed"), status.hint ? h("div", { class: "muted" }, status.hint) : null],
    waiting,
    status.pending === undefined ? "–" : count(status.pending),
    status.newest_event_at ? time(status.newest_event_at) : "–",
    status.last_delivered_at ? [time(status.last_delivered_at), behind ? h("div", { class: "muted" }, `${span(behind)} behind the newest`) : null] : "–",
  ];
}

function streamTable(rows) {
  return table(
    ["view", "stream", "consumer group", "processor", "detail", "events behind", "pending", "newest event added", "last processed event added"],
    rows,
    { caption: h("span", { class: "visually-hidden" }, "Stream processors"), numeric: [5, 6] },
  );
}

function sourceText(source) {
  if (!source) return "pushed (no source)";
  if (source.kind === "stream") return `stream ${source.stream}`;
  return source.path ? `batch file ${source.path}` : "batch query (PostgreSQL)";
}

function featureNames(view) {
  const plain = view.features.map((f) => `${f.name} (${f.type}${f.dim ? `[${f.dim}]` : ""})`);
  const windows = view.aggregations.map((a) => `${a.name} = ${a.function}(${a.field || ""}) over ${span(a.window_s)}`);
  return [...plain, ...windows].join(", ") || "–";
}

function valueText(value) {
  if (value === null || value === undefined) return h("span", { class: "muted" }, "null");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** What the lookup shows for one key. */
function lookupResult(found) {
  const values = Object.entries(found.values || {});
  return h(
    "div",
    { class: "lookup-result" },
    facts([
      ["View", found.view],
      ["Key", h("code", {}, found.key)],
      ["Event time", found.event_ts ? time(found.event_ts) : "– (a stream view's aggregations are computed now)"],
      ["Written", found.written_ts ? time(found.written_ts) : null],
      ["Age", found.age_s === null || found.age_s === undefined ? "–" : span(found.age_s)],
      ["Stale", found.stale ? h("span", { class: "badge warn" }, "stale") : h("span", { class: "badge ok" }, "fresh")],
    ]),
    table(
      ["feature", "value"],
      values.map(([name, value]) => [h("code", {}, name), valueText(value)]),
      { caption: `Values of ${found.key}`, empty: "The view holds no values for this key." },
    ),
  );
}

export function mount(root, ctx) {
  const listSlot = h("div");
  const views = h("select", { id: "lookup-view", name: "view", required: true });
  const key = h("input", { id: "lookup-key", name: "key", type: "text", autocomplete: "off", required: true, value: ctx.query.key || "" });
  const result = h("div", { id: "lookup-result", "aria-live": "polite" });
  let chosen = ctx.query.view || "";

  async function lookup() {
    const view = views.value;
    const wanted = key.value.trim();
    if (!view || !wanted) return;
    chosen = view;
    try {
      const found = await get(`/v1/features/${encodeURIComponent(view)}/${encodeURIComponent(wanted)}`, { signal: ctx.signal });
      replace(result, lookupResult(found));
      announce(`${view} ${wanted}: ${Object.keys(found.values || {}).length} values`);
    } catch (err) {
      if (err.name === "AbortError") return;
      const message = err instanceof ApiError ? err.message : String(err);
      replace(result, h("p", { class: "note", role: "alert" }, message));
      announce(message);
    }
  }

  const form = h(
    "form",
    {
      class: "toolbar lookup",
      role: "search",
      "aria-label": "Look up an entity key",
      onsubmit: (event) => {
        event.preventDefault();
        lookup();
      },
    },
    h("label", { for: "lookup-view" }, "View"),
    views,
    h("label", { for: "lookup-key" }, "Entity key"),
    key,
    h("button", { type: "submit", class: "primary", id: "lookup-go" }, "Look up"),
  );

  const streamSlot = h("div");
  root.append(
    h("h1", {}, "Features"),
    h("p", { class: "muted" }, "Feature views the server joins onto requests. A value older than its view's TTL is stale; look a key up to see its age."),
    listSlot,
    streamSlot,
    h("section", { "aria-labelledby": "lookup-title" }, h("h2", { id: "lookup-title" }, "Look up a key"), form, result),
  );

  async function refresh() {
    const body = await get("/v1/features", { signal: ctx.signal });
    const list = body.views;
    const current = views.value || chosen;
    views.replaceChildren(...list.map((v) => h("option", { value: v.name, selected: v.name === current }, v.name)));
    replace(
      listSlot,
      table(
        ["view", "entity", "features", "TTL", "source", "when stale / missing", "owner"],
        list.map((v) => [
          h("strong", { dataset: { view: v.name } }, v.name),
          h("code", {}, v.entity),
          featureNames(v),
          v.ttl_s === null || v.ttl_s === undefined ? "none" : span(v.ttl_s),
          sourceText(v.source),
          `${v.on_stale} / ${v.on_missing}`,
          v.owner || "–",
        ]),
        {
          caption: h("span", { class: "visually-hidden" }, "Feature views"),
          empty: "No feature views. Declare them in modelport.yaml and run modelport apply (see docs/features.md).",
        },
      ),
    );
    await drawStreams(list.filter((v) => v.source && v.source.kind === "stream"));
    if (ctx.query.key && !result.childElementCount) await lookup();
  }

  async function drawStreams(streamViews) {
    if (!streamViews.length) {
      replace(streamSlot);
      return;
    }
    const statuses = await Promise.all(
      streamViews.map((v) =>
        get(`/v1/features/${encodeURIComponent(v.name)}/stream/status`, { signal: ctx.signal }).catch((err) => {
          if (err.name === "AbortError") throw err;
          return err;
        }),
      ),
    );
    replace(
      streamSlot,
      h(
        "section",
        { "aria-labelledby": "streams-title", id: "streams" },
        h("h2", { id: "streams-title" }, "Stream processors"),
        h("p", { class: "muted" }, "A stream view's values come from modelport stream run VIEW, which reads the view's stream through its consumer group. Events behind: added to the stream, not yet read by the group; pending: read, not yet written to the online store."),
        streamTable(streamViews.map((v, i) => streamRow(v, statuses[i]))),
      ),
    );
  }

  return { title: "Features", refresh, destroy() {} };
}
