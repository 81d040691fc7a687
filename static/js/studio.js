// /studio: upload with a real progress bar (bytes sent, speed, time left, cancel),
// then every video's status pushed live by the server (SSE), edit, re-run, delete.
import { api, clearErrors, el, formatTime, formJSON, headers, keepSession, refreshSession, showErrors, wireLogout } from './api.js';

wireLogout();
const form = document.getElementById('upload');
const fileInput = document.getElementById('file');
const dropzone = document.getElementById('dropzone');
const list = document.getElementById('videos');
const announce = document.getElementById('announce');
const live = document.getElementById('live');
const videos = new Map(); // id -> detail
let session = null;

const say = (text) => { announce.textContent = text; };

function formatBytes(bytes) {
  const units = ['B', 'KB', 'MB', 'GB'];
  let value = bytes, unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return `${value.toFixed(value < 10 && unit ? 1 : 0)} ${units[unit]}`;
}

// --- picking and dropping a file --------------------------------------------
let pickedFile = null;
function pick(file) {
  pickedFile = file || null;
  document.getElementById('file-label').textContent = file ? `${file.name} (${formatBytes(file.size)})` : 'Drop a video file here, or choose one';
  const title = form.elements.namedItem('title');
  if (file && !title.value) title.value = file.name.replace(/\.[^.]+$/, '').replace(/[_-]+/g, ' ');
}
fileInput.addEventListener('change', () => pick(fileInput.files[0]));
for (const name of ['dragenter', 'dragover']) {
  dropzone.addEventListener(name, (event) => { event.preventDefault(); dropzone.classList.add('over'); });
}
for (const name of ['dragleave', 'drop']) {
  dropzone.addEventListener(name, () => dropzone.classList.remove('over'));
}
dropzone.addEventListener('drop', (event) => {
  event.preventDefault();
  if (event.dataTransfer.files.length) pick(event.dataTransfer.files[0]);
});

// --- upload --------------------------------------------------------------------
let xhr = null;
const startButton = document.getElementById('start');
const cancelButton = document.getElementById('cancel');
const bar = document.getElementById('progress');

function showProgress(sent, total, startedAt, fromOffset = 0) {
  const percent = total ? Math.floor((100 * sent) / total) : 0;
  bar.value = percent;
  bar.setAttribute('aria-valuetext', `${percent} percent uploaded`);
  document.getElementById('progress-percent').textContent = `${percent} % · ${formatBytes(sent)} of ${formatBytes(total)}`;
  const seconds = (performance.now() - startedAt) / 1000;
  const speed = seconds > 0.2 ? (sent - fromOffset) / seconds : 0;
  document.getElementById('progress-speed').textContent = speed ? `${formatBytes(speed)}/s` : '';
  document.getElementById('progress-eta').textContent = speed && sent < total ? `${formatTime((total - sent) / speed)} left` : '';
}

function uploading(active) {
  startButton.disabled = active;
  cancelButton.hidden = !active;
  form.querySelectorAll('input, textarea, select').forEach((input) => { input.disabled = active; });
}

function sendUpload(data) {
  return new Promise((resolve) => {
    xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/video/');
    xhr.withCredentials = true;
    const csrf = headers('POST', false)['X-CSRFToken'];
    if (csrf) xhr.setRequestHeader('X-CSRFToken', csrf);
    const startedAt = performance.now();
    xhr.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) showProgress(event.loaded, event.total, startedAt);
    });
    xhr.addEventListener('load', () => {
      let body;
      try { body = JSON.parse(xhr.responseText); } catch (error) { body = { detail: `Unexpected answer (${xhr.status}).` }; }
      resolve({ status: xhr.status, data: body });
    });
    xhr.addEventListener('error', () => resolve({ status: 0, data: { detail: 'The upload failed: the connection was lost.' } }));
    xhr.addEventListener('abort', () => resolve({ status: -1, data: { detail: 'Upload cancelled.' } }));
    xhr.send(data);
  });
}

