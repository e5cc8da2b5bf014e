// The runs list: every run of every model, searched with the filter language, sorted by any
// column, with chosen hyperparameter and metric columns; filter, sort and columns live in the
// URL. Runs picked here (from any models) open the compare page. Refreshed while runs start,
// train and finish.

import { ApiError, getJSON, id, withQuery } from "../api.js";
import { ACTIVE, duration, h, replace, sleep, when } from "../dom.js";
import { fieldValue, heading, shown } from "../fields.js";

const REFRESH_MS = 1500;
const SHOWN = 50;
const DEFAULT_COLUMNS = "params.optimizer.kind,params.optimizer.learning_rate,metrics.loss";
// The fixed columns and the field each sorts by.
const FIXED = [["Run", "name"], ["Status", "status"], ["Progress", "epochs_completed"],
  ["Model", "model.name"], ["Dataset", "dataset.name"], ["Created", "created_at"],
  ["Duration", "duration_ms"]];
const SUGGESTED = ["params.optimizer.kind", "params.optimizer.learning_rate", "params.batch_size",
  "params.epochs", "params.loss", "params.regularization.l2", "model.kind", "model.hidden",
  "model.activation", "metrics.loss", "metrics.val_loss", "metrics.accuracy", "metrics.val_accuracy",
  "metrics.rmse", "tags.team"];

/** Resources by id, each fetched once. */
function cache(kind) {
  const found = new Map();
  return (resourceId) => {
    if (!found.has(resourceId)) found.set(resourceId, getJSON(`/v1/${kind}/${id(resourceId)}`).catch(() => null));
    return found.get(resourceId);
  };
}

/** The view's state as the URL holds it. */
function readState() {
  const query = new URLSearchParams(location.search);
  return {
    filter: query.get("filter") ?? "",
    sort: query.get("sort") ?? "",
    columns: (query.get("columns") ?? DEFAULT_COLUMNS).split(",").map((c) => c.trim()).filter(Boolean),
  };
}

function writeState(state) {
  const query = new URLSearchParams();
  if (state.filter) query.set("filter", state.filter);
  if (state.sort) query.set("sort", state.sort);
  const columns = state.columns.join(",");
  if (columns !== DEFAULT_COLUMNS) query.set("columns", columns);
  const text = query.toString();
  history.replaceState(null, "", text ? `/ui/?${text}` : "/ui/");
}

/** A creation time, short: the date and the minute. */
function created(stamp) {
  return new Date(stamp).toLocaleString([], { dateStyle: "short", timeStyle: "short" });
}

/** The filter's text with a caret under `column` (1-based). */
function caret(text, column) {
  return h("pre", { id: "filter-caret", class: "caret", "aria-hidden": "true" },
    `${text}\n${" ".repeat(Math.max(0, column - 1))}^`);
}

