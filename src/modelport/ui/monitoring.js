// Monitoring of one endpoint: model performance over time on delayed labels (a line
// chart per metric, one line per model version); drift per column over the monitor runs
// the server kept, as a heatmap (input and output columns × runs) against each
// column's threshold; a cell opens that column's reference and live histograms
// overlaid (outputs too: the prediction distribution against the reference); data
// quality of the latest run.
//
// Reads GET /v1/endpoints/{endpoint}/monitor/performance?window=,
// /v1/endpoints/{endpoint}/monitor/history and
// /v1/endpoints/{endpoint}/monitor/histogram?column=.

import { ApiError, get } from "./api.js";
import { seriesColor, timeChart } from "./charts.js";
import { count, facts, h, number, percent, replace, table, time } from "./dom.js";
import { histogram, modelHref } from "./model.js";

const RUNS = 48;
/** Windows of the performance chart: labels arrive late, so days rather than minutes. */
const PERF_WINDOWS = ["1h", "24h", "7d", "30d"];
const METRIC_NAMES = { accuracy: "Accuracy", precision: "Precision", recall: "Recall", f1: "F1", roc_auc: "ROC AUC", log_loss: "Log loss", mae: "MAE", rmse: "RMSE" };
/** Metrics read as a share (0 to 1); the others are errors in the label's unit. */
const SHARES = new Set(["accuracy", "precision", "recall", "f1", "roc_auc"]);
/** Score methods read as p-values: drift when the score falls below the threshold. */
const P_VALUES = new Set(["ks", "chisquare", "z"]);
const CLOCK = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

/** How far past (>= 1) or short of (< 1) its threshold a column's score is. */
function severity(c) {
  if (c.score === null || c.score === undefined) return null;
  if (P_VALUES.has(c.method)) return c.threshold / Math.max(c.score, 1e-12);
  return c.score / Math.max(c.threshold, 1e-12);
}

function level(c) {
  if (!c) return "none";
  const s = severity(c);
  if (s === null) return "none";
  if (c.drifted) return s >= 10 ? "l4" : "l3";
  return s >= 0.5 ? "l2" : s >= 0.1 ? "l1" : "l0";
}

function rule(c) {
  return P_VALUES.has(c.method) ? `${c.method} p < ${number(c.threshold)}` : `${c.method} ≥ ${number(c.threshold)}`;
}

function columnsOf(runs) {
  const names = [];
  for (const run of runs) {
    const drift = run.drift || {};
    for (const [side, list] of [["input", drift.columns], ["output", drift.outputs]]) {
      for (const c of list || []) if (!names.some((n) => n.column === c.column)) names.push({ column: c.column, side });
    }
  }
  return names;
}

function cellOf(run, column) {
  const drift = run.drift || {};
  return [...(drift.columns || []), ...(drift.outputs || [])].find((c) => c.column === column) || null;
}

function heatmap(runs, onPick, picked) {
  const columns = columnsOf(runs);
  if (!columns.length) return h("p", { class: "empty" }, "No drift measured yet: the version has no reference profile, or no run saw live rows.");
  const latest = runs[runs.length - 1];
  // A time label every fourth run at most: a label is wider than a cell.
  const step = Math.max(4, Math.ceil(runs.length / 8));
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "heatmap", "aria-describedby": "heatmap-help" },
      h("caption", {}, `Drift per column over the last ${runs.length} monitor runs (oldest left)`),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "column · threshold"),
          runs.map((run, i) =>
            h("th", { scope: "col", class: "run", title: new Date(run.computed_at).toISOString() }, i % step === 0 ? h("span", {}, CLOCK.format(new Date(run.computed_at))) : h("span", { class: "visually-hidden" }, CLOCK.format(new Date(run.computed_at)))),
          ),
        ),
      ),
      h(
        "tbody",
        {},
        columns.map(({ column, side }) => {
          const last = cellOf(latest, column) || runs.map((r) => cellOf(r, column)).find(Boolean);
          return h(
            "tr",
            { dataset: { column } },
            h("th", { scope: "row" }, h("code", {}, column), side === "output" ? h("span", { class: "muted" }, " (output)") : null, last ? h("div", { class: "muted rule" }, rule(last)) : null),
            runs.map((run) => {
              const c = cellOf(run, column);
              const when = CLOCK.format(new Date(run.computed_at));
              const label = c
                ? `${column} at ${when}: score ${number(c.score)} (${rule(c)})${c.drifted ? ", drifted" : ""}, PSI ${number(c.psi)}, ${count(c.rows)} rows`
                : `${column} at ${when}: not measured`;
              const key = `cell-${column}-${run.id}`;
              const on = picked && picked.column === column && picked.run === run.id;
              return h(
                "td",
                { class: `cell ${level(c)}${on ? " picked" : ""}` },
                h("button", { type: "button", class: "cell-button", "aria-label": label, title: label, "aria-pressed": on ? "true" : "false", dataset: { key, column, run: String(run.id) }, onclick: () => onPick(column, run) }, c && c.drifted ? "!" : ""),
              );
            }),
          );
        }),
      ),
    ),
  );
}

