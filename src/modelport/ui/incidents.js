// Incidents: the list (open and resolved), and one incident with its diagnosis: the
// signal's recent values against the threshold, the endpoint's traffic around the
// start, what changed, the most drifted columns, failing requests, stale features,
// the command that rolls back, and every notification sent.
//
// Reads GET /v1/incidents, /v1/incidents/{id} and /v1/endpoints/{endpoint}/stats.

import { get, optional } from "./api.js";
import { timeChart } from "./charts.js";
import {
  ago, count, facts, h, number, replace, span, stateBadge, table, time,
} from "./dom.js";

const STATUSES = [["", "all"], ["firing", "firing"], ["resolved", "resolved"]];
/** How much traffic before the start (and at most after it) the incident page charts. */
const AROUND_S = 30 * 60;

function endpointLink(incident) {
  if (!incident.endpoint) return "–";
  return h("a", { href: `#/endpoints/${encodeURIComponent(incident.environment)}/${encodeURIComponent(incident.endpoint)}` }, incident.endpoint);
}

function lasted(incident) {
  const end = incident.resolved_at ? new Date(incident.resolved_at) : new Date();
  return span((end - new Date(incident.started_at)) / 1000);
}

function mountList(root, ctx) {
  const status = ctx.query.status || "";
  const only = ctx.query.endpoint || "";
  const slot = h("div");
  root.append(
    h("h1", {}, "Incidents"),
    h("p", { class: "muted" }, "An incident opens when an alert group fires (or a rollout is rolled back) and resolves when it clears."),
    h(
      "div",
      { class: "toolbar" },
      h("label", { for: "status" }, "Status"),
      h(
        "select",
        { id: "status", onchange: (event) => ctx.setQuery({ status: event.target.value }) },
        STATUSES.map(([value, label]) => h("option", { value, selected: value === status }, label)),
      ),
      only ? [h("span", {}, `endpoint ${only}`), h("a", { href: `#/incidents${status ? `?status=${status}` : ""}` }, "show every endpoint")] : null,
    ),
    slot,
  );

  async function refresh() {
    const incidents = await get("/v1/incidents", { signal: ctx.signal, params: { status, limit: 500 } });
    const shown = only ? incidents.filter((i) => i.endpoint === only) : incidents;
    const firing = shown.filter((i) => i.status === "firing").length;
    replace(
      slot,
      h("p", {}, `${count(firing)} firing, ${count(shown.length - firing)} resolved${status ? ` (showing ${status} only)` : ""}.`),
      table(
        ["incident", "endpoint", "severity", "status", "started", "lasted"],
        shown.map((i) => [
          h("a", { href: `#/incidents/${i.id}`, dataset: { key: `incident-${i.id}` } }, `#${i.id} ${i.title}`),
          endpointLink(i),
          stateBadge(i.severity),
          stateBadge(i.status),
          [time(i.started_at), h("div", { class: "muted" }, ago(i.started_at))],
          lasted(i),
        ]),
        { caption: h("span", { class: "visually-hidden" }, "Incidents, newest first"), empty: "No incidents. One opens when an alert rule fires (see docs/monitoring.md)." },
      ),
    );
  }

  return { title: "Incidents", refresh, destroy() {} };
}

function signalChart(incident) {
  const signal = incident.diagnosis.signal;
  if (!signal || !signal.values || !signal.values.length) return null;
  const times = signal.values.map(([at]) => new Date(at).getTime() / 1000);
  return timeChart({
    key: "signal",
    title: `Signal: ${signal.name}`,
    unit: signal.name,
    caption: `${signal.summary || ""} Value ${number(signal.value)}, threshold ${number(signal.threshold)}.`,
    times,
    series: [{ label: signal.name, values: signal.values.map(([, v]) => v) }],
    thresholds: signal.threshold === null || signal.threshold === undefined ? [] : [{ value: signal.threshold, label: `threshold ${number(signal.threshold)}` }],
    markers: [{ at: new Date(incident.started_at).getTime() / 1000, label: "start" }],
    format: (v) => number(v),
    height: 200,
  });
}