/** Render the runs list into `main`; returns a cleanup function. */
export function runsView(main, go) {
  const stop = new AbortController();
  const models = cache("models");
  const datasets = cache("datasets");
  const state = readState();
  const picked = new Set();
  const body = h("tbody", {});
  const head = h("tr", {});
  const note = h("p", { class: "status-line", role: "status", "aria-live": "polite" }, "Loading…");
  const filter = h("input", { id: "filter", type: "search", value: state.filter, spellcheck: "false",
    autocomplete: "off", "aria-describedby": "filter-help filter-problem",
    placeholder: "metrics.val_loss < 0.5 AND params.optimizer.kind = 'adam'" });
  const columns = h("input", { id: "columns", value: state.columns.join(", "), list: "column-fields",
    spellcheck: "false", autocomplete: "off" });
  const problem = h("div", { id: "filter-problem", class: "problem", role: "alert" });
  const compare = h("button", { type: "button", id: "compare-runs", disabled: true }, "Compare selected");
  const form = h("form", { class: "search", role: "search" },
    h("label", { for: "filter" }, "Filter"), filter,
    h("label", { for: "columns" }, "Columns"), columns,
    h("datalist", { id: "column-fields" }, SUGGESTED.map((f) => h("option", { value: f }))),
    h("p", { class: "buttons" }, h("button", { type: "submit", id: "apply-filter" }, "Apply"), " ", compare),
    h("p", { id: "filter-help", class: "note" }, "Fields such as params.optimizer.learning_rate, metrics.val_loss, model.hidden, tags.team; = != < <= > >= IN LIKE IS NULL, AND OR NOT. Click a heading to sort."),
    problem);
  replace(main,
    h("div", { class: "view-head" }, h("h2", { id: "view-title" }, "Runs"),
      h("a", { href: "/ui/start", "data-link": true, class: "button" }, "Start a run")),
    form, note,
    h("div", { class: "table-scroll runs-scroll", tabindex: "0", role: "region", "aria-label": "Runs" },
      h("table", { id: "runs", class: "runs" },
        h("caption", { class: "visually-hidden" }, "Runs"),
        h("thead", {}, head), body)));

  const sortOf = () => {
    const [first] = state.sort.split(",");
    return first ? { field: first.replace(/^-/, ""), descending: first.startsWith("-") } : null;
  };

  function headings() {
    const sorted = sortOf();
    const cells = [...FIXED, ...state.columns.map((f) => [heading(f), f])].map(([label, field]) => {
      const direction = sorted?.field === field ? (sorted.descending ? "descending" : "ascending") : "none";
      const button = h("button", { type: "button", class: "sort", dataset: { field } }, label,
        direction === "none" ? "" : direction === "ascending" ? " ▲" : " ▼");
      button.addEventListener("click", () => {
        state.sort = direction === "ascending" ? `-${field}` : field;
        writeState(state);
        headings();
        refresh().catch(show);
      });
      return h("th", { scope: "col", "aria-sort": direction, title: field, dataset: { field } }, button);
    });
    replace(head, cells);
  }

  function show(error) {
    if (stop.signal.aborted) return;
    if (error instanceof ApiError && error.status === 422) {
      const detail = error.problem?.errors?.[0];
      const column = detail?.column;
      filter.setAttribute("aria-invalid", "true");
      replace(problem, h("p", {}, error.problem.detail), column && detail.loc?.[1] === "filter" ? caret(state.filter, column) : null);
      if (column && detail.loc?.[1] === "filter") filter.setSelectionRange(column - 1, column - 1);
      note.textContent = "";
      return;
    }
    note.textContent = `Cannot list runs: ${error.message}`;
  }

  function row(run, model, dataset) {
    const box = h("input", { type: "checkbox", class: "pick", value: run.id, checked: picked.has(run.id),
      "aria-label": `select ${run.name || run.id}` });
    box.addEventListener("change", () => {
      if (box.checked) picked.add(run.id); else picked.delete(run.id);
      compare.disabled = picked.size < 2;
    });
    const datasetFilter = `dataset.id = '${run.dataset_id}'`;
    return h("tr", { dataset: { run: run.id, status: run.status } },
      h("td", { class: "sticky" }, box, " ", h("a", { href: `/ui/runs/${id(run.id)}`, "data-link": true },
        run.name ? run.name : h("code", {}, run.id))),
      h("td", {}, h("span", { class: `badge ${run.status}` }, run.status)),
      h("td", {}, h("progress", { max: String(run.epochs), value: String(run.epochs_completed), "aria-label": `${run.id} progress` }),
        ` ${run.epochs_completed}/${run.epochs}`),
      h("td", { class: "clip" }, h("a", { href: `/ui/models/${id(run.model_id)}`, "data-link": true, title: run.model_id }, model?.name || h("code", {}, run.model_id))),
      h("td", { class: "clip" }, h("a", { class: "dataset-link", href: `/ui/?${new URLSearchParams({ filter: datasetFilter })}`, "data-link": true,
        title: `runs on ${run.dataset_id}` }, dataset?.name || h("code", {}, run.dataset_id))),
      h("td", { title: when(run.created_at) }, created(run.created_at)),
      h("td", { class: "duration" }, duration(run.started_at, run.finished_at)),
      state.columns.map((field) => h("td", { dataset: { field } }, shown(fieldValue(field, run, model, dataset)))));
  }

  async function refresh() {
    const query = { limit: SHOWN, filter: state.filter || undefined, sort: state.sort || undefined,
      order: state.sort ? undefined : "newest" };
    const page = await getJSON(withQuery("/v1/runs", query), { signal: stop.signal });
    const rows = await Promise.all(page.items.map(async (run) => {
      const [model, dataset] = await Promise.all([models(run.model_id), datasets(run.dataset_id)]);
      return row(run, model, dataset);
    }));
    replace(body, rows);
    filter.removeAttribute("aria-invalid");
    replace(problem);
    const active = page.items.filter((r) => ACTIVE.includes(r.status)).length;
    const what = state.filter ? "matching runs" : "most recent runs";
    note.textContent = page.items.length
      ? `${page.items.length}${page.next_cursor ? "+" : ""} ${what}, ${active} active; updated ${new Date().toLocaleTimeString()}.`
      : state.filter ? "No run matches." : "No runs yet: start one.";
    main.dataset.state = "drawn";
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    state.filter = filter.value.trim();
    state.columns = columns.value.split(",").map((c) => c.trim()).filter(Boolean);
    writeState(state);
    headings();
    refresh().catch(show);
  });
  compare.addEventListener("click", () => go(`/ui/compare?${new URLSearchParams({ ids: [...picked].join(",") })}`));

  headings();
  (async () => {
    while (!stop.signal.aborted) {
      await refresh().catch(show);
      await sleep(REFRESH_MS, stop.signal);
    }
  })();
  return () => stop.abort();
}
