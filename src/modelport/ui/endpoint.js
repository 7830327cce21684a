// One endpoint: what it serves, its traffic, latency percentiles, errors by kind and
// rows per request over time per variant, its deployment history with rollouts and
// their analyses, and the buttons that roll it back or steer its rollout.
//
// Reads GET /v1/endpoints, /v1/deployments/{env}/{endpoint}[/history],
// /v1/endpoints/{endpoint}/stats and /v1/rollouts?endpoint=; acts through
// POST /v1/deployments/{endpoint}/rollback and /v1/rollouts/{endpoint}/{action}.

import { ApiError, get, optional, post } from "./api.js";
import { seriesColor, timeChart } from "./charts.js";
import { confirmAction } from "./dialog.js";
import {
  announce, count, duration, errorBox, facts, h, number, percent, rate, replace, specText,
  stateBadge, table, tile, time,
} from "./dom.js";
import { windowPicker } from "./overview.js";

const ACTIVE = new Set(["running", "paused"]);

function variantLabel(v) {
  const name = v.variant || "(failed before routing)";
  return v.shadow ? `${name} (shadow)` : name;
}

/** (spec) the endpoint had before its last change; a rollout's steps are one change. */
function beforeLastChange(events) {
  let found = null;
  for (const event of [...events].reverse()) {
    if (event.previous && (event.action === "rollout" || !found)) found = event.previous;
    if (event.action !== "rollout") break;
  }
  return found;
}

function stepsList(rollout) {
  return h(
    "ol",
    { class: "steps", "aria-label": "Steps" },
    rollout.steps.map((percentage, i) => {
      const active = ACTIVE.has(rollout.state);
      const state =
        i < rollout.step || rollout.state === "succeeded" ? "done" : i === rollout.step ? (active ? "current" : "ended") : "";
      const text = percentage === 0 ? "shadow" : `${number(percentage)}%`;
      return h("li", { class: state || null, "aria-current": state === "current" ? "step" : null }, text);
    }),
  );
}

function analysis(a, i) {
  return h(
    "details",
    { dataset: { key: `analysis-${a.step}-${a.until}-${i}` } },
    h("summary", {}, `Step ${a.step + 1} (${a.percent === 0 ? "shadow" : `${number(a.percent)}%`}) `, stateBadge(a.verdict), " ", a.summary),
    h("p", { class: "muted" }, "judged on ", time(a.since), " – ", time(a.until)),
    table(
      ["check", "result", "value", "threshold", "detail"],
      a.checks.map((c) => [c.check, stateBadge(c.result), number(c.value), number(c.threshold), c.detail]),
      { numeric: [2, 3] },
    ),
  );
}

function rolloutSummary(rollout) {
  const next = rollout.state === "running" && rollout.step_started_at
    ? new Date(new Date(rollout.step_started_at).getTime() + rollout.policy.interval_s * 1000).toISOString()
    : null;
  const analyses = rollout.analyses || [];
  return [
    h("p", { class: "what" }, h("strong", {}, `Rollout ${rollout.id}`), " to ", h("code", {}, rollout.candidate.uri), " ", stateBadge(rollout.state), " ", rollout.message ? h("span", { class: "muted" }, rollout.message) : null),
    stepsList(rollout),
    facts([
      ["baseline", h("span", { class: "mono" }, specText(rollout.baseline))],
      ["step", `${rollout.step + 1} of ${rollout.steps.length}, ${rollout.percent === 0 ? "shadow" : `${number(rollout.percent)}% of live traffic`}`],
      ["each step", `judged after ${number(rollout.policy.interval_s)} s`],
      ["next judgement", next ? time(next) : null],
      ["started", [time(rollout.created_at), rollout.created_by ? ` by ${rollout.created_by}` : "", rollout.reason ? `: ${rollout.reason}` : ""]],
      ["finished", rollout.finished_at ? time(rollout.finished_at) : null],
      ["incident", rollout.incident_id ? h("a", { href: `#/incidents/${rollout.incident_id}` }, `#${rollout.incident_id}`) : null],
    ]),
    analyses.length
      ? [h("h4", {}, `Analyses (${analyses.length})`), [...analyses].reverse().map(analysis)]
      : h("p", { class: "muted" }, "Not judged yet."),
  ];
}

