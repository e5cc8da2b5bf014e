// Start a run: choose or synthesize a dataset, choose or create a model, set the training;
// then follow the new run on its page. Settings that suit the data and the model are
// suggested until the person edits them; every problem is shown at its field at once; the
// API's dry runs check the dataset and the model before anything is stored, and a run the
// server refuses leaves nothing behind. `?from=RUN` fills the form with a run's settings,
// `?dataset=ID` picks a stored dataset.

import { ApiError, getJSON, id, postJSON, remove, withQuery } from "../api.js";
import { h, replace } from "../dom.js";
import { offers } from "../spec.js";

const SYNTHETIC = {
  linear: { label: "The tutorial's line (y = 3x + 2 + noise)", fields: [
    ["num_examples", "Examples", 1000, "int"], ["true_W", "True W", 3.0, "vector"],
    ["true_b", "True b", 2.0, "float"], ["noise_stddev", "Noise (standard deviation)", 1.0, "float"]] },
  blobs: { label: "Blobs (classes around random centres)", fields: [
    ["num_examples", "Examples", 300, "int"], ["features", "Features", 2, "int"],
    ["classes", "Classes", 3, "int"], ["spread", "Spread", 1.0, "float"]] },
  moons: { label: "Two moons", fields: [["num_examples", "Examples", 300, "int"], ["noise", "Noise", 0.1, "float"]] },
  circles: { label: "Two circles", fields: [["num_examples", "Examples", 300, "int"], ["noise", "Noise", 0.1, "float"]] },
};
const MODELS = { linear: "Linear (the tutorial's, W = 5, b = 0)", logistic: "Logistic regression", mlp: "Small MLP" };
const OPTIMIZERS = { sgd: 0.1, momentum: 0.1, adam: 0.001 };
// Settings that train each kind of model well on the synthetic data of its task.
const SUGGESTED = {
  linear: { optimizer: "sgd", "learning-rate": "0.1", epochs: "10" },
  logistic: { optimizer: "adam", "learning-rate": "0.05", epochs: "100" },
  "mlp-classification": { optimizer: "adam", "learning-rate": "0.01", epochs: "300", "model-hidden": "16, 16", "model-activation": "tanh" },
  "mlp-regression": { optimizer: "adam", "learning-rate": "0.01", epochs: "200", "model-hidden": "16, 16", "model-activation": "tanh" },
};
// Where a field of a request is on the form.
const FIELDS = {
  "body.optimizer.learning_rate": "learning-rate", "body.optimizer": "optimizer", "body.epochs": "epochs",
  "body.batch_size": "batch-size", "body.shuffle_seed": "shuffle-seed", "body.validation": "validation",
  "body.early_stopping": "patience", "body.hidden": "model-hidden", "body.activation": "model-activation",
  "body.name": "model-name", "body.kind": "model-kind", "body.dataset_id": "dataset-id",
};

function field(name, label, value, attrs = {}) {
  const input = h("input", { id: name, name, value: value ?? "", "aria-describedby": `${name}-problem`, ...attrs });
  return h("div", { class: "field" }, h("label", { for: name }, label), input,
    h("p", { class: "field-problem", id: `${name}-problem`, hidden: true }));
}

function select(name, label, options, value, disabled = new Set()) {
  return h("div", { class: "field" }, h("label", { for: name }, label),
    h("select", { id: name, name, "aria-describedby": `${name}-problem` }, Object.entries(options).map(([v, text]) =>
      h("option", { value: v, selected: v === value, disabled: disabled.has(v) }, disabled.has(v) ? `${text} (not offered by this server)` : text))),
    h("p", { class: "field-problem", id: `${name}-problem`, hidden: true }));
}

function isClassification(dataset) {
  const kind = dataset.synthetic?.kind;
  return Boolean(dataset.classes?.length) || ["blobs", "moons", "circles"].includes(kind);
}

/** Problems found in the form before anything is sent: `{fieldId: message}`. */
class Problems {
  constructor() { this.found = new Map(); }

