// Start a run: choose or synthesize a dataset, choose or create a model, set the optimizer,
// learning rate, epochs and batch size; then follow the new run on its page.

import { ApiError, getJSON, postJSON, withQuery, id } from "../api.js";
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

function field(name, label, value, attrs = {}) {
  const input = h("input", { id: name, name, value: value ?? "", ...attrs });
  return h("div", { class: "field" }, h("label", { for: name }, label), input);
}

function select(name, label, options, value, disabled = new Set()) {
  return h("div", { class: "field" }, h("label", { for: name }, label),
    h("select", { id: name, name }, Object.entries(options).map(([v, text]) =>
      h("option", { value: v, selected: v === value, disabled: disabled.has(v) }, disabled.has(v) ? `${text} (not offered by this server)` : text))));
}

function parse(kind, text, name) {
  const value = String(text).trim();
  if (kind === "vector") return value.split(/[\s,]+/).filter(Boolean).map(Number);
  const number = Number(value);
  if (value === "" || !Number.isFinite(number)) throw new ApiError(422, { detail: `${name}: enter a number` });
  return number;
}

function isClassification(dataset) {
  const kind = dataset.synthetic?.kind;
  return Boolean(dataset.classes?.length) || ["blobs", "moons", "circles"].includes(kind);
}

/** Render the start form into `main`; `go(path)` navigates. */
export function startView(main, go) {
  const stop = new AbortController();
  const problem = h("div", { id: "start-problem", class: "problem", role: "alert" });
  const progress = h("p", { class: "status-line", role: "status", "aria-live": "polite" });
  const form = h("form", { id: "start-form", novalidate: true });
  replace(main, h("h2", { id: "view-title" }, "Start a run"), form, progress, problem);

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
    synKind.querySelector("select").addEventListener("change", () => { drawSynFields(); suggestModel(); });
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
    optimizer.querySelector("select").addEventListener("change", (event) => {
      rate.querySelector("input").value = String(OPTIMIZERS[event.target.value]);
    });
    const training = h("fieldset", {}, h("legend", {}, "Training"), h("div", { class: "fields" },
      optimizer, rate,
      field("epochs", "Epochs", "10", { inputmode: "numeric" }),
      field("batch-size", "Batch size (empty: full batch)", "", { inputmode: "numeric" }),
      field("shuffle-seed", "Shuffle seed (empty: random)", "", { inputmode: "numeric" }),
      offered.runFields.has("validation") ? field("validation", "Validation fraction (empty: none)", "", { inputmode: "decimal" }) : null,
      offered.runFields.has("early_stopping") ? field("patience", "Early stopping patience in epochs (empty: none)", "", { inputmode: "numeric" }) : null));

    const submit = h("button", { type: "submit", id: "start-run" }, "Start run");
    replace(form, datasetChoice, modelChoice, training, h("p", {}, submit));

    const value = (name) => form.querySelector(`#${name}`).value;
    const source = (name) => form.querySelector(`input[name=${name}]:checked`).value;
    const syncVisibility = () => {
      for (const set of [datasetChoice, modelChoice]) {
        const chosen = set.querySelector("input[type=radio]:checked").value;
        set.querySelector(".when-new").hidden = chosen !== "new";
        set.querySelector(".when-existing").hidden = chosen !== "existing";
      }
      mlpFields.hidden = value("model-kind") !== "mlp";
    };
    function suggestModel() {
      const kind = value("syn-kind");
      const wanted = kind === "linear" ? "linear" : offered.modelKinds.has("mlp") ? "mlp" : "logistic";
      if (offered.modelKinds.has(wanted)) form.querySelector("#model-kind").value = wanted;
      syncVisibility();
    }
    form.addEventListener("change", syncVisibility);
    syncVisibility();

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      submit.disabled = true;
      problem.replaceChildren();
      try {
        let dataset;
        if (source("dataset-source") === "new") {
          const kind = value("syn-kind");
          const body = offered.syntheticHasKind ? { kind } : {};
          for (const [name, label, , type] of SYNTHETIC[kind].fields) body[name] = parse(type, value(`syn-${name}`), label);
          if (value("syn-seed").trim()) body.seed = parse("int", value("syn-seed"), "Seed");
          progress.textContent = "Synthesizing the dataset…";
          dataset = await postJSON("/v1/datasets/synthetic", body);
        } else {
          dataset = await getJSON(`/v1/datasets/${id(value("dataset-id"))}`);
        }
        let modelId;
        if (source("model-source") === "new") {
          const kind = value("model-kind");
          const body = { kind, features: dataset.features };
          if (value("model-name").trim()) body.name = value("model-name").trim();
          const classes = dataset.synthetic?.classes ?? dataset.classes?.length ?? 2;
          if (kind === "logistic") body.classes = classes;
          if (kind === "mlp") {
            body.hidden = value("model-hidden").split(/[\s,]+/).filter(Boolean).map(Number);
            body.activation = value("model-activation");
            body.task = isClassification(dataset) ? "classification" : "regression";
            if (body.task === "classification") body.classes = classes;
          }
          progress.textContent = "Creating the model…";
          modelId = (await postJSON("/v1/models", body)).id;
        } else {
          modelId = value("model-id");
        }
        const kind = value("optimizer");
        const run = { dataset_id: dataset.id, epochs: parse("int", value("epochs"), "Epochs"),
          optimizer: { kind, learning_rate: parse("float", value("learning-rate"), "Learning rate") } };
        if (value("batch-size").trim()) run.batch_size = parse("int", value("batch-size"), "Batch size");
        if (value("shuffle-seed").trim()) run.shuffle_seed = parse("int", value("shuffle-seed"), "Shuffle seed");
        if (offered.runFields.has("validation") && value("validation").trim()) {
          run.validation = { fraction: parse("float", value("validation"), "Validation fraction") };
        }
        if (offered.runFields.has("early_stopping") && value("patience").trim()) {
          // Keras's EarlyStopping: val_loss when the run validates, else the training loss.
          run.early_stopping = { patience: parse("int", value("patience"), "Early stopping patience") };
        }
        progress.textContent = "Starting the run…";
        const started = await postJSON(`/v1/models/${id(modelId)}/runs`, run);
        go(`/ui/runs/${id(started.id)}`);
      } catch (error) {
        progress.textContent = "";
        const errors = error.problem?.errors ?? [];
        replace(problem, h("p", {}, error.message),
          errors.length ? h("ul", {}, errors.map((e) => h("li", {}, `${e.loc.join(".")}: ${e.msg}`))) : null);
        submit.disabled = false;
      }
    });
  })().catch((error) => { if (!stop.signal.aborted) replace(problem, h("p", {}, `Cannot load the form: ${error.message}`)); });
  return () => stop.abort();
}
