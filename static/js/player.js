// /watch/<id>: adaptive HLS through hls.js (native HLS where MSE is missing), a
// quality menu, keyboard, resume, position saving and a stream link for other players.
import { api, formatTime, headers, keepSession, posterOf, wireLogout } from './api.js';
import { attachStoryboard } from './storyboard.js';
import { setupSubtitles } from './subtitles.js';

wireLogout();
const video = document.getElementById('video');
const message = document.getElementById('message');
const quality = document.getElementById('quality');
const levelNow = document.getElementById('level-now');
const videoId = Number(location.pathname.split('/')[2]);
// About every 10 s while playing, on pause, and when the page is left.
const SAVE_EVERY_MS = 10_000;
const FINISHED = 0.95;

function say(text, kind = '') {
  message.className = `notice ${kind}`.trim();
  message.textContent = text;
}

const levelName = (level) => (level && level.height ? `${level.height}p` : 'Auto');

// --- position saving ---------------------------------------------------------
let lastSaved = -1;
let lastSaveAt = 0;
let playable = false;

function positionBody() {
  return { position: Math.max(0, Math.round(video.currentTime * 10) / 10) };
}

async function savePosition() {
  if (!playable || !(video.currentTime >= 0) || video.currentTime === lastSaved) return;
  const body = positionBody();
  lastSaved = video.currentTime;
  lastSaveAt = Date.now();
  await api('PUT', `/api/video/${videoId}/progress/`, body);
  video.dataset.savedPosition = String(body.position);
}

function saveOnLeave() {
  if (!playable || video.currentTime === lastSaved) return;
  lastSaved = video.currentTime;
  // sendBeacon can only POST; the server takes the same body there.
  const blob = new Blob([JSON.stringify(positionBody())], { type: 'application/json' });
  if (!navigator.sendBeacon(`/api/video/${videoId}/progress/`, blob)) {
    fetch(`/api/video/${videoId}/progress/`, { method: 'PUT', keepalive: true, credentials: 'include',
      headers: headers('PUT'), body: JSON.stringify(positionBody()) });
  }
}

video.addEventListener('timeupdate', () => {
  if (!video.paused && Date.now() - lastSaveAt >= SAVE_EVERY_MS) savePosition();
});
video.addEventListener('pause', () => savePosition());
addEventListener('pagehide', saveOnLeave);
document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'hidden') saveOnLeave(); });

// --- keyboard ----------------------------------------------------------------
function toggleFullscreen() {
  if (document.fullscreenElement) document.exitFullscreen();
  else video.parentElement.requestFullscreen?.();
}

document.addEventListener('keydown', (event) => {
  if (event.altKey || event.ctrlKey || event.metaKey || !playable) return;
  const target = event.target;
  if (target.closest && target.closest('input, textarea, select, [contenteditable="true"]')) return;
  const onButton = target.closest && target.closest('button, a');
  switch (event.key) {
    case ' ':
      if (onButton) return; // a focused button's own space press
    // fall through
    case 'k': case 'K':
      if (video.paused) video.play(); else video.pause();
      break;
    case 'ArrowLeft':
      video.currentTime = Math.max(0, video.currentTime - 5);
      break;
    case 'ArrowRight':
      video.currentTime = Math.min(video.duration || Infinity, video.currentTime + 5);
      break;
    case 'f': case 'F':
      toggleFullscreen();
      break;
    case 'm': case 'M':
      video.muted = !video.muted;
      say(video.muted ? 'Muted.' : 'Sound on.');
      break;
    default:
      return;
  }
  event.preventDefault();
});

// --- quality menu ------------------------------------------------------------
let qualityWired = false;
function setupQualities(hls) {
  // (Again after a master reloaded for fresh media tokens: the viewer's choice stays.)
  const chosen = quality.value;
  const levels = hls.levels.map((level, index) => ({ index, level }))
    .sort((a, b) => (b.level.height || 0) - (a.level.height || 0));
  quality.replaceChildren(new Option('Auto', '-1'),
    ...levels.map(({ index, level }) => new Option(levelName(level), String(index))));
  if (chosen && [...quality.options].some((option) => option.value === chosen)) {
    quality.value = chosen;
    if (chosen !== '-1') hls.currentLevel = Number(chosen);
  }
  if (qualityWired) return;
  qualityWired = true;
  quality.addEventListener('change', () => {
    // A manual choice switches at once (buffer flushed); Auto hands back to ABR.
    hls.currentLevel = Number(quality.value);
    showLevel(hls);
  });
}

