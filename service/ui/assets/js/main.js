// The dashboard's router: one page, a view per path (/ui/, /ui/start, /ui/runs/{id},
// /ui/models/{id}, /ui/datasets, /ui/compare, /ui/webhooks, /ui/studies, /ui/studies/{id}), links followed without reloading,
// and the API key prompt.

import { onKeyNeeded } from "./api.js";
import { h } from "./dom.js";
import { compareView } from "./views/compare.js";
import { datasetsView } from "./views/datasets.js";
import { modelView } from "./views/model.js";
import { runView } from "./views/run.js";
import { runsView } from "./views/runs.js";
import { startView } from "./views/start.js";
import { studiesView, studyView } from "./views/studies.js";
import { webhooksView } from "./views/webhooks.js";

const main = document.getElementById("main");
let cleanup = () => {};

function route(path) {
  const parts = path.replace(/^\/ui\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "runs" && parts[1]) return [runView, parts[1], `Run ${parts[1]}`];
  if (parts[0] === "models" && parts[1]) return [modelView, parts[1], `Model ${parts[1]}`];
  if (parts[0] === "start") return [startView, go, "Start a run"];
  if (parts[0] === "datasets") return [datasetsView, undefined, "Datasets"];
  if (parts[0] === "compare") return [compareView, go, "Compare runs"];
  if (parts[0] === "studies" && parts[1]) return [studyView, parts[1], `Study ${parts[1]}`];
  if (parts[0] === "studies") return [studiesView, undefined, "Studies"];
  if (parts[0] === "webhooks") return [webhooksView, undefined, "Webhooks"];
  return [runsView, go, "Runs"];
}

function render() {
  cleanup();
  const [view, argument, title] = route(location.pathname);
  document.title = `${title} — Tapeline`;
  for (const link of document.querySelectorAll("nav a")) {
    link.toggleAttribute("aria-current", link.getAttribute("href") === location.pathname);
  }
  cleanup = view(main, argument, go) ?? (() => {});
  main.focus({ preventScroll: true });
}

/** Show the view of `path` (with its query) and add it to the history. */
export function go(path) {
  history.pushState(null, "", path);
  render();
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-link]");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  go(link.getAttribute("href"));
});
window.addEventListener("popstate", render);

// The key prompt: shown when the server answers 401; a wrong key shows the problem's detail.
const dialog = document.getElementById("key-dialog");
const keyInput = document.getElementById("api-key");
const keyProblem = document.getElementById("key-problem");
onKeyNeeded((detail) => new Promise((resolve) => {
  keyProblem.replaceChildren(detail ? h("span", {}, `That key was refused: ${detail}`) : "This server needs an API key.");
  keyInput.value = "";
  dialog.returnValue = "";
  dialog.addEventListener("close", () => {
    resolve(dialog.returnValue === "use" && keyInput.value.trim() ? keyInput.value.trim() : null);
  }, { once: true });
  dialog.showModal();
  keyInput.focus();
}));

render();
