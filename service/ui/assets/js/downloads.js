// Files a person takes away from a page: a run's whole history as CSV (read page by page) and
// a model's file (ONNX, safetensors or JSON), fetched with the page's API key and saved
// through a temporary link.

import { getJSON, id, send, withQuery } from "./api.js";
import { h } from "./dom.js";

/** Save `blob` as a file named `name`. */
export function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** Every history row of run `runId`, in order. */
async function allRows(runId) {
  const rows = [];
  let after = null;
  for (;;) {
    const page = await getJSON(withQuery(`/v1/runs/${id(runId)}/history`, { after }));
    rows.push(...page.items);
    if (!page.next_cursor) return rows;
    after = page.next_cursor;
  }
}

/**
 * The run's history as CSV: epoch, loss, each metric, and W and b where the kind has them
 * (empty in the rows that `record_params` left without params).
 */
export async function historyCsv(runId) {
  const rows = await allRows(runId);
  const metrics = [...new Set(rows.flatMap((r) => Object.keys(r.metrics ?? {})))];
  const first = rows.find((r) => r.W != null && r.b != null);
  const width = first ? [first.W].flat().length : 0;
  const weights = width === 1 ? ["W"] : Array.from({ length: width }, (_, i) => `W${i}`);
  const header = ["epoch", "loss", ...metrics, ...weights, ...(width ? ["b"] : [])];
  const lines = [header.join(",")];
  for (const row of rows) {
    const cells = [row.epoch, row.loss, ...metrics.map((m) => row.metrics?.[m] ?? "")];
    if (width) cells.push(...(row.W != null ? [row.W].flat() : new Array(width).fill("")), row.b ?? "");
    lines.push(cells.join(","));
  }
  return new Blob([`${lines.join("\n")}\n`], { type: "text/csv" });
}

/** Save run `runId`'s history as `run_….csv`. */
export async function saveHistory(runId) {
  save(await historyCsv(runId), `${runId}.csv`);
}

/** Save model `modelId` as a file of `format` (onnx, safetensors or json). */
export async function saveModel(modelId, format) {
  const answer = await send(withQuery(`/v1/models/${id(modelId)}/export`, { format }), { accept: "*/*" });
  save(await answer.blob(), `${modelId}.${format}`);
}
