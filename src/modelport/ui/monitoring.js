// Monitoring of one endpoint: drift per column over the monitor runs the server kept, as
// a heatmap (columns × runs) against each column's threshold; a cell opens that
// column's reference and live histograms overlaid; data quality of the latest run.
//
// Reads GET /v1/endpoints/{endpoint}/monitor/history and
// /v1/endpoints/{endpoint}/monitor/histogram?column=.

import { get } from "./api.js";
import { count, facts, h, number, percent, replace, table, time } from "./dom.js";
import { histogram, modelHref } from "./model.js";

const RUNS = 48;
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

export function mount(root, ctx) {
  const { environment, endpoint } = ctx.params;
  const api = `/v1/endpoints/${encodeURIComponent(endpoint)}/monitor`;
  const head = h("div");
  const heatSlot = h("div");
  const overlaySlot = h("div");
  const qualitySlot = h("div");
  let picked = null;
  let runs = [];
  root.append(
    head,
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
  }

  return {
    title: `${endpoint} monitoring (${environment})`,
    refresh,
    destroy() {
      delete document.documentElement.dataset.overlay;
    },
  };
}
