// The catalog: a hero for the newest video, "Continue watching", one row per category.
import { api, el, keepSession, posterOf, wireLogout } from './api.js';

wireLogout();
const root = document.getElementById('catalog');
const status = document.getElementById('status');

// Thumbnails are <= 480 px wide, posters <= 1280 px: the browser picks by width.
function picture(video, sizes, eager = false) {
  if (!video.thumbnail_url) return el('div', { class: 'poster-missing', 'aria-hidden': 'true' });
  return el('img', {
    src: video.thumbnail_url,
    srcset: `${video.thumbnail_url} 480w, ${posterOf(video.thumbnail_url)} 1280w`,
    sizes, alt: '', width: 480, height: 270,
    loading: eager ? 'eager' : 'lazy', decoding: 'async',
  });
}

function card(video) {
  let watched = null;
  if (video.position && video.duration) {
    watched = el('span', { class: 'watched' });
    watched.style.width = `${Math.min(100, (100 * video.position) / video.duration).toFixed(1)}%`;
  }
  return el('li', { class: 'card' },
    el('a', { href: `/watch/${video.id}`, 'aria-label': video.title + (watched ? ' (continue)' : '') },
      el('div', { class: 'poster' }, picture(video, '(max-width: 600px) 45vw, 240px'), watched),
      el('span', { class: 'card-title' }, video.title)));
}

function row(title, videos, id) {
  const heading = el('h2', { id }, title);
  return el('section', { class: 'row', 'aria-labelledby': id }, heading,
    el('ul', { class: 'cards' }, videos.map(card)));
}

function hero(video) {
  const image = video.thumbnail_url
    ? el('img', { src: posterOf(video.thumbnail_url), srcset: `${video.thumbnail_url} 480w, ${posterOf(video.thumbnail_url)} 1280w`,
      sizes: '100vw', alt: '', width: 1280, height: 720, fetchpriority: 'high' })
    : null;
  return el('section', { class: 'hero', 'aria-labelledby': 'hero-title' }, image,
    el('div', { class: 'hero-text' },
      el('h1', { id: 'hero-title' }, video.title),
      el('p', {}, video.description),
      el('a', { class: 'button primary', href: `/watch/${video.id}` }, '▶ Play')));
}

function empty(admin) {
  return el('section', { class: 'empty' },
    el('h1', {}, 'Nothing to watch yet'),
    el('p', {}, admin
      ? 'Upload the first video in the Studio: it appears here once it is transcoded.'
      : 'Videos appear here once an admin uploads them in the Studio.'),
    el('a', { class: 'button primary', href: '/studio' }, 'Open the Studio'));
}

function render(videos, continuing, admin) {
  root.replaceChildren();
  if (!videos.length) {
    root.append(empty(admin));
    status.textContent = 'The catalog is empty.';
    return;
  }
  root.append(hero(videos[0]));
  if (continuing.length) root.append(row('Continue watching', continuing, 'row-continue'));
  const byCategory = new Map();
  for (const video of videos) {
    const name = video.category || 'More videos';
    if (!byCategory.has(name)) byCategory.set(name, []);
    byCategory.get(name).push(video);
  }
  let index = 0;
  for (const [name, items] of [...byCategory].sort((a, b) => a[0].localeCompare(b[0]))) {
    root.append(row(name, items, `row-${index++}`));
  }
  status.textContent = `${videos.length} video${videos.length === 1 ? '' : 's'} in the catalog.`;
}

async function main() {
  const session = await keepSession();
  const [list, continuing] = await Promise.all([api('GET', '/api/video/'), api('GET', '/api/video/continue/')]);
  root.removeAttribute('aria-busy');
  if (!list.ok) {
    root.replaceChildren(el('p', { class: 'notice bad', role: 'alert' }, list.data.detail || 'The catalog could not be loaded.'));
    return;
  }
  render(list.data, continuing.ok ? continuing.data : [], session.admin);
}

main();
