// Figures: a uPlot chart (or a canvas) with a caption, a hover read-out (uPlot's live legend)
// and a "show as table" toggle; sized to their container, from 360 px phones to desktops.

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { h, num } from "./dom.js";

/** Okabe & Ito's colour-blind-safe palette (black last but one, yellow last: low contrast). */
export const PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"];

// Table columns that count things: shown as integers, not to four decimals.
const COUNTS = new Set(["epoch", "step", "class"]);

let firstChartMarked = false;

/** Record (once per page) when a first chart has data drawn, for bench/ui.py. */
export function markFirstChart() {
  if (firstChartMarked) return;
  firstChartMarked = true;
  performance.mark("tapeline:first-chart");
}

/**
 * A <figure> with a plot area, a caption and a table toggle. `rows()` gives the table's
 * `{columns, rows}` when it is shown (built lazily: it can be 2,000 rows).
 */
export function figure({ id, title, caption, controls = [], rows }) {
  const plot = h("div", { class: "plot", role: "img", "aria-label": `${title}: ${caption}` });
  // Scrollable, so focusable: a keyboard reaches every row.
  const tableBox = h("div", { id: `${id}-table`, class: "table-box", hidden: true, tabindex: "0", role: "region", "aria-label": `${title}, as a table` });
  const toggle = h("button", {
    type: "button", class: "link", "aria-expanded": "false", "aria-controls": `${id}-table`,
  }, "Show as table");
  const el = h("figure", { id, class: "chart", dataset: { points: "0", series: "0" } },
    h("div", { class: "chart-head" }, h("h3", {}, title), h("div", { class: "controls" }, controls)),
    plot,
    h("figcaption", {}, caption, " ", toggle),
    tableBox);
  const fill = () => {
    const { columns, rows: body } = rows();
    tableBox.replaceChildren(h("table", {},
      h("caption", {}, title),
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, body.map((r) => h("tr", {}, r.map((v, i) => h("td", {},
        typeof v === "number" && !COUNTS.has(columns[i]) ? num(v) : v ?? "–")))))));
  };
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    toggle.textContent = open ? "Hide table" : "Show as table";
    tableBox.hidden = !open;
    if (open) fill();
  });
  return { el, plot, refreshTable: () => { if (!tableBox.hidden) fill(); } };
}

function plotSize(container) {
  const width = Math.max(240, Math.floor(container.clientWidth || 600));
  return { width, height: width < 500 ? 220 : 280 };
}

/**
 * A line chart in `fig` (from `figure()`): `series` are `{label, color, dash?, points?, width?}`;
 * call `draw(x, ys)` with the x values and one array per series.
 */
export function lineChart(fig, { series, xLabel, yLabel, log = false, scatterFirst = false }) {
  let plot = null;
  let data = null;
  let logScale = log;
  const make = () => {
    plot?.destroy();
    const options = {
      ...plotSize(fig.plot),
      scales: { x: { time: false }, y: logScale ? { distr: 3 } : {} },
      axes: [{ label: xLabel }, { label: yLabel, size: 60 }],
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      series: [
        { label: xLabel, value: (_, v) => (v == null ? "–" : num(v, Number.isInteger(v) ? 0 : 3)) },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: s.color,
          width: s.width ?? 2,
          dash: s.dash,
          spanGaps: true,
          value: (_, v) => num(v),
          ...(scatterFirst && i === 0
            ? { paths: () => null, points: { show: true, size: 5, stroke: s.color, fill: s.color } }
            : { points: { show: false } }),
        })),
      ],
    };
    plot = new uPlot(options, data ?? [[], ...series.map(() => [])], fig.plot);
  };
  const resize = new ResizeObserver(() => plot?.setSize(plotSize(fig.plot)));
  resize.observe(fig.plot);
  make();
  return {
    draw(x, ys) {
      const positive = (v) => (v != null && v > 0 ? v : null);
      data = [x, ...ys.map((y) => (logScale ? y.map(positive) : y))];
      plot.setData(data);
      fig.el.dataset.points = String(x.length);
      fig.el.dataset.series = String(ys.length);
      if (x.length) markFirstChart();
      fig.refreshTable();
    },
    setLog(on) {
      logScale = on;
      make();
    },
    destroy() {
      resize.disconnect();
      plot?.destroy();
    },
  };
}
