// Studies: the list (/ui/studies) and a study's page (/ui/studies/{id}), live from the study's
// event stream: the trial table (sorted by a click on a heading, the best trial marked), the
// objective per trial with the best-so-far line, every trial's learning curve overlaid (a
// pruned trial's stops at its rung, dashed), and a parallel-coordinates chart of the sampled
// hyperparameters against the objective. Trials link to their runs; the best trial's model
// to its page (export and predict) and to its file.

import uPlot from "../../vendor/uplot/uPlot.esm.js";
import { getJSON, id, withQuery } from "../api.js";
import { PALETTE, figure, lineChart } from "../charts.js";
import { h, num, replace, sleep, when } from "../dom.js";
import { saveModel } from "../downloads.js";
import { shown } from "../fields.js";
import { legend, parallelCoordinates } from "../parcoords.js";
import { followStudy } from "../stream.js";

const REFRESH_MS = 2000;
const CURVE_POINTS = 500; // history points per trial's learning curve
const MOST_COMPARED = 50; // runs per /v1/runs/compare/history request
const MOST_AXES = 12;

/** A study's name, or its id. */
function studyLabel(study) {
  return study.name ? `${study.name} · ${study.id}` : study.id;
}

/** Trials counted by status, in words: "3 completed, 6 pruned". */
function countsText(counts) {
  const parts = Object.entries(counts ?? {}).filter(([, n]) => n > 0).map(([status, n]) => `${n} ${status}`);
  return parts.length ? parts.join(", ") : "no trials yet";
}

/** Render the studies list into `main`; returns a cleanup function. */
export function studiesView(main) {
  const stop = new AbortController();
  const body = h("tbody", {});
  const note = h("p", { class: "status-line", role: "status", "aria-live": "polite" }, "Loading…");
  replace(main, h("h2", { id: "view-title" }, "Studies"),
    h("p", { class: "note" }, "Hyperparameter searches: each trial is a model and a run. Start one with POST /v1/studies or `tapeline study create spec.json`."),
    note,
    h("div", { class: "table-scroll", tabindex: "0", role: "region", "aria-label": "Studies" },
      h("table", { id: "studies", class: "runs" },
        h("caption", { class: "visually-hidden" }, "Studies"),
        h("thead", {}, h("tr", {}, ["Study", "Status", "Sampler", "Trials", "Best objective", "Epochs trained", "Created"]
          .map((label) => h("th", { scope: "col" }, label)))),
        body)));

  async function refresh() {
    const page = await getJSON(withQuery("/v1/studies", { limit: 100, order: "newest" }), { signal: stop.signal });
    const studies = page.items;
    replace(body, studies.map((study) => h("tr", { dataset: { study: study.id, status: study.status } },
      h("td", {}, h("a", { href: `/ui/studies/${id(study.id)}`, "data-link": true }, study.name || h("code", {}, study.id))),
      h("td", {}, h("span", { class: `badge ${study.status}` }, study.status)),
      h("td", {}, `${study.sampler.kind}${study.scheduler.kind === "asha" ? " + ASHA" : ""}`),
      h("td", {}, countsText(study.counts)),
      h("td", {}, study.best ? `${num(study.best.objective)} (trial ${study.best.number})` : "–"),
      h("td", {}, String(study.epochs_trained)),
      h("td", {}, when(study.created_at)))));
    note.textContent = studies.length ? `${studies.length}${page.next_cursor ? "+" : ""} studies; updated ${new Date().toLocaleTimeString()}.` : "No studies yet.";
    main.dataset.state = "drawn";
  }

  (async () => {
    while (!stop.signal.aborted) {
      await refresh().catch((error) => { if (!stop.signal.aborted) note.textContent = `Cannot list studies: ${error.message}`; });
      await sleep(REFRESH_MS, stop.signal);
    }
  })();
  return () => stop.abort();
}

/** Every trial of a study, page after page. */
async function allTrials(studyId, signal) {
  const trials = [];
  let cursor;
  for (;;) {
    const page = await getJSON(withQuery(`/v1/studies/${id(studyId)}/trials`, { limit: 500, cursor }), { signal });
    trials.push(...page.items);
    if (!page.next_cursor) return trials;
    cursor = page.next_cursor;
  }
}

/** Is `a` a better objective than `b` for `goal`? */
function better(goal, a, b) {
  return b == null || (goal === "maximize" ? a > b : a < b);
}

