// A panel that shows and edits a resource's name, description and tags (a run's or a
// model's), saved as a JSON Merge Patch under If-Match: a change made elsewhere meanwhile is
// reported, not overwritten.

import { ApiError, getJSON, id, send } from "../api.js";
import { h, replace } from "../dom.js";

function tagsText(tags) {
  return Object.entries(tags ?? {}).map(([k, v]) => `${k}=${v}`).join("\n");
}

/** `key=value` lines as tags; throws naming a line that is not one. */
function parseTags(text) {
  const tags = {};
  text.split("\n").map((l) => l.trim()).filter(Boolean).forEach((line, i) => {
    const cut = line.indexOf("=");
    if (cut < 1) throw new Error(`line ${i + 1}: write tags as key=value`);
    tags[line.slice(0, cut).trim()] = line.slice(cut + 1).trim();
  });
  return tags;
}

/** The merge patch taking `before` (a resource) to the form's values. */
function mergePatch(before, name, description, tags) {
  const patch = {};
  if ((before.name ?? "") !== name) patch.name = name || null;
  if ((before.description ?? "") !== description) patch.description = description || null;
  const changes = {};
  for (const key of Object.keys(before.tags ?? {})) if (!(key in tags)) changes[key] = null;
  for (const [key, value] of Object.entries(tags)) if (before.tags?.[key] !== value) changes[key] = value;
  if (Object.keys(changes).length) patch.tags = changes;
  return patch;
}

/**
 * The annotations panel of `/v1/{kind}/{resourceId}` (`kind`: "runs" or "models"); `onSaved`
 * is told the resource after each save.
 */
export function annotationsPanel(kind, resourceId, { onSaved = () => {} } = {}) {
  const prefix = `${kind}-notes`;
  const nameInput = h("input", { id: `${prefix}-name`, maxlength: "200", autocomplete: "off" });
  const description = h("textarea", { id: `${prefix}-description`, rows: "3", maxlength: "10000" });
  const tags = h("textarea", { id: `${prefix}-tags`, rows: "3", spellcheck: "false", placeholder: "team=cv" });
  const status = h("p", { id: `${prefix}-status`, class: "note", role: "status", "aria-live": "polite" });
  const save = h("button", { type: "submit", id: `${prefix}-save` }, "Save");
  let current = null;

  function fill(resource) {
    current = resource;
    nameInput.value = resource.name ?? "";
    description.value = resource.description ?? "";
    tags.value = tagsText(resource.tags);
  }

  const form = h("form", { class: "notes", "aria-labelledby": `${prefix}-title` },
    h("label", { for: nameInput.id }, "Name"), nameInput,
    h("label", { for: description.id }, "Description"), description,
    h("label", { for: tags.id }, "Tags (one key=value a line)"), tags,
    h("p", { class: "buttons" }, save), status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!current) return;
    let patch;
    try {
      patch = mergePatch(current, nameInput.value.trim(), description.value.trim(), parseTags(tags.value));
    } catch (error) {
      status.textContent = error.message;
      return;
    }
    if (!Object.keys(patch).length) {
      status.textContent = "Nothing to save.";
      return;
    }
    try {
      const answer = await send(`/v1/${kind}/${id(resourceId)}`, {
        method: "PATCH", body: patch, contentType: "application/merge-patch+json",
        headers: { "If-Match": current.etag },
      });
      fill(await answer.json());
      status.textContent = "Saved.";
      onSaved(current);
    } catch (error) {
      status.textContent = error instanceof ApiError && error.status === 412
        ? "Changed elsewhere since this page read it: reload to see the change, then edit again."
        : `Not saved: ${error.message}`;
    }
  });

  const panel = h("section", { class: "panel", id: `${prefix}`, "aria-labelledby": `${prefix}-title` },
    h("h3", { id: `${prefix}-title` }, "Name, description and tags"), form);
  getJSON(`/v1/${kind}/${id(resourceId)}`).then(fill, (error) => {
    replace(status, `Cannot read: ${error.message}`);
  });
  return panel;
}
