// A run's page: its status and actions, then its figures (loss, W and b or parameter norms,
// the data), then its numbers and settings in words, live from the event stream. Every chart
// of the run's trajectory ends with the run's final state, drawn as a marker and marked final.

import { ApiError, getJSON, id, postJSON, withQuery } from "../api.js";
import { annotationsPanel } from "./annotations.js";
import { PALETTE, figure, lineChart } from "../charts.js";
import { ACTIVE, OPEN, duration, h, num, nums, replace, when } from "../dom.js";
import { saveHistory, saveModel } from "../downloads.js";
import { drawRegions, forward } from "../regions.js";
import { settingsWords } from "../settings.js";
import { follow } from "../stream.js";
import { BUDGET, appendRows, fromColumns, keepToBudget, lastWithParams, norm, smooth } from "../trace.js";

const SAMPLE = 1000; // dataset rows drawn behind the predictions
// History points asked for when the page opens: a point per pixel of a wide chart (a
// 100,000-epoch run comes back as 250 buckets' extremes); live epochs add to them up to BUDGET.
const OPENING_POINTS = 1000;

function settingsList(run, dataset) {
  const items = [...settingsWords(run, dataset),
    ["Created", when(run.created_at)], ["Started", when(run.started_at)],
    ["Finished", when(run.finished_at)], ["Duration", duration(run.started_at, run.finished_at)]];
  return h("dl", { class: "settings", id: "settings" }, items.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
}

/** How long the rest of a running run should take, from its pace since `since` (the time
 * and epochs done when it started, or when the page first saw it train). */
function eta(run, since) {
  const done = run.epochs_completed - since.epochs;
  if (run.status !== "running" || done <= 0) return null;
  const left = ((Date.now() - since.time) / done) * (run.epochs - run.epochs_completed);
  return duration(new Date(Date.now() - left).toISOString(), new Date().toISOString());
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

  let datasetGone = false;
  let pace = null; // where the ETA's pace is measured from
  let pausing = false; // a pause was asked for while the run trained: it pauses at the epoch's end

  const status = h("p", { class: "status-line", role: "status", "aria-live": "polite" }, "Loading…");
  const stateLine = h("p", { class: "run-state" });
  const context = h("p", { class: "run-context" });
  const notes = h("div", {});
  const actions = h("p", { class: "actions" });
  const header = h("div", { class: "run-head" }, stateLine, context, notes);
  const numbers = h("section", { "aria-labelledby": "numbers-title", class: "panel" });
  const settings = h("section", { "aria-labelledby": "settings-title", class: "panel" });
  // One slot per figure, in a fixed order, however fast each one's data comes.
  const lossSlot = h("div", { class: "slot" });
  const paramSlot = h("div", { class: "slot" });
  const dataSlot = h("div", { class: "slot" });
  const figures = h("div", { class: "figures" }, lossSlot, paramSlot, dataSlot);
  replace(main, h("div", { class: "run-view" }, h("h2", { id: "view-title" }, "Run ", h("code", {}, runId)),
    header, actions, status, figures,
    h("div", { class: "run-grid" }, numbers, settings, annotationsPanel("runs", runId))));
  /** Say how the page follows the run; an ended run's status is the badge's, so only read. */
  const announce = (text, shown = true) => {
    status.textContent = text;
    status.classList.toggle("visually-hidden", !shown);
  };

  // ---- loss
  const logBox = h("input", { type: "checkbox", id: "loss-log" });
  const smoothing = h("input", { type: "range", id: "loss-smooth", min: "0", max: "0.99", step: "0.01", value: "0" });
  const smoothOut = h("output", { for: "loss-smooth", id: "loss-smooth-value" }, "0.00");
  const lossFig = figure({
    id: "loss-chart",
    title: "Loss per epoch",
    caption: "Training loss (and validation loss) at the start of each epoch; the ring is the final model. Drag to zoom.",
    controls: [
      h("label", { for: "loss-log", class: "inline" }, logBox, " Log scale"),
      h("label", { for: "loss-smooth", class: "inline" }, "Smoothing ", smoothing, smoothOut),
    ],
    rows: () => {
      const names = Object.keys(trace?.metrics ?? {});
      const rows = (trace?.x ?? []).map((x, i) => [x, trace.loss[i], ...names.map((m) => trace.metrics[m][i])]);
      const at = finalEpoch();
      if (at != null) rows.push([`${at} (final)`, run.final.loss, ...names.map((m) => run.final.metrics?.[m])]);
      return { columns: ["epoch", "loss", ...names], rows };
    },
  });
  let lossChart = null;
  let paramFig = null;
  let paramChart = null;
  let paramMode = null;
  let dataFig = null;
  let dataChart = null;

  /** The x of the run's final state when it follows the history (after the last epoch). */
  function finalEpoch() {
    if (!run?.final || ACTIVE.includes(run.status) || !trace?.x.length) return null;
    const at = run.epochs_completed;
    return at > trace.x[trace.x.length - 1] ? at : null;
  }

  /** `x` and each column with the final state appended (`ends(column)` gives its value). */
  function extended(columns, ends) {
    const at = finalEpoch();
    if (at == null) return { x: trace.x, ys: columns, final: null };
    return { x: [...trace.x, at], ys: columns.map((c, i) => [...c, ends[i]]), final: trace.x.length };
  }

  const lossSeries = () => {
    const series = [{ label: "training loss", color: PALETTE[0] }];
    if (trace.metrics.val_loss) series.push({ label: "validation loss", color: PALETTE[1] });
    return series;
  };

  function drawLoss() {
    const wanted = lossSeries().length;
    if (!lossChart || lossChart.count !== wanted) {
      lossChart?.destroy();
      lossChart = lineChart(lossFig, { series: lossSeries(), xLabel: "epoch", yLabel: "loss", log: logBox.checked, whole: true });
      lossChart.count = wanted;
    }
    const weight = Number(smoothing.value);
    const columns = [trace.loss];
    const ends = [run?.final?.loss];
    if (trace.metrics.val_loss) {
      columns.push(trace.metrics.val_loss);
      ends.push(run?.final?.metrics?.val_loss ?? null);
    }
    const { x, ys, final } = extended(columns, ends);
    lossChart.draw(x, ys.map((y) => smooth(y, weight)), final);
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
        for (let f = 0; f < shown; f++) series.push({ label: features > 1 ? `true W[${f}] (dashed)` : "true W (dashed)", color: PALETTE[f % 6], dash: [6, 5], width: 1.5 });
        series.push({ label: "true b (dashed)", color: PALETTE[shown % 6], dash: [6, 5], width: 1.5 });
      }
      const ys = () => {
        const cols = [];
        const ends = [];
        for (let f = 0; f < shown; f++) {
          cols.push(trace.W.map((w) => [w].flat()[f]));
          ends.push([run.final?.W ?? []].flat()[f]);
        }
        cols.push(trace.b.slice());
        ends.push(run.final?.b);
        if (truth) {
          for (let f = 0; f < shown; f++) {
            cols.push(trace.x.map(() => truth.true_W[f]));
            ends.push(truth.true_W[f]);
          }
          cols.push(trace.x.map(() => truth.true_b));
          ends.push(truth.true_b);
        }
        return extended(cols, ends);
      };
      return { mode: `wb${shown}${truth ? "t" : ""}`, series, ys, yLabel: "value",
        title: "W and b per epoch", caption: `W and b at the start of each epoch; the ring is the final model.${truth ? " Dashed: the true values." : ""}` };
    }
    const names = Object.keys(trace.params);
    if (!names.length) return null;
    return { mode: `norm:${names.join(",")}`, series: names.map((n, i) => ({ label: `‖${n}‖`, color: PALETTE[i % PALETTE.length] })),
      ys: () => extended(names.map((n) => trace.params[n].map(norm)), names.map((n) => norm(run.final?.params?.[n]))), yLabel: "norm",
      title: "Parameter norms per epoch", caption: "The norm of each parameter array at the start of each epoch; the ring is the final model." };
  }

  function drawParams() {
    const spec = paramSeries();
    if (!spec) return;
    if (!paramFig) {
      paramFig = figure({ id: "params-chart", title: spec.title, caption: spec.caption, rows: () => {
        const current = paramSeries();
        const { x, ys, final } = current.ys();
        return { columns: ["epoch", ...current.series.map((s) => s.label)],
          rows: x.map((at, i) => [i === final ? `${at} (final)` : at, ...ys.map((c) => c[i])]) };
      } });
      paramSlot.append(paramFig.el);
    }
    if (paramMode !== spec.mode) {
      paramChart?.destroy();
      paramChart = lineChart(paramFig, { series: spec.series, xLabel: "epoch", yLabel: spec.yLabel, whole: true });
      paramMode = spec.mode;
    }
    const { x, ys, final } = spec.ys();
    paramChart.draw(x, ys, final);
  }

  /** The last row that has W and b (rows between every k-th of `record_params` have none). */
  function lastWb() {
    for (let i = trace.W.length - 1; i >= 0; i--) if (trace.W[i] != null) return i;
    return -1;
  }

  // ---- the data with predictions (one-feature regression) or decision regions
  function drawLine() {
    if (dataFig?.el.id !== "data-chart" || !dataSample || !trace.hasWb || !trace.x.length) return;
    const order = dataSample.x.map((_, i) => i).sort((a, b) => dataSample.x[a][0] - dataSample.x[b][0]);
    const xs = order.map((i) => dataSample.x[i][0]);
    const ys = order.map((i) => dataSample.y[i]);
    const first = trace.x.length ? 0 : null;
    const last = lastWb();
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
      dataSlot.append(dataFig.el);
      drawLine();
    } else {
      dataFig = figure({ id: "regions-chart", title: "Decision regions",
        caption: `The class the model's current parameters predict over the plane (shade: how sure), with a sample of ${dataSample.y.length} of the dataset's points.`,
        rows: () => ({ columns: ["x0", "x1", "class"], rows: dataSample.x.map((x, i) => [x[0], x[1], dataSample.y[i]]) }) });
      dataSlot.append(dataFig.el);
      await drawRegionsNow();
    }
  }

  /** Regions of the model as it is now (/predict), or, `live`, at the latest history row. */
  async function drawRegionsNow(live = false) {
    if (dataFig?.el.id !== "regions-chart") return;
    const names = Object.keys(trace.params);
    const last = lastWithParams(trace);  // rows between every k-th have no params
    const latest = live && last >= 0 ? Object.fromEntries(names.map((n) => [n, trace.params[n][last]])) : null;
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
      const wb = lastWb();
      rows.push(["W", trace.hasWb && last >= 0 ? nums(trace.W[0]) : nums(run.initial?.W), final?.W != null ? nums(final.W) : wb >= 0 ? nums(trace.W[wb]) : "–", "W"]);
      rows.push(["b", trace.hasWb && last >= 0 ? num(trace.b[0]) : num(run.initial?.b), final?.b != null ? num(final.b) : wb >= 0 ? num(trace.b[wb]) : "–", "b"]);
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

  // ---- actions: built once (a redraw per epoch must not take a button from under a click)
  const cancel = h("button", { type: "button", id: "cancel" }, "Cancel run");
  const pause = h("button", { type: "button", class: "secondary", id: "pause" }, "Pause");
  const resume = h("button", { type: "button", id: "resume" }, "Resume");
  // Cancel, pause and resume: each asks the API and shows the run it answers; the stream says
  // the rest (paused at the epoch's end, epochs again once resumed).
  const ask = (button, action, what) => button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      run = await postJSON(`/v1/runs/${id(run.id)}/${action}`);
      if (action === "pause" && run.status === "running") pausing = true;
      if (action === "resume") pausing = false;
      drawHead();
    } catch (error) {
      status.textContent = `Cannot ${what}: ${error.message}`;
    } finally {
      button.disabled = false;
      drawHead();
    }
  });
  ask(cancel, "cancel", "cancel");
  ask(pause, "pause", "pause");
  ask(resume, "resume", "resume");
  const again = h("a", { class: "button secondary", id: "run-again", href: `/ui/start?from=${id(runId)}`, "data-link": true, title: "Run again with these settings" }, "Run again");
  const historyButton = h("button", { type: "button", class: "secondary", id: "download-history" }, "History as CSV");
  const format = h("select", { id: "model-format", "aria-label": "model file format" },
    ["onnx", "safetensors", "json"].map((f) => h("option", { value: f }, f === "onnx" ? "ONNX" : f === "json" ? "JSON" : f)));
  const modelButton = h("button", { type: "button", class: "secondary", id: "download-model" }, "Model file");
  const downloading = async (button, work) => {
    button.disabled = true;
    try {
      await work();
    } catch (error) {
      status.textContent = `Cannot download: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  };
  historyButton.addEventListener("click", () => downloading(historyButton, () => saveHistory(runId)));
  modelButton.addEventListener("click", () => downloading(modelButton, () => saveModel(run.model_id, format.value)));
  replace(actions, pause, resume, cancel, again, historyButton, h("span", { class: "joined" }, modelButton, format));

  function stateText() {
    const done = run.epochs_completed;
    if (run.status === "paused") return `paused after ${done} of ${run.epochs} epochs`;
    if (pausing && run.status === "running") return `${done} of ${run.epochs} epochs, pausing at this epoch's end`;
    if (ACTIVE.includes(run.status)) return `${done} of ${run.epochs} epochs`;
    if (run.stopped_early) return `stopped early after ${done} of ${run.epochs} epochs (best epoch ${run.stopped_early.best_epoch})`;
    return `after ${done} of ${run.epochs} epochs`;
  }

  function drawHead() {
    const active = ACTIVE.includes(run.status);
    cancel.hidden = !OPEN.includes(run.status);
    cancel.disabled = run.status === "cancelling";
    pause.hidden = !["queued", "running"].includes(run.status);
    pause.disabled = pausing;
    resume.hidden = run.status !== "paused";
    pace ??= run.started_at ? { time: Date.parse(run.started_at), epochs: 0 } : { time: Date.now(), epochs: run.epochs_completed };
    const left = eta(run, pace);
    replace(stateLine, h("span", { class: `badge ${run.status}`, id: "run-status" }, run.status), " ",
      h("span", { id: "run-progress-text" }, stateText()), " ",
      active ? h("progress", { id: "run-progress", max: String(run.epochs), value: String(run.epochs_completed), "aria-label": "epochs completed" }) : null,
      left ? h("span", { id: "run-eta", class: "note" }, ` about ${left} left`) : null);
    const datasetName = dataset?.name || run.dataset_id;
    replace(context, "Model ", h("a", { href: `/ui/models/${id(run.model_id)}`, "data-link": true }, model?.name || run.model_id),
      model ? ` (${model.kind})` : "", " on dataset ",
      datasetGone ? h("code", {}, run.dataset_id) : h("a", { href: `/ui/datasets#${id(run.dataset_id)}`, "data-link": true }, datasetName),
      dataset ? ` (${dataset.num_examples} rows, ${dataset.features} feature${dataset.features > 1 ? "s" : ""})` : "");
    const shown = [];
    if (run.error) shown.push(h("p", { class: "problem", id: "run-error" }, `${run.error.reason}: ${run.error.detail}`, run.error.epoch != null ? ` (epoch ${run.error.epoch})` : ""));
    if (run.stopped_early) shown.push(h("p", { class: "note", id: "early-stop" }, `Stopped early at epoch ${run.stopped_early.epoch}; best epoch ${run.stopped_early.best_epoch}.`));
    if (datasetGone) shown.push(h("p", { class: "note", id: "dataset-gone" }, `The dataset ${run.dataset_id} was deleted: its data and the true values are no longer shown.`));
    replace(notes, shown);
    replace(settings, h("h3", { id: "settings-title" }, "Settings"), settingsList(run, dataset));
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
    const datasetAnswer = getJSON(`/v1/datasets/${id(run.dataset_id)}`, { signal }).catch((error) => {
      datasetGone = error instanceof ApiError && error.status === 404;
      return null;
    });
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
    if (!OPEN.includes(run.status) && lastSeen < run.epochs_completed - 1) {
      trace = fromColumns(await getJSON(withQuery(`/v1/runs/${id(runId)}/history`, { format: "columns", max_points: OPENING_POINTS }), { signal }));
    }
    lossSlot.append(lossFig.el);
    drawLoss();
    [model, dataset] = await context;
    drawAll();
    announce(OPEN.includes(run.status) ? "Following the run live…" : `The run ${run.status}.`, OPEN.includes(run.status));
    await setUpData(await sample);
    if (OPEN.includes(run.status)) {
      await follow(runId, {
        after: trace.x.length ? trace.x[trace.x.length - 1] : -1,
        signal: stop.signal,
        onState: (state) => { status.textContent = state === "live" ? "Following the run live…" : "Connection lost; reconnecting…"; },
        onEpochs: (rows) => {
          appendRows(trace, rows);
          run.epochs_completed = rows[rows.length - 1].epoch + 1;
          if (run.status === "queued" || run.status === "paused") run.status = "running";
          schedule();
        },
        onPaused: (paused) => {
          run = paused;
          pausing = false;
          announce("The run is paused; resume it to go on.", true);
          schedule();
        },
        onEnd: (final) => {
          run = final;
          announce(`The run ${run.status}.`, false);
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
