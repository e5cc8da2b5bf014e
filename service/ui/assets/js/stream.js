// A run's live events read with fetch and a stream reader (so the API key header goes along),
// resumed with `after` whenever the connection drops, until the run's end event.

import { ApiError, id, send, withQuery } from "./api.js";
import { sleep } from "./dom.js";

/**
 * Read JSON Lines from `url()` (asked again at each connection, so that it resumes with the
 * caller's `after`), handing each batch of items read to `onItems(items)` until it returns
 * true; reconnects with backoff when the connection drops or the server is busy, and
 * `onState("live"|"reconnecting")` says so. Resolves then, or when `signal` aborts.
 */
async function followLines(url, onItems, { onState, signal }) {
  let delay = 250;
  while (!signal.aborted) {
    try {
      const response = await send(url(), { accept: "application/jsonl", signal });
      onState("live");
      delay = 250;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        const lines = buffer.split("\n");
        buffer = lines.pop();
        const items = lines.filter((line) => line.trim()).map((line) => JSON.parse(line));
        if (items.length && onItems(items)) return;
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status < 500 && error.status !== 429) throw error;
    }
    onState("reconnecting");
    await sleep(delay, signal);
    delay = Math.min(delay * 2, 5000);
  }
}

/**
 * Follow run `runId` from after epoch `after`: `onEpochs(rows)` for each batch of history rows
 * read, `onPaused(run)` each time the run pauses (the stream stays open: its epochs follow once
 * it is resumed), `onEnd(run)` once at the end, `onState("live"|"reconnecting")` on connection
 * changes. Items of a type it does not know are skipped. Resolves at the end or when `signal`
 * aborts.
 */
export async function follow(runId, {
  after = -1, onEpochs, onEnd, onPaused = () => {}, onState = () => {}, signal,
}) {
  let last = after;
  await followLines(() => withQuery(`/v1/runs/${id(runId)}/events`, { after: last }), (items) => {
    const rows = [];
    for (const item of items) {
      if (item.type === "end") {
        if (rows.length) onEpochs(rows);
        onEnd(item);
        return true;
      }
      if (item.type === "paused") {
        if (rows.length) onEpochs(rows.splice(0));
        onPaused(item);
        continue;
      }
      if (item.type !== "epoch") continue;
      rows.push(item);
      last = item.epoch;
    }
    if (rows.length) onEpochs(rows);
    return false;
  }, { onState, signal });
}

/**
 * Follow study `studyId`'s events (JSON Lines), resumed with `after` whenever the connection
 * drops: `onEvents(events)` for each batch read (the `end` event included, last), then
 * resolves; `onState("live"|"reconnecting")` on connection changes.
 */
export async function followStudy(studyId, { onEvents, onState = () => {}, signal }) {
  let last = 0;
  await followLines(() => withQuery(`/v1/studies/${id(studyId)}/events`, { after: last || undefined }), (events) => {
    last = events[events.length - 1].seq;
    onEvents(events);
    return events.some((e) => e.type === "end");
  }, { onState, signal });
}
