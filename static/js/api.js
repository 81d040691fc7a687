// The public JSON API, exactly as an external frontend calls it: fetch with
// credentials, JSON bodies, X-CSRFToken from the csrftoken cookie on unsafe methods.

export const LOGIN_PAGE = '/pages/auth/login.html';
const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export function cookie(name) {
  const prefix = name + '=';
  const part = document.cookie.split('; ').find((c) => c.startsWith(prefix));
  return part ? decodeURIComponent(part.slice(prefix.length)) : '';
}

export function headers(method, json = true) {
  const h = {};
  if (json) h['Content-Type'] = 'application/json';
  if (UNSAFE.has(method)) {
    const token = cookie('csrftoken');
    if (token) h['X-CSRFToken'] = token;
  }
  return h;
}

async function send(method, path, body) {
  const init = { method, credentials: 'include', headers: headers(method) };
  if (body !== undefined) init.body = JSON.stringify(body);
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    return { ok: false, status: 0, data: { detail: 'The server cannot be reached. Check your connection.' } };
  }
  let data = null;
  if (response.status !== 204) {
    try { data = await response.json(); } catch (error) { data = { detail: `Unexpected answer (${response.status}).` }; }
  }
  return { ok: response.ok, status: response.status, data };
}

// The session as the pages know it: user, admin flag and access-token expiry, read
// from the access JWT that POST /api/token/refresh/ returns. Kept in localStorage
// so that tabs share it. A refresh spends the refresh token (the server rotates it),
// so refreshes never overlap: one at a time across tabs (Web Locks), and only when
// the access token is near its end, or when the server refused it.
const SESSION_KEY = 'videoflix.session';
const LOCK = 'videoflix-refresh';

function storedSession() {
  try { return JSON.parse(localStorage.getItem(SESSION_KEY)); } catch (error) { return null; }
}

export function forgetSession() {
  localStorage.removeItem(SESSION_KEY);
}

function readSession(jwt) {
  try {
    const payload = JSON.parse(atob(jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    return { userId: Number(payload.sub), admin: Boolean(payload.adm), expiresAt: payload.exp * 1000,
      lifetime: (payload.exp - payload.iat) * 1000, refreshedAt: Date.now() };
  } catch (error) {
    return null;
  }
}

// Refresh ahead of expiry by a third of the lifetime (10 of 30 minutes), at most 5.
const margin = (session) => Math.min(5 * 60_000, session.lifetime / 3);

function withLock(task) {
  return navigator.locks ? navigator.locks.request(LOCK, task) : task();
}

// The current session, refreshed first if it is unknown or near its end. With
// `refusedAt` (the time a request got 401), refresh unless another tab already did since.
export function refreshSession(refusedAt = null) {
  return withLock(async () => {
    const known = storedSession();
    if (known && known.userId) {
      const fresh = refusedAt === null ? known.expiresAt - Date.now() > margin(known) : known.refreshedAt > refusedAt;
      if (fresh) return known;
    }
    const result = await send('POST', '/api/token/refresh/');
    const session = result.ok ? readSession(result.data.access) : null;
    if (session) localStorage.setItem(SESSION_KEY, JSON.stringify(session)); else forgetSession();
    return session;
  });
}

export function goToLogin() {
  const next = location.pathname + location.search;
  location.assign(`${LOGIN_PAGE}?next=${encodeURIComponent(next)}`);
}

// A call that needs a session: on 401 it refreshes once and tries again; if the
// session cannot be refreshed the visitor goes to the login page.
export async function api(method, path, body) {
  const startedAt = Date.now();
  let result = await send(method, path, body);
  if (result.status === 401 && !path.startsWith('/api/token/')) {
    if (await refreshSession(startedAt)) result = await send(method, path, body);
    if (result.status === 401) goToLogin();
  }
  return result;
}

// The session for this page, kept fresh: refreshed before the access token
// expires (a two-hour film never stops at minute 30). Goes to login without one.
export async function keepSession() {
  const session = await refreshSession();
  if (!session) {
    goToLogin();
    return new Promise(() => {});
  }
  const schedule = (current) => {
    const wait = Math.max(10_000, current.expiresAt - margin(current) - Date.now() + 1000);
    setTimeout(async () => {
      const next = await refreshSession();
      if (next) schedule(next); else goToLogin();
    }, wait);
  };
  schedule(session);
  return session;
}

// Show the server's errors next to the fields they concern: {"field": ["msg"]}
// goes under the input named `field`, {"detail": "msg"} (and any field the form
// does not have) into the form's error box.
export function showErrors(form, data, aliases = {}) {
  clearErrors(form);
  const general = [];
  for (const [key, value] of Object.entries(data || {})) {
    const messages = Array.isArray(value) ? value.join(' ') : String(value);
    const name = aliases[key] || key;
    const input = form.elements.namedItem(name);
    const slot = form.querySelector(`[data-error-for="${name}"]`);
    if (input && slot && key !== 'detail') {
      slot.textContent = messages;
      (input.length && !input.tagName ? input[0] : input).setAttribute('aria-invalid', 'true');
    } else {
      general.push(messages);
    }
  }
  const box = form.querySelector('.form-error');
  if (box) box.textContent = general.join(' ');
  const first = form.querySelector('[aria-invalid="true"]');
  if (first) first.focus();
}

export function clearErrors(form) {
  form.querySelectorAll('[data-error-for]').forEach((slot) => { slot.textContent = ''; });
  form.querySelectorAll('[aria-invalid]').forEach((input) => input.removeAttribute('aria-invalid'));
  const box = form.querySelector('.form-error');
  if (box) box.textContent = '';
}

export function formJSON(form) {
  const data = {};
  for (const [name, value] of new FormData(form)) if (typeof value === 'string') data[name] = value;
  return data;
}

// Small DOM helper: el('a', {href: '/'}, 'text', child, ...).
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

export function formatTime(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return (h ? `${h}:${String(m).padStart(2, '0')}` : String(m)) + ':' + String(r).padStart(2, '0');
}

// Poster URL beside a thumbnail URL (/media/thumbnail/<id>.jpg -> /media/poster/<id>.jpg).
export function posterOf(thumbnailUrl) {
  return thumbnailUrl ? thumbnailUrl.replace('/media/thumbnail/', '/media/poster/') : null;
}

// The page header's logout button (every logged-in page has one).
export function wireLogout() {
  const button = document.getElementById('logout');
  if (!button) return;
  button.addEventListener('click', async () => {
    button.disabled = true;
    await send('POST', '/api/logout/');
    forgetSession();
    location.assign(LOGIN_PAGE);
  });
}
