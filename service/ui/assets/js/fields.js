// A run's fields by the search language's names (params.optimizer.learning_rate,
// metrics.val_loss, model.hidden, tags.team, ...), read from the API's resources, and how
// the dashboard shows their values.

import { num } from "./dom.js";

/** The value at a dotted path inside an object, or undefined. */
function at(value, path) {
  for (const key of path) {
    if (value == null || typeof value !== "object") return undefined;
    value = value[key];
  }
  return value;
}

/** A run's field: `run` is the API's Run, `model` and `dataset` its model and dataset (when known). */
export function fieldValue(field, run, model, dataset) {
  const [head, ...rest] = field.split(".");
  if (head === "params" || head === "run") return at(run, rest);
  if (head === "metrics") return rest[0] === "loss" && rest.length === 1 ? run.final?.loss : at(run.final?.metrics, rest);
  if (head === "tags") return run.tags?.[rest.join(".")];
  if (head === "model") return rest[0] === "id" ? run.model_id : at(model, rest);
  if (head === "dataset") return rest[0] === "id" ? run.dataset_id : at(dataset, rest);
  return at(run, [field]);
}

/** A field's value as text: numbers to 4 significant places, lists and objects as JSON. */
export function shown(value) {
  if (value === undefined || value === null) return "–";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : num(value);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** A short column heading for a field: its last parts. */
export function heading(field) {
  const parts = field.split(".");
  if (parts[0] === "params" && parts[1] === "optimizer") return parts.slice(2).join(".") || "optimizer";
  return parts.length > 1 ? parts.slice(1).join(".") : field;
}