function trafficCharts(incident, stats) {
  if (!stats) return [];
  const live = stats.variants.filter((v) => !v.shadow);
  const markers = [{ at: new Date(incident.started_at).getTime() / 1000, label: "start" }];
  if (incident.resolved_at) markers.push({ at: new Date(incident.resolved_at).getTime() / 1000, label: "resolved" });
  // Up to the end of the span, past the last bucket's start, so the start mark shows.
  const range = [new Date(stats.since).getTime() / 1000, new Date(stats.until).getTime() / 1000];
  return [
    timeChart({
      key: "around-traffic",
      title: "Traffic around the start",
      unit: "requests/s",
      caption: `Requests per second per variant, ${number(stats.step_s)} s buckets, from 30 minutes before the start.`,
      times: stats.times,
      series: live.length ? live.map((v) => ({ label: v.variant || "(failed before routing)", values: v.series.requests_per_s })) : [{ label: "requests/s", values: stats.times.map(() => 0) }],
      markers,
      range,
      format: (v) => number(v),
      height: 200,
    }),
    timeChart({
      key: "around-errors",
      title: "Errors around the start",
      unit: "failed requests",
      caption: stats.errors.length ? `Failed requests per bucket by error code.` : "No failed requests in this span.",
      times: stats.times,
      series: stats.errors.length ? stats.errors.map((e) => ({ label: e.kind, values: e.series })) : [{ label: "failed requests", values: stats.times.map(() => 0) }],
      markers,
      range,
      format: (v) => number(v),
      height: 200,
    }),
  ];
}

function copyButton(text) {
  const button = h("button", {
    type: "button",
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch {
        button.textContent = "Select the text to copy";
      }
    },
  }, "Copy");
  return button;
}

function section(id, title, ...content) {
  return h("section", { "aria-labelledby": id }, h("h2", { id }, title), ...content);
}

function diagnosisSections(incident) {
  const d = incident.diagnosis || {};
  const out = [];
  if (d.changes) {
    out.push(section("changes", "What changed",
      table(["time", "what", "change", "who"], d.changes.map((c) => [time(c.time), c.kind, c.summary, c.actor || "–"]), { empty: "Nothing changed in the 24 hours before the start." })));
  }
  if (d.drifted_columns) {
    out.push(section("drifted", "Most drifted columns",
      table(
        ["column", "test", "score", "threshold", "PSI", "drifted"],
        d.drifted_columns.map((c) => [h("code", {}, c.column), c.method || "–", number(c.score), number(c.threshold), number(c.psi), c.drifted ? h("span", { class: "badge bad" }, "drifted") : "no"]),
        { numeric: [2, 3, 4], empty: "No monitor report yet for this endpoint." },
      )));
  }
  if (d.failing_requests) {
    out.push(section("failing", "Failing requests",
      table(["time", "prediction id", "error code", "message"], d.failing_requests.map((f) => [time(f.time), h("code", {}, f.prediction_id), f.status, f.error || "–"]), { empty: "No failed requests in the 15 minutes before the start." })));
  }
  if (d.stale_features && d.stale_features.length) {
    out.push(section("stale", "Stale features", h("ul", {}, d.stale_features.map((line) => h("li", {}, line)))));
  }
  if (d.analysis) {
    out.push(section("analysis", "Rollout analysis",
      h("p", {}, stateBadge(d.analysis.verdict), " ", d.analysis.summary),
      d.rollout ? facts([["rollout", String(d.rollout.id)], ["candidate", h("code", {}, d.rollout.candidate)], ["baseline", h("code", {}, d.rollout.baseline)]]) : null,
      table(["check", "result", "value", "threshold", "detail"], d.analysis.checks.map((c) => [c.check, stateBadge(c.result), number(c.value), number(c.threshold), c.detail]), { numeric: [2, 3] })));
  }
  const commands = [];
  if (d.rollback_command) commands.push(["Roll back with", d.rollback_command]);
  for (const step of d.next_steps || []) commands.push(["Next step", step]);
  if (commands.length || incident.endpoint) {
    out.push(section("rollback", "Roll back",
      commands.map(([label, command]) => [h("p", {}, label), h("pre", { class: "command" }, h("code", {}, command)), copyButton(command)]),
      incident.endpoint
        ? h("p", {}, "Or use the Roll back button on ", endpointLink(incident), "'s page.")
        : null));
  }
  return out;
}

