// Models: the list, and one model with its versions (metrics, owner, artifact and
// compiled hashes, aliases, compiled form), where each is deployed, and a version's
// signature and reference profile (summary figures and a histogram per column).
//
// Reads GET /v1/models, /v1/models/{name}, /v1/models/{name}/versions,
// /v1/models/{name}/versions/{version} (with its profile) and /v1/deployments.

import { get } from "./api.js";
import { count, facts, h, number, percent, replace, sortableTable, table, time } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  for (const child of children) if (child) el.append(child);
  return el;
}

/**
 * Histograms on shared bin edges, as densities (share of rows per unit of x), so bins
 * of unequal width (a profile's quantile bins) read right. series: [{label, counts,
 * kind: "reference" | "current"}], drawn in order, later ones over earlier ones.
 * compact: no axes (a table cell). The SVG is decorative; callers give the numbers.
 */
export function histogram(edges, series, { compact = false, width = compact ? 160 : 560, height = compact ? 36 : 220 } = {}) {
  const pad = compact ? { l: 1, r: 1, t: 2, b: 1 } : { l: 48, r: 12, t: 10, b: 36 };
  const lo = edges[0];
  const hi = edges[edges.length - 1] > lo ? edges[edges.length - 1] : lo + 1;
  const densities = series.map((s) => {
    const total = s.counts.reduce((a, b) => a + b, 0) || 1;
    return s.counts.map((c, i) => c / total / Math.max(edges[i + 1] - edges[i], (hi - lo) / 1000));
  });
  const top = Math.max(1e-12, ...densities.flat());
  const x = (v) => pad.l + ((v - lo) / (hi - lo)) * (width - pad.l - pad.r);
  const y = (v) => height - pad.b - (v / top) * (height - pad.t - pad.b);
  const root = svg("svg", { class: `hist${compact ? " compact" : ""}`, viewBox: `0 0 ${width} ${height}`, width, height, "aria-hidden": "true", focusable: "false" });
  series.forEach((s, k) => {
    const group = svg("g", { class: `hist-${s.kind || "reference"}` });
    densities[k].forEach((d, i) => {
      const left = x(edges[i]);
      const right = Math.max(x(edges[i + 1]), left + 1);
      group.append(svg("rect", { x: left, y: y(d), width: right - left, height: y(0) - y(d) }));
    });
    root.append(group);
  });
  if (!compact) {
    const axis = svg("g", { class: "hist-axis" });
    axis.append(svg("line", { x1: pad.l, x2: width - pad.r, y1: y(0), y2: y(0) }));
    axis.append(svg("line", { x1: pad.l, x2: pad.l, y1: pad.t, y2: y(0) }));
    for (let i = 0; i <= 4; i += 1) {
      const v = lo + ((hi - lo) * i) / 4;
      const label = svg("text", { x: x(v), y: height - pad.b + 16, "text-anchor": "middle" });
      label.textContent = number(v);
      axis.append(label);
    }
    const caption = svg("text", { x: pad.l, y: height - 4 });
    caption.textContent = "value";
    const yLabel = svg("text", { x: 12, y: pad.t + (height - pad.t - pad.b) / 2, transform: `rotate(-90 12 ${pad.t + (height - pad.t - pad.b) / 2})`, "text-anchor": "middle" });
    yLabel.textContent = "density";
    axis.append(caption, yLabel);
    root.append(axis);
  }
  return root;
}

export function modelHref(name, version) {
  return `#/models/${encodeURIComponent(name)}${version ? `?version=${version}` : ""}`;
}

function shortHash(sha) {
  return sha ? h("code", { class: "hash", title: `SHA-256 ${sha}`, dataset: { sha256: sha } }, `${sha.slice(0, 12)}…`) : "–";
}

function compiledCell(compiled) {
  if (!compiled || !compiled.status) return h("span", { class: "muted" }, "not compiled");
  const kinds = { compiled: "ok", failed: "bad", skipped: "plain" };
  return [
    h("span", { class: `badge ${kinds[compiled.status] || "plain"}` }, compiled.status),
    compiled.reason ? h("div", { class: "muted" }, compiled.reason) : null,
  ];
}

function metricsText(metrics) {
  const entries = Object.entries(metrics || {});
  if (!entries.length) return h("span", { class: "muted" }, "none");
  return h("span", { class: "mono" }, entries.map(([k, v]) => `${k} ${typeof v === "number" ? number(v, 4) : v}`).join(", "));
}

// -- the list ---------------------------------------------------------------------

