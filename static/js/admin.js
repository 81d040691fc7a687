// /admin: the admin console (issue 24) on the public API under /api/admin/: users,
// the transcode queue (live: refreshed on every event of the studio's stream), every
// user's videos with bulk actions, and the audit log. Nothing is rendered before the
// API has answered an admin: a user sees "Admins only" and nothing else.
import { api, el, keepSession, refreshSession, wireLogout } from './api.js';

wireLogout();
const root = document.getElementById('console');
const gate = document.getElementById('gate');
const announce = document.getElementById('announce');
const say = (text) => { announce.textContent = text; };

function formatBytes(bytes) {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes, unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return `${value.toFixed(value < 10 && unit ? 1 : 0)} ${units[unit]}`;
}
const when = (iso) => (iso ? new Date(iso).toLocaleString() : '—');

// An action: the API call, then the answer said aloud and the sections redrawn.
async function perform(label, method, path, body) {
  const result = await api(method, path, body);
  const detail = result.data && result.data.detail;
  say(result.ok ? `${label}: done.` : `${label}: ${detail || `refused (${result.status})`}`);
  status.textContent = result.ok ? `${label}: done.` : `${label}: ${detail || `refused (${result.status})`}`;
  status.className = result.ok ? 'notice' : 'form-error';
  await Promise.all([loadUsers(), loadJobs(), loadVideos(), loadAudit()]);
  return result;
}

function section(id, title, ...children) {
  return el('section', { class: 'panel', id, 'aria-labelledby': `${id}-title` }, el('h2', { id: `${id}-title` }, title),
    ...children);
}

