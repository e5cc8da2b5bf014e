// A run's live events read with fetch and a stream reader (so the API key header goes along),
// resumed with `after` whenever the connection drops, until the run's end event.

import { ApiError, id, send, withQuery } from "./api.js";
import { sleep } from "./dom.js";

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
  let delay = 250;
  while (!signal.aborted) {
    try {
      const response = await send(withQuery(`/v1/runs/${id(runId)}/events`, { after: last }), {
        accept: "application/jsonl", signal,
      });
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
        const rows = [];
        for (const line of lines) {
          if (!line.trim()) continue;
          const item = JSON.parse(line);
          if (item.type === "end") {
            if (rows.length) onEpochs(rows);
            onEnd(item);
            return;
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
 * Follow study `studyId`'s events (JSON Lines), resumed with `after` whenever the connection
 * drops: `onEvents(events)` for each batch read (the `end` event included, last), then
 * resolves; `onState("live"|"reconnecting")` on connection changes.
 */
export async function followStudy(studyId, { onEvents, onState = () => {}, signal }) {
  let last = 0;
  let delay = 250;
  while (!signal.aborted) {
    try {
      const response = await send(withQuery(`/v1/studies/${id(studyId)}/events`, { after: last || undefined }), {
        accept: "application/jsonl", signal,
      });
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
        const events = lines.filter((line) => line.trim()).map((line) => JSON.parse(line));
        if (!events.length) continue;
        last = events[events.length - 1].seq;
        onEvents(events);
        if (events.some((e) => e.type === "end")) return;
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