function mountList(root, ctx) {
  const slot = h("div");
  let sort = { key: "name", dir: "ascending" };
  let data = null;
  root.append(h("h1", {}, "Models"), h("p", { class: "muted" }, "Every registered model; open one for its versions, hashes, aliases and reference profile."), slot);

  function draw() {
    replace(
      slot,
      sortableTable({
        caption: `${data.models.length} models`,
        rows: data.models,
        state: sort,
        onSort: (key, dir) => {
          sort = { key, dir };
          draw();
        },
        rowKey: (m) => m.name,
        empty: "No model is registered yet: modelport register NAME FILE --sample DATA.",
        columns: [
          { key: "name", label: "Model", value: (m) => m.name, cell: (m) => h("a", { href: modelHref(m.name), dataset: { key: `model-${m.name}` } }, m.name) },
          { key: "latest", label: "Latest version", numeric: true, value: (m) => m.latest_version, cell: (m) => count(m.latest_version) },
          { key: "aliases", label: "Aliases", cell: (m) => Object.entries(m.aliases || {}).map(([a, v]) => `@${a} → ${v}`).join(", ") || "–" },
          { key: "owner", label: "Owner", value: (m) => m.owner || "", cell: (m) => [m.owner || "–", m.team ? h("span", { class: "muted" }, ` (${m.team})`) : null] },
          { key: "updated", label: "Updated", value: (m) => m.updated_at, cell: (m) => time(m.updated_at) },
        ],
      }),
    );
  }

  return {
    title: "Models",
    async refresh() {
      data = await get("/v1/models", { signal: ctx.signal });
      draw();
    },
    destroy() {},
  };
}

// -- one model --------------------------------------------------------------------

function versionsTable(name, versions, shown) {
  return table(
    ["version", "created", "aliases", "metrics", "flavor, task", "artifact SHA-256", "compiled form", "trusted", ""],
    [...versions].reverse().map((v) => [
      h("a", { href: modelHref(name, v.version), "aria-current": v.version === shown ? "true" : null }, `v${v.version}`),
      [time(v.created_at), v.created_by ? h("div", { class: "muted" }, `by ${v.created_by}`) : null],
      v.aliases.length ? v.aliases.map((a) => h("span", { class: "badge info" }, `@${a}`)) : "–",
      metricsText(v.metrics),
      `${v.flavor}${v.task ? `, ${v.task}` : ""}`,
      shortHash(v.artifact && v.artifact.sha256),
      compiledCell(v.compiled),
      v.trusted ? `yes${v.trusted_by ? ` (${v.trusted_by})` : ""}` : "no",
      v.version === shown ? h("span", { class: "muted" }, "shown below") : h("a", { href: modelHref(name, v.version) }, "profile"),
    ]),
    { caption: `${versions.length} versions, newest first` },
  );
}

function signatureTables(signature) {
  const inputs = (signature && signature.inputs) || [];
  const outputs = (signature && signature.outputs) || [];
  return h(
    "div",
    { class: "sig" },
    table(["input", "type", "missing allowed"], inputs.map((c) => [h("code", {}, c.name), c.type, c.allow_missing ? "yes" : "no"]), { caption: "Inputs", empty: "No signature." }),
    table(["output", "type", "shape"], outputs.map((c) => [h("code", {}, c.name), c.type, c.shape ? `[${c.shape.join(", ")}]` : "–"]), { caption: "Outputs", empty: "No outputs recorded." }),
  );
}

function profileRows(columns, side) {
  return Object.entries(columns || {}).map(([column, p]) => {
    const hist = p.histogram;
    const shape = hist && hist.edges && hist.edges.length > 1
      ? h("span", { class: "hist-cell", role: "img", "aria-label": `histogram of ${column}: ${hist.counts.length} bins from ${number(hist.edges[0])} to ${number(hist.edges[hist.edges.length - 1])}` }, histogram(hist.edges, [{ counts: hist.counts, kind: "reference" }], { compact: true }))
      : p.top
        ? h("span", { class: "mono" }, Object.entries(p.top).slice(0, 4).map(([k, c]) => `${k} ${c}`).join(", "))
        : "–";
    return [
      h("code", {}, column),
      side,
      p.kind || "–",
      count(p.count),
      p.count ? percent(p.missing / (p.count + (p.missing || 0))) : count(p.missing),
      number(p.min),
      number(p.mean),
      number(p.std),
      number(p.max),
      shape,
    ];
  });
}

function profileTable(profile) {
  if (!profile) return h("p", { class: "note" }, "This version has no reference profile: register versions with a sample of their training data (--sample) to profile them and measure drift.");
  return table(
    ["column", "side", "kind", "rows", "missing", "min", "mean", "std", "max", "histogram"],
    [...profileRows(profile.columns, "input"), ...profileRows(profile.outputs, "output")],
    { caption: `Reference profile of ${count(profile.rows)} training rows`, numeric: [3, 4, 5, 6, 7, 8] },
  );
}