  /** The value of `text` as a `kind` number, or undefined (and a problem at `name`). */
  number(name, text, kind, { min, above, below } = {}) {
    const value = String(text).trim();
    const number = Number(value);
    let wrong = null;
    if (value === "" || !Number.isFinite(number)) wrong = "enter a number";
    else if (kind === "int" && !Number.isInteger(number)) wrong = "enter a whole number";
    else if (min != null && number < min) wrong = `at least ${min}`;
    else if (above != null && number <= above) wrong = `more than ${above}`;
    else if (below != null && number >= below) wrong = `less than ${below}`;
    if (wrong) this.found.set(name, wrong);
    return wrong ? undefined : number;
  }

  /** A list of numbers (`16, 16`), each a whole number of at least 1 when `widths`. */
  list(name, text, widths = false) {
    const values = String(text).split(/[\s,]+/).filter(Boolean).map(Number);
    if (!values.length || values.some((v) => !Number.isFinite(v) || (widths && (!Number.isInteger(v) || v < 1)))) {
      this.found.set(name, widths ? "enter layer sizes such as 16, 16" : "enter numbers separated by commas");
    }
    return values;
  }
}

/** Render the start form into `main`; `go(path)` navigates. */
export function startView(main, go) {
  const stop = new AbortController();
  const problem = h("div", { id: "start-problem", class: "problem", role: "alert" });
  const progress = h("p", { class: "status-line", role: "status", "aria-live": "polite" });
  const form = h("form", { id: "start-form", novalidate: true });
  replace(main, h("h2", { id: "view-title" }, "Start a run"), form, progress, problem);
  const query = new URLSearchParams(location.search);

  (async () => {
    const [offered, datasets, models] = await Promise.all([
      offers(),
      getJSON(withQuery("/v1/datasets", { order: "newest", limit: 100 }), { signal: stop.signal }),
      getJSON(withQuery("/v1/models", { order: "newest", limit: 100 }), { signal: stop.signal }),
    ]);
    const kindLabels = Object.fromEntries(Object.entries(SYNTHETIC).map(([k, v]) => [k, v.label]));
    const notOffered = new Set(Object.keys(SYNTHETIC).filter((k) => !offered.syntheticKinds.has(k)));
    const modelsNotOffered = new Set(Object.keys(MODELS).filter((k) => !offered.modelKinds.has(k)));

    const synFields = h("div", { class: "fields" });
    const synKind = select("syn-kind", "Kind of data", kindLabels, "linear", notOffered);
    const drawSynFields = () => {
      const kind = synKind.querySelector("select").value;
      replace(synFields, SYNTHETIC[kind].fields.map(([name, label, value]) => field(`syn-${name}`, label, value, { inputmode: "decimal" })),
        field("syn-seed", "Seed (empty: random)", "", { inputmode: "numeric" }));
    };
    drawSynFields();

    const datasetChoice = h("fieldset", {}, h("legend", {}, "Dataset"),
      h("div", { class: "radios" },
        h("label", {}, h("input", { type: "radio", name: "dataset-source", value: "new", id: "dataset-new", checked: true }), " Synthesize new data"),
        h("label", {}, h("input", { type: "radio", name: "dataset-source", value: "existing", id: "dataset-existing", disabled: !datasets.items.length }), " Use a stored dataset")),
      h("div", { class: "when-new" }, synKind, synFields),
      h("div", { class: "when-existing" }, select("dataset-id", "Stored dataset", Object.fromEntries(datasets.items.map((d) =>
        [d.id, `${d.name || d.id} — ${d.num_examples} rows, ${d.features} feature${d.features > 1 ? "s" : ""}`])), datasets.items[0]?.id)));

    const modelKind = select("model-kind", "Kind of model", MODELS, "linear", modelsNotOffered);
    const mlpFields = h("div", { class: "fields when-mlp" },
      field("model-hidden", "Hidden layer sizes (e.g. 16, 16)", "16"),
      select("model-activation", "Activation", { tanh: "tanh", relu: "relu", sigmoid: "sigmoid" }, "tanh"));
    const modelChoice = h("fieldset", {}, h("legend", {}, "Model"),
      h("div", { class: "radios" },
        h("label", {}, h("input", { type: "radio", name: "model-source", value: "new", id: "model-new", checked: true }), " Create a new model"),
        h("label", {}, h("input", { type: "radio", name: "model-source", value: "existing", id: "model-existing", disabled: !models.items.length }), " Train a stored model")),
      h("div", { class: "when-new" }, field("model-name", "Name (optional)", ""), modelKind, mlpFields),
      h("div", { class: "when-existing" }, select("model-id", "Stored model", Object.fromEntries(models.items.map((m) =>
        [m.id, `${m.name || m.id} — ${m.kind}, ${m.features} feature${m.features > 1 ? "s" : ""}`])), models.items[0]?.id)));

    const optimizer = select("optimizer", "Optimizer", { sgd: "SGD (the tutorial's)", momentum: "Momentum", adam: "Adam" }, "sgd");
    const rate = field("learning-rate", "Learning rate", "0.1", { inputmode: "decimal" });
    const training = h("fieldset", {}, h("legend", {}, "Training"), h("div", { class: "fields" },
      optimizer, rate,
      field("epochs", "Epochs", "10", { inputmode: "numeric" }),
      field("batch-size", "Batch size (empty: full batch)", "", { inputmode: "numeric" }),
      field("shuffle-seed", "Shuffle seed (empty: random)", "", { inputmode: "numeric" }),
      offered.runFields.has("validation") ? field("validation", "Validation fraction (empty: none)", "", { inputmode: "decimal" }) : null,
      offered.runFields.has("early_stopping") ? field("patience", "Early stopping patience in epochs (empty: none)", "", { inputmode: "numeric" }) : null));

    const submit = h("button", { type: "submit", id: "start-run" }, "Start run");
    replace(form, datasetChoice, modelChoice, training, h("p", {}, submit));

    const control = (name) => form.querySelector(`#${name}`);
    const value = (name) => control(name).value;
    const source = (name) => form.querySelector(`input[name=${name}]:checked`).value;
    const syncVisibility = () => {
      for (const set of [datasetChoice, modelChoice]) {
        const chosen = set.querySelector("input[type=radio]:checked").value;
        set.querySelector(".when-new").hidden = chosen !== "new";
        set.querySelector(".when-existing").hidden = chosen !== "existing";
      }
      mlpFields.hidden = value("model-kind") !== "mlp";
    };

    // ---- suggestions: the settings that suit the data and the model, until edited
    const edited = new Set();
    form.addEventListener("input", (event) => { if (event.target.type !== "radio") edited.add(event.target.id); });
    const classificationData = () => (source("dataset-source") === "new"
      ? value("syn-kind") !== "linear"
      : isClassification(datasets.items.find((d) => d.id === value("dataset-id")) ?? {}));
    function suggestSettings() {
      if (source("model-source") !== "new") return;
      const kind = value("model-kind");
      const preset = SUGGESTED[kind === "mlp" ? `mlp-${classificationData() ? "classification" : "regression"}` : kind] ?? {};
      for (const [name, suggestion] of Object.entries(preset)) {
        if (!edited.has(name)) control(name).value = suggestion;
      }
    }
    function suggestModel() {
      const wanted = !classificationData() ? "linear" : offered.modelKinds.has("mlp") ? "mlp" : "logistic";
      if (offered.modelKinds.has(wanted) && !edited.has("model-kind")) control("model-kind").value = wanted;
      syncVisibility();
      suggestSettings();
    }
    control("syn-kind").addEventListener("change", () => { drawSynFields(); suggestModel(); });
    control("dataset-id").addEventListener("change", suggestModel);
    for (const radio of form.querySelectorAll("input[name=dataset-source]")) radio.addEventListener("change", suggestModel);
    control("model-kind").addEventListener("change", () => { syncVisibility(); suggestSettings(); });
    control("optimizer").addEventListener("change", (event) => {
      if (!edited.has("learning-rate")) control("learning-rate").value = String(OPTIMIZERS[event.target.value]);
    });
    form.addEventListener("change", syncVisibility);
    syncVisibility();
    await fillFrom(query, { form, control, datasets, syncVisibility, edited, signal: stop.signal });

    // ---- problems: each shown once, at its field; the rest below the button
    function show(found, other = []) {
      for (const box of form.querySelectorAll(".field-problem")) {
        box.hidden = true;
        box.textContent = "";
      }
      for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
      for (const [name, message] of found) {
        const box = form.querySelector(`#${name}-problem`);
        if (!box) {
          other.push(message);
          continue;
        }
        box.textContent = message;
        box.hidden = false;
        control(name).setAttribute("aria-invalid", "true");
      }
      const marked = [...found.keys()].filter((name) => form.querySelector(`#${name}-problem`));
      replace(problem,
        marked.length ? h("p", {}, `The run was not started: ${marked.length === 1 ? "a field needs" : `${marked.length} fields need`} attention (marked above).`) : null,
        other.length ? [h("p", {}, marked.length ? "Also:" : "The run was not started:"), h("ul", {}, other.map((m) => h("li", {}, m)))] : null);
      if (marked.length) control(marked[0]).focus();
    }

    /** A refusal of the API: its field problems at their fields. */
    function showRefusal(error, prefix = "") {
      const found = new Map();
      const other = [];
      for (const e of error.problem?.errors ?? []) {
        const where = e.loc.join(".");
        const key = Object.keys(FIELDS).find((k) => where === k || where.startsWith(`${k}.`));
        const name = prefix && e.loc[0] === "body" && form.querySelector(`#${prefix}${e.loc[1]}`) ? `${prefix}${e.loc[1]}` : FIELDS[key];
        const shown = name && control(name) && !control(name).closest("[hidden]");
        if (shown && !found.has(name)) found.set(name, e.msg);
        else other.push(e.msg); // about the choice as a whole (a model that cannot fit the data)
      }
      if (!found.size && !other.length) other.push(error.message);
      show(found, other);
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const checks = new Problems();
      const newData = source("dataset-source") === "new";
      const newModel = source("model-source") === "new";
      const dataBody = {};
      if (newData) {
        const kind = value("syn-kind");
        if (offered.syntheticHasKind) dataBody.kind = kind;
        for (const [name, , , type] of SYNTHETIC[kind].fields) {
          dataBody[name] = type === "vector" ? checks.list(`syn-${name}`, value(`syn-${name}`)) : checks.number(`syn-${name}`, value(`syn-${name}`), type);
        }
        if (value("syn-seed").trim()) dataBody.seed = checks.number("syn-seed", value("syn-seed"), "int", { min: 0 });
      }
      const hidden = newModel && value("model-kind") === "mlp" ? checks.list("model-hidden", value("model-hidden"), true) : null;
      const run = { epochs: checks.number("epochs", value("epochs"), "int", { min: 1 }),
        optimizer: { kind: value("optimizer"), learning_rate: checks.number("learning-rate", value("learning-rate"), "float", { above: 0 }) } };
      if (value("batch-size").trim()) run.batch_size = checks.number("batch-size", value("batch-size"), "int", { min: 1 });
      if (value("shuffle-seed").trim()) run.shuffle_seed = checks.number("shuffle-seed", value("shuffle-seed"), "int", { min: 0 });
      if (offered.runFields.has("validation") && value("validation").trim()) {
        run.validation = { fraction: checks.number("validation", value("validation"), "float", { above: 0, below: 1 }) };
      }
      if (offered.runFields.has("early_stopping") && value("patience").trim()) {
        // Keras's EarlyStopping: val_loss when the run validates, else the training loss.
        run.early_stopping = { patience: checks.number("patience", value("patience"), "int", { min: 0 }) };
      }
      if (checks.found.size) {
        show(checks.found);
        return;
      }
      submit.disabled = true;
      show(new Map());
      const made = [];
      try {
        // The dry runs first: nothing is stored until the dataset and the model are good.
        progress.textContent = "Checking…";
        let dataset = newData
          ? await postJSON("/v1/datasets/synthetic?dry_run=true", dataBody).catch((e) => { throw Object.assign(e, { prefix: "syn-" }); })
          : await getJSON(`/v1/datasets/${id(value("dataset-id"))}`);
        let modelBody = null;
        if (newModel) {
          const kind = value("model-kind");
          modelBody = { kind, features: dataset.features };
          if (value("model-name").trim()) modelBody.name = value("model-name").trim();
          const classes = dataset.synthetic?.classes ?? dataset.classes?.length ?? 2;
          if (kind === "logistic") modelBody.classes = classes;
          if (kind === "mlp") {
            Object.assign(modelBody, { hidden, activation: value("model-activation"),
              task: isClassification(dataset) ? "classification" : "regression" });
            if (modelBody.task === "classification") modelBody.classes = classes;
          }
          await postJSON("/v1/models?dry_run=true", modelBody);
        }
        if (newData) {
          progress.textContent = "Synthesizing the dataset…";
          dataset = await postJSON("/v1/datasets/synthetic", dataBody);
          made.push(`/v1/datasets/${id(dataset.id)}`);
        }
        let modelId = value("model-id");
        if (newModel) {
          progress.textContent = "Creating the model…";
          modelId = (await postJSON("/v1/models", modelBody)).id;
          made.push(`/v1/models/${id(modelId)}`);
        }
        progress.textContent = "Starting the run…";
        const started = await postJSON(`/v1/models/${id(modelId)}/runs`, { dataset_id: dataset.id, ...run });
        go(`/ui/runs/${id(started.id)}`);
      } catch (error) {
        // A refused run leaves nothing behind: the model, then the dataset, made for it go.
        for (const path of made.reverse()) await remove(path).catch(() => {});
        progress.textContent = "";
        if (error instanceof ApiError) showRefusal(error, error.prefix ?? "");
        else show(new Map(), [error.message]);
        submit.disabled = false;
      }
    });
  })().catch((error) => { if (!stop.signal.aborted) replace(problem, h("p", {}, `Cannot load the form: ${error.message}`)); });
  return () => stop.abort();
}