/** The curves of `metric` of runs `ids` (`{id, epoch, values}` each), from the compare history. */
async function curves(ids, metric, signal) {
  const found = [];
  for (let i = 0; i < ids.length; i += MOST_COMPARED) {
    const chunk = ids.slice(i, i + MOST_COMPARED);
    if (chunk.length === 1) { // the compare history takes two or more runs
      const columns = await getJSON(withQuery(`/v1/runs/${id(chunk[0])}/history`, { format: "columns", max_points: CURVE_POINTS }), { signal });
      found.push({ id: chunk[0], epoch: columns.epoch, values: metric === "loss" ? columns.loss : columns.metrics[metric] ?? [] });
      continue;
    }
    const answer = await getJSON(withQuery("/v1/runs/compare/history", { ids: chunk.join(","), metric, max_points: CURVE_POINTS }), { signal });
    found.push(...answer.runs);
  }
  return found;
}

// The trial table's columns: label, how a trial sorts by it.
function columnsOf(study) {
  return [
    { key: "number", label: "Trial", value: (t) => t.number },
    { key: "status", label: "Status", value: (t) => t.status },
    { key: "epochs", label: "Epochs", value: (t) => t.epochs },
    { key: "objective", label: `Objective (${study.objective.metric})`, value: (t) => t.objective },
    ...Object.keys(study.space).map((path) => ({ key: `params.${path}`, label: path, value: (t) => t.params[path], param: path })),
    { key: "rungs", label: "At each rung", value: (t) => t.rungs.length },
  ];
}

function compare(a, b) {
  if (a == null && b == null) return 0;
  if (a == null) return 1; // absent values last, whichever the direction
  if (b == null) return -1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return shown(a).localeCompare(shown(b));
}

