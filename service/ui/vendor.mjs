// Copies the files package.json's "vendor" map names from node_modules into service/ui/assets/vendor
// (run `npm ci && npm run vendor` after changing a pinned version; a test checks the copies).
import { copyFileSync, mkdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";

const { vendor } = JSON.parse(readFileSync("package.json", "utf8"));
for (const [target, source] of Object.entries(vendor)) {
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(`node_modules/${source}`, target);
  console.log(`${source} -> ${target}`);
}