function showLevel(hls, playing = null) {
  const index = playing ?? (hls.currentLevel >= 0 ? hls.currentLevel : hls.loadLevel);
  const name = levelName(hls.levels[index]);
  quality.options[0].textContent = hls.autoLevelEnabled ? `Auto (${name})` : 'Auto';
  if (playing !== null) {
    video.dataset.level = name;
    levelNow.textContent = `Playing ${name}`;
  }
}

// --- media tokens in a header -------------------------------------------------
// The header form (VIDEOFLIX_MEDIA_TOKEN_FORM=header:<name>; README "Edge delivery"): the
// master's URIs carry no token, its answer carries it in the header that is to carry it,
// found by the token's shape; hls.js then sends it with every request under /api/media/.
// (The path and query forms need nothing: the token is in the URIs.)
const MEDIA_TOKEN = /^[0-9a-z]{1,13}\.[0-9a-z]{1,13}\.[0-9a-z]{1,13}\.[01]\.[0-9a-f]{32}\.[A-Za-z0-9_-]{43}$/;
const mediaHeader = { name: '', token: '' };

function tokenHeaderOf(xhr) {
  for (const line of xhr.getAllResponseHeaders().split('\r\n')) {
    const colon = line.indexOf(':');
    const value = line.slice(colon + 1).trim();
    if (colon > 0 && MEDIA_TOKEN.test(value)) return { name: line.slice(0, colon).trim(), token: value };
  }
  return { name: '', token: '' };
}

function xhrSetup(xhr, url) {
  const path = new URL(url, location.href).pathname;
  if (path.endsWith('/master.m3u8')) {
    xhr.addEventListener('readystatechange', () => {
      if (xhr.readyState === XMLHttpRequest.HEADERS_RECEIVED) Object.assign(mediaHeader, tokenHeaderOf(xhr));
    });
  } else if (mediaHeader.name && path.startsWith('/api/media/')) {
    if (!xhr.readyState) xhr.open('GET', url, true);
    xhr.setRequestHeader(mediaHeader.name, mediaHeader.token);
  }
}

// --- start -------------------------------------------------------------------
async function start(detail) {
  const resumeAt = detail.position && detail.duration && detail.position < FINISHED * detail.duration
    ? detail.position : 0;
  if (detail.thumbnail_url) video.poster = posterOf(detail.thumbnail_url);
  const hlsUrl = document.documentElement.dataset.hls;
  let Hls = null;
  try {
    if (hlsUrl) Hls = (await import(hlsUrl)).default;
  } catch (error) {
    Hls = null;
  }
  if (Hls && Hls.isSupported()) {
    // While it transcodes the playlists are EVENT (live to hls.js): start at the
    // beginning (or the saved position), not at the growing end; once the run is
    // done the playlists end (#EXT-X-ENDLIST) and hls.js simply stops reloading them.
    const building = detail.status !== 'ready';
    const hls = new Hls({ startPosition: resumeAt || (building ? 0 : -1), capLevelToPlayerSize: false, xhrSetup });
    window.videoflixHls = hls; // for the curious (and the browser tests' diagnostics)
    hls.on(Hls.Events.MANIFEST_PARSED, () => { setupQualities(hls); showLevel(hls); });
    setupSubtitles(Hls, hls, document.getElementById('subtitles'), video);
    hls.on(Hls.Events.LEVEL_SWITCHED, () => showLevel(hls));
    hls.on(Hls.Events.FRAG_CHANGED, (_, data) => showLevel(hls, data.frag.level));
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (data.response && data.response.code === 403 && String(data.url || '').includes('/api/media/')) {
        renewMediaTokens(Hls, hls, detail.master_url); // an expired (or revoked) media token
        return;
      }
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
        say('The connection dropped; trying again…', 'warn');
        keepTrying(hls);
      } else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
      } else {
        say(`Playback failed (${data.details}).`, 'bad');
      }
    });
    hls.loadSource(detail.master_url);
    hls.attachMedia(video);
  } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
    // Safari and others with HLS built in: the browser picks the quality itself.
    quality.parentElement.hidden = true;
    video.src = detail.master_url;
    if (resumeAt) video.addEventListener('loadedmetadata', () => { video.currentTime = resumeAt; }, { once: true });
  } else {
    say('This browser cannot play HLS video. Use “Copy stream link” with VLC or another player.', 'bad');
  }
  if (resumeAt) say(`Resuming at ${formatTime(resumeAt)}.`);
  // Seek-bar previews when the video has a thumbnails track (trick-play).
  if (detail.thumbnails_vtt) attachStoryboard(video, document.getElementById('scrub'), detail.thumbnails_vtt, detail.duration);
  video.play().catch(() => {}); // autoplay may be refused: the controls are there
}