// Resumable (tus, /api/uploads/) through tus-js-client from npm (window.tus, served from
// node_modules/ like hls.js). Chunks of 50 MiB pass a proxy's 100 MB body cap; a dropped
// connection is retried from the offset the server has; the upload's URL is kept in
// localStorage under the file's fingerprint, so after a reload the same file goes on from
// where it stopped. The request that writes the last byte names the video (Video-Location).
const CHUNK_BYTES = 50 * 1024 * 1024;
let resumable = null;

function answerOf(error) {
  const response = error && error.originalResponse;
  if (!response) return { status: 0, data: { detail: 'The upload failed: the connection was lost.' } };
  let body;
  try { body = JSON.parse(response.getBody()); } catch (parseError) { body = { detail: `Unexpected answer (${response.getStatus()}).` }; }
  return { status: response.getStatus(), data: body };
}

function sendResumable(file, fields) {
  return new Promise((resolve) => {
    const metadata = { filename: file.name, filetype: file.type || 'application/octet-stream' };
    for (const name of ['title', 'description', 'category', 'visibility']) if (fields[name]) metadata[name] = fields[name];
    let startedAt = performance.now();
    let startOffset = 0;
    resumable = new window.tus.Upload(file, {
      endpoint: '/api/uploads/',
      chunkSize: CHUNK_BYTES,
      retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
      metadata,
      removeFingerprintOnSuccess: true,
      // The access cookie stays fresh through a long upload (a no-op while it is).
      async onBeforeRequest() { await refreshSession(); },
      onProgress(sent, total) {
        if (sent < startOffset) { startOffset = sent; startedAt = performance.now(); }
        showProgress(sent, total, startedAt, startOffset);
      },
      onSuccess({ lastResponse }) {
        resolve({ status: 201, location: lastResponse.getHeader('Video-Location') });
      },
      onError(error) { resolve(answerOf(error)); },
    });
    resumable.findPreviousUploads().then((previous) => {
      if (previous.length) {
        resumable.resumeFromPreviousUpload(previous[0]);
        document.getElementById('resume-note').hidden = false;
        say('Resuming the unfinished upload of this file.');
      }
      resumable.start();
    });
  });
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearErrors(form);
  if (!pickedFile) {
    showErrors(form, { file: ['Choose a video file first.'] });
    return;
  }
  const fields = formJSON(form);
  await refreshSession(); // a long upload starts with an access token that lasts
  document.getElementById('progress-box').hidden = false;
  document.getElementById('resume-note').hidden = true;
  showProgress(0, pickedFile.size, performance.now());
  uploading(true);
  say('Upload started.');
  let result;
  if (window.tus && window.tus.isSupported) {
    result = await sendResumable(pickedFile, fields);
    resumable = null;
    if (result.status === 201 && result.location) {
      const detail = await api('GET', result.location);
      result = detail.ok ? { status: 201, data: detail.data } : { status: detail.status, data: detail.data };
    }
  } else {
    // Without tus-js-client (node_modules/ not installed): the multipart upload.
    const data = new FormData();
    for (const name of ['title', 'description', 'category']) data.append(name, fields[name] || '');
    if (fields.visibility) data.append('visibility', fields.visibility);
    data.append('file', pickedFile, pickedFile.name);
    const sentAt = Date.now();
    result = await sendUpload(data);
    if (result.status === 401 && await refreshSession(sentAt)) result = await sendUpload(data);
    xhr = null;
  }
  uploading(false);
  if (result.status === 201) {
    showProgress(1, 1, performance.now() - 1);
    upsert(result.data);
    say(`Uploaded “${result.data.title}”; it is queued for transcoding.`);
    form.reset();
    pick(null);
  } else if (result.status === -1) {
    document.getElementById('progress-box').hidden = true;
    say('Upload cancelled.');
  } else {
    document.getElementById('progress-box').hidden = true;
    showErrors(form, result.data);
  }
});
cancelButton.addEventListener('click', () => {
  if (xhr) xhr.abort();
  if (resumable) {
    const stopping = resumable;
    resumable = null;
    // Cancel ends the upload on the server too (DELETE), and forgets it here.
    stopping.abort(true).catch(() => {}).finally(() => {
      uploading(false);
      document.getElementById('progress-box').hidden = true;
      say('Upload cancelled.');
    });
  }
});