/** Deployment events and rollouts, newest first; a rollout's own steps are listed with it. */
function timeline(events, rollouts, activeId) {
  const own = new Map(rollouts.map((r) => [`rollout/${r.id}`, r]));
  const items = [];
  for (const event of events) {
    if (own.has(event.actor) && event.action === "rollout") continue;
    items.push({
      at: event.created_at,
      kind: event.action,
      node: [
        h("div", { class: "when" }, time(event.created_at), ` · revision ${event.revision}`),
        h("p", { class: "what" }, h("strong", {}, event.action), " ", h("span", { class: "mono" }, `${specText(event.previous)} → ${specText(event.spec)}`)),
        h("div", { class: "muted" }, event.actor ? `by ${event.actor}` : "", event.reason ? ` — ${event.reason}` : ""),
      ],
    });
  }
  for (const rollout of rollouts) {
    const steps = events.filter((e) => e.actor === `rollout/${rollout.id}` && e.action === "rollout");
    items.push({
      at: rollout.created_at,
      kind: "rollout",
      node: [
        h("div", { class: "when" }, time(rollout.created_at)),
        rollout.id === activeId
          ? h("p", { class: "what" }, h("strong", {}, `Rollout ${rollout.id}`), " to ", h("code", {}, rollout.candidate.uri), " ", stateBadge(rollout.state), h("span", { class: "muted" }, " in progress, shown above"))
          : rolloutSummary(rollout),
        steps.length
          ? h(
              "details",
              { dataset: { key: `steps-${rollout.id}` } },
              h("summary", {}, `Deployment changes by this rollout (${steps.length})`),
              h("ul", {}, steps.map((e) => h("li", {}, time(e.created_at), ` revision ${e.revision}: `, h("span", { class: "mono" }, specText(e.spec)), e.reason ? ` (${e.reason})` : ""))),
            )
          : null,
      ],
    });
  }
  items.sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0));
  if (!items.length) return h("p", { class: "empty" }, "No deployment history.");
  return h("ol", { class: "timeline", "aria-label": "Deployment history, newest first" }, items.map((item) => h("li", { class: item.kind }, item.node)));
}

const toMs = (values) => values.map((x) => (x === null ? null : x * 1000));

function charts(stats, served) {
  const times = stats.times;
  const variants = stats.variants;
  const step = `${number(stats.step_s)} s buckets`;
  const ms = (v) => number(v);
  const specs = [
    {
      key: "traffic",
      title: "Traffic",
      unit: "requests/s",
      caption: `Requests per second per variant (${step}); shadows get copies of live requests.`,
      series: variants.map((v, i) => ({ label: variantLabel(v), values: v.series.requests_per_s, color: seriesColor(i) })),
      format: (v) => number(v),
    },
    {
      key: "latency",
      title: "Latency",
      unit: "ms",
      caption: `p50 (dashed) and p99 (solid) per variant, over answered requests (${step}); p90 in the data table.`,
      series: variants.flatMap((v, i) =>
        v.variant
          ? [
              { label: `${variantLabel(v)} p50`, values: toMs(v.series.p50_s), dash: [6, 4], color: seriesColor(i) },
              { label: `${variantLabel(v)} p99`, values: toMs(v.series.p99_s), color: seriesColor(i) },
            ]
          : [],
      ),
      table: variants.filter((v) => v.variant).map((v) => ({ label: `${variantLabel(v)} p90`, values: toMs(v.series.p90_s) })),
      format: ms,
    },
    {
      key: "errors",
      title: "Errors by kind",
      unit: "failed requests",
      caption: stats.errors.length
        ? `Failed requests per bucket (${step}), by error code: ${stats.errors.map((e) => `${e.kind} ${count(e.errors)}`).join(", ")}.`
        : "No failed requests in the window.",
      series: stats.errors.length
        ? stats.errors.map((e) => ({ label: e.kind, values: e.series }))
        : [{ label: "failed requests", values: times.map(() => 0) }],
      format: (v) => number(v),
    },
    {
      key: "rows",
      title: "Rows per request",
      unit: "rows",
      caption:
        `Mean rows per answered request, per variant (${step}).` +
        (served && served.batching
          ? ` The batcher has joined them into model calls of ${number(served.batching.mean_batch_rows)} rows on average since this worker started.`
          : ""),
      series: variants
        .map((v, i) => ({ label: variantLabel(v), values: v.series.rows_per_request, color: seriesColor(i), shadow: v.shadow }))
        .filter((s, i) => !s.shadow && variants[i].variant),
      format: (v) => number(v),
    },
  ];
  return specs.map((spec) => timeChart({ ...spec, times }));
}

