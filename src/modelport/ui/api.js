// The server's JSON API, the one the CLI uses. Paths are relative to the page
// (/ui/ -> /v1/...), so the dashboard works behind a proxy that adds a prefix.

import { askForKey, keyHeaders } from "./auth.js";

const ROOT = new URL("..", document.baseURI);

/** An answer other than 2xx: the server's message and hint (see docs/serving.md). */
export class ApiError extends Error {
  constructor(status, body, path) {
    const message = (body && body.error) || `HTTP ${status} from ${path}`;
    super(message);
    this.status = status;
    this.code = body && body.code;
    this.hint = body && body.hint;
    this.path = path;
  }
}

export function url(path, params = {}) {
  const target = new URL(path.replace(/^\//, ""), ROOT);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") target.searchParams.set(key, value);
  }
  return target;
}

async function call(method, path, { params, body, signal } = {}) {
  const init = { method, signal, headers: { accept: "application/json", ...keyHeaders() } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["content-type"] = "application/json";
  }
  const reply = await fetch(url(path, params), init);
  const text = await reply.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { error: text.slice(0, 300) };
  }
  if (reply.status === 401) askForKey(data);
  if (!reply.ok) throw new ApiError(reply.status, data, path);
  return data;
}

export const get = (path, options) => call("GET", path, options);
export const post = (path, body, options = {}) => call("POST", path, { ...options, body });

/** Each promise's value, or null when it failed with a 404 (something absent, not broken). */
export async function optional(promise) {
  try {
    return await promise;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}
