// A run's page: status, settings, metrics, and its figures, live from the event stream.

import { ApiError, getJSON, id, postJSON, withQuery } from "../api.js";
import { annotationsPanel } from "./annotations.js";
import { PALETTE, figure, lineChart } from "../charts.js";
import { ACTIVE, duration, h, num, nums, replace, when } from "../dom.js";
import { drawRegions, forward } from "../regions.js";
import { follow } from "../stream.js";
import { BUDGET, appendRows, fromColumns, keepToBudget, norm, smooth } from "../trace.js";

const SAMPLE = 1000; // dataset rows drawn behind the predictions
// History points asked for when the page opens: a point per pixel of a wide chart (a
// 100,000-epoch run comes back as 250 buckets' extremes); live epochs add to them up to BUDGET.
const OPENING_POINTS = 1000;

function optimizerText(optimizer) {
  const { kind, ...rest } = optimizer;
  return `${kind} (${Object.entries(rest).map(([k, v]) => `${k.replaceAll("_", " ")} ${v}`).join(", ")})`;
}

function settingsList(run) {
  const items = [
    ["Optimizer", optimizerText(run.optimizer)],
    ["Epochs", run.epochs],
    ["Batch size", run.batch_size ?? "full batch"],
    ["Shuffle seed", run.shuffle_seed ?? "–"],
    ["Float type", run.dtype],
  ];
  const extra = { loss: "Loss", huber_delta: "Huber delta", regularization: "Regularization",
    validation: "Validation", early_stopping: "Early stopping", shuffle: "Shuffle" };
  for (const [field, label] of Object.entries(extra)) {
    if (run[field] != null) items.push([label, typeof run[field] === "object" ? JSON.stringify(run[field]) : run[field]]);
  }
  items.push(["Created", when(run.created_at)], ["Started", when(run.started_at)],
    ["Finished", when(run.finished_at)], ["Duration", duration(run.started_at, run.finished_at)]);
  return h("dl", { class: "settings" }, items.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
}

function isClassifier(model) {
  return model?.kind === "logistic" || (model?.kind === "mlp" && model?.task === "classification");
}

/** Render run `runId` into `main`; returns a cleanup function. */
export function runView(main, runId) {
  const stop = new AbortController();
  const charts = [];
  let run = null;
  let model = null;
  let dataset = null;
  let trace = null;
  let dataSample = null;
  let pending = false;

  const status = h("p", { class: "status-line", role: "status", "aria-live": "polite" }, "Loading…");
  const header = h("div", { class: "run-head" });
  const numbers = h("section", { "aria-labelledby": "numbers-title", class: "panel" });
  const settings = h("section", { "aria-labelledby": "settings-title", class: "panel" });
  const figures = h("div", { class: "figures" });
  replace(main, h("h2", { id: "view-title" }, "Run ", h("code", {}, runId)), header, status,
    h("div", { class: "run-grid" }, numbers, settings, annotationsPanel("runs", runId)), figures);

  // ---- loss
  const logBox = h("input", { type: "checkbox", id: "loss-log" });
  const smoothing = h("input", { type: "range", id: "loss-smooth", min: "0", max: "0.99", step: "0.01", value: "0" });
  const smoothOut = h("output", { for: "loss-smooth", id: "loss-smooth-value" }, "0.00");
  const lossFig = figure({
    id: "loss-chart",
    title: "Loss per epoch",
    caption: "Training loss (and validation loss when the run validates) at the start of each epoch; hover for values, drag to zoom, double-click to reset.",
    controls: [
      h("label", { for: "loss-log", class: "inline" }, logBox, " Log scale"),
      h("label", { for: "loss-smooth", class: "inline" }, "Smoothing ", smoothing, smoothOut),
    ],
    rows: () => ({
      columns: ["epoch", "loss", ...Object.keys(trace?.metrics ?? {})],
      rows: (trace?.x ?? []).map((x, i) => [x, trace.loss[i], ...Object.values(trace.metrics).map((m) => m[i])]),
    }),
  });
  let lossChart = null;
  let paramFig = null;
  let paramChart = null;
  let paramMode = null;
  let dataFig = null;
  let dataChart = null;

  const lossSeries = () => {
    const series = [{ label: "training loss", color: PALETTE[0] }];
    if (trace.metrics.val_loss) series.push({ label: "validation loss", color: PALETTE[1] });
    return series;
  };

  function drawLoss() {
    const wanted = lossSeries().length;
    if (!lossChart || lossChart.count !== wanted) {
      lossChart?.destroy();
      lossChart = lineChart(lossFig, { series: lossSeries(), xLabel: "epoch", yLabel: "loss", log: logBox.checked });
      lossChart.count = wanted;
    }
    const weight = Number(smoothing.value);
    const ys = [smooth(trace.loss, weight)];
    if (trace.metrics.val_loss) ys.push(smooth(trace.metrics.val_loss, weight));
    lossChart.draw(trace.x, ys);
  }
  logBox.addEventListener("change", () => { lossChart.setLog(logBox.checked); drawLoss(); });
  smoothing.addEventListener("input", () => { smoothOut.value = Number(smoothing.value).toFixed(2); drawLoss(); });

  // ---- parameters: W and b (true values dashed for the synthetic line), else norms per param
  function paramSeries() {
    if (trace.hasWb) {
      const features = [trace.W[0] ?? []].flat().length;
      const shown = Math.min(features, 6);
      const series = [];
      const truth = dataset?.synthetic && (dataset.synthetic.kind ?? "linear") === "linear" ? dataset.synthetic : null;
      for (let f = 0; f < shown; f++) series.push({ label: features > 1 ? `W[${f}]` : "W", color: PALETTE[f % 6] });
      series.push({ label: "b", color: PALETTE[shown % 6] });
      if (truth) {
        for (let f = 0; f < shown; f++) series.push({ label: features > 1 ? `true W[${f}]` : "true W", color: PALETTE[f % 6], dash: [6, 5], width: 1.5 });
        series.push({ label: "true b", color: PALETTE[shown % 6], dash: [6, 5], width: 1.5 });
      }
      const ys = () => {
        const cols = [];
        for (let f = 0; f < shown; f++) cols.push(trace.W.map((w) => [w].flat()[f]));
        cols.push(trace.b.slice());
        if (truth) {
          for (let f = 0; f < shown; f++) cols.push(trace.x.map(() => truth.true_W[f]));
          cols.push(trace.x.map(() => truth.true_b));
        }
        return cols;
      };
      return { mode: `wb${shown}${truth ? "t" : ""}`, series, ys, yLabel: "value",
        title: "W and b per epoch", caption: truth ? "The model's weights and bias at the start of each epoch; dashed: the true values the synthetic data was made with." : "The model's weights and bias at the start of each epoch." };
    }
    const names = Object.keys(trace.params);
    if (!names.length) return null;
    return { mode: `norm:${names.join(",")}`, series: names.map((n, i) => ({ label: `‖${n}‖`, color: PALETTE[i % PALETTE.length] })),
      ys: () => names.map((n) => trace.params[n].map(norm)), yLabel: "norm",
      title: "Parameter norms per epoch", caption: "The Euclidean norm of each named parameter array at the start of each epoch." };
  }

  function drawParams() {
    const spec = paramSeries();
    if (!spec) return;
    if (!paramFig) {
      paramFig = figure({ id: "params-chart", title: spec.title, caption: spec.caption, rows: () => {
        const current = paramSeries();
        const cols = current.ys();
        return { columns: ["epoch", ...current.series.map((s) => s.label)], rows: trace.x.map((x, i) => [x, ...cols.map((c) => c[i])]) };
      } });
      figures.append(paramFig.el);
    }
    if (paramMode !== spec.mode) {
      paramChart?.destroy();
      paramChart = lineChart(paramFig, { series: spec.series, xLabel: "epoch", yLabel: spec.yLabel });
      paramMode = spec.mode;
    }
    paramChart.draw(trace.x, spec.ys());
  }

  // ---- the data with predictions (one-feature regression) or decision regions
  function drawLine() {
    if (dataFig?.el.id !== "data-chart" || !dataSample || !trace.hasWb || !trace.x.length) return;
    const order = dataSample.x.map((_, i) => i).sort((a, b) => dataSample.x[a][0] - dataSample.x[b][0]);
    const xs = order.map((i) => dataSample.x[i][0]);
    const ys = order.map((i) => dataSample.y[i]);
    const first = trace.x.length ? 0 : null;
    const last = trace.x.length - 1;
    const line = (k) => xs.map((x) => x * [trace.W[k]].flat()[0] + trace.b[k]);
    const finalWb = run.final?.W && run.final.b != null ? run.final : null;
    const latest = finalWb ? xs.map((x) => x * finalWb.W[0] + finalWb.b) : line(last);
    const latestLabel = finalWb ? "predictions, final" : `predictions, epoch ${trace.x[last]}`;
    if (!dataChart) {
      dataChart = lineChart(dataFig, { scatterFirst: true, xLabel: "x", yLabel: "y", series: [
        { label: "data", color: PALETTE[0] },
        { label: `predictions, epoch ${trace.x[first]}`, color: PALETTE[1] },
        { label: latestLabel, color: PALETTE[2] },
      ] });
      dataChart.labels = latestLabel;
    }
    if (dataChart.labels !== latestLabel) {
      dataChart.destroy();
      dataChart = null;
      drawLine();
      return;
    }
    dataChart.draw(xs, [ys, line(first), latest]);
  }

  /** What the data figure shows for this model and dataset: "line", "regions" or nothing. */
  function dataKind() {
    if (!dataset) return null;
    if (dataset.features === 1 && !isClassifier(model)) return "line";
    if (dataset.features === 2 && isClassifier(model)) return "regions";
    return null;
  }

  async function setUpData(sample) {
    const kind = dataKind();
    if (!kind || !sample) return;
    dataSample = sample;
    if (kind === "line") {
      dataFig = figure({ id: "data-chart", title: "Data and predictions",
        caption: `A sample of ${dataSample.y.length} of the dataset's ${dataset.num_examples} points, with the model's predictions at the first and the latest epoch.`,
        rows: () => ({ columns: ["x", "y"], rows: dataSample.x.map((x, i) => [x[0], dataSample.y[i]]) }) });
      figures.append(dataFig.el);
      drawLine();
    } else {
      dataFig = figure({ id: "regions-chart", title: "Decision regions",
        caption: `The class the model's current parameters predict over the plane (shade: how sure), with a sample of ${dataSample.y.length} of the dataset's points.`,
        rows: () => ({ columns: ["x0", "x1", "class"], rows: dataSample.x.map((x, i) => [x[0], x[1], dataSample.y[i]]) }) });
      figures.append(dataFig.el);
      await drawRegionsNow();
    }
  }

  /** Regions of the model as it is now (/predict), or, `live`, at the latest history row. */
  async function drawRegionsNow(live = false) {
    if (dataFig?.el.id !== "regions-chart") return;
    const names = Object.keys(trace.params);
    const last = trace.x.length - 1;
    const latest = live && last >= 0 && names.length ? Object.fromEntries(names.map((n) => [n, trace.params[n][last]])) : null;
    const predict = latest ? forward(model, latest) : null;
    if (live && !predict) return;
    try {
      await drawRegions(dataFig, run.model_id, dataSample, dataset.classes ?? [], predict);
      dataFig.el.dataset.regionsOf = live ? `epoch ${trace.x[last]}` : "model";
    } catch (error) {
      replace(dataFig.plot, h("p", { class: "problem" }, `Cannot draw decision regions: ${error.message}`));
    }
  }

  // While the run trains, its regions follow the latest epoch's params, a few times a second.
  let regionsDrawnAt = 0;
  function drawRegionsLive() {
    if (!ACTIVE.includes(run.status) || performance.now() - regionsDrawnAt < 400) return;
    regionsDrawnAt = performance.now();
    drawRegionsNow(true);
  }

  // ---- numbers: parameters and metrics at the first and latest epoch (or final)
  function drawNumbers() {
    const last = trace.x.length - 1;
    const final = run.final;
    const rows = [];
    const latestName = final ? "final" : last >= 0 ? `epoch ${trace.x[last]}` : "latest";
    if (trace.hasWb || final?.W != null) {
      rows.push(["W", trace.hasWb && last >= 0 ? nums(trace.W[0]) : nums(run.initial?.W), final?.W != null ? nums(final.W) : last >= 0 ? nums(trace.W[last]) : "–", "W"]);
      rows.push(["b", trace.hasWb && last >= 0 ? num(trace.b[0]) : num(run.initial?.b), final?.b != null ? num(final.b) : last >= 0 ? num(trace.b[last]) : "–", "b"]);
    }
    rows.push(["loss", last >= 0 ? num(trace.loss[0]) : "–", final?.loss != null ? num(final.loss) : last >= 0 ? num(trace.loss[last]) : "–", "loss"]);
    const metricNames = new Set([...Object.keys(trace.metrics), ...Object.keys(final?.metrics ?? {})]);
    for (const name of metricNames) {
      const column = trace.metrics[name] ?? [];
      rows.push([name, num(column[0]), final?.metrics?.[name] != null ? num(final.metrics[name]) : num(column[last]), name]);
    }
    replace(numbers, h("h3", { id: "numbers-title" }, "Parameters and metrics"),
      h("div", { class: "table-scroll", tabindex: "0", role: "region", "aria-labelledby": "numbers-title" }, h("table", { id: "numbers" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "name"), h("th", { scope: "col" }, "first epoch"), h("th", { scope: "col" }, latestName))),
        h("tbody", {}, rows.map(([name, a, b, key]) => h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, a),
          h("td", { dataset: { latest: key } }, b)))))));
  }

  function drawHead() {
    const active = ACTIVE.includes(run.status);
    const cancel = h("button", { type: "button", id: "cancel", disabled: !active || run.status === "cancelling" }, "Cancel run");
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      try {
        run = await postJSON(`/v1/runs/${id(run.id)}/cancel`);
        drawHead();
      } catch (error) {
        status.textContent = `Cannot cancel: ${error.message}`;
      }
    });
    const progress = h("progress", { id: "run-progress", max: String(run.epochs), value: String(run.epochs_completed), "aria-label": "epochs completed" });
    const notes = [];
    if (run.error) notes.push(h("p", { class: "problem", id: "run-error" }, `${run.error.reason}: ${run.error.detail}`, run.error.epoch != null ? ` (epoch ${run.error.epoch})` : ""));
    if (run.stopped_early) notes.push(h("p", { class: "note", id: "early-stop" }, `Stopped early at epoch ${run.stopped_early.epoch}; best epoch ${run.stopped_early.best_epoch}.`));
    replace(header,
      h("p", {}, h("span", { class: `badge ${run.status}`, id: "run-status" }, run.status), " ",
        `${run.epochs_completed} of ${run.epochs} epochs `, progress),
      h("p", {}, "Model ", h("a", { href: `/ui/models/${id(run.model_id)}`, "data-link": true }, model?.name || run.model_id),
        model ? ` (${model.kind})` : "", " on dataset ", h("code", {}, dataset?.name || run.dataset_id),
        dataset ? ` (${dataset.num_examples} rows, ${dataset.features} feature${dataset.features > 1 ? "s" : ""})` : ""),
      notes, h("p", {}, cancel));
    replace(settings, h("h3", { id: "settings-title" }, "Settings"), settingsList(run));
  }

  function drawAll() {
    pending = false;
    if (stop.signal.aborted) return;
    keepToBudget(trace);
    drawHead();
    drawNumbers();
    drawLoss();
    drawParams();
    drawLine();
    drawRegionsLive();
  }

  function schedule() {
    if (!pending) {
      pending = true;
      requestAnimationFrame(drawAll);
    }
  }

  async function start() {
    // Everything the page needs is asked for at once: the history (the long answer) alongside
    // the run, then its model, dataset and the dataset's sample as soon as the run names them.
    const signal = stop.signal;
    const historyAnswer = getJSON(withQuery(`/v1/runs/${id(runId)}/history`, { format: "columns", max_points: OPENING_POINTS }), { signal });
    historyAnswer.catch(() => {});
    run = await getJSON(`/v1/runs/${id(runId)}`, { signal });
    const datasetAnswer = getJSON(`/v1/datasets/${id(run.dataset_id)}`, { signal }).catch(() => null);
    const context = Promise.all([getJSON(`/v1/models/${id(run.model_id)}`, { signal }).catch(() => null), datasetAnswer]);
    // The sample is asked for as soon as the dataset says it has one or two features (the
    // model, asked for meanwhile, then decides which figure it makes).
    const sample = datasetAnswer.then((d) => (d && (d.features === 1 || d.features === 2)
      ? getJSON(withQuery(`/v1/datasets/${id(d.id)}/data`, { sample: SAMPLE }), { signal }) : null));
    sample.catch(() => {});
    trace = fromColumns(await historyAnswer);
    // The history was asked for before the run: if the run ended in between, it may lack the
    // last epochs, and an ended run is not followed, so ask again for the whole of it.
    const lastSeen = trace.x.length ? trace.x[trace.x.length - 1] : -1;
    if (!ACTIVE.includes(run.status) && lastSeen < run.epochs_completed - 1) {
      trace = fromColumns(await getJSON(withQuery(`/v1/runs/${id(runId)}/history`, { format: "columns", max_points: OPENING_POINTS }), { signal }));
    }
    figures.append(lossFig.el);
    drawLoss();
    [model, dataset] = await context;
    drawAll();
    status.textContent = ACTIVE.includes(run.status) ? "Following the run live…" : `The run ${run.status}.`;
    await setUpData(await sample);
    if (ACTIVE.includes(run.status)) {
      await follow(runId, {
        after: trace.x.length ? trace.x[trace.x.length - 1] : -1,
        signal: stop.signal,
        onState: (state) => { status.textContent = state === "live" ? "Following the run live…" : "Connection lost; reconnecting…"; },
        onEpochs: (rows) => {
          appendRows(trace, rows);
          run.epochs_completed = rows[rows.length - 1].epoch + 1;
          if (run.status === "queued") run.status = "running";
          schedule();
        },
        onEnd: (final) => {
          run = final;
          status.textContent = `The run ${run.status}.`;
          schedule();
        },
      });
      if (stop.signal.aborted) return;
      model = await getJSON(`/v1/models/${id(run.model_id)}`).catch(() => model);
      await drawRegionsNow();
    }
    drawAll();
    main.dataset.state = "drawn";
    performance.mark("tapeline:drawn");
  }

  main.dataset.state = "loading";
  start().catch((error) => {
    if (stop.signal.aborted) return;
    status.textContent = error instanceof ApiError ? `Error ${error.status}: ${error.message}` : `Error: ${error.message}`;
    status.classList.add("problem");
  });

  return () => {
    stop.abort();
    for (const chart of [lossChart, paramChart, dataChart, ...charts]) chart?.destroy();
  };
}
