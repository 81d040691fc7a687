// Seek-bar previews from the video's thumbnails track (API.md §6 `thumbnails_vtt`): a
// WebVTT file whose cues point into sprite sheets with `sheet.jpg#xywh=x,y,w,h`. The
// page's own seek bar under the video shows the tile of the hovered time; a click or
// a tap seeks there. The track and the sheets are fetched with the page's cookies.

const TIMESTAMP = /^(?:(\d+):)?(\d{2}):(\d{2})\.(\d{3})$/;
const XYWH = /^(.*)#xywh=(\d+),(\d+),(\d+),(\d+)$/;

function seconds(text) {
  const m = TIMESTAMP.exec(text.trim());
  if (!m) return NaN;
  return Number(m[1] || 0) * 3600 + Number(m[2]) * 60 + Number(m[3]) + Number(m[4]) / 1000;
}

// [{start, end, url, x, y, w, h}] from the track's text; sheet URLs resolved against
// the track's own URL. Cues that do not parse are skipped.
export function parseThumbnails(text, trackUrl) {
  const cues = [];
  for (const block of text.replace(/\r\n?/g, '\n').split(/\n{2,}/)) {
    const lines = block.split('\n');
    const at = lines.findIndex((line) => line.includes('-->'));
    if (at < 0 || at + 1 >= lines.length) continue;
    const [from, to] = lines[at].split('-->');
    const target = XYWH.exec(lines[at + 1].trim());
    const start = seconds(from);
    const end = seconds(to.trim().split(/\s+/)[0]);
    if (!target || !(end > start)) continue;
    cues.push({ start, end, url: new URL(target[1], trackUrl).href,
      x: Number(target[2]), y: Number(target[3]), w: Number(target[4]), h: Number(target[5]) });
  }
  return cues.sort((a, b) => a.start - b.start);
}

// The cue showing time `t` (binary search), or the nearest end one.
export function cueAt(cues, t) {
  let low = 0;
  let high = cues.length - 1;
  while (low < high) {
    const mid = (low + high + 1) >> 1;
    if (cues[mid].start <= t) low = mid; else high = mid - 1;
  }
  return cues[low];
}

function clock(t) {
  const s = Math.max(0, Math.floor(t));
  const hms = [Math.floor(s / 3600), Math.floor(s / 60) % 60, s % 60];
  const text = hms.map((v) => String(v).padStart(2, '0')).join(':');
  return hms[0] ? text : text.slice(3);
}

// Wires the seek bar `bar` (its .scrub-fill, .scrub-preview, .scrub-image, .scrub-time)
// to `video`. Without a usable track the bar still seeks, with the time only.
export async function attachStoryboard(video, bar, trackUrl, fallbackDuration = 0) {
  const fill = bar.querySelector('.scrub-fill');
  const preview = bar.querySelector('.scrub-preview');
  const image = bar.querySelector('.scrub-image');
  const label = bar.querySelector('.scrub-time');
  let cues = [];
  if (trackUrl) {
    try {
      const response = await fetch(trackUrl, { credentials: 'include' });
      if (response.ok) cues = parseThumbnails(await response.text(), response.url || trackUrl);
    } catch (error) {
      cues = [];
    }
  }
  bar.dataset.cues = String(cues.length);
  const duration = () => (Number.isFinite(video.duration) && video.duration > 0 ? video.duration : fallbackDuration);
  const timeAt = (event) => {
    const rect = bar.getBoundingClientRect();
    const fraction = Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width));
    return { t: fraction * duration(), left: event.clientX - rect.left, width: rect.width };
  };

  bar.addEventListener('pointermove', (event) => {
    if (!duration()) return;
    const { t, left, width } = timeAt(event);
    const cue = cues.length ? cueAt(cues, t) : null;
    label.textContent = clock(t);
    const shown = cue ? cue.w : label.offsetWidth || 48;
    if (cue) {
      image.hidden = false;
      image.style.width = `${cue.w}px`;
      image.style.height = `${cue.h}px`;
      image.style.backgroundImage = `url("${cue.url}")`;
      image.style.backgroundPosition = `-${cue.x}px -${cue.y}px`;
      preview.dataset.sprite = `${cue.url.split('/').pop()}#xywh=${cue.x},${cue.y},${cue.w},${cue.h}`;
    } else {
      image.hidden = true;
      delete preview.dataset.sprite;
    }
    preview.style.left = `${Math.min(Math.max(0, left - shown / 2), Math.max(0, width - shown))}px`;
    preview.hidden = false;
  });
  bar.addEventListener('pointerleave', () => { preview.hidden = true; });
  bar.addEventListener('click', (event) => {
    if (duration()) video.currentTime = timeAt(event).t;
  });
  const progress = () => {
    const d = duration();
    const fraction = d ? Math.min(1, video.currentTime / d) : 0;
    fill.style.width = `${100 * fraction}%`;
    bar.setAttribute('aria-valuenow', String(Math.round(video.currentTime)));
    bar.setAttribute('aria-valuemax', String(Math.round(d)));
    bar.setAttribute('aria-valuetext', clock(video.currentTime));
  };
  video.addEventListener('timeupdate', progress);
  video.addEventListener('durationchange', progress);
  bar.hidden = false;
  progress();
}