// --- the list of videos --------------------------------------------------------
const STATUS_TEXT = { uploading: 'Uploading', queued: 'Queued', processing: 'Processing', ready: 'Ready', failed: 'Failed' };

// The storage ledger's sums: the caller's own; admins see every video's total.
async function showStorage() {
  const result = await api('GET', '/api/storage/');
  if (!result.ok) return;
  const sums = result.data.total || result.data.mine;
  const line = document.getElementById('storage');
  line.textContent = `${result.data.total ? 'All videos' : 'Your videos'} take ${formatBytes(sums.total_bytes)}`
    + ` (originals ${formatBytes(sums.original_bytes)}, renditions ${formatBytes(sums.rendition_bytes)});`
    + ` copying saved about ${Math.round(sums.copy_saved_cpu_seconds)} CPU-seconds and ${formatBytes(sums.copy_saved_bytes)}.`;
  line.hidden = false;
}

function statusLine(video) {
  const parts = [el('span', { class: `badge ${video.status}`, 'data-status': video.status }, STATUS_TEXT[video.status] || video.status)];
  if (video.status === 'processing') parts.push(` ${video.progress} %`);
  if (video.playable && video.status !== 'ready') parts.push(' · watchable now');
  if (video.status === 'ready' && video.duration) parts.push(` ${formatTime(video.duration)} · ${video.resolutions.join(', ')}`);
  // Its bytes on disk (the storage ledger, issue 23), for its owner and admins.
  if (video.storage) parts.push(el('span', { class: 'storage', 'data-bytes': String(video.storage.total_bytes) }, ` · ${formatBytes(video.storage.total_bytes)}`));
  // How the live version was made (issue 23): "copied", or "encoded: source GOP 10 s".
  if (video.encoding && video.encoding.note) parts.push(el('span', { class: 'encoding', 'data-encoding': video.encoding.video }, ` · ${video.encoding.note}`
    + (video.encoding.input && video.encoding.input !== 'the original' ? ` from ${video.encoding.input}` : '')));
  parts.push(` · ${video.visibility === 'public' ? 'everyone' : 'private'}`);
  if (video.category) parts.push(` · ${video.category}`);
  return parts;
}

function editForm(video, item) {
  const f = el('form', { class: 'edit-form', novalidate: true },
    el('p', { class: 'form-error', role: 'alert' }),
    ...['title', 'description', 'category'].map((name) => el('div', { class: 'field' },
      el('label', { for: `${name}-${video.id}` }, name[0].toUpperCase() + name.slice(1)),
      el(name === 'description' ? 'textarea' : 'input', { id: `${name}-${video.id}`, name, 'aria-describedby': `${name}-${video.id}-error` }),
      el('p', { class: 'field-error', id: `${name}-${video.id}-error`, 'data-error-for': name }))),
    el('div', { class: 'field' },
      el('label', { for: `visibility-${video.id}` }, 'Visibility'),
      el('select', { id: `visibility-${video.id}`, name: 'visibility' },
        new Option('Everyone', 'public'), new Option('Only me (and admins)', 'private')),
      el('p', { class: 'field-error', 'data-error-for': 'visibility' })),
    el('div', { class: 'actions' },
      el('button', { class: 'button primary small', type: 'submit' }, 'Save'),
      el('button', { class: 'button small', type: 'button', onclick: () => f.remove() }, 'Cancel')));
  for (const name of ['title', 'description', 'category', 'visibility']) f.elements.namedItem(name).value = video[name];
  if (video.status === 'ready') f.insertBefore(posterChoice(video, f), f.querySelector('.actions'));
  if (video.status === 'ready' && session && session.admin) f.insertBefore(downloadsSwitch(video), f.querySelector('.actions'));
  f.addEventListener('submit', async (event) => {
    event.preventDefault();
    const current = videos.get(video.id);
    const changes = {};
    for (const [name, value] of Object.entries(formJSON(f))) if (value !== current[name]) changes[name] = value;
    if (!Object.keys(changes).length) { f.remove(); return; }
    const result = await api('PATCH', `/api/video/${video.id}/`, changes);
    if (result.ok) {
      upsert(result.data);
      say(`Saved “${result.data.title}”.`);
    } else {
      showErrors(f, result.data);
    }
  });
  item.append(f);
  f.elements.namedItem('title').focus();
}

