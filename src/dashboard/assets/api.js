// Talking to the gateway: JSON fetches with the session cookie, the CSRF header on every change,
// and errors turned into readable messages. Owns the in-memory session (role, csrf token).

export const session = { role: null, keyId: null, alias: null, csrf: null };

/** An API failure with its HTTP status and the gateway's message. */
export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onUnauthorized = () => {};

/** Called when any request comes back 401 (the session ended). */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/** Fetch JSON. `body` is sent as JSON; methods other than GET/HEAD carry the CSRF token. */
export async function api(path, { method = 'GET', body, quiet401 = false } = {}) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD' && session.csrf) headers['x-sluice-csrf'] = session.csrf;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, 'The gateway is not answering (' + e.message + ')');
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = data && data.error ? data.error : {};
    const msg = err.message || text || res.statusText || 'request failed';
    if (res.status === 401 && !quiet401) onUnauthorized();
    throw new ApiError(res.status, msg, err.code || err.type);
  }
  return data;
}

/** Log in with a key; fills `session`. */
export async function login(key) {
  const s = await api('/ui/api/login', { method: 'POST', body: { key }, quiet401: true });
  setSession(s);
  return s;
}

/** The current session, or null when logged out. */
export async function currentSession() {
  try {
    const s = await api('/ui/api/session', { quiet401: true });
    setSession(s);
    return s;
  } catch (e) {
    if (e.status === 401) {
      setSession(null);
      return null;
    }
    throw e;
  }
}

/** End the session on the server and here. */
export async function logout() {
  try {
    await api('/ui/api/logout', { method: 'POST', quiet401: true });
  } finally {
    setSession(null);
  }
}

function setSession(s) {
  session.role = s ? s.role : null;
  session.keyId = s ? s.key_id : null;
  session.alias = s ? s.alias : null;
  session.csrf = s ? s.csrf_token : null;
}

/** Whether the session may use admin pages. */
export function isAdmin() {
  return session.role === 'admin';
}
