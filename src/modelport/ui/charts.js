// Charts: time series drawn by the vendored uPlot (vendor/uPlot.iife.min.js, loaded
// before the modules as a global), and sparklines drawn on a bare canvas. Colours come
// from the stylesheet's variables, so light and dark mode apply to charts too.

import { h, missing } from "./dom.js";

const PALETTE = ["--s1", "--s2", "--s3", "--s4", "--s5", "--s6", "--s7", "--s8"];

export function cssColor(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

export function seriesColor(i) {
  return cssColor(PALETTE[i % PALETTE.length]);
}

const CLOCK = new Intl.DateTimeFormat(undefined, {
  month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const SECONDS = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const MINUTES = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const DAY_MINUTES = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
const DAYS = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

/** Tick labels as precise as the spacing between ticks needs, in local time. */
function timeTicks(u, splits, axisIdx, space, incr) {
  const range = u.scales.x.max - u.scales.x.min;
  const format = incr >= 86400 ? DAYS : range > 86400 ? DAY_MINUTES : incr < 60 ? SECONDS : MINUTES;
  return splits.map((t) => format.format(new Date(t * 1000)));
}

/** At least a minute wide, so a moment alone or a few seconds do not span a decade. */
function timeRange(u, min, max) {
  const short = 60 - (max - min);
  return short > 0 ? [min - short / 2, max + short / 2] : [min, max];
}

function hasLoneValue(values) {
  const absent = (i) => i < 0 || i >= values.length || values[i] === null || values[i] === undefined;
  return values.some((v, i) => !absent(i) && absent(i - 1) && absent(i + 1));
}

/** Tick spacings: whole seconds and up, so no two ticks read the same. */
const TIME_INCRS = [
  1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
  86400, 172800, 604800, 2592000,
];

/**
 * Vertical lines at moments (an incident's start) and horizontal ones at thresholds,
 * labelled, drawn under the series.
 */
function guidesPlugin(markers, thresholds) {
  return {
    hooks: {
      drawAxes: [
        (u) => {
          const { ctx, bbox } = u;
          const color = cssColor("--threshold");
          for (const line of thresholds) {
            const y = Math.round(u.valToPos(line.value, "y", true));
            ctx.save();
            ctx.strokeStyle = color;
            ctx.fillStyle = color;
            ctx.lineWidth = 2 * devicePixelRatio;
            ctx.setLineDash([8 * devicePixelRatio, 5 * devicePixelRatio]);
            ctx.beginPath();
            ctx.moveTo(bbox.left, y);
            ctx.lineTo(bbox.left + bbox.width, y);
            ctx.stroke();
            ctx.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
            ctx.textAlign = "right";
            ctx.fillText(line.label, bbox.left + bbox.width - 4 * devicePixelRatio, y - 5 * devicePixelRatio);
            ctx.restore();
          }
          for (const marker of markers) {
            const x = Math.round(u.valToPos(marker.at, "x", true));
            if (x < bbox.left || x > bbox.left + bbox.width) continue;
            ctx.save();
            ctx.strokeStyle = color;
            ctx.fillStyle = color;
            ctx.lineWidth = 2 * devicePixelRatio;
            ctx.setLineDash([5 * devicePixelRatio, 4 * devicePixelRatio]);
            ctx.beginPath();
            ctx.moveTo(x, bbox.top);
            ctx.lineTo(x, bbox.top + bbox.height);
            ctx.stroke();
            ctx.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
            const width = ctx.measureText(marker.label).width;
            const left = x + width + 8 * devicePixelRatio > bbox.left + bbox.width;
            ctx.fillText(marker.label, left ? x - width - 4 * devicePixelRatio : x + 4 * devicePixelRatio, bbox.top + 12 * devicePixelRatio);
            ctx.restore();
          }
        },
      ],
    },
  };
}

/**
 * A figure with a title, a caption, a uPlot time chart (x: time, y: `unit`, a legend
 * with every series) and a data table for keyboard and screen-reader users.
 *
 * spec: {key, title, caption, unit, times: [unix s], series: [{label, values, dash, color}],
 *        table: more series for the data table only, format(v) -> text,
 *        markers: [{at, label}], thresholds: [{value, label}], range: [from, to] (unix s;
 *        default: the times'), height}
 * Returns {element, destroy}.
 */
export function timeChart(spec) {
  const format = spec.format || ((v) => String(v));
  const thresholds = spec.thresholds || [];
  const area = h("div", { class: "chart-area", "aria-hidden": "true" });
  const tableSlot = h("div");
  const details = h(
    "details",
    {
      dataset: { key: `table-${spec.key}` },
      ontoggle: () => {
        if (details.open && !tableSlot.firstChild) tableSlot.append(dataTable(spec, format));
      },
    },
    h("summary", {}, "Data table"),
    tableSlot,
  );
  const figure = h(
    "figure",
    { class: "chart", dataset: { chart: spec.key } },
    h(
      "figcaption",
      {},
      h("h3", {}, spec.title, h("span", { class: "unit" }, ` · ${spec.unit} over time`)),
      spec.caption ? h("p", {}, spec.caption) : null,
    ),
    area,
    details,
  );
  const fg = cssColor("--fg");
  const grid = cssColor("--grid");
  const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
  const opts = {
    width: 600,
    height: spec.height || 220,
    padding: [null, 28, null, null], // room for the last time label on the right
    scales: {
      x: { time: true, range: spec.range ? () => spec.range : timeRange },
      y: {
        range: (u, min, max) => {
          const top = Math.max(max ?? 0, ...thresholds.map((t) => t.value));
          return [Math.min(0, min ?? 0), top > 0 ? top * 1.15 : 1];
        },
      },
    },
    axes: [
      { ...axis, space: 70, incrs: TIME_INCRS, values: timeTicks },
      {
        ...axis,
        label: spec.unit,
        labelSize: 22,
        size: 64,
        values: (u, splits) => splits.map((v) => format(v)),
      },
    ],
    series: [
      { value: (u, v) => (v === null ? missing : CLOCK.format(new Date(v * 1000))) },
      ...spec.series.map((s, i) => ({
        label: s.label,
        stroke: s.color || seriesColor(i),
        width: 2,
        dash: s.dash,
        spanGaps: false,
        // A value alone between gaps draws no line: show it as a point.
        ...(hasLoneValue(s.values) ? { points: { show: true, size: 7 } } : {}),
        value: (u, v) => (v === null || v === undefined ? missing : format(v)),
      })),
    ],
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
    plugins: [guidesPlugin(spec.markers || [], thresholds)],
  };
  const data = [spec.times, ...spec.series.map((s) => s.values)];
  const plot = new window.uPlot(opts, data, area);
  const observer = new ResizeObserver(() => {
    const width = Math.floor(area.clientWidth);
    if (width > 0 && width !== plot.width) plot.setSize({ width, height: opts.height });
  });
  observer.observe(area);
  return {
    element: figure,
    destroy() {
      observer.disconnect();
      plot.destroy();
    },
  };
}

function dataTable(spec, format) {
  const columns = [...spec.series, ...(spec.table || [])];
  const rows = spec.times.map((t, i) =>
    h(
      "tr",
      {},
      h("th", { scope: "row" }, CLOCK.format(new Date(t * 1000))),
      columns.map((s) => h("td", { class: "num" }, s.values[i] === null ? missing : format(s.values[i]))),
    ),
  );
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("caption", {}, `${spec.title} (${spec.unit})`),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "time"), columns.map((s) => h("th", { scope: "col", class: "num" }, s.label)))),
      h("tbody", {}, rows),
    ),
  );
}