// A chosen poster (an image, or the frame at a time): sent at once, apart from Save.
// Its URL stays the same, so the list asks for it again with a new query.
const posterVersions = new Map(); // id -> when its poster last changed here

function posterChoice(video, f) {
  const id = video.id;
  const file = el('input', { id: `poster-file-${id}`, type: 'file', accept: 'image/jpeg,image/png,image/webp' });
  const time = el('input', { id: `poster-time-${id}`, type: 'number', min: '0', step: '0.1', inputmode: 'decimal' });
  const send = async () => {
    clearErrors(f);
    let result;
    if (file.files.length) {
      const data = new FormData();
      data.append('file', file.files[0], file.files[0].name);
      const response = await fetch(`/api/video/${id}/poster/`, { method: 'POST', body: data, credentials: 'same-origin', headers: headers('POST', false) });
      result = { ok: response.ok, status: response.status, data: await response.json().catch(() => ({ detail: `Unexpected answer (${response.status}).` })) };
    } else if (time.value !== '') {
      result = await api('PUT', `/api/video/${id}/poster/frame/`, { time: Number(time.value) });
    } else {
      showErrors(f, { file: ['Choose an image, or a time in seconds.'] });
      return;
    }
    if (result.ok) {
      posterVersions.set(id, Date.now());
      const current = videos.get(id);
      if (current) upsert(current);
      say(`The poster of “${video.title}” was replaced.`);
    } else {
      showErrors(f, result.data);
    }
  };
  return el('fieldset', { class: 'poster-choice' },
    el('legend', {}, 'Poster'),
    el('div', { class: 'field' }, el('label', { for: file.id }, 'An image (JPEG, PNG or WebP)'), file,
      el('p', { class: 'field-error', 'data-error-for': 'file' })),
    el('div', { class: 'field' }, el('label', { for: time.id }, 'Or the frame at (seconds)'), time,
      el('p', { class: 'field-error', 'data-error-for': 'time' })),
    el('button', { class: 'button small', type: 'button', onclick: send }, 'Set poster'));
}

// Admins: downloads of this video on or off (the player hides its Download button).
function downloadsSwitch(video) {
  const box = el('input', { id: `downloads-${video.id}`, type: 'checkbox', disabled: true });
  api('GET', `/api/video/${video.id}/downloads/`).then((result) => {
    if (result.ok) { box.checked = result.data.downloads_enabled; box.disabled = false; }
  });
  box.addEventListener('change', async () => {
    const result = await api('PUT', `/api/video/${video.id}/downloads/`, { enabled: box.checked });
    if (result.ok) say(`Downloads of “${video.title}” are ${result.data.downloads_enabled ? 'on' : 'off'}.`);
    else { box.checked = !box.checked; say(result.data.detail || 'Not changed.'); }
  });
  return el('div', { class: 'field checkbox' }, el('label', { for: box.id }, box, ' Viewers may download it'));
}

async function rerun(video) {
  const result = await api('POST', `/api/video/${video.id}/retranscode/`);
  if (result.ok) { upsert(result.data); say(`“${video.title}” is queued again.`); } else say(result.data.detail);
}

async function remove(video) {
  if (!confirm(`Delete “${video.title}”? Its files are removed for good.`)) return;
  const result = await api('DELETE', `/api/video/${video.id}/`);
  if (result.ok || result.status === 404) { drop(video.id); say(`Deleted “${video.title}”.`); } else say(result.data.detail);
}

