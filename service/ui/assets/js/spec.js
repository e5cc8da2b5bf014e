// What this server offers, read from its own OpenAPI spec: the synthetic dataset kinds, the
// model kinds and the run options the start form may show, and the events webhooks offer.

import { getJSON } from "./api.js";

let spec = null;

function resolve(schema, root) {
  let current = schema;
  while (current?.$ref) current = current.$ref.split("/").slice(1).reduce((node, key) => node[key], root);
  return current ?? {};
}

/** Every value the request body of `operationId` allows for its field `field`. */
function choices(root, operationId, field) {
  const found = new Set();
  const visit = (schema, depth) => {
    const node = resolve(schema, root);
    if (depth > 6) return;
    const property = node.properties?.[field];
    if (property) {
      const values = resolve(property, root);
      for (const v of values.enum ?? []) found.add(v);
      if (values.const != null) found.add(values.const);
    }
    for (const key of Object.keys(node.discriminator?.mapping ?? {})) {
      if (node.discriminator.propertyName === field) found.add(key);
    }
    for (const branch of [...(node.oneOf ?? []), ...(node.anyOf ?? []), ...(node.allOf ?? [])]) visit(branch, depth + 1);
  };
  for (const methods of Object.values(root.paths)) {
    for (const operation of Object.values(methods)) {
      if (operation.operationId !== operationId) continue;
      const media = operation.requestBody?.content?.["application/json"];
      if (media) visit(media.schema, 0);
    }
  }
  return found;
}

function properties(root, name) {
  return Object.keys(resolve({ $ref: `#/components/schemas/${name}` }, root).properties ?? {});
}

/** The patterns a webhook may subscribe to: `*`, each family's `run.*`, each event type. */
export async function eventPatterns() {
  spec ??= await getJSON("/openapi.json");
  const events = resolve({ $ref: "#/components/schemas/WebhookCreate" }, spec).properties?.events;
  return resolve(events, spec).items?.enum ?? ["*"];
}

/** `{syntheticKinds, modelKinds, runFields}` of this server (the spec is read once). */
export async function offers() {
  spec ??= await getJSON("/openapi.json");
  const syntheticKinds = choices(spec, "datasets-create-synthetic", "kind");
  const modelKinds = choices(spec, "models-create", "kind");
  return {
    // A spec with no `kind` on synthetic datasets offers the tutorial's line only (v1).
    syntheticKinds: syntheticKinds.size ? syntheticKinds : new Set(["linear"]),
    syntheticHasKind: syntheticKinds.size > 0,
    modelKinds: modelKinds.size ? modelKinds : new Set(["linear"]),
    runFields: new Set(spec.components?.schemas?.RunCreate ? properties(spec, "RunCreate") : []),
  };
}
