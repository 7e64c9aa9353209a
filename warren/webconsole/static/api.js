// The console's only way to talk to the broker: the management HTTP API under /api/.
//
// Credentials live in sessionStorage (gone when the tab closes) and go out as HTTP basic
// auth on every request. Every request also carries X-Requested-With, and every request with
// a body carries Content-Type: application/json: a cross-site form cannot set either, which
// is what the API's CSRF check relies on.

const STORAGE_KEY = "warren.credentials";

export class ApiError extends Error {
  constructor(status, reason) {
    super(reason || `HTTP ${status}`);
    this.status = status;
    this.reason = reason || `HTTP ${status}`;
  }
}

export const credentials = {
  get() {
    try {
      const raw = sessionStorage.getItem(STORAGE_KEY);
      return raw ? JSON.parse(raw) : null;
    } catch {
      return null;
    }
  },
  set(username, password) {
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify({username, password}));
  },
  clear() {
    sessionStorage.removeItem(STORAGE_KEY);
  },
};

/** Base64 of the UTF-8 bytes of `text` (btoa alone only takes Latin-1). */
export function utf8ToBase64(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/** Text of base64 data read as UTF-8 (bad sequences become U+FFFD), or null if not base64. */
export function base64ToUtf8(data) {
  try {
    const binary = atob(data);
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    return new TextDecoder("utf-8").decode(bytes);
  } catch {
    return null;
  }
}

function authHeader(creds) {
  return `Basic ${utf8ToBase64(`${creds.username}:${creds.password}`)}`;
}

/** "/api/queues/%2F/my%20queue" from ("queues", "/", "my queue"). */
export function apiPath(...segments) {
  return `/api/${segments.map((s) => encodeURIComponent(s)).join("/")}`;
}

/** Listeners told when the API answers 401 (credentials went stale): the app logs out. */
const unauthorizedListeners = [];
export function onUnauthorized(fn) {
  unauthorizedListeners.push(fn);
}

/**
 * request("GET", apiPath("queues")) -> parsed JSON (or null for an empty answer).
 * Throws ApiError with the API's `reason` text on a non-2xx answer.
 */
export async function request(method, path, body, {creds = credentials.get(), headers = {}} = {}) {
  const init = {
    method,
    headers: {"X-Requested-With": "XMLHttpRequest", ...headers},
    credentials: "omit",
    cache: "no-store",
  };
  if (creds) init.headers.Authorization = authHeader(creds);
  if (method !== "GET" && method !== "HEAD") {
    init.headers["Content-Type"] = "application/json";
    if (body !== undefined) init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `cannot reach the broker (${err.message})`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    const reason = data && typeof data === "object"
      ? (data.reason || data.error || JSON.stringify(data))
      : (data || response.statusText);
    if (response.status === 401 && creds === credentials.get()) {
      for (const fn of unauthorizedListeners) fn(reason);
    }
    throw new ApiError(response.status, String(reason));
  }
  return data;
}

export const get = (path) => request("GET", path);
export const put = (path, body) => request("PUT", path, body ?? {});
export const post = (path, body) => request("POST", path, body ?? {});
export const del = (path, headers = {}) => request("DELETE", path, undefined, {headers});
