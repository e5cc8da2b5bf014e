// A run's (or model's) history as columns the charts read, from v1 rows ({epoch, W, b, loss})
// and v2 rows ({epoch, loss, metrics, params?, W?, b?}) alike, kept to a point budget.

/** The most points a chart holds; the page never asks the API for more than this. */
export const BUDGET = 2000;

/** An empty trace: `x` is the epoch (or `step` for a model's history). */
export function emptyTrace(key = "epoch") {
  return { key, x: [], loss: [], metrics: {}, params: {}, W: [], b: [], hasWb: false };
}

/** A trace from a columns answer (`?format=columns`). */
export function fromColumns(columns, key = "epoch") {
  const trace = emptyTrace(key);
  const n = columns[key].length;
  trace.x = columns[key].slice();
  trace.loss = columns.loss.slice();
  for (const [name, values] of Object.entries(columns.metrics ?? {})) trace.metrics[name] = values.slice();
  for (const [name, values] of Object.entries(columns.params ?? {})) trace.params[name] = values.slice();
  // Rows that `record_params` left without params are null in W and b, as in `params`.
  if (n > 0 && Array.isArray(columns.W) && columns.W.length === n && columns.W[0] != null) {
    trace.W = columns.W.slice();
    trace.b = columns.b.slice();
    trace.hasWb = true;
  }
  return trace;
}

/**
 * Add stream rows (each a history row) to the end of the trace. A row without a metric or
 * without params (`record_params` keeps them in every k-th row only) is null in those
 * columns, so every column stays aligned with `x`.
 */
export function appendRows(trace, rows) {
  for (const row of rows) {
    const at = trace.x.length;
    trace.x.push(row[trace.key]);
    trace.loss.push(row.loss);
    for (const [name, value] of Object.entries(row.metrics ?? {})) {
      (trace.metrics[name] ??= new Array(at).fill(null)).push(value);
    }
    for (const [name, value] of Object.entries(row.params ?? {})) {
      (trace.params[name] ??= new Array(at).fill(null)).push(value);
    }
    for (const column of [...Object.values(trace.metrics), ...Object.values(trace.params)]) {
      if (column.length === at) column.push(null);
    }
    if (trace.hasWb || (at === 0 && row.W != null && row.b != null)) {
      trace.hasWb = true;
      trace.W.push(row.W ?? null);
      trace.b.push(row.b ?? null);
    }
  }
}

/** The index of the last row whose params are all there (-1 when none is). */
export function lastWithParams(trace) {
  const columns = Object.values(trace.params);
  if (!columns.length) return -1;
  for (let i = trace.x.length - 1; i >= 0; i--) {
    if (columns.every((column) => column[i] != null)) return i;
  }
  return -1;
}

/**
 * Which indexes to keep so that at most `maxPoints` remain: the API's own rule
 * (service/store/sampling.py): `maxPoints / 4` equal buckets, each keeping its first, last,
 * lowest and highest value.
 */
export function minmaxKeep(values, maxPoints) {
  const n = values.length;
  if (n <= maxPoints) return values.map((_, i) => i);
  const count = Math.max(1, Math.min(n, Math.floor(maxPoints / 4)));
  const keep = new Set();
  for (let k = 0; k < count; k++) {
    const start = Math.floor((k * n) / count);
    const end = Math.floor(((k + 1) * n) / count) - 1;
    let lo = start;
    let hi = start;
    for (let i = start + 1; i <= end; i++) {
      if (values[i] < values[lo]) lo = i;
      if (values[i] > values[hi]) hi = i;
    }
    keep.add(start).add(end).add(lo).add(hi);
  }
  return [...keep].sort((a, b) => a - b);
}

/** Shrink the trace in place to the budget when it has grown to twice that. */
export function keepToBudget(trace) {
  if (trace.x.length <= 2 * BUDGET) return;
  const keep = minmaxKeep(trace.loss, BUDGET);
  const pick = (column) => keep.map((i) => column[i]);
  trace.x = pick(trace.x);
  trace.loss = pick(trace.loss);
  for (const name of Object.keys(trace.metrics)) trace.metrics[name] = pick(trace.metrics[name]);
  for (const name of Object.keys(trace.params)) trace.params[name] = pick(trace.params[name]);
  if (trace.hasWb) {
    trace.W = pick(trace.W);
    trace.b = pick(trace.b);
  }
}

/** Exponential moving average (TensorBoard's smoothing, debiased); `weight` in [0, 1). */
export function smooth(values, weight) {
  if (!weight) return values;
  let last = 0;
  let count = 0;
  return values.map((value) => {
    if (value == null) return null;
    last = last * weight + (1 - weight) * value;
    count += 1;
    return last / (1 - weight ** count);
  });
}

/** The Euclidean norm of a nested array of numbers. */
export function norm(value) {
  if (value == null) return null;
  let total = 0;
  for (const v of [value].flat(Infinity)) total += v * v;
  return Math.sqrt(total);
}

/** How many numbers a nested array holds. */
export function size(value) {
  return [value].flat(Infinity).length;
}
