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
  return { width, height: width < 500 ? 160 : 260 };
}

// Tick steps of a count axis (epochs, steps): whole numbers only, never 2.5 or 7.5.
const WHOLE_STEPS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000,
  1e4, 2e4, 2.5e4, 5e4, 1e5, 2e5, 2.5e5, 5e5, 1e6, 2e6, 5e6, 1e7];

/**
 * A line chart in `fig` (from `figure()`): `series` are `{label, color, dash?, points?, width?}`;
 * call `draw(x, ys, final)` with the x values, one array per series and, when the last x is
 * the run's final state, its index: that point is drawn as a marker on every solid line and
 * its x read "(final)" (or an array, one index or null per series: runs that end apart).
 * `whole`: the x axis counts (epochs), its ticks whole numbers.
 */
export function lineChart(fig, { series, xLabel, yLabel, log = false, scatterFirst = false, whole = false }) {
  let plot = null;
  let data = null;
  let logScale = log;
  let finalIndex = null;
  const finalIndices = () => (Array.isArray(finalIndex) ? finalIndex : [finalIndex]);
  const finalOf = (i) => (Array.isArray(finalIndex) ? finalIndex[i] ?? null : finalIndex);
  const xValue = (v) => {
    if (v == null) return "–";
    const text = num(v, Number.isInteger(v) ? 0 : 3);
    const finals = finalIndices();
    return data && finals.some((i) => i != null && v === data[0][i]) ? `${text} (final)` : text;
  };
  const make = () => {
    plot?.destroy();
    const size = plotSize(fig.plot);
    // A phone's axes: smaller type and less room, so the plot keeps the height.
    const small = size.width < 500 ? { font: "11px system-ui, sans-serif", labelFont: "bold 11px system-ui, sans-serif", labelSize: 16, gap: 3 } : {};
    const options = {
      ...size,
      scales: { x: { time: false }, y: logScale ? { distr: 3 } : {} },
      axes: [{ label: xLabel, ...small, ...(small.font ? { size: 26 } : {}),
        ...(whole ? { incrs: WHOLE_STEPS, values: (_, ticks) => ticks.map((t) => String(t)) } : {}) },
      { label: yLabel, ...small, size: small.font ? 44 : 60 }],
      legend: {
        live: true,
        // A dashed series' marker is an outline with a dashed edge, not a filled square.
        markers: { dash: (u, i) => (u.series[i].dash ? "dashed" : "solid"),
          fill: (u, i) => (u.series[i].dash ? "transparent" : u.series[i].stroke(u, i)) },
      },
      cursor: { drag: { x: true, y: false } },
      // The x axis's tick labels, as drawn, on the figure (for readers of the DOM and tests).
      hooks: { draw: [(u) => { fig.el.dataset.xTicks = (u.axes[0]._values ?? []).join(","); }] },
      series: [
        { label: xLabel, value: (_, v) => xValue(v) },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: s.color,
          width: s.width ?? 2,
          dash: s.dash,
          spanGaps: true,
          value: (_, v) => num(v),
          ...(scatterFirst && i === 0
            ? { paths: () => null, points: { show: true, size: 5, stroke: s.color, fill: s.color } }
            : { points: { show: false, size: 10, width: 2.5, fill: "#ffffff",
              filter: () => (finalOf(i) != null && !s.dash ? [finalOf(i)] : null) } }),
        })),
      ],
    };
    plot = new uPlot(options, data ?? [[], ...series.map(() => [])], fig.plot);
  };
  const resize = new ResizeObserver(() => plot?.setSize(plotSize(fig.plot)));
  resize.observe(fig.plot);
  make();
  return {
    draw(x, ys, final = null) {
      const positive = (v) => (v != null && v > 0 ? v : null);
      finalIndex = final;
      data = [x, ...ys.map((y) => (logScale ? y.map(positive) : y))];
      plot.setData(data);
      fig.el.dataset.points = String(x.length);
      fig.el.dataset.series = String(ys.length);
      const marked = (Array.isArray(final) ? final : [final]).filter((i) => i != null);
      if (marked.length) fig.el.dataset.final = marked.map((i) => x[i]).join(",");
      else delete fig.el.dataset.final;
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