function mountOne(root, ctx) {
  const id = ctx.params.id;
  const slot = h("div");
  const chartSlot = h("div", { class: "charts" });
  const rest = h("div");
  let drawn = [];
  root.append(slot, h("section", { "aria-labelledby": "signal-title" }, h("h2", { id: "signal-title" }, "Signal and traffic"), chartSlot), rest);

  async function refresh() {
    const incident = await get(`/v1/incidents/${id}`, { signal: ctx.signal });
    let stats = null;
    if (incident.endpoint) {
      const start = new Date(incident.started_at).getTime() / 1000;
      const until = Math.min(Date.now() / 1000, start + AROUND_S);
      const window = Math.max(Math.ceil(until - start + AROUND_S), 60);
      stats = await optional(
        get(`/v1/endpoints/${encodeURIComponent(incident.endpoint)}/stats`, {
          signal: ctx.signal,
          params: { environment: incident.environment, window: `${window}s`, until: new Date(until * 1000).toISOString() },
        }),
      );
    }
    const alert = (incident.alerts || [])[0] || {};
    const description = (alert.annotations || {}).description;
    replace(
      slot,
      h("p", {}, h("a", { href: "#/incidents" }, "← all incidents")),
      h("h1", {}, `#${incident.id} ${incident.title}`),
      h("p", {}, stateBadge(incident.status), " ", stateBadge(incident.severity)),
      description ? h("p", {}, description) : null,
      facts([
        ["endpoint", incident.endpoint ? [endpointLink(incident), ` in ${incident.environment}`] : incident.environment],
        ["started", [time(incident.started_at), ` (${ago(incident.started_at)})`]],
        ["resolved", incident.resolved_at ? time(incident.resolved_at) : "not yet"],
        ["lasted", lasted(incident)],
        ["labels", h("code", {}, Object.entries(incident.labels || {}).map(([k, v]) => `${k}=${v}`).join(" "))],
        ["link", incident.diagnosis && incident.diagnosis.link ? h("a", { href: incident.diagnosis.link }, incident.diagnosis.link) : null],
      ]),
    );
    for (const chart of drawn) chart.destroy();
    drawn = [signalChart(incident), ...trafficCharts(incident, stats)].filter(Boolean);
    replace(chartSlot, drawn.length ? drawn.map((c) => c.element) : h("p", { class: "empty" }, "This incident has no signal values to chart."));
    const notes = incident.notifications || [];
    replace(
      rest,
      diagnosisSections(incident),
      section("notifications", "Notifications",
        table(
          ["at", "receiver", "status", "attempt", "delivered", "error"],
          notes.map((n) => [time(n.at), n.receiver, n.status, String(n.attempt), n.ok ? h("span", { class: "badge ok" }, "yes") : h("span", { class: "badge bad" }, "no"), n.error || "–"]),
          { numeric: [3], empty: "No notification sent." },
        )),
    );
  }

  return {
    title: `Incident ${id}`,
    refresh,
    destroy() {
      for (const chart of drawn) chart.destroy();
    },
  };
}

export function mount(root, ctx) {
  return ctx.params.id ? mountOne(root, ctx) : mountList(root, ctx);
}