function variantsTable(stats, served) {
  const states = new Map(((served && served.variants) || []).map((v) => [v.variant, v]));
  const liveWeight = [...states.values()].filter((v) => !v.shadow).reduce((sum, v) => sum + v.weight, 0) || 1;
  const share = (v) => {
    if (!v.variant) return "–";
    const now = states.get(v.variant);
    if (!now) return h("span", { class: "muted" }, "not served now");
    return now.shadow ? "shadow" : percent(now.weight / liveWeight, 3);
  };
  return table(
    ["variant", "model", "share", "state", "requests", "requests/s", "error rate", "p50", "p99", "errors by kind"],
    stats.variants.map((v) => {
      const live = states.get(v.variant);
      const kinds = stats.errors
        .map((e) => [e.kind, (e.by_variant.find((b) => b.variant === v.variant) || {}).errors])
        .filter(([, n]) => n && !v.shadow)
        .map(([kind, n]) => `${kind} ${count(n)}`)
        .join(", ");
      return [
        variantLabel(v),
        v.model ? `${v.model}/${v.version}` : "–",
        share(v),
        live ? stateBadge(live.state) : "–",
        count(v.requests),
        rate(v.requests_per_s),
        percent(v.error_rate),
        duration(v.p50_s),
        duration(v.p99_s),
        kinds || "–",
      ];
    }),
    { caption: "Variants in the window", numeric: [4, 5, 6, 7, 8], empty: "No requests logged in the window." },
  );
}