/** Fill the form from `?from=RUN` (its dataset, a new model like its own, its training) or
 * `?dataset=ID`; what it fills counts as chosen, not suggested. */
async function fillFrom(query, { form, control, datasets, syncVisibility, edited, signal }) {
  const set = (name, text) => {
    if (text == null || !control(name)) return;
    control(name).value = String(text);
    edited.add(name);
  };
  const useDataset = (datasetId) => {
    if (!datasets.items.some((d) => d.id === datasetId)) return false;
    form.querySelector("#dataset-existing").checked = true;
    set("dataset-id", datasetId);
    return true;
  };
  if (query.get("dataset")) useDataset(query.get("dataset"));
  const runId = query.get("from");
  if (runId) {
    const run = await getJSON(`/v1/runs/${id(runId)}`, { signal });
    const model = await getJSON(`/v1/models/${id(run.model_id)}`, { signal }).catch(() => null);
    if (!useDataset(run.dataset_id)) {
      form.querySelector("#dataset-new").checked = true;
    }
    if (model) {
      set("model-kind", model.kind);
      if (model.kind === "mlp") {
        set("model-hidden", (model.hidden ?? []).join(", "));
        set("model-activation", model.activation);
      }
    }
    set("optimizer", run.optimizer.kind);
    set("learning-rate", run.optimizer.learning_rate);
    set("epochs", run.epochs);
    set("batch-size", run.batch_size ?? "");
    set("shuffle-seed", run.shuffle_seed ?? "");
    set("validation", run.validation?.fraction ?? "");
    set("patience", run.early_stopping?.patience ?? "");
    const note = h("p", { class: "note", id: "from-run" }, "The settings of run ", h("code", {}, runId),
      run.dataset_id && form.querySelector("#dataset-existing").checked ? ", on its dataset, with a new model like its own." : " (its dataset was deleted: choose another).");
    form.prepend(note);
  }
  syncVisibility();
}
