// Every request the page makes: same origin only, JSON in and out, problem+json errors as
// ApiError, and the API key (when the server asks for one) kept for this browser session.

const KEY = "tapeline.api-key";

/** An answer that is not 2xx; `problem` is its RFC 9457 body when it has one. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

let askForKey = null;
let asking = null;

/** Who asks the person for a key: `(detail|null) => Promise<key|null>`, null = gave up. */
export function onKeyNeeded(ask) {
  askForKey = ask;
}

async function problemOf(response) {
  try {
    return await response.json();
  } catch {
    return { status: response.status, detail: response.statusText || `HTTP ${response.status}` };
  }
}

/** fetch() with the key, `Accept` and a JSON body; 401 asks for a key and tries again. */
export async function send(path, { method = "GET", body, accept = "application/json", signal,
  contentType = "application/json", headers: more = {} } = {}) {
  for (;;) {
    const key = sessionStorage.getItem(KEY);
    const headers = new Headers({ Accept: accept, ...more });
    if (key) headers.set("Authorization", `Bearer ${key}`);
    const form = body instanceof FormData; // multipart: the browser writes its own type
    if (body !== undefined && !form) headers.set("Content-Type", contentType);
    const response = await fetch(path, {
      method, headers, signal, body: body === undefined || form ? body : JSON.stringify(body),
    });
    if (response.ok) return response;
    const problem = await problemOf(response);
    if (response.status !== 401 || !askForKey) throw new ApiError(response.status, problem);
    if (sessionStorage.getItem(KEY) !== key) continue; // another request got a new key meanwhile
    asking ??= askForKey(key ? problem.detail : null).finally(() => { asking = null; });
    const entered = await asking;
    if (entered == null) throw new ApiError(401, problem);
    sessionStorage.setItem(KEY, entered);
  }
}

/** GET (or another method) and parse the JSON answer. */
export async function getJSON(path, options) {
  return (await send(path, options)).json();
}

/** POST a JSON body and parse the JSON answer. */
export async function postJSON(path, body, options) {
  return (await send(path, { ...options, method: "POST", body })).json();
}

/** POST a multipart form (a file upload) and parse the JSON answer. */
export async function postForm(path, form, options) {
  return (await send(path, { ...options, method: "POST", body: form })).json();
}

/** DELETE a resource (a 204 answer). */
export async function remove(path, options) {
  await send(path, { ...options, method: "DELETE" });
}

/** The path with its query string built from the defined entries of `params`. */
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value != null) query.set(name, value);
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

export const id = encodeURIComponent;
