// The aggregator's HTTP API as the page uses it: the token (viewer for the live view,
// planner for history) is kept in this browser only and sent as a bearer token.

const TOKEN_KEY = 'crowdflow.token';

/** The saved token, or '' (the demo needs none). */
export function token() {
  return localStorage.getItem(TOKEN_KEY) || '';
}

/** Saves (or with '' forgets) the token. */
export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value.trim());
  else localStorage.removeItem(TOKEN_KEY);
}

/** An error answer, with the API's own words. */
export class ApiError extends Error {
  constructor(status, message, parameter) {
    super(message);
    this.status = status;
    this.parameter = parameter;
  }
}

function url(path, params = {}) {
  const u = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, v);
  }
  return u;
}

async function request(path, params, init = {}) {
  const headers = { ...(init.headers ?? {}) };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  let response;
  try {
    response = await fetch(url(path, params), { ...init, headers });
  } catch (e) {
    throw new ApiError(0, `the aggregator cannot be reached (${e.message})`);
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    let parameter;
    try {
      const body = await response.json();
      message = body.error || message;
      parameter = body.parameter;
    } catch {
      // Not JSON: keep the status line.
    }
    throw new ApiError(response.status, message, parameter);
  }
  return response;
}

/** GETs JSON. */
export async function get(path, params) {
  return (await request(path, params)).json();
}

/** POSTs `body` as JSON; the answer's JSON. */
export async function post(path, body) {
  const init = { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) };
  return (await request(path, {}, init)).json();
}

/** GETs `path` and saves the answer as `filename` (a download with the bearer header). */
export async function download(path, params, filename) {
  const blob = await (await request(path, params)).blob();
  saveBlob(blob, filename);
}

/** Offers `blob` as a download named `filename`. */
export function saveBlob(blob, filename) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

/** The stream's URL (EventSource cannot set headers, so the token goes in the query). */
export function streamUrl() {
  return url('/api/v1/stream', { token: token() }).toString();
}
