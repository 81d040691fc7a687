// The subtitle menu of /watch/<id>: the master's SUBTITLES group (API.md §6), as
// hls.js lists it in `subtitleTracks`. Off unless the viewer picked a language
// before (kept in this browser); the tracks are DEFAULT=NO on purpose.
const STORAGE_KEY = 'videoflix.subtitles';

function remembered() {
  try { return localStorage.getItem(STORAGE_KEY); } catch (error) { return null; }
}

function remember(language) {
  try {
    if (language) localStorage.setItem(STORAGE_KEY, language);
    else localStorage.removeItem(STORAGE_KEY);
  } catch (error) { /* private mode: not kept */ }
}

export function setupSubtitles(Hls, hls, select, video) {
  const field = select.closest('.field') || select;
  const choose = (index) => {
    hls.subtitleDisplay = index >= 0;
    hls.subtitleTrack = index;
    select.value = String(index);
    video.dataset.subtitles = index >= 0 ? hls.subtitleTracks[index].lang || '' : '';
  };
  const fill = () => {
    const tracks = hls.subtitleTracks || [];
    field.hidden = tracks.length === 0;
    select.replaceChildren(new Option('Off', '-1'),
      ...tracks.map((track, index) => new Option(track.name || track.lang || `Track ${index + 1}`, String(index))));
    const wanted = remembered();
    choose(wanted ? tracks.findIndex((track) => track.lang === wanted) : -1);
  };
  select.addEventListener('change', () => {
    const index = Number(select.value);
    choose(index);
    remember(index >= 0 ? hls.subtitleTracks[index].lang : null);
  });
  hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, fill);
}