function legend() {
  return h(
    "ul",
    { class: "heat-legend", id: "heatmap-help", "aria-label": "Colours" },
    [["l0", "far within"], ["l1", "within"], ["l2", "near the threshold"], ["l3", "drifted (!)"], ["l4", "drifted, 10× past"], ["none", "not measured"]].map(([cls, text]) =>
      h("li", {}, h("span", { class: `swatch cell ${cls}`, "aria-hidden": "true" }), text),
    ),
  );
}

function qualityTable(run) {
  const drift = run.drift || {};
  const all = [...(drift.columns || []).map((c) => [c, "input"]), ...(drift.outputs || []).map((c) => [c, "output"])];
  return table(
    ["column", "side", "rows", "missing", "missing in reference", "out of reference range", "score", "PSI", "reference"],
    all.map(([c, side]) => [
      h("code", {}, c.column),
      side,
      count(c.rows),
      percent(c.missing_rate),
      percent(c.reference_missing_rate),
      percent(c.out_of_range_rate),
      [number(c.score), c.drifted ? h("span", { class: "badge bad" }, "drift") : null],
      [number(c.psi), c.psi_drifted ? h("span", { class: "badge bad" }, `≥ ${number(c.psi_threshold)}`) : null],
      c.reference,
    ]),
    { caption: `Data quality of the latest run (${time(run.computed_at).textContent || run.computed_at}, ${count(run.rows)} rows over ${run.window})`, numeric: [2, 3, 4, 5, 6, 7] },
  );
}

function overlay(body, picked) {
  const ref = body.reference;
  const cur = body.current;
  const c = picked.cell;
  const share = (counts, i, total) => (total ? percent(counts[i] / total) : "–");
  const rows = body.edges.slice(0, -1).map((lo, i) => [
    `${number(lo)} – ${number(body.edges[i + 1])}`,
    share(ref.counts, i, ref.rows),
    share(cur.counts, i, cur.rows),
  ]);
  if (cur.below || cur.above) rows.push(["outside the reference range", "0%", percent((cur.below + cur.above) / (cur.rows || 1))]);
  return h(
    "section",
    { class: "panel", "aria-labelledby": "overlay-title", id: "overlay" },
    h("h2", { id: "overlay-title", tabindex: "-1" }, "Reference and current: ", h("code", {}, body.column)),
    c
      ? facts([
          ["run", time(picked.at)],
          ["score", `${number(c.score)} (${rule(c)})${c.drifted ? ": drifted" : ""}`],
          ["PSI", `${number(c.psi)} (threshold ${number(c.psi_threshold)})`],
          ["missing", `${percent(c.missing_rate)} (reference ${percent(c.reference_missing_rate)})`],
          ["out of range", percent(c.out_of_range_rate)],
        ])
      : null,
    h(
      "figure",
      { class: "chart hist-figure", dataset: { chart: "overlay" } },
      h("figcaption", {}, h("h3", {}, `${body.column}: density per bin`), h("p", { class: "muted" }, `Reference: ${count(ref.rows)} training rows of ${body.model}/${body.version}. Current: ${count(cur.rows)} live rows of the last ${body.window}, counted now on the reference's bins${cur.below || cur.above ? ` (${count(cur.below + cur.above)} outside its range, not drawn)` : ""}.`)),
      h("ul", { class: "hist-legend" }, h("li", {}, h("span", { class: "swatch hist-reference", "aria-hidden": "true" }), "reference"), h("li", {}, h("span", { class: "swatch hist-current", "aria-hidden": "true" }), "current")),
      histogram(body.edges, [{ label: "reference", counts: ref.counts, kind: "reference" }, { label: "current", counts: cur.counts, kind: "current" }]),
      h("details", { dataset: { key: "overlay-table" } }, h("summary", {}, "Data table"), table(["bin", "reference", "current"], rows, { caption: `Share of rows per bin of ${body.column}`, numeric: [1, 2] })),
    ),
  );
}