export function mount(root, ctx) {
  const { environment, endpoint } = ctx.params;
  const windowText = ctx.query.window || "1h";
  const base = `/v1/deployments/${encodeURIComponent(environment)}/${encodeURIComponent(endpoint)}`;
  const head = h("div");
  const actions = h("div");
  const result = h("div", { role: "status", "aria-live": "polite" });
  const rolloutSlot = h("div");
  const tiles = h("div");
  const chartSlot = h("div", { class: "charts" });
  const variantSlot = h("div");
  const historySlot = h("div");
  let drawn = [];
  let data = null;

  root.append(
    head,
    h("div", { class: "toolbar" }, windowPicker("window", windowText, (value) => ctx.setQuery({ window: value }))),
    actions,
    result,
    rolloutSlot,
    h("section", { "aria-labelledby": "traffic-title" }, h("h2", { id: "traffic-title" }, `Traffic over the last ${windowText}`), tiles, chartSlot, variantSlot),
    h("section", { "aria-labelledby": "history-title" }, h("h2", { id: "history-title" }, "Deployment history"), historySlot),
  );

  async function act(action) {
    const done = await confirmAction(action.confirm);
    if (!done) return;
    replace(result, h("p", { class: "muted" }, `${action.label}…`));
    try {
      await post(action.path, done.reason ? { reason: done.reason } : undefined, { signal: ctx.signal });
      replace(result, h("p", { class: "note" }, action.done));
      announce(action.done);
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(result, errorBox(err));
      return;
    }
    await ctx.reload();
  }

  function actionButtons() {
    const { deployment, rollout, served, history } = data;
    if (!deployment) return null;
    if (served.environment !== environment) {
      return h("p", { class: "note" }, `Actions act on the environment this server serves (${served.environment}). Roll back ${environment} from its own server's dashboard, or: modelport rollback ${endpoint} --env ${environment}`);
    }
    const active = rollout && ACTIVE.has(rollout.state) ? rollout : null;
    const now = specText(deployment.spec);
    const previous = active ? active.baseline : beforeLastChange(history.events);
    const before = specText(previous);
    const list = [];
    if (previous) {
      list.push({
        id: "rollback",
        label: "Roll back",
        path: `/v1/deployments/${encodeURIComponent(endpoint)}/rollback`,
        danger: true,
        confirm: {
          title: `Roll back ${endpoint}?`,
          body: [
            `${environment}/${endpoint} serves ${now}.`,
            active
              ? `Rollout ${active.id} is aborted and its baseline, ${before}, serves again at once.`
              : `It returns at once to what it served before its last change: ${before}.`,
          ],
          confirmLabel: "Roll back",
          reason: true,
        },
        done: `${endpoint} rolled back.`,
      });
    }
    if (active && active.state === "running") {
      list.push({
        id: "pause",
        label: "Pause rollout",
        path: `/v1/rollouts/${encodeURIComponent(endpoint)}/pause`,
        confirm: { title: `Pause rollout ${active.id}?`, body: [`It stays at step ${active.step + 1} (${specText(deployment.spec)}) and is not judged until resumed.`], confirmLabel: "Pause" },
        done: `Rollout ${active.id} paused.`,
      });
    }
    if (active && active.state === "paused") {
      list.push({
        id: "resume",
        label: "Resume rollout",
        path: `/v1/rollouts/${encodeURIComponent(endpoint)}/resume`,
        confirm: { title: `Resume rollout ${active.id}?`, body: ["The current step's interval starts again; it is judged when it ends."], confirmLabel: "Resume" },
        done: `Rollout ${active.id} resumed.`,
      });
    }
    if (active && active.step + 1 < active.steps.length) {
      const next = active.steps[active.step + 1];
      list.push({
        id: "promote",
        label: "Promote to next step",
        path: `/v1/rollouts/${encodeURIComponent(endpoint)}/promote`,
        confirm: {
          title: `Promote rollout ${active.id}?`,
          body: [`${active.candidate.uri} goes to ${next === 0 ? "shadow" : `${number(next)}%`} of live traffic now, without judging the current step.`],
          confirmLabel: "Promote",
        },
        done: `Rollout ${active.id} promoted.`,
      });
    }
    return h(
      "div",
      {},
      h(
        "div",
        { class: "toolbar", role: "group", "aria-label": "Actions" },
        list.map((a) =>
          h(
            "button",
            { type: "button", id: `action-${a.id}`, class: a.danger ? "danger" : "primary", dataset: { key: `action-${a.id}`, scope: "admin" }, onclick: () => act(a) },
            `${a.label}…`,
          ),
        ),
      ),
      list.length ? null : h("p", {}, "Nothing to roll back to: this is the endpoint's first deployment, and no rollout is active."),
      h("p", { class: "muted" }, "Each action asks first and, when the server asks for keys, needs one with the admin scope; the history records the server's user (MODELPORT_USER)."),
    );
  }

  function draw() {
    const { deployment, served, stats, history, rollout } = data;
    const here = served.environment === environment;
    const live = here ? served.endpoints.find((e) => e.endpoint === endpoint) : null;
    replace(
      head,
      h("h1", {}, endpoint, " ", h("span", { class: "badge info" }, environment)),
      deployment
        ? facts([
            ["serves", h("span", { class: "mono" }, servesLinks(deployment.spec))],
            ["state", live ? [stateBadge(live.state), live.error ? ` ${live.error}` : ""] : here ? "starting" : "served by another server"],
            ["revision", [String(deployment.revision), " · updated ", time(deployment.updated_at), deployment.updated_by ? ` by ${deployment.updated_by}` : ""]],
            ["routing", live && (live.routing.sticky_header || live.routing.sticky_field) ? `sticky by ${live.routing.sticky_header ? `header ${live.routing.sticky_header}` : `field ${live.routing.sticky_field}`}` : null],
          ])
        : h("p", { class: "note" }, `${endpoint} is not deployed in ${environment}; the charts show what the log holds.`),
    );
    replace(actions, actionButtons());
    replace(
      rolloutSlot,
      rollout && ACTIVE.has(rollout.state)
        ? h("section", { class: "panel", "aria-labelledby": "rollout-title" }, h("h2", { id: "rollout-title" }, "Rollout in progress"), rolloutSummary(rollout))
        : null,
    );
    const t = stats.totals;
    replace(
      tiles,
      h(
        "ul",
        { class: "tiles", "aria-label": "Totals" },
        tile("Requests", count(t.requests)),
        tile("Requests/s", rate(t.requests_per_s)),
        tile("Error rate", percent(t.error_rate)),
        tile("p50 latency", duration(t.p50_s)),
        tile("p99 latency", duration(t.p99_s)),
        tile("Rows per request", number(t.rows_per_request)),
      ),
    );
    for (const chart of drawn) chart.destroy();
    drawn = stats.variants.length || stats.errors.length ? charts(stats, live) : [];
    replace(chartSlot, drawn.length ? drawn.map((c) => c.element) : h("p", { class: "empty" }, `No requests logged in the last ${windowText}.`));
    replace(variantSlot, stats.variants.length ? variantsTable(stats, live) : null);
    replace(historySlot, timeline(history.events, data.rollouts, rollout && ACTIVE.has(rollout.state) ? rollout.id : null));
  }

  async function refresh() {
    const options = { signal: ctx.signal };
    const [served, deployment, history, stats, rollouts] = await Promise.all([
      get("/v1/endpoints", options),
      optional(get(base, options)),
      optional(get(`${base}/history`, options)),
      get(`/v1/endpoints/${encodeURIComponent(endpoint)}/stats`, { ...options, params: { window: windowText, environment } }),
      get("/v1/rollouts", { ...options, params: { endpoint, limit: 50 } }).catch((err) => {
        if (err instanceof ApiError) return { rollouts: [] };
        throw err;
      }),
    ]);
    const mine = served.environment === environment ? rollouts.rollouts : [];
    data = {
      served,
      deployment,
      history: history || { events: [] },
      stats,
      rollouts: mine,
      rollout: mine.find((r) => ACTIVE.has(r.state)) || null,
    };
    document.getElementById("server").textContent = `serving ${served.environment}`;
    draw();
  }

  return {
    title: `${endpoint} (${environment})`,
    refresh,
    destroy() {
      for (const chart of drawn) chart.destroy();
    },
  };
}

/** What a deployment serves, each version a link to its model page. */
function servesLinks(spec) {
  const variants = (spec && spec.variants) || [];
  if (!variants.length) return "nothing";
  const labels = specText(spec).split(", ");
  return variants.flatMap((v, i) => [
    i ? ", " : null,
    h("a", { href: `#/models/${encodeURIComponent(v.model)}?version=${v.version}` }, labels[i]),
  ]);
}