function deployedAt(name, deployments) {
  const rows = [];
  for (const d of deployments) {
    for (const v of d.spec.variants || []) {
      if (v.model !== name) continue;
      const env = encodeURIComponent(d.environment);
      const ep = encodeURIComponent(d.endpoint);
      rows.push([
        h("a", { href: `#/endpoints/${env}/${ep}` }, `${d.environment}/${d.endpoint}`),
        h("a", { href: modelHref(name, v.version) }, `v${v.version}`),
        v.shadow ? "shadow" : `weight ${number(v.weight ?? 100)}`,
        h("a", { href: `#/monitoring/${env}/${ep}` }, "monitoring"),
      ]);
    }
  }
  return table(["endpoint", "version", "traffic", ""], rows, { empty: "Not deployed anywhere." });
}

function mountModel(root, ctx) {
  const { name } = ctx.params;
  const base = `/v1/models/${encodeURIComponent(name)}`;
  const head = h("div");
  const deployedSlot = h("div");
  const versionsSlot = h("div");
  const versionSlot = h("div");
  root.append(
    head,
    h("section", { "aria-labelledby": "deployed-title" }, h("h2", { id: "deployed-title" }, "Deployed at"), deployedSlot),
    h("section", { "aria-labelledby": "versions-title" }, h("h2", { id: "versions-title" }, "Versions"), versionsSlot),
    versionSlot,
  );

  async function refresh() {
    const options = { signal: ctx.signal };
    const [model, listed, deployments] = await Promise.all([
      get(base, options),
      get(`${base}/versions`, options),
      get("/v1/deployments", options),
    ]);
    const versions = listed.versions;
    const wanted = Number(ctx.query.version) || model.latest_version;
    const shown = versions.some((v) => v.version === wanted) ? wanted : model.latest_version;
    const mv = shown ? await get(`${base}/versions/${shown}`, options) : null;
    replace(
      head,
      h("h1", {}, name),
      model.description ? h("p", {}, model.description) : null,
      facts([
        ["owner", model.owner ? [model.owner, model.team ? ` (team ${model.team})` : ""] : model.team ? `team ${model.team}` : "–"],
        ["aliases", Object.keys(model.aliases || {}).length ? h("span", { class: "aliases" }, Object.entries(model.aliases).map(([a, v]) => [h("code", {}, `models:/${name}@${a}`), ` → v${v} `])) : "none"],
        ["latest", model.latest_version ? `v${model.latest_version}` : "no version yet"],
        ["updated", time(model.updated_at)],
        ["tags", Object.keys(model.tags || {}).length ? h("span", { class: "mono" }, Object.entries(model.tags).map(([k, v]) => `${k}=${v}`).join(", ")) : null],
      ]),
    );
    replace(deployedSlot, deployedAt(name, deployments.deployments));
    replace(versionsSlot, versionsTable(name, versions, shown));
    if (!mv) {
      replace(versionSlot, h("p", { class: "empty" }, "No version registered yet."));
      return;
    }
    replace(
      versionSlot,
      h(
        "section",
        { "aria-labelledby": "version-title", class: "panel" },
        h("h2", { id: "version-title" }, `Version ${mv.version} `, h("code", {}, mv.uri)),
        facts([
          ["artifact", [h("code", {}, mv.artifact.name), ` · ${count(mv.artifact.size)} bytes`]],
          ["SHA-256", h("code", { class: "hash-full", dataset: { sha256: mv.artifact.sha256 } }, mv.artifact.sha256)],
          ["compiled form", [compiledCell(mv.compiled), mv.compiled && mv.compiled.sha256 ? [" ", h("code", {}, mv.compiled.name), " ", h("code", { class: "hash-full" }, mv.compiled.sha256)] : null, mv.compiled && mv.compiled.max_abs_diff !== undefined ? h("div", { class: "muted" }, `largest difference ${number(mv.compiled.max_abs_diff)} over ${count(mv.compiled.rows_checked)} rows (tolerance ${number(mv.compiled.tolerance)})`) : null]],
          ["owner", mv.owner || model.owner],
          ["classes", mv.classes ? h("span", { class: "mono" }, mv.classes.join(", ")) : null],
          ["description", mv.description],
        ]),
        h("h3", {}, "Signature"),
        signatureTables(mv.signature),
        h("h3", { id: "profile-title" }, "Reference profile"),
        h("p", { class: "muted" }, "What the training sample looked like, per column: drift is measured against it. Histograms show density over the profile's bins (each holding about the same share of rows)."),
        profileTable(mv.profile),
      ),
    );
  }

  return { title: `${name} (model)`, refresh, destroy() {} };
}

export function mount(root, ctx) {
  return ctx.params.name ? mountModel(root, ctx) : mountList(root, ctx);
}
