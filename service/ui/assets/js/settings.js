// A run's settings in words, only those that apply to it (no Huber delta for a squared
// error, no shuffle for a full batch): what the run page shows and the start form reuses.

const OPTIMIZERS = { sgd: "SGD", momentum: "Momentum", adam: "Adam" };
const LOSSES = { mse: "mean squared error", mae: "mean absolute error", huber: "Huber", cross_entropy: "cross-entropy" };

/** A fraction as a percentage: 0.2 -> "20 %". */
export function percent(fraction) {
  return `${Math.round(fraction * 1000) / 10} %`;
}

/** "Adam, learning rate 0.01, β₁ 0.9, β₂ 0.999, ε 1e-7". */
export function optimizerWords(optimizer) {
  const parts = [`learning rate ${optimizer.learning_rate}`];
  if (optimizer.kind === "momentum") parts.push(`momentum ${optimizer.momentum}${optimizer.nesterov ? " (Nesterov)" : ""}`);
  if (optimizer.kind === "adam") parts.push(`β₁ ${optimizer.beta_1}`, `β₂ ${optimizer.beta_2}`, `ε ${optimizer.epsilon}`);
  return `${OPTIMIZERS[optimizer.kind] ?? optimizer.kind}, ${parts.join(", ")}`;
}

function batches(run, dataset) {
  if (run.batch_size == null) return `full batch${dataset ? ` (all ${dataset.num_examples} rows each step)` : ""}`;
  const order = run.shuffle ? `shuffled each epoch${run.shuffle_seed != null ? ` (seed ${run.shuffle_seed})` : ""}` : "in row order";
  return `${run.batch_size} rows per step, ${order}`;
}

function penalty(regularization) {
  const parts = [];
  if (regularization?.l1) parts.push(`L1 ${regularization.l1}`);
  if (regularization?.l2) parts.push(`L2 ${regularization.l2}`);
  return parts.length ? `${parts.join(" + ")} on the weights` : "none";
}

function validation(spec) {
  if (!spec) return "none";
  if (spec.fraction != null) return `the last ${percent(spec.fraction)} of the rows`;
  return `dataset ${spec.dataset_id}`;
}

function stopping(spec) {
  if (!spec) return "off";
  const monitor = spec.monitor ?? "val_loss (loss without validation)";
  const delta = spec.min_delta ? ` by more than ${spec.min_delta}` : "";
  const kept = spec.restore_best ? "the best epoch's parameters kept" : "the last parameters kept";
  return `after ${spec.patience} epoch${spec.patience === 1 ? "" : "s"} without ${monitor} improving${delta}; ${kept}`;
}

/** `[label, words]` for each setting of `run` that applies (`dataset` adds its size). */
export function settingsWords(run, dataset) {
  return [
    ["Optimizer", optimizerWords(run.optimizer)],
    ["Epochs", String(run.epochs)],
    ["Batches", batches(run, dataset)],
    ["Loss", run.loss === "huber" ? `Huber (δ ${run.huber_delta})` : LOSSES[run.loss] ?? run.loss],
    ["Regularization", penalty(run.regularization)],
    ["Validation", validation(run.validation)],
    ["Early stopping", stopping(run.early_stopping)],
    ["Float type", run.dtype],
  ];
}