function render(video) {
  const item = el('li', { class: 'video-item', id: `video-${video.id}`, 'data-status': video.status,
    'data-playable': String(Boolean(video.playable)) });
  const changed = posterVersions.get(video.id);
  const source = video.thumbnail_url && changed ? `${video.thumbnail_url}?v=${changed}` : video.thumbnail_url;
  const picture = source ? el('img', { src: source, alt: '', width: 480, height: 270, loading: 'lazy' }) : null;
  const progress = video.status === 'processing' || video.status === 'queued'
    ? el('progress', { max: 100, value: video.progress, 'aria-label': `Transcoding ${video.title}` }) : null;
  item.append(
    el('div', { class: 'poster' }, picture),
    el('div', {},
      // Playable: ready, or being transcoded with its first segments out (watch while it transcodes).
      el('h3', {}, video.playable ? el('a', { href: `/watch/${video.id}` }, video.title) : video.title),
      el('p', { class: 'video-meta' }, statusLine(video)),
      progress,
      video.status === 'failed' && video.error ? el('p', { class: 'field-error' }, video.error) : null,
      el('div', { class: 'actions' },
        el('button', { class: 'button small', type: 'button', onclick: () => { if (!item.querySelector('.edit-form')) editForm(video, item); } }, 'Edit'),
        session && session.admin && ['ready', 'failed'].includes(video.status)
          ? el('button', { class: 'button small', type: 'button', onclick: () => rerun(video) }, 'Re-run') : null,
        el('button', { class: 'button small danger', type: 'button', onclick: () => remove(video) }, 'Delete'))));
  return item;
}

function upsert(video) {
  const before = videos.get(video.id);
  videos.set(video.id, video);
  const existing = document.getElementById(`video-${video.id}`);
  const openEdit = existing && existing.querySelector('.edit-form');
  const item = render(video);
  if (openEdit) item.append(openEdit);
  if (existing) existing.replaceWith(item); else list.prepend(item);
  document.getElementById('no-videos').hidden = videos.size > 0;
  if (before && before.status !== video.status && video.status === 'ready') showStorage();
  if (before && before.status !== video.status) {
    if (video.status === 'ready') say(`“${video.title}” is ready to watch.`);
    else if (video.status === 'failed') say(`“${video.title}” failed: ${video.error || 'unknown error'}.`);
    else say(`“${video.title}”: ${STATUS_TEXT[video.status] || video.status}.`);
  } else if (before && !before.playable && video.playable) {
    say(`“${video.title}” can be watched while it transcodes.`);
  }
}

function drop(id) {
  videos.delete(id);
  document.getElementById(`video-${id}`)?.remove();
  document.getElementById('no-videos').hidden = videos.size > 0;
}

// --- live status: pushed by the server --------------------------------------------
// Each connection starts with a snapshot of every video, then changes follow.
function connect() {
  const source = new EventSource('/api/video/events/', { withCredentials: true });
  const openedAt = Date.now();
  source.addEventListener('open', () => { live.textContent = 'Live: status updates appear as they happen.'; });
  source.addEventListener('video', (event) => upsert(JSON.parse(event.data)));
  source.addEventListener('video-deleted', (event) => drop(JSON.parse(event.data).id));
  source.addEventListener('error', () => {
    live.textContent = 'Reconnecting…';
    if (source.readyState !== EventSource.CLOSED) return; // the browser reconnects by itself
    // Refused (401 once the access token expired, or 503): refresh if that is
    // the reason, then connect again. Later, so a page being left does nothing.
    setTimeout(async () => {
      if (await refreshSession(openedAt)) connect();
      else live.textContent = 'Live updates stopped: log in again.';
    }, 2000);
  });
}

async function main() {
  session = await keepSession();
  document.getElementById('admin-link').hidden = !session.admin;
  document.getElementById('no-videos').hidden = false;
  connect();
  showStorage();
}

main();