/** Render study `studyId` into `main`; returns a cleanup function. */
export function studyView(main, studyId) {
  const stop = new AbortController();
  const status = h("p", { class: "status-line", role: "status", "aria-live": "polite" }, "Loading…");
  const summary = h("section", { class: "panel", "aria-labelledby": "study-summary-title" });
  const bestBox = h("section", { class: "panel", id: "study-best", "aria-labelledby": "study-best-title" });
  const head = h("tr", {});
  const body = h("tbody", {});
  const table = h("section", { class: "panel", "aria-labelledby": "trials-title" },
    h("h3", { id: "trials-title" }, "Trials"),
    h("p", { class: "note" }, "Click a heading to sort; again to reverse. The best trial is marked ★."),
    h("div", { class: "table-scroll", tabindex: "0", role: "region", "aria-labelledby": "trials-title" },
      h("table", { id: "trials", class: "runs" }, h("caption", { class: "visually-hidden" }, "Trials"),
        h("thead", {}, head), body)));
  const figures = h("div", { class: "figures" });
  replace(main, h("h2", { id: "view-title" }, "Study ", h("code", {}, studyId)), status, summary, bestBox, figures, table);

  let study = null;
  let trials = [];
  let sort = { key: "number", descending: false };
  let objectiveChart = null;
  let curveChart = null;
  let curvesKey = "";
  let pc = null;
  let drawing = null;
  let again = false;

  // ---- the figures
  const objectiveFig = figure({ id: "study-objective", title: "Objective per trial",
    caption: "Each trial's objective (at the last rung it reached) and the best so far among the trials that reached the last rung, by trial number.",
    rows: () => ({ columns: ["trial", "objective", "best so far"], rows: objectiveRows() }) });
  const curveFig = figure({ id: "study-curves", title: "Learning curves",
    caption: "The objective's metric at each epoch of every trial, overlaid; a pruned trial's curve (dashed) stops at its rung.",
    rows: () => ({ columns: ["trial", "epoch", "value"], rows: (curveFig.el.series ?? []).flatMap((s) => s.epoch.map((e, i) => [s.label, e, s.values[i]])) }) });
  const pcBox = h("div", { class: "pc-box" });
  const pcLegend = h("div", {});
  const pcFig = h("figure", { id: "study-parcoords", class: "chart" },
    h("div", { class: "chart-head" }, h("h3", {}, "Hyperparameters against the objective")),
    pcBox, h("figcaption", {}, "One axis per sampled hyperparameter, the objective last; one line per trial. Drag along an axis to keep only the trials in that range; click an axis to clear it."),
    pcLegend);
  figures.append(objectiveFig.el, curveFig.el, pcFig);

  const colorOf = (trial) => PALETTE[trial.number % PALETTE.length];
  const trialLabel = (trial) => `trial ${trial.number}`;
  const complete = (trial) => study && trial.rungs.length === study.rungs.length;

  function objectiveRows() {
    let best = null;
    return [...trials].sort((a, b) => a.number - b.number).map((t) => {
      if (t.objective != null && complete(t) && better(study.objective.goal, t.objective, best)) best = t.objective;
      return [t.number, t.objective, best];
    });
  }

  function drawSummary() {
    const facts = [["Name", study.name || "–"], ["Status", study.status], ["Objective", `${study.objective.goal} ${study.objective.metric}`],
      ["Sampler", `${study.sampler.kind}${study.sampler.seed != null ? ` (seed ${study.sampler.seed})` : ""}`],
      ["Scheduler", study.scheduler.kind === "asha" ? `ASHA, reduction factor ${study.scheduler.reduction_factor}` : "none"],
      ["Rungs (epochs)", study.rungs.join(", ")], ["Trials", `${countsText(study.counts)} (of ${study.max_trials})`],
      ["Concurrency", `${study.concurrency.effective}${study.concurrency.capped_by_quota ? ` (capped by the quota; ${study.concurrency.requested} asked)` : ""}`],
      ["Epochs trained", study.epochs_trained], ["Dataset", study.dataset_id], ["Created", when(study.created_at)], ["Finished", when(study.finished_at)]];
    if (study.error) facts.push(["Error", study.error]);
    replace(summary, h("h3", { id: "study-summary-title" }, studyLabel(study), " ", h("span", { class: `badge ${study.status}`, id: "study-status" }, study.status)),
      h("dl", { class: "settings" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])));
  }

  function drawBest() {
    const best = study.best;
    if (!best) {
      replace(bestBox, h("h3", { id: "study-best-title" }, "Best trial"), h("p", {}, "No trial has reported yet."));
      return;
    }
    const format = h("select", { id: "best-format", "aria-label": "model file format" },
      ["onnx", "safetensors", "json"].map((f) => h("option", { value: f }, f === "onnx" ? "ONNX" : f === "json" ? "JSON" : f)));
    const download = h("button", { type: "button", class: "secondary", id: "best-download" }, "Export the best model");
    download.addEventListener("click", () => saveModel(best.model_id, format.value).catch((error) => { status.textContent = `Cannot export: ${error.message}`; }));
    replace(bestBox, h("h3", { id: "study-best-title" }, `Best trial: ${best.number}`),
      h("dl", { class: "settings" },
        h("dt", {}, "Objective"), h("dd", { id: "best-objective" }, num(best.objective)),
        Object.entries(best.params).map(([path, value]) => [h("dt", {}, path), h("dd", {}, shown(value))])),
      h("p", { class: "actions" },
        h("a", { href: `/ui/runs/${id(best.run_id)}`, "data-link": true, id: "best-run" }, "Its run"), " · ",
        h("a", { href: `/ui/models/${id(best.model_id)}`, "data-link": true, id: "best-model" }, "Its model (export and predict)"), " ",
        h("span", { class: "joined" }, download, format)));
  }

  function drawTable() {
    const columns = columnsOf(study);
    replace(head, columns.map((column) => {
      const direction = sort.key === column.key ? (sort.descending ? "descending" : "ascending") : "none";
      const button = h("button", { type: "button", class: "sort", dataset: { key: column.key } }, column.label,
        direction === "none" ? "" : direction === "ascending" ? " ▲" : " ▼");
      button.addEventListener("click", () => {
        sort = { key: column.key, descending: direction === "ascending" };
        drawTable();
      });
      return h("th", { scope: "col", "aria-sort": direction, dataset: { key: column.key } }, button);
    }));
    const by = columns.find((c) => c.key === sort.key) ?? columns[0];
    const sorted = [...trials].sort((a, b) => {
      const order = compare(by.value(a), by.value(b));
      if (order === 0) return a.number - b.number;
      if (by.value(a) == null || by.value(b) == null) return order; // absent last both ways
      return sort.descending ? -order : order;
    });
    const bestNumber = study.best?.number;
    replace(body, sorted.map((t) => {
      const isBest = t.number === bestNumber;
      return h("tr", { class: isBest ? "best" : null, dataset: { trial: String(t.number), status: t.status, best: String(isBest) } },
        h("td", {}, t.run_id ? h("a", { href: `/ui/runs/${id(t.run_id)}`, "data-link": true, class: "trial-run" }, `trial ${t.number}`) : `trial ${t.number}`,
          isBest ? h("span", { class: "best-mark", title: "the best trial" }, " ★ best") : ""),
        h("td", {}, h("span", { class: `badge ${t.status}` }, t.status)),
        h("td", {}, String(t.epochs)),
        h("td", { dataset: { key: "objective" } }, num(t.objective)),
        Object.keys(study.space).map((path) => h("td", { dataset: { key: `params.${path}` } }, shown(t.params[path]))),
        h("td", {}, t.rungs.map((v) => num(v)).join(" → ") || "–"));
    }));
  }

  function drawObjective() {
    const rows = objectiveRows();
    if (!objectiveChart) {
      objectiveChart = lineChart(objectiveFig, { xLabel: "trial", yLabel: study.objective.metric, whole: true, scatterFirst: true,
        series: [{ label: "objective", color: PALETTE[0] }, { label: "best so far", color: PALETTE[1] }] });
    }
    objectiveChart.draw(rows.map((r) => r[0]), [rows.map((r) => r[1]), rows.map((r) => r[2])]);
  }

  async function drawCurves() {
    const shownTrials = [...trials].filter((t) => t.run_id && t.epochs > 0).sort((a, b) => a.number - b.number);
    const key = shownTrials.map((t) => `${t.number}:${t.epochs}:${t.status}`).join(",");
    if (key === curvesKey) return;
    const found = await curves(shownTrials.map((t) => t.run_id), study.objective.metric, stop.signal);
    curvesKey = key;
    const byRun = new Map(found.map((s) => [s.id, s]));
    const series = shownTrials.map((t) => ({ ...(byRun.get(t.run_id) ?? { epoch: [], values: [] }), label: trialLabel(t), trial: t }));
    curveChart?.destroy();
    curveChart = lineChart(curveFig, { xLabel: "epoch", yLabel: study.objective.metric, whole: true,
      series: series.map((s) => ({ label: s.label, color: colorOf(s.trial), dash: s.trial.status === "pruned" ? [6, 4] : undefined })) });
    if (series.length) {
      const joined = uPlot.join(series.map((s) => [s.epoch, s.values]));
      curveChart.draw(joined[0], joined.slice(1));
    }
    curveFig.el.series = series;
    curveFig.el.dataset.trials = String(series.length);
    curveFig.el.dataset.ends = series.map((s) => `${s.trial.number}:${s.epoch.length ? s.epoch[s.epoch.length - 1] : ""}`).join(",");
    curveFig.el.dataset.dashed = series.filter((s) => s.trial.status === "pruned").map((s) => s.trial.number).join(",");
  }

  function drawParcoords() {
    const shownTrials = [...trials].sort((a, b) => a.number - b.number);
    const items = shownTrials.map((t) => ({ id: String(t.number), label: trialLabel(t), color: colorOf(t) }));
    const paths = Object.keys(study.space).slice(0, MOST_AXES);
    const dimensions = [...paths.map((path) => ({ field: path, label: path.replace(/^run\.(optimizer\.)?/, ""), values: shownTrials.map((t) => t.params[path]) })),
      { field: "objective", label: study.objective.metric, values: shownTrials.map((t) => t.objective) }];
    pc = parallelCoordinates(pcBox, { items, dimensions });
    replace(pcLegend, legend(items));
  }

  async function draw() {
    const [found, foundTrials] = await Promise.all([
      getJSON(`/v1/studies/${id(studyId)}`, { signal: stop.signal }), allTrials(studyId, stop.signal)]);
    study = found;
    trials = foundTrials;
    document.title = `Study ${study.name || studyId} — Tapeline`;
    drawSummary();
    drawBest();
    drawTable();
    drawObjective();
    drawParcoords();
    await drawCurves();
    main.dataset.study = study.status;
  }

  /** Draw now, or once more after the drawing under way: events come faster than draws. */
  async function redraw() {
    if (drawing) {
      again = true;
      return drawing;
    }
    drawing = (async () => {
      do {
        again = false;
        await draw();
      } while (again && !stop.signal.aborted);
    })().finally(() => { drawing = null; });
    return drawing;
  }

  const fail = (error) => {
    if (!stop.signal.aborted) status.textContent = `Error: ${error.message}`;
  };

  main.dataset.state = "loading";
  (async () => {
    await redraw();
    main.dataset.state = "drawn";
    if (study.status !== "running") {
      status.textContent = `The study is ${study.status}: ${countsText(study.counts)}.`;
      return;
    }
    status.textContent = "Following the study live…";
    await followStudy(studyId, {
      signal: stop.signal,
      onState: (state) => { if (state === "reconnecting") status.textContent = "Connection lost; reconnecting…"; },
      onEvents: (events) => {
        status.textContent = `Following the study live: ${events[events.length - 1].type}.`;
        redraw().catch(fail);
      },
    });
    if (stop.signal.aborted) return;
    await redraw();
    status.textContent = `The study is ${study.status}: ${countsText(study.counts)}.`;
  })().catch(fail);

  return () => {
    stop.abort();
    objectiveChart?.destroy();
    curveChart?.destroy();
    void pc;
  };
}