function versionLabel(v) {
  return `${v.model}/${v.version}`;
}

/** One chart per metric with a value in the window, one line per model version. */
function performanceCharts(body) {
  const metrics = [];
  for (const v of body.versions) for (const m of v.metrics) if (!metrics.includes(m) && v.series[m].some((x) => x !== null)) metrics.push(m);
  const step = body.step_s >= 3600 ? `${number(body.step_s / 3600)} h buckets` : `${number(body.step_s / 60)} min buckets`;
  return metrics.map((metric) =>
    timeChart({
      key: `perf-${metric}`,
      title: METRIC_NAMES[metric] || metric,
      unit: SHARES.has(metric) ? "score (0 to 1)" : metric === "log_loss" ? "nats" : "label units",
      caption: `${METRIC_NAMES[metric] || metric} of each version's labelled predictions per bucket (${step}); a gap is a bucket without labels.`,
      times: body.times,
      range: [body.times[0], body.times[body.times.length - 1] + body.step_s],
      series: body.versions
        .map((v, i) => ({ label: versionLabel(v), values: v.series[metric] || body.times.map(() => null), color: seriesColor(i) }))
        .filter((s, i) => body.versions[i].metrics.includes(metric)),
      table: body.versions.map((v) => ({ label: `${versionLabel(v)} labelled`, values: v.series.n_labelled })),
      format: (v) => number(v),
    }),
  );
}

function performanceTable(body) {
  const metrics = [...new Set(body.versions.flatMap((v) => v.metrics))];
  return table(
    ["version", "task", "labelled", ...metrics.map((m) => METRIC_NAMES[m] || m)],
    body.versions.map((v) => [
      h("a", { href: modelHref(v.model, v.version) }, versionLabel(v)),
      v.task,
      count(v.totals.n_labelled),
      ...metrics.map((m) => number(v.totals[m])),
    ]),
    { caption: `Over the last ${body.window}, from the labels given so far`, numeric: [2, ...metrics.map((_, i) => i + 3)] },
  );
}

