// Building elements and formatting figures: the little every page shares.

/**
 * An element: h("a", {href: "#/", class: "x"}, "text", child, [more]).
 * Attributes starting with "on" become listeners; null/false ones are left out;
 * `dataset` takes an object.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "class") {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace a container's content, keeping keyboard focus and open <details>. */
export function replace(container, ...children) {
  const active = document.activeElement;
  const focusKey = active && container.contains(active) ? active.dataset.key : undefined;
  const open = new Set(
    [...container.querySelectorAll("details[open][data-key]")].map((d) => d.dataset.key),
  );
  container.replaceChildren();
  append(container, children);
  for (const details of container.querySelectorAll("details[data-key]")) {
    if (open.has(details.dataset.key)) details.open = true;
  }
  if (focusKey !== undefined) {
    const again = container.querySelector(`[data-key="${CSS.escape(focusKey)}"]`);
    if (again) again.focus({ preventScroll: true });
  }
}

export function announce(message) {
  const region = document.getElementById("announce");
  if (region) region.textContent = message;
}

// -- figures ----------------------------------------------------------------------

const NUMBER = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const INTEGER = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

export const missing = "–";

export function count(value) {
  return value === null || value === undefined ? missing : INTEGER.format(value);
}

export function number(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return missing;
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs >= 1000) return INTEGER.format(value);
  return Number(value.toPrecision(digits)).toString();
}

export function rate(perSecond) {
  if (perSecond === null || perSecond === undefined) return missing;
  return `${number(perSecond)}/s`;
}

export function percent(ratio, digits = 2) {
  if (ratio === null || ratio === undefined) return missing;
  if (ratio === 0) return "0%";
  return `${Number((ratio * 100).toPrecision(digits))}%`;
}

/** Seconds as milliseconds (or seconds above 10 s). */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return missing;
  if (seconds >= 10) return `${NUMBER.format(seconds)} s`;
  return `${number(seconds * 1000)} ms`;
}

export function span(seconds) {
  if (seconds === null || seconds === undefined) return missing;
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

const TIME = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
});

/** A <time> element: local time shown, ISO time in `datetime` and the tooltip. */
export function time(iso) {
  if (!iso) return missing;
  const at = new Date(iso);
  return h("time", { datetime: at.toISOString(), title: at.toISOString() }, TIME.format(at));
}

export function ago(iso) {
  if (!iso) return missing;
  return `${span((Date.now() - new Date(iso).getTime()) / 1000)} ago`;
}

/** "fraud/3 75%, fraud/4 25%, fraud_lr/1 shadow" from a deployment spec. */
export function specText(spec) {
  const variants = (spec && spec.variants) || [];
  if (!variants.length) return "nothing";
  const live = variants.filter((v) => !v.shadow);
  const total = live.reduce((sum, v) => sum + (v.weight ?? 100), 0) || 1;
  return variants
    .map((v) => {
      const name = `${v.model}/${v.version}`;
      if (v.shadow) return `${name} shadow`;
      return live.length > 1 ? `${name} ${number((100 * (v.weight ?? 100)) / total)}%` : name;
    })
    .join(", ");
}

export function stateBadge(state) {
  const kinds = {
    ready: "ok", loading: "warn", failed: "bad", "not loaded": "plain",
    firing: "bad", resolved: "ok", running: "info", paused: "warn",
    succeeded: "ok", rolled_back: "bad", aborted: "plain",
    pass: "ok", fail: "bad", wait: "warn", skipped: "plain",
    critical: "bad", error: "bad", warning: "warn", info: "info",
  };
  return h("span", { class: `badge ${kinds[state] || "plain"}` }, state.replace("_", " "));
}

export function errorBox(err) {
  return h(
    "div",
    { class: "error-box", role: "alert" },
    h("strong", {}, "Could not load: "),
    err.message,
    err.hint ? h("div", { class: "muted" }, err.hint) : null,
  );
}

// -- tables -----------------------------------------------------------------------

/**
 * A table with sortable columns: headers are buttons (keyboard-operable) and carry
 * aria-sort. columns: [{key, label, value(row) for sorting, cell(row) -> content,
 * numeric}]. state: {key, dir} kept by the caller across refreshes.
 */
export function sortableTable({ caption, columns, rows, state, onSort, rowKey, empty, className }) {
  const sorted = [...rows];
  const column = columns.find((c) => c.key === state.key);
  if (column && column.value) {
    const dir = state.dir === "descending" ? -1 : 1;
    sorted.sort((a, b) => {
      const x = column.value(a);
      const y = column.value(b);
      if (x === y) return 0;
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * dir;
    });
  }
  const head = h(
    "tr",
    {},
    columns.map((c) => {
      const sort = c.key === state.key ? state.dir : "none";
      const label = c.value
        ? h(
            "button",
            {
              class: "sort",
              type: "button",
              dataset: { key: `sort-${c.key}` },
              onclick: () => onSort(c.key, sort === "ascending" ? "descending" : "ascending"),
            },
            c.label,
          )
        : c.label;
      return h("th", { scope: "col", "aria-sort": c.value ? sort : null, class: c.numeric ? "num" : null }, label);
    }),
  );
  const body = sorted.length
    ? sorted.map((row) =>
        h(
          "tr",
          { dataset: { row: rowKey(row) } },
          columns.map((c, i) =>
            h(i === 0 ? "th" : "td", { scope: i === 0 ? "row" : null, class: [c.numeric ? "num" : "", c.class || ""].join(" ").trim() || null }, c.cell(row)),
          ),
        ),
      )
    : h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, empty || "Nothing to show."));
  return h(
    "div",
    { class: "table-wrap" },
    h("table", { class: className }, caption ? h("caption", {}, caption) : null, h("thead", {}, head), h("tbody", {}, body)),
  );
}

/** A plain table from a header list and rows of cells. */
export function table(headers, rows, { caption, empty, numeric = [] } = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, headers.map((label, i) => h("th", { scope: "col", class: numeric.includes(i) ? "num" : null }, label)))),
      h(
        "tbody",
        {},
        rows.length
          ? rows.map((cells) => h("tr", {}, cells.map((cell, i) => h("td", { class: numeric.includes(i) ? "num" : null }, cell))))
          : h("tr", {}, h("td", { colspan: headers.length, class: "empty" }, empty || "Nothing to show.")),
      ),
    ),
  );
}

/** A <dl> of label/value pairs (values may be nodes); empty values are left out. */
export function facts(pairs) {
  return h(
    "dl",
    { class: "kv" },
    pairs
      .filter(([, value]) => value !== null && value !== undefined && value !== "")
      .map(([label, value]) => [h("dt", {}, label), h("dd", {}, value)]),
  );
}

export function tile(label, value, attrs = {}) {
  return h("li", { class: "tile", ...attrs }, h("span", { class: "label" }, label), h("span", { class: "value" }, value));
}
