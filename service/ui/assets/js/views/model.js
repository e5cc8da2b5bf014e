// A model's page: its parameters, its history across runs, and its runs' loss curves overlaid
// (each ending with its run's final state); the model's file, and deleting it.

import uPlot from "../../vendor/uplot/uPlot.esm.js";
import { getJSON, id, remove, withQuery } from "../api.js";
import { saveModel } from "../downloads.js";
import { annotationsPanel } from "./annotations.js";
import { PALETTE, figure, lineChart } from "../charts.js";
import { ACTIVE, duration, h, num, nums, replace, when } from "../dom.js";
import { BUDGET, fromColumns } from "../trace.js";

const MOST_COMPARED = 6;

/** The run's final value of measure `name`, after its last epoch. */
function finalValue(run, name) {
  if (!run.final || ACTIVE.includes(run.status)) return null;
  return name === "loss" ? run.final.loss : run.final.metrics?.[name] ?? null;
}

/** Render model `modelId` into `main`; returns a cleanup function. */
export function modelView(main, modelId, go) {
  const stop = new AbortController();
  const charts = [];
  const status = h("p", { class: "status-line", role: "status", "aria-live": "polite" }, "Loading…");
  const info = h("section", { class: "panel", "aria-labelledby": "model-info-title" });
  const runsBox = h("section", { class: "panel", "aria-labelledby": "model-runs-title" });
  const figures = h("div", { class: "figures" });
  replace(main, h("h2", { id: "view-title" }, "Model ", h("code", {}, modelId)), status, info,
    annotationsPanel("models", modelId), runsBox, figures);

  let compareFig = null;
  let compareChart = null;
  let compared = [];
  // What the comparison overlays: the training loss or any metric the runs recorded.
  const measure = h("select", { id: "compare-measure" }, h("option", { value: "loss" }, "loss"));
  measure.addEventListener("change", () => drawCompare());

  const column = (trace, name) => (name === "loss" ? trace.loss : trace.metrics[name] ?? trace.x.map(() => null));

  function offerMeasures() {
    const names = new Set(compared.flatMap(({ trace }) => Object.keys(trace.metrics)));
    const wanted = ["loss", ...[...names].sort()];
    const current = measure.value;
    measure.replaceChildren(...wanted.map((name) => h("option", { value: name, selected: name === current }, name)));
    if (!wanted.includes(current)) measure.value = "loss";
  }

  /** A run's epochs and values of `name`, with its final state after the last epoch. */
  function curve({ run, trace }, name) {
    const values = column(trace, name);
    const last = trace.x[trace.x.length - 1] ?? -1;
    const end = finalValue(run, name);
    if (end == null || run.epochs_completed <= last) return [trace.x, values];
    return [[...trace.x, run.epochs_completed], [...values, end]];
  }

  function drawCompare() {
    const name = measure.value;
    compareChart?.destroy();
    compareChart = lineChart(compareFig, { xLabel: "epoch", yLabel: name, whole: true,
      series: compared.map(({ run }, i) => ({ label: run.id, color: PALETTE[i % PALETTE.length] })) });
    const joined = uPlot.join(compared.map((one) => curve(one, name)));
    compareChart.draw(joined[0], joined.slice(1));
    compareFig.el.dataset.measure = name;
  }

  async function compare(runs) {
    const each = Math.floor(BUDGET / runs.length);
    const traces = await Promise.all(runs.map((run) => getJSON(withQuery(`/v1/runs/${id(run.id)}/history`, { format: "columns", max_points: each }), { signal: stop.signal }).then((c) => fromColumns(c))));
    compared = runs.map((run, i) => ({ run, trace: traces[i] }));
    if (!compareFig) {
      compareFig = figure({ id: "compare-chart", title: "Runs compared",
        caption: "The chosen measure (training loss by default; accuracy and the other metrics the runs recorded) of each selected run at the start of each epoch, and last its final model's, overlaid; hover for values.",
        controls: [h("label", { for: "compare-measure", class: "inline" }, "Measure ", measure)],
        rows: () => {
          const name = measure.value;
          return { columns: ["run", "epoch", name], rows: compared.flatMap((one) => {
            const [xs, values] = curve(one, name);
            return xs.map((x, i) => [one.run.id, i >= one.trace.x.length ? `${x} (final)` : x, values[i]]);
          }) };
        } });
      figures.prepend(compareFig.el);
    }
    offerMeasures();
    drawCompare();
  }

  async function start() {
    const [model, runs, history] = await Promise.all([
      getJSON(`/v1/models/${id(modelId)}`, { signal: stop.signal }),
      getJSON(withQuery(`/v1/models/${id(modelId)}/runs`, { order: "newest", limit: 100 }), { signal: stop.signal }),
      getJSON(withQuery(`/v1/models/${id(modelId)}/history`, { format: "columns", max_points: BUDGET }), { signal: stop.signal }),
    ]);
    const facts = [["Name", model.name || "–"], ["Kind", model.kind], ["Features", model.features],
      ["Epochs trained", model.epochs_trained], ["Last loss", num(model.last_loss)], ["Status", model.status],
      ["Created", when(model.created_at)], ["Updated", when(model.updated_at)]];
    if (model.W != null) facts.splice(3, 0, ["W", nums(model.W)], ["b", num(model.b)]);
    if (model.param_count != null) facts.splice(3, 0, ["Parameters", model.param_count]);
    const format = h("select", { id: "model-format", "aria-label": "model file format" },
      ["onnx", "safetensors", "json"].map((f) => h("option", { value: f }, f === "onnx" ? "ONNX" : f === "json" ? "JSON" : f)));
    const download = h("button", { type: "button", class: "secondary", id: "download-model" }, "Model file");
    download.addEventListener("click", () => saveModel(modelId, format.value).catch((error) => { status.textContent = `Cannot download: ${error.message}`; }));
    const del = h("button", { type: "button", class: "danger", id: "delete-model" }, "Delete model");
    del.addEventListener("click", async () => {
      if (!window.confirm(`Delete model ${model.name || modelId} and its runs?`)) return;
      try {
        await remove(`/v1/models/${id(modelId)}`);
        go("/ui/");
      } catch (error) {
        status.textContent = `Cannot delete: ${error.message}`;
      }
    });
    replace(info, h("h3", { id: "model-info-title" }, "Model"),
      h("dl", { class: "settings" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])),
      h("p", { class: "actions" }, h("span", { class: "joined" }, download, format), del));

    const boxes = runs.items.map((run, i) => h("input", { type: "checkbox", id: `pick-${run.id}`, value: run.id, checked: i < 2 }));
    const button = h("button", { type: "button", id: "compare" }, "Compare selected runs");
    const note = h("p", { class: "note", role: "status" });
    button.addEventListener("click", async () => {
      const picked = runs.items.filter((_, i) => boxes[i].checked);
      if (!picked.length || picked.length > MOST_COMPARED) {
        note.textContent = `Select between 1 and ${MOST_COMPARED} runs.`;
        return;
      }
      note.textContent = "";
      await compare(picked).catch((error) => { note.textContent = `Cannot compare: ${error.message}`; });
    });
    replace(runsBox, h("h3", { id: "model-runs-title" }, "Runs"),
      runs.items.length ? h("div", { class: "table-scroll", tabindex: "0", role: "region", "aria-label": "Runs of this model" }, h("table", { class: "runs" },
        h("thead", {}, h("tr", {}, ["Compare", "Run", "Status", "Epochs", "Final loss", "Created", "Duration"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, runs.items.map((run, i) => h("tr", {},
          h("td", {}, h("label", { for: boxes[i].id, class: "visually-hidden" }, `compare ${run.id}`), boxes[i]),
          h("td", {}, h("a", { href: `/ui/runs/${id(run.id)}`, "data-link": true }, h("code", {}, run.id))),
          h("td", {}, h("span", { class: `badge ${run.status}` }, run.status)),
          h("td", {}, `${run.epochs_completed}/${run.epochs}`),
          h("td", {}, num(run.final?.loss)),
          h("td", {}, when(run.created_at)),
          h("td", {}, duration(run.started_at, run.finished_at))))))) : h("p", {}, "No runs yet."),
      runs.items.length ? h("p", {}, button) : null, note);

    if (history.loss.length) {
      const trace = fromColumns(history, "step");
      const fig = figure({ id: "model-history-chart", title: "Loss across all runs",
        caption: "The training loss of every epoch of every run of this model, in order (step numbers them across runs).",
        rows: () => ({ columns: ["step", "loss"], rows: trace.x.map((x, i) => [x, trace.loss[i]]) }) });
      figures.append(fig.el);
      const chart = lineChart(fig, { xLabel: "step", yLabel: "loss", series: [{ label: "training loss", color: PALETTE[0] }] });
      chart.draw(trace.x, [trace.loss]);
      charts.push(chart);
    }
    status.textContent = `${runs.items.length} run${runs.items.length === 1 ? "" : "s"}.`;
    if (runs.items.length >= 2) await compare(runs.items.slice(0, 2));
    main.dataset.state = "drawn";
  }

  main.dataset.state = "loading";
  start().catch((error) => {
    if (!stop.signal.aborted) status.textContent = `Error: ${error.message}`;
  });
  return () => {
    stop.abort();
    for (const chart of [...charts, compareChart]) chart?.destroy();
  };
}
