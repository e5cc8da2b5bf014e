// Building DOM nodes without innerHTML (nothing from the API is ever parsed as markup), and
// number / time formatting.

/** An element with attributes (`on*` are listeners; `false`/`null` are left out) and children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value == null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

/** Append children (nodes, strings, numbers or nested arrays of them) to `el`. */
export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replace all of `el`'s children. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A number to `digits` decimals (exponent form when very small or large); "–" when absent. */
export function num(value, digits = 4) {
  if (value == null || Number.isNaN(value)) return "–";
  if (typeof value !== "number") return String(value);
  const size = Math.abs(value);
  if (size !== 0 && (size < 1e-3 || size >= 1e6)) return value.toExponential(digits - 1);
  return value.toFixed(digits);
}

/** A list of numbers, or one number. */
export function nums(value, digits = 4) {
  return Array.isArray(value) ? value.map((v) => nums(v, digits)).join(", ") : num(value, digits);
}

/** A timestamp in the reader's locale. */
export function when(stamp) {
  return stamp ? new Date(stamp).toLocaleString() : "–";
}

/** How long from `start` to `end` (or now), e.g. "1 min 04 s". */
export function duration(start, end) {
  if (!start) return "–";
  const ms = (end ? new Date(end) : new Date()) - new Date(start);
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${String(s % 60).padStart(2, "0")} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** A promise resolved after `ms`, or at once when `signal` aborts. */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

export const ACTIVE = ["queued", "running", "cancelling"];
// Runs not yet ended: the active ones and paused ones (which resume where they paused).
export const OPEN = [...ACTIVE, "paused"];
