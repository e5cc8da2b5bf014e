// Datasets: upload a .csv, .npy or .npz file (its target column read as numbers or class
// names as asked), list the stored datasets, start a run on one, download or delete it.

import { ApiError, getJSON, id, postForm, remove, send, withQuery } from "../api.js";
import { h, replace, when } from "../dom.js";
import { save } from "../downloads.js";

const SHOWN = 100;

function uploadForm(onUploaded) {
  const problem = h("p", { class: "problem", id: "upload-problem", role: "alert" });
  const fileInput = h("input", { type: "file", id: "upload-file", name: "file", accept: ".csv,.npy,.npz,text/csv", required: true });
  const target = h("input", { id: "upload-target", name: "target", value: "y" });
  const targetType = h("select", { id: "upload-target-type", name: "target_type" },
    h("option", { value: "auto" }, "auto"),
    h("option", { value: "numeric" }, "numbers (regression)"),
    h("option", { value: "categorical" }, "class names (classification)"));
  const name = h("input", { id: "upload-name", name: "name", placeholder: "the file's name" });
  const button = h("button", { type: "submit", id: "upload" }, "Upload");
  const form = h("form", { id: "upload-form", class: "panel" },
    h("h3", {}, "Upload a dataset"),
    h("div", { class: "fields" },
      h("div", { class: "field" }, h("label", { for: "upload-file" }, "File: .csv with a header row, .npy or .npz"), fileInput),
      h("div", { class: "field" }, h("label", { for: "upload-target" }, "Target column (y)"), target),
      h("div", { class: "field" }, h("label", { for: "upload-target-type" }, "Target values (auto: class names only when none is a number)"), targetType),
      h("div", { class: "field" }, h("label", { for: "upload-name" }, "Name (optional)"), name)),
    h("p", {}, button), problem);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.textContent = "";
    if (!fileInput.files.length) {
      problem.textContent = "Choose a file to upload.";
      return;
    }
    const body = new FormData();
    body.append("file", fileInput.files[0]);
    body.append("target", target.value.trim() || "y");
    body.append("target_type", targetType.value);
    if (name.value.trim()) body.append("name", name.value.trim());
    button.disabled = true;
    try {
      const dataset = await postForm("/v1/datasets/upload", body);
      form.reset();
      await onUploaded(dataset);
    } catch (error) {
      const errors = error.problem?.errors ?? [];
      // A CSV's problem names its line and column: said as a person reads the file.
      problem.textContent = errors.length
        ? errors.map((e) => `${e.loc.filter((p) => p !== "file" && p !== "body").join(", ") || "file"}: ${e.msg}`).join("; ")
        : error.message;
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

/** Render the datasets page into `main`; returns a cleanup function. */
export function datasetsView(main) {
  const stop = new AbortController();
  const note = h("p", { class: "status-line", role: "status", "aria-live": "polite" }, "Loading…");
  const body = h("tbody", {});
  const table = h("div", { class: "table-scroll", tabindex: "0", role: "region", "aria-label": "Datasets" }, h("table", { id: "datasets", class: "runs" },
    h("caption", { class: "visually-hidden" }, "Datasets, newest first"),
    h("thead", {}, h("tr", {}, ["Name", "Id", "Rows", "Features", "Target", "Source", "Created", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
    body));

  async function refresh(message) {
    const page = await getJSON(withQuery("/v1/datasets", { order: "newest", limit: SHOWN }), { signal: stop.signal });
    replace(body, page.items.map((dataset) => row(dataset)));
    note.textContent = message ?? (page.items.length ? `${page.items.length} datasets, newest first.` : "No datasets yet: upload one, or synthesize one when you start a run.");
    if (location.hash) document.getElementById(decodeURIComponent(location.hash.slice(1)))?.scrollIntoView();
  }

  function row(dataset) {
    const download = h("button", { type: "button", class: "secondary", "data-action": "download" }, "CSV");
    download.addEventListener("click", async () => {
      const answer = await send(`/v1/datasets/${id(dataset.id)}/data`, { accept: "text/csv" });
      save(await answer.blob(), `${dataset.id}.csv`);
    });
    const del = h("button", { type: "button", class: "danger", "data-action": "delete" }, "Delete");
    del.addEventListener("click", async () => {
      if (!window.confirm(`Delete dataset ${dataset.name || dataset.id}? Its runs keep their history; their pages no longer show the data.`)) return;
      try {
        await remove(`/v1/datasets/${id(dataset.id)}`);
        await refresh(`Deleted dataset ${dataset.id}.`);
      } catch (error) {
        note.textContent = `Cannot delete ${dataset.id}: ${error instanceof ApiError ? error.message : error}`;
      }
    });
    const kind = dataset.synthetic?.kind;
    const labelled = ["blobs", "moons", "circles"].includes(kind) ? dataset.synthetic.classes ?? 2 : 0;
    const target = dataset.classes?.length
      ? `${dataset.classes.length} classes: ${dataset.classes.slice(0, 4).join(", ")}${dataset.classes.length > 4 ? ", …" : ""}`
      : labelled ? `${labelled} classes (0 to ${labelled - 1})` : "numbers";
    return h("tr", { id: dataset.id, dataset: { dataset: dataset.id } },
      h("td", {}, dataset.name || "–"), h("td", {}, h("code", {}, dataset.id)),
      h("td", {}, String(dataset.num_examples)), h("td", {}, String(dataset.features)),
      h("td", {}, target), h("td", {}, kind ?? (dataset.synthetic ? "linear" : "upload")),
      h("td", {}, when(dataset.created_at)),
      h("td", { class: "actions" },
        h("a", { href: `/ui/start?dataset=${id(dataset.id)}`, "data-link": true, class: "button secondary" }, "Start a run"),
        download, del));
  }

  replace(main, h("div", { class: "view-head" }, h("h2", { id: "view-title" }, "Datasets")),
    uploadForm((dataset) => refresh(`Uploaded ${dataset.name || dataset.id}: ${dataset.num_examples} rows, ${dataset.features} features.`)),
    note, table);
  refresh().then(() => { main.dataset.state = "drawn"; })
    .catch((error) => { if (!stop.signal.aborted) note.textContent = `Cannot list datasets: ${error.message}`; });
  return () => stop.abort();
}
