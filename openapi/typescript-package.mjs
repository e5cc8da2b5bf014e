// Makes the folder of the generated TypeScript types (`make client-ts`) an npm package:
// `npm install ./clients/typescript`, then `import type { components } from "tapeline-client-types"`.
// Its version is the API's, read from the spec.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const folder = process.argv[2] ?? "clients/typescript";
const spec = JSON.parse(readFileSync(new URL("./openapi.json", import.meta.url), "utf8"));
const manifest = {
  name: "tapeline-client-types",
  version: spec.info.version,
  description: `TypeScript types of the ${spec.info.title} API, generated from its OpenAPI spec by openapi-typescript`,
  types: "tapeline.d.ts",
  files: ["tapeline.d.ts"],
  license: "Apache-2.0",
};
writeFileSync(join(folder, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
console.log(`wrote ${join(folder, "package.json")} (${manifest.name} ${manifest.version})`);
