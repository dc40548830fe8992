// api.js is the console's only way to the server: the admin API, with the
// bearer token kept in this tab's sessionStorage (never in a URL, never in
// localStorage, gone when the tab closes).

const KEY = 'idsync.token';

export function token() { return sessionStorage.getItem(KEY) || ''; }
export function setToken(t) { sessionStorage.setItem(KEY, t); }
export function signOut() { sessionStorage.clear(); }

// seg encodes one path segment.
export const seg = encodeURIComponent;

// connPath is the path of a connection or of an audience's connections.
export function connPath(space, audience, destination) {
  let p = `/v1/spaces/${seg(space)}/audiences/${seg(audience)}/connections`;
  if (destination !== undefined) p += `/${seg(destination)}`;
  return p;
}

// Offset between the server's clock and ours, from whoami.
let skew = 0;
export function setServerTime(serverTime) {
  const t = Date.parse(serverTime);
  if (!isNaN(t)) skew = t - Date.now();
}
// serverNow is the server's clock as well as we know it.
export function serverNow() { return Date.now() + skew; }

// call makes one request and returns {status, body, etag}. body is the
// parsed JSON (or null). A network failure returns status 0 with an error
// body, so callers handle every outcome in one place.
export async function call(method, path, body, headers = {}, tok = token()) {
  const h = { Authorization: `Bearer ${tok}`, ...headers };
  const init = { method, headers: h, cache: 'no-store', credentials: 'omit', redirect: 'error' };
  if (body !== undefined) {
    h['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    return { status: 0, body: { error: `the admin API cannot be reached (${e.message})` }, etag: '' };
  }
  let parsed = null;
  try { parsed = await res.json(); } catch { parsed = null; }
  if (res.status === 401 && tok === token()) {
    window.dispatchEvent(new CustomEvent('idsync:unauthorized'));
  }
  return { status: res.status, body: parsed, etag: (res.headers.get('ETag') || '').replace(/^W\//, '').replace(/"/g, '') };
}

// errorText is a one-line message for a failed call.
export function errorText(r) {
  const msg = (r.body && r.body.error) || `HTTP ${r.status}`;
  return r.status ? `${msg} (HTTP ${r.status})` : msg;
}

let catalogPromise = null;
// catalog returns the destination types (GET /v1/destination-types), once.
export function catalog() {
  if (!catalogPromise) {
    catalogPromise = call('GET', '/v1/destination-types').then(r => {
      if (r.status !== 200) { catalogPromise = null; throw new Error(errorText(r)); }
      return r.body;
    });
  }
  return catalogPromise;
}