// Media tokens expire (VIDEOFLIX_MEDIA_TOKEN_TTL): the files below one answer 403, and a
// fresh master hands out fresh ones. Loaded again from where the video is; at most once
// a minute (a token refused again that soon is a revoked session: the page says so).
let renewedAt = 0;
async function renewMediaTokens(Hls, hls, masterUrl) {
  if (Date.now() - renewedAt < 60_000) {
    say('Playback was stopped: sign in again to go on watching.', 'bad');
    hls.stopLoad();
    return;
  }
  renewedAt = Date.now();
  const at = video.currentTime;
  const playing = !video.paused;
  await api('GET', `/api/video/${videoId}/`); // refreshes the session if it expired
  hls.config.startPosition = at;
  hls.loadSource(masterUrl);
  if (playing) hls.once(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
}

async function keepTrying(hls) {
  await api('GET', `/api/video/${videoId}/`); // refreshes the session if it expired
  hls.startLoad();
}

async function copyStreamLink() {
  const output = document.getElementById('stream-link');
  const result = await api('GET', `/api/video/${videoId}/stream/`);
  if (!result.ok) {
    output.textContent = result.data.detail;
    return;
  }
  const expires = new Date(result.data.expires_at).toLocaleString();
  try {
    await navigator.clipboard.writeText(result.data.url);
    output.textContent = `Copied. The link works in VLC, ffplay or a TV until ${expires}: ${result.data.url}`;
  } catch (error) {
    output.textContent = `Copy this link (valid until ${expires}): ${result.data.url}`;
  }
}

async function main() {
  await keepSession();
  const result = await api('GET', `/api/video/${videoId}/`);
  const title = document.getElementById('title');
  if (!result.ok) {
    title.textContent = result.status === 404 ? 'Video not found' : 'Something went wrong';
    say(result.data.detail, 'bad');
    return;
  }
  const detail = result.data;
  title.textContent = detail.title;
  document.title = `${detail.title} · Videoflix`;
  document.getElementById('description').textContent = detail.description;
  if (detail.status === 'failed') {
    say(`This video could not be processed: ${detail.error || 'unknown error'}.`, 'bad');
    return;
  }
  if (!detail.playable) {
    say(`This video is still being processed (${detail.status}, ${detail.progress} %). It starts here as soon as it can be watched.`, 'warn');
    waitUntilPlayable(detail);
    return;
  }
  begin(detail);
}

// Not playable yet: the owner's (or an admin's) event stream says when it is.
function waitUntilPlayable(detail) {
  const source = new EventSource('/api/video/events/', { withCredentials: true });
  source.addEventListener('video', (event) => {
    const changed = JSON.parse(event.data);
    if (changed.id !== detail.id) return;
    if (changed.status === 'failed') {
      source.close();
      say(`This video could not be processed: ${changed.error || 'unknown error'}.`, 'bad');
    } else if (changed.playable) {
      source.close();
      say(changed.status === 'ready' ? 'Ready.' : 'Playing while it transcodes.');
      begin(changed);
    } else {
      say(`This video is still being processed (${changed.status}, ${changed.progress} %). It starts here as soon as it can be watched.`, 'warn');
    }
  });
  source.addEventListener('video-deleted', (event) => {
    if (JSON.parse(event.data).id === detail.id) { source.close(); say('This video was deleted.', 'bad'); }
  });
}

// Download for offline viewing: the highest rendition as MP4 (remuxed by the server;
// a 403 when an admin turned downloads off for this video).
async function showDownload(detail) {
  if (detail.status !== 'ready' || !detail.resolutions || !detail.resolutions.length) return;
  const state = await api('GET', `/api/video/${detail.id}/downloads/`);
  if (!state.ok || !state.data.can_download) return;
  const highest = [...detail.resolutions].sort((a, b) => parseInt(b, 10) - parseInt(a, 10))[0];
  const link = document.getElementById('download');
  link.href = `/api/video/${detail.id}/${highest}/download.mp4`;
  link.hidden = false;
}

async function begin(detail) {
  if (playable) return;
  playable = true;
  document.getElementById('bar').hidden = false;
  document.getElementById('copy-link').addEventListener('click', copyStreamLink);
  showDownload(detail);
  const toggle = document.getElementById('toggle-keys');
  toggle.addEventListener('click', () => {
    const keys = document.getElementById('keys');
    keys.hidden = !keys.hidden;
    toggle.setAttribute('aria-expanded', String(!keys.hidden));
  });
  await start(detail);
}

main();