/**
 * A small line of the values (nulls leave gaps) on a canvas, no axes: an overview's
 * trend at a glance. `label` is what a screen reader hears instead.
 */
export function sparkline(values, { label, color = cssColor("--s1"), width = 120, height = 26 } = {}) {
  const ratio = window.devicePixelRatio || 1;
  const canvas = h("canvas", {
    class: "spark",
    width: Math.round(width * ratio),
    height: Math.round(height * ratio),
    role: "img",
    "aria-label": label,
  });
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  const numbers = values.filter((v) => v !== null && v !== undefined);
  if (!numbers.length) return canvas;
  const max = Math.max(...numbers) || 1;
  const step = values.length > 1 ? (width - 2) / (values.length - 1) : 0;
  ctx.scale(ratio, ratio);
  ctx.strokeStyle = cssColor("--grid");
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(0, height - 1.5);
  ctx.lineTo(width, height - 1.5);
  ctx.stroke();
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.5;
  ctx.lineJoin = "round";
  ctx.fillStyle = color;
  ctx.beginPath();
  const absent = (i) => i < 0 || i >= values.length || values[i] === null || values[i] === undefined;
  values.forEach((v, i) => {
    if (absent(i)) return;
    const x = 1 + i * step;
    const y = height - 2 - (v / max) * (height - 5);
    if (absent(i - 1)) {
      ctx.moveTo(x, y);
      if (absent(i + 1)) ctx.fillRect(x - 1.25, y - 1.25, 2.5, 2.5); // a lone value: a dot
    } else {
      ctx.lineTo(x, y);
    }
  });
  ctx.stroke();
  return canvas;
}