function table(headings, rows) {
  return el('div', { class: 'table-scroll' }, el('table', { class: 'admin-table' },
    el('thead', {}, el('tr', {}, headings.map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows)));
}

const small = (label, onclick, extra = {}) => el('button', { class: 'button small', type: 'button', onclick, ...extra }, label);

// --- users ------------------------------------------------------------------------
const status = el('p', { role: 'alert' });
const userSearch = el('input', { id: 'user-search', type: 'search', placeholder: 'Email contains…', 'aria-label': 'Search users' });
const usersBody = el('div', { id: 'users-table' });

async function loadUsers() {
  const query = new URLSearchParams({ order: 'email', limit: '100' });
  if (userSearch.value.trim()) query.set('search', userSearch.value.trim());
  const result = await api('GET', `/api/admin/users/?${query}`);
  if (!result.ok) return;
  usersBody.replaceChildren(table(['Email', 'Joined', 'Last login', 'Active', 'Admin', 'Videos', 'Stored', ''],
    result.data.results.map((user) => el('tr', { 'data-user': user.email },
      el('td', {}, user.email), el('td', {}, when(user.joined)), el('td', {}, when(user.last_login)),
      el('td', {}, user.is_active ? 'yes' : 'no'), el('td', {}, user.is_admin ? 'yes' : 'no'),
      el('td', {}, String(user.video_count)), el('td', {}, formatBytes(user.bytes_stored)),
      el('td', { class: 'row-actions' },
        small(user.is_active ? 'Deactivate' : 'Activate', () => perform(
          `${user.is_active ? 'Deactivate' : 'Activate'} ${user.email}`, 'PATCH', `/api/admin/users/${user.id}/`,
          { is_active: !user.is_active })),
        small(user.is_admin ? 'Remove admin' : 'Make admin', () => perform(
          `${user.is_admin ? 'Remove admin' : 'Make admin'} ${user.email}`, 'PATCH', `/api/admin/users/${user.id}/`,
          { is_admin: !user.is_admin })),
        !user.activated_at && small('Resend activation', () => perform(`Activation mail to ${user.email}`, 'POST',
          `/api/admin/users/${user.id}/activation/`)),
        small('Send password reset', () => perform(`Password reset to ${user.email}`, 'POST',
          `/api/admin/users/${user.id}/password_reset/`)),
        small('Delete', () => {
          if (confirm(`Delete ${user.email} and all ${user.video_count} of their videos?`)) {
            perform(`Delete ${user.email}`, 'DELETE', `/api/admin/users/${user.id}/`);
          }
        }, { class: 'button small danger' }))))));
}

// --- the queue ------------------------------------------------------------------
const jobsBody = el('div', { id: 'jobs-table' });

async function loadJobs() {
  const result = await api('GET', '/api/admin/jobs/');
  if (!result.ok) return;
  const jobs = result.data;
  const c = jobs.counts;
  const row = (job, state, detail, ...actions) => el('tr', { 'data-job': job.id },
    el('td', {}, state), el('td', {}, job.title || `#${job.video_id}`), el('td', {}, job.owner_email || '—'),
    el('td', {}, detail), el('td', { class: 'row-actions' }, actions));
  jobsBody.replaceChildren(
    el('p', { id: 'job-counts' }, `${c.queued} queued · ${c.running} running · ${c.failed} failed · ${c.dead_letters} dead letters`),
    table(['State', 'Video', 'Owner', 'Details', ''], [
      ...jobs.running.map((job) => row(job, 'running',
        `${job.host}${job.worker_pid ? ` pid ${job.worker_pid}` : ''} · ${job.progress === null ? 0 : Math.round(job.progress)} % · `
        + `lease ${job.lease_age_seconds} s · delivery ${job.deliveries}`,
        small('Cancel', () => perform(`Cancel job ${job.id}`, 'POST', `/api/admin/jobs/${job.id}/cancel/`)))),
      ...jobs.queued.map((job) => row(job, job.waiting_turn ? 'waiting its turn' : 'queued', '',
        small('Cancel', () => perform(`Cancel job ${job.id}`, 'POST', `/api/admin/jobs/${job.id}/cancel/`)))),
      ...jobs.failed.map((job) => row(job, 'failed', job.error || '',
        small('Retry', () => perform(`Retry job ${job.id}`, 'POST', `/api/admin/jobs/${job.id}/retry/`)))),
      ...jobs.dead_letters.map((job) => row(job, 'dead letter', `${job.reason} (${job.deliveries} deliveries)`,
        small('Retry', () => perform(`Retry dead letter ${job.id}`, 'POST', `/api/admin/jobs/${job.id}/retry/`)),
        small('Discard', () => perform(`Discard dead letter ${job.id}`, 'DELETE', `/api/admin/jobs/${job.id}/`)))),
    ]));
}

// --- the library ------------------------------------------------------------------
const videoStatus = el('select', { id: 'video-status', 'aria-label': 'Status' },
  ['', 'uploading', 'queued', 'processing', 'ready', 'failed'].map((s) => new Option(s || 'Any status', s)));
const videosBody = el('div', { id: 'videos-table' });
const picked = new Set();

async function loadVideos() {
  const query = new URLSearchParams({ limit: '100' });
  if (videoStatus.value) query.set('status', videoStatus.value);
  const result = await api('GET', `/api/admin/videos/?${query}`);
  if (!result.ok) return;
  videosBody.replaceChildren(table(['', 'Title', 'Owner', 'Status', 'Visibility', 'Size', 'Created', 'Reason'],
    result.data.results.map((video) => el('tr', { 'data-video': video.id },
      el('td', {}, el('input', { type: 'checkbox', 'aria-label': `Select ${video.title}`, checked: picked.has(video.id),
        onchange: (event) => { if (event.target.checked) picked.add(video.id); else picked.delete(video.id); } })),
      el('td', {}, video.title), el('td', {}, video.owner_email), el('td', {}, video.status),
      el('td', {}, video.visibility), el('td', {}, formatBytes(video.size)), el('td', {}, when(video.created_at)),
      el('td', {}, video.error || '')))));
}

async function bulk(action, label) {
  if (!picked.size) { say('Select videos first.'); return; }
  if (action === 'delete' && !confirm(`Delete ${picked.size} video(s)?`)) return;
  const ids = [...picked];
  picked.clear();
  await perform(`${label} (${ids.length})`, 'POST', '/api/admin/videos/bulk/', { action, ids });
}

// --- the audit log ------------------------------------------------------------------
const auditBody = el('div', { id: 'audit-table' });

async function loadAudit() {
  const result = await api('GET', '/api/admin/audit/?limit=50');
  if (!result.ok) return;
  auditBody.replaceChildren(table(['When', 'Who', 'From', 'Action', 'On'],
    result.data.results.map((entry) => el('tr', {},
      el('td', {}, when(entry.created_at)), el('td', {}, entry.actor), el('td', {}, entry.address),
      el('td', {}, entry.action), el('td', {}, `${entry.target_type} ${entry.target_id} ${entry.target_label}`.trim())))));
}

// --- live: the studio's event stream (admins get every video's changes) -------------
let pending = null;
function soon() {
  if (pending) return;
  pending = setTimeout(async () => { pending = null; await Promise.all([loadJobs(), loadVideos()]); }, 500);
}

function connect() {
  const source = new EventSource('/api/video/events/', { withCredentials: true });
  const openedAt = Date.now();
  source.addEventListener('video', soon);
  source.addEventListener('video-deleted', soon);
  source.addEventListener('error', () => {
    if (source.readyState !== EventSource.CLOSED) return;
    setTimeout(async () => { if (await refreshSession(openedAt)) connect(); }, 2000);
  });
}

async function main() {
  await keepSession();
  // The API decides, not the page: a non-admin gets 403 and sees nothing of the console.
  const probe = await api('GET', '/api/admin/users/?limit=1');
  if (!probe.ok) {
    gate.textContent = probe.status === 403 ? 'Admins only.' : `The console is unavailable (${probe.status}).`;
    return;
  }
  gate.hidden = true;
  root.append(
    status,
    section('users', 'Users',
      el('form', { class: 'toolbar', role: 'search', onsubmit: (event) => { event.preventDefault(); loadUsers(); } },
        userSearch, el('button', { class: 'button small', type: 'submit' }, 'Search')),
      usersBody),
    section('jobs', 'Transcode queue', jobsBody),
    section('library', 'All videos',
      el('div', { class: 'toolbar' }, videoStatus,
        small('Re-transcode', () => bulk('retranscode', 'Re-transcode')),
        small('Make private', () => bulk('make_private', 'Make private')),
        small('Delete', () => bulk('delete', 'Delete'), { class: 'button small danger' })),
      videosBody),
    section('audit', 'Audit log', auditBody));
  videoStatus.addEventListener('change', loadVideos);
  root.hidden = false;
  await Promise.all([loadUsers(), loadJobs(), loadVideos(), loadAudit()]);
  connect();
}

main();
