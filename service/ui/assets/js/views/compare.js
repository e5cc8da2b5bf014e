// The compare page: runs from any models side by side (/ui/compare?ids=a,b,c&metric=val_loss).
// An overlay of one metric per epoch (legends by run name, then id), a table of only the
// settings that differ (or every field), and a parallel-coordinates chart of the differing
// hyperparameters against the chosen metric's final value, brushed axis by axis.

import uPlot from "../../vendor/uplot/uPlot.esm.js";
import { getJSON, id, withQuery } from "../api.js";
import { PALETTE, figure, lineChart } from "../charts.js";
import { h, replace } from "../dom.js";
import { shown } from "../fields.js";
import { legend, parallelCoordinates } from "../parcoords.js";

const MOST_AXES = 12;

/** How a run is named in legends: its name, then its id. */
export function runLabel(run) {
  return run.name ? `${run.name} · ${run.id}` : run.id;
}

function readState() {
  const query = new URLSearchParams(location.search);
  return {
    ids: (query.get("ids") ?? "").split(",").map((s) => s.trim()).filter(Boolean),
    metric: query.get("metric") ?? "",
    all: query.get("fields") === "all",
  };
}

function writeState(state) {
  const query = new URLSearchParams({ ids: state.ids.join(",") });
  if (state.metric) query.set("metric", state.metric);
  if (state.all) query.set("fields", "all");
  history.replaceState(null, "", `/ui/compare?${query}`);
}

