// Webhooks: the endpoints (create one, its secret shown once; enable, disable, ping, delete)
// and, for the one chosen, its delivery log with filters and redelivery.

import { getJSON, id, postJSON, send, withQuery } from "../api.js";
import { h, replace, sleep, when } from "../dom.js";
import { eventPatterns } from "../spec.js";

const REFRESH_MS = 2000;

function answerOf(attempt) {
  if (!attempt) return "–";
  return attempt.error ?? String(attempt.status_code);
}

/** Render the webhooks page into `main`; returns a cleanup function. */
export function webhooksView(main) {
  const stop = new AbortController();
  const problem = h("p", { id: "webhooks-problem", class: "problem", role: "alert" });
  const secret = h("div", { id: "new-secret", role: "status", "aria-live": "polite" });
  const endpoints = h("tbody", {});
  const note = h("p", { class: "status-line", role: "status", "aria-live": "polite" }, "Loading…");
  const log = h("section", { id: "deliveries", "aria-labelledby": "log-title" });
  const form = h("form", { id: "webhook-form", novalidate: true });
  let chosen = null;
  let filters = { status: null, event_type: null };

  replace(main,
    h("div", { class: "view-head" }, h("h2", { id: "view-title" }, "Webhooks")),
    h("p", { class: "note" }, "Each endpoint receives the events it subscribes to as signed POSTs (Standard Webhooks); see the manual's Webhooks chapter for a receiver."),
    form, secret, problem, note,
    h("div", { class: "table-scroll", tabindex: "0", role: "region", "aria-label": "Endpoints" },
      h("table", { id: "webhooks" },
        h("caption", { class: "visually-hidden" }, "Webhook endpoints"),
        h("thead", {}, h("tr", {}, ["Endpoint", "URL", "Events", "Enabled", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
        endpoints)),
    log);

  async function act(work) {
    problem.textContent = "";
    try {
      await work();
      await refresh();
    } catch (error) {
      if (!stop.signal.aborted) problem.textContent = error.message;
    }
  }

  (async () => {
    const patterns = await eventPatterns();
    replace(form,
      h("fieldset", {}, h("legend", {}, "New endpoint"),
        h("div", { class: "fields" },
          h("div", { class: "field" }, h("label", { for: "webhook-url" }, "URL"),
            h("input", { id: "webhook-url", name: "url", type: "url", placeholder: "https://hooks.example.com/tapeline", required: true })),
          h("div", { class: "field" }, h("label", { for: "webhook-events" }, "Events"),
            h("select", { id: "webhook-events", name: "events", multiple: true, size: "5" },
              patterns.map((p) => h("option", { value: p, selected: p === "*" }, p === "*" ? "* (every event)" : p)))),
          h("div", { class: "field" }, h("label", { for: "webhook-description" }, "Description"),
            h("input", { id: "webhook-description", name: "description" }))),
        h("p", {}, h("button", { type: "submit" }, "Create endpoint"))));
  })().catch((error) => { problem.textContent = error.message; });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(async () => {
      const events = [...form.querySelector("#webhook-events").selectedOptions].map((o) => o.value);
      const description = form.querySelector("#webhook-description").value.trim() || null;
      const made = await postJSON("/v1/webhooks", { url: form.querySelector("#webhook-url").value.trim(), events, description });
      replace(secret, h("p", {}, `Endpoint ${made.id} created. Its signing secret, shown this once: `,
        h("code", { id: "secret-value" }, made.secret)));
      form.reset();
      chosen = made.id;
    });
  });

  function row(hook) {
    const state = hook.enabled ? "yes" : `no${hook.disabled_reason ? ` (${hook.disabled_reason})` : ""}`;
    return h("tr", { dataset: { webhook: hook.id } },
      h("td", {}, h("button", { class: "link", type: "button", onclick: () => { chosen = hook.id; refresh(); } }, h("code", {}, hook.id))),
      h("td", {}, hook.url),
      h("td", {}, hook.events.join(", ")),
      h("td", {}, state),
      h("td", { class: "controls" },
        h("button", { type: "button", class: "toggle", onclick: () => act(async () => {
          // The answer is read whole: a body left unread is a request still open, which a
          // reload or a page left then aborts.
          await (await send(`/v1/webhooks/${id(hook.id)}`, { method: "PATCH", body: { enabled: !hook.enabled } })).json();
        }) },
          hook.enabled ? "Disable" : "Enable"),
        h("button", { type: "button", class: "ping", disabled: !hook.enabled, onclick: () => act(async () => {
          const ping = await postJSON(`/v1/webhooks/${id(hook.id)}/test`);
          note.textContent = `Ping to ${hook.id}: ${ping.status} (${answerOf(ping.attempts.at(-1))}).`;
          chosen = hook.id;
        }) }, "Send a ping"),
        h("button", { type: "button", class: "delete", onclick: () => act(async () => {
          await send(`/v1/webhooks/${id(hook.id)}`, { method: "DELETE" });
          if (chosen === hook.id) chosen = null;
        }) }, "Delete")));
  }

  function filterSelect(name, label, options) {
    const select = h("select", { id: `filter-${name}`, onchange: (event) => { filters[name] = event.target.value || null; refresh(); } },
      h("option", { value: "" }, "any"), options.map((o) => h("option", { value: o }, o)));
    return h("label", { class: "inline", for: `filter-${name}` }, label, select);
  }

  // The log's heading and filters are made once per endpoint chosen; each refresh replaces
  // its rows only (so a filter being used keeps its focus).
  let shown = null;
  const rows = h("tbody", {});
  const empty = h("p", { class: "note" });

  async function showLog(hook) {
    if (shown !== hook) {
      shown = hook;
      filters = { status: null, event_type: null };
      const types = (await eventPatterns()).filter((p) => !p.includes("*"));
      replace(log,
        h("h3", { id: "log-title" }, "Deliveries of ", h("code", {}, hook)),
        h("div", { class: "controls" }, filterSelect("status", "Status", ["pending", "succeeded", "failed"]),
          filterSelect("event_type", "Event", [...types, "ping"])),
        h("div", { class: "table-scroll", tabindex: "0", role: "region", "aria-label": "Deliveries" },
          h("table", { id: "delivery-log" },
            h("caption", { class: "visually-hidden" }, "Deliveries, newest first"),
            h("thead", {}, h("tr", {}, ["Event", "Status", "Attempts", "Last answer", "Latency", "Last attempt", ""].map((c) => h("th", { scope: "col" }, c)))),
            rows)),
        empty);
    }
    const page = await getJSON(withQuery(`/v1/webhooks/${id(hook)}/deliveries`, { ...filters, limit: 50 }), { signal: stop.signal });
    replace(rows, page.items.map((d) => {
      const last = d.attempts.at(-1);
      return h("tr", { dataset: { delivery: d.id, status: d.status } },
        h("td", {}, d.event_type, " ", h("code", {}, d.event_id)),
        h("td", {}, h("span", { class: `badge ${d.status}` }, d.status)),
        h("td", {}, String(d.attempt_count)),
        h("td", { title: last?.response ?? "" }, answerOf(last)),
        h("td", {}, last ? `${Math.round(last.latency_ms)} ms` : "–"),
        h("td", {}, when(d.last_attempt_at)),
        h("td", {}, h("button", { type: "button", class: "redeliver", disabled: d.status === "pending",
          onclick: () => act(() => postJSON(`/v1/webhooks/${id(hook)}/deliveries/${id(d.id)}/redeliver`)) }, "Redeliver")));
    }));
    empty.textContent = page.items.length ? "" : "No deliveries yet.";
  }

  async function refresh() {
    const page = await getJSON(withQuery("/v1/webhooks", { limit: 100 }), { signal: stop.signal });
    replace(endpoints, page.items.map(row));
    note.textContent = page.items.length ? `${page.items.length} endpoint(s); updated ${new Date().toLocaleTimeString()}.` : "No endpoints yet: create one.";
    if (chosen && !page.items.some((hook) => hook.id === chosen)) chosen = null;
    if (chosen) await showLog(chosen);
    else {
      shown = null;
      replace(log);
    }
  }

  (async () => {
    while (!stop.signal.aborted) {
      try {
        await refresh();
      } catch (error) {
        if (stop.signal.aborted) return;
        note.textContent = `Cannot list webhooks: ${error.message}`;
      }
      await sleep(REFRESH_MS, stop.signal);
    }
  })();
  return () => stop.abort();
}
