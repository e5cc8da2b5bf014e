// A script typed by a spec from before `paused` existed (tests/fixtures/openapi_v1.json): it
// lists a model's runs and says each one's status, a value it does not know included.
// Run: TAPELINE=http://127.0.0.1:8000 node out/statuses.js MODEL_ID
import type { components } from "./tapeline";

declare const process: { env: Record<string, string | undefined>; argv: string[] };

type Run = components["schemas"]["Run"];
type Page = components["schemas"]["RunPage"];

// Status values may be added: a client says what it knows and keeps any other as it came.
function describe(status: Run["status"] | (string & {})): string {
  switch (status) {
    case "queued":
    case "running":
    case "cancelling":
      return `active: ${status}`;
    case "succeeded":
    case "failed":
    case "cancelled":
    case "diverged":
      return `final: ${status}`;
    default:
      return `other: ${status}`;
  }
}

async function main(): Promise<void> {
  const base = process.env.TAPELINE ?? "http://127.0.0.1:8000";
  const response = await fetch(`${base}/v1/models/${process.argv[2]}/runs`);
  const page = (await response.json()) as Page;
  for (const run of page.items) console.log(`${run.id} ${describe(run.status)}`);
}

main().catch((error: unknown) => {
  console.error(error);
  throw error;
});