/** Render the compare page into `main`; returns a cleanup function. */
export function compareView(main) {
  const stop = new AbortController();
  const state = readState();
  const status = h("p", { class: "status-line", role: "status", "aria-live": "polite" }, "Loading…");
  const who = h("section", { class: "panel", "aria-labelledby": "compared-title" });
  const tableBox = h("section", { class: "panel", "aria-labelledby": "diff-title" });
  const figures = h("div", { class: "figures" });
  replace(main, h("h2", { id: "view-title" }, "Compare runs"), status, who, figures, tableBox);
  let overlay = null;

  if (state.ids.length < 2) {
    status.textContent = "Pick two or more runs on the runs list to compare them.";
    return () => stop.abort();
  }

  const metricSelect = h("select", { id: "compare-metric" });
  const allBox = h("input", { type: "checkbox", id: "compare-all", checked: state.all });

  async function start() {
    const comparison = await getJSON(withQuery("/v1/runs/compare", { ids: state.ids.join(",") }), { signal: stop.signal });
    const runs = comparison.runs;
    const items = runs.map((run, i) => ({ id: run.id, label: runLabel(run), color: PALETTE[i % PALETTE.length] }));
    const metrics = ["loss", ...comparison.fields.filter((f) => f.startsWith("metrics.") && f !== "metrics.loss").map((f) => f.slice(8))];
    if (!metrics.includes(state.metric)) state.metric = metrics.includes("val_loss") ? "val_loss" : "loss";
    metricSelect.replaceChildren(...metrics.map((m) => h("option", { value: m, selected: m === state.metric }, m)));

    replace(who, h("h3", { id: "compared-title" }, `${runs.length} runs`),
      h("ul", { class: "pc-legend" }, runs.map((run, i) => {
        const swatch = h("span", { class: "pc-swatch", "aria-hidden": "true" });
        swatch.style.background = items[i].color;
        return h("li", { dataset: { run: run.id } }, swatch, " ",
          h("a", { href: `/ui/runs/${id(run.id)}`, "data-link": true }, items[i].label),
          ` — ${run.status}, model `, h("a", { href: `/ui/models/${id(run.model_id)}`, "data-link": true }, run.model_name || run.model_id));
      })));

    // ---- the overlay of one metric per epoch
    const fig = figure({ id: "compare-overlay", title: "Metric per epoch",
      caption: "The chosen metric at the start of each epoch of each run (from any models), overlaid; the ring is each ended run's final model. Hover for values.",
      controls: [h("label", { for: "compare-metric", class: "inline" }, "Metric ", metricSelect)],
      rows: () => ({ columns: ["run", "epoch", state.metric], rows: (overlay?.series ?? []).flatMap((s) => s.epoch.map((e, i) => [s.label, e, s.values[i]])) }) });
    figures.append(fig.el);

    // ---- parallel coordinates
    const pcBox = h("div", { class: "pc-box" });
    const pcNote = h("p", { class: "note", id: "parcoords-note", role: "status" });
    const clear = h("button", { type: "button", class: "link", id: "parcoords-clear" }, "Clear brushes");
    const pcFig = h("figure", { id: "parcoords", class: "chart" },
      h("div", { class: "chart-head" }, h("h3", {}, "Hyperparameters against the metric"), h("div", { class: "controls" }, clear)),
      pcBox, h("figcaption", {}, "One axis per hyperparameter that differs, the chosen metric's final value last; one line per run. Drag along an axis to keep only the runs in that range; click an axis to clear it. ", pcNote),
      legend(items));
    figures.append(pcFig);
    let chart = null;

    function drawParcoords() {
      const hyper = comparison.differing.filter((f) => f.startsWith("model.") || f.startsWith("params.")).slice(0, MOST_AXES);
      const dimensions = [...hyper, `metrics.${state.metric}`].map((field) => ({
        field, label: field.replace(/^params\.(optimizer\.)?/, "").replace(/^metrics\./, ""),
        values: runs.map((run) => run.values[field]),
      }));
      chart = parallelCoordinates(pcBox, { items, dimensions, onBrush: (ids) => {
        pcNote.textContent = `${ids.length} of ${items.length} runs in the brushed ranges.`;
      } });
    }
    clear.addEventListener("click", () => chart?.clear());

    async function drawOverlay() {
      const answer = await getJSON(withQuery("/v1/runs/compare/history", { ids: state.ids.join(","), metric: state.metric, max_points: 1000 }), { signal: stop.signal });
      overlay?.chart.destroy();
      const series = answer.runs.map((s, i) => ({ ...s, label: items[i].label }));
      const plot = lineChart(fig, { xLabel: "epoch", yLabel: state.metric,
        series: items.map((item) => ({ label: item.label, color: item.color })) });
      // Each ended run's trajectory ends with its final model, after its last epoch, ringed.
      const joined = uPlot.join(series.map((s) => (s.final
        ? [[...s.epoch, s.final.epoch], [...s.values, s.final.value]] : [s.epoch, s.values])));
      const finals = series.map((s) => (s.final ? joined[0].indexOf(s.final.epoch) : null));
      plot.draw(joined[0], joined.slice(1), finals);
      fig.el.dataset.metric = state.metric;
      overlay = { chart: plot, series };
    }

    function drawTable() {
      const fields = allBox.checked ? comparison.fields : comparison.differing;
      replace(tableBox, h("h3", { id: "diff-title" }, allBox.checked ? "Every field" : "What differs"),
        h("p", {}, h("label", { for: "compare-all", class: "inline" }, allBox, " Show every field, not only those that differ")),
        fields.length ? h("div", { class: "table-scroll", tabindex: "0", role: "region", "aria-labelledby": "diff-title" },
          h("table", { id: "compare-table" },
            h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "field"), items.map((item) => h("th", { scope: "col" }, item.label)))),
            h("tbody", {}, fields.map((field) => h("tr", { dataset: { field, differs: String(comparison.differing.includes(field)) } },
              h("th", { scope: "row" }, field), runs.map((run) => h("td", {}, shown(run.values[field])))))))) : h("p", {}, "Every field is the same in these runs."));
    }

    metricSelect.addEventListener("change", () => {
      state.metric = metricSelect.value;
      writeState(state);
      drawOverlay().catch((error) => { status.textContent = `Error: ${error.message}`; });
      drawParcoords();
    });
    allBox.addEventListener("change", () => {
      state.all = allBox.checked;
      writeState(state);
      drawTable();
    });
    writeState(state);
    drawTable();
    drawParcoords();
    await drawOverlay();
    status.textContent = `${runs.length} runs from ${new Set(runs.map((r) => r.model_id)).size} models; ${comparison.differing.length} fields differ.`;
    main.dataset.state = "drawn";
  }

  main.dataset.state = "loading";
  start().catch((error) => {
    if (!stop.signal.aborted) status.textContent = `Error: ${error.message}`;
  });
  return () => {
    stop.abort();
    overlay?.chart.destroy();
  };
}
