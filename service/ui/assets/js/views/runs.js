// The runs list: every run, newest first, refreshed while runs start, train and finish.

import { getJSON, id, withQuery } from "../api.js";
import { ACTIVE, duration, h, replace, sleep, when } from "../dom.js";

const REFRESH_MS = 1500;
const SHOWN = 50;
const COLUMNS = ["Run", "Status", "Progress", "Model", "Dataset", "Created", "Duration"];

/** A cell that names its column, so that on a phone each row reads as a card of labelled values. */
function cell(column, ...children) {
  return h("td", { "data-label": COLUMNS[column] }, ...children);
}

/** Model and dataset names by id, each fetched once. */
function namer(kind) {
  const names = new Map();
  return async (resourceId) => {
    if (!names.has(resourceId)) {
      names.set(resourceId, getJSON(`/v1/${kind}/${id(resourceId)}`).then((r) => r.name || resourceId, () => resourceId));
    }
    return names.get(resourceId);
  };
}

/** Render the runs list into `main`; returns a cleanup function. */
export function runsView(main) {
  const stop = new AbortController();
  const modelName = namer("models");
  const datasetName = namer("datasets");
  const body = h("tbody", {});
  const note = h("p", { class: "status-line", role: "status", "aria-live": "polite" }, "Loading…");
  replace(main,
    h("div", { class: "view-head" }, h("h2", { id: "view-title" }, "Runs"),
      h("a", { href: "/ui/start", "data-link": true, class: "button" }, "Start a run")),
    note,
    h("div", { class: "table-scroll", tabindex: "0", role: "region", "aria-label": "Runs" }, h("table", { id: "runs", class: "runs run-list" },
      h("caption", { class: "visually-hidden" }, "Runs, newest first"),
      h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", { scope: "col" }, c)))),
      body)));

  async function refresh() {
    const page = await getJSON(withQuery("/v1/runs", { order: "newest", limit: SHOWN }), { signal: stop.signal });
    const rows = await Promise.all(page.items.map(async (run) => {
      const [model, dataset] = await Promise.all([modelName(run.model_id), datasetName(run.dataset_id)]);
      return h("tr", { dataset: { run: run.id, status: run.status } },
        cell(0, h("a", { href: `/ui/runs/${id(run.id)}`, "data-link": true, title: run.id }, h("code", {}, run.id))),
        cell(1, h("span", { class: `badge ${run.status}` }, run.status)),
        cell(2, h("progress", { max: String(run.epochs), value: String(run.epochs_completed), "aria-label": `${run.id} progress` }),
          ` ${run.epochs_completed}/${run.epochs}`),
        cell(3, h("a", { href: `/ui/models/${id(run.model_id)}`, "data-link": true }, model)),
        cell(4, h("a", { href: `/ui/datasets#${encodeURIComponent(run.dataset_id)}`, "data-link": true, class: "dataset-link" }, dataset)),
        cell(5, when(run.created_at)),
        cell(6, duration(run.started_at, run.finished_at)));
    }));
    replace(body, rows);
    const active = page.items.filter((r) => ACTIVE.includes(r.status)).length;
    note.textContent = page.items.length
      ? `${page.items.length} most recent runs, ${active} active; updated ${new Date().toLocaleTimeString()}.`
      : "No runs yet: start one.";
  }

  (async () => {
    while (!stop.signal.aborted) {
      try {
        await refresh();
      } catch (error) {
        if (stop.signal.aborted) return;
        note.textContent = `Cannot list runs: ${error.message}`;
      }
      await sleep(REFRESH_MS, stop.signal);
    }
  })();
  return () => stop.abort();
}