export function mount(root, ctx) {
  const { environment, endpoint } = ctx.params;
  const api = `/v1/endpoints/${encodeURIComponent(endpoint)}/monitor`;
  const head = h("div");
  const heatSlot = h("div");
  const overlaySlot = h("div");
  const qualitySlot = h("div");
  const perfSlot = h("div");
  let perfCharts = [];
  let picked = null;
  let runs = [];
  const perfWindow = PERF_WINDOWS.includes(ctx.query.perf) ? ctx.query.perf : "7d";
  root.append(
    head,
    h(
      "section",
      { "aria-labelledby": "perf-title", id: "performance" },
      h("h2", { id: "perf-title" }, "Performance on labels"),
      h("p", { class: "muted" }, "Labels arrive after the predictions (POST /v1/feedback, modelport feedback); each point is a time bucket of answered predictions that have one."),
      h(
        "div",
        { class: "toolbar" },
        h("label", { for: "perf-window" }, "Window"),
        h("select", { id: "perf-window", onchange: (event) => ctx.setQuery({ perf: event.target.value }) }, PERF_WINDOWS.map((w) => h("option", { value: w, selected: w === perfWindow }, `last ${w}`))),
      ),
      perfSlot,
    ),
    h("section", { "aria-labelledby": "drift-title" }, h("h2", { id: "drift-title" }, "Drift per column"), h("p", { class: "muted" }, "Each cell is one monitor run of one column, coloured by how its score stands against the column's threshold; press a cell (or Tab to it and Enter) for the histograms."), legend(), heatSlot),
    overlaySlot,
    h("section", { "aria-labelledby": "quality-title" }, h("h2", { id: "quality-title" }, "Data quality"), qualitySlot),
  );

  function drawHeatmap() {
    replace(heatSlot, heatmap(runs, pick, picked));
  }

  async function pick(column, run) {
    picked = { column, run: run.id, at: run.computed_at, cell: cellOf(run, column) };
    drawHeatmap();
    replace(overlaySlot, h("p", { class: "muted", role: "status" }, `Loading the histograms of ${column}…`));
    try {
      const body = await get(`${api}/histogram`, { signal: ctx.signal, params: { column, window: run.window } });
      if (!picked || picked.column !== column) return;
      replace(overlaySlot, overlay(body, picked));
      document.documentElement.dataset.overlay = column;
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(overlaySlot, h("p", { class: "note", role: "status" }, `No histogram for ${column}: ${err.message}`, err.hint ? h("div", { class: "muted" }, err.hint) : null));
      document.documentElement.dataset.overlay = column;
    }
  }

  async function refresh() {
    const served = await get("/v1/endpoints", { signal: ctx.signal });
    const here = served.environment === environment;
    const body = here ? await get(`${api}/history`, { signal: ctx.signal, params: { limit: RUNS } }) : { runs: [] };
    runs = body.runs;
    const latest = runs[runs.length - 1];
    replace(
      head,
      h("h1", {}, `Monitoring: ${endpoint} `, h("span", { class: "badge info" }, environment)),
      facts([
        ["endpoint", h("a", { href: `#/endpoints/${encodeURIComponent(environment)}/${encodeURIComponent(endpoint)}` }, `${environment}/${endpoint}`)],
        ["model", latest ? h("a", { href: modelHref(latest.model, latest.version) }, `${latest.model}/${latest.version}`) : null],
        ["runs", latest ? [`${runs.length} shown, latest `, time(latest.computed_at), `, each over the last ${latest.window}`] : null],
        ["drifted", latest && latest.drift && latest.drift.drifted_share !== undefined ? `${percent(latest.drift.drifted_share)} of input columns${latest.drift.dataset_drift ? " (dataset drift)" : ""}` : null],
      ]),
      here ? null : h("p", { class: "note" }, `This server serves ${served.environment}; ${environment}'s monitor runs are on its own server's dashboard, or: modelport monitor run ${endpoint} --env ${environment}`),
      here && !runs.length ? h("p", { class: "note" }, "No monitor run kept yet: the server's monitor loop stores one per endpoint every MODELPORT_MONITOR_INTERVAL_SECONDS.") : null,
    );
    drawHeatmap();
    replace(qualitySlot, latest ? qualityTable(latest) : h("p", { class: "empty" }, "Nothing measured yet."));
    await drawPerformance(here, served);
  }

  async function drawPerformance(here, served) {
    for (const chart of perfCharts) chart.destroy();
    perfCharts = [];
    if (!here) {
      replace(perfSlot, h("p", { class: "note" }, `Performance of ${environment} is on its own server, or: modelport performance ${endpoint} --since ${perfWindow} --bucket 1d (this server serves ${served.environment})`));
      return;
    }
    let body;
    try {
      body = await get(`${api}/performance`, { signal: ctx.signal, params: { window: perfWindow } });
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 503) throw err;
      replace(perfSlot, h("p", { class: "note" }, err.message, err.hint ? h("div", { class: "muted" }, err.hint) : null));
      return;
    }
    if (!body.versions.length) {
      replace(perfSlot, h("p", { class: "empty" }, `No labelled predictions in the last ${body.window}: send labels with POST /v1/feedback or modelport feedback PREDICTION_ID LABEL.`));
      return;
    }
    perfCharts = performanceCharts(body);
    replace(perfSlot, performanceTable(body), h("div", { class: "charts" }, perfCharts.map((c) => c.element)));
  }

  return {
    title: `${endpoint} monitoring (${environment})`,
    refresh,
    destroy() {
      for (const chart of perfCharts) chart.destroy();
      delete document.documentElement.dataset.overlay;
    },
  };
}
