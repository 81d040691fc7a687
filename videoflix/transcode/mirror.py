"""A run with object storage (issue 21 item 3): its inputs fetched from the bucket, its
version folder copied into the bucket as it grows. Runs in the pool child (no event loop):
botocore through platform/s3blocking.BlockingS3, a few threads.

With VIDEOFLIX_STORAGE=s3://..., MEDIA_DIR is this host's scratch and the bucket holds the
library under the same relative keys. A run then:
1. fetches its input into its own scratch version folder: the original (`sources/<id>`)
   as media.FETCHED_SOURCE_NAME, or without one (originals.py) the live version's top rung
   into media.RUNG_FETCH_DIR, joined as today;
2. transcodes into that folder exactly as on a local disk (job.py), while a `Mirror` thread
   copies into the bucket each segment once a media playlist lists it (ffmpeg writes a
   segment whole before listing it), then the playlist that lists it (the bucket never has
   a playlist naming a segment it lacks), then the provisional ladder as
   media.BUILDING_LADDER_NAME (what the building version's master is rendered from): a
   player watching while it transcodes reads the bucket;
3. at the end (`Mirror.finish`): every other object of the version (sprites, I-frame
   playlists, poster and thumbnail, tracks/<n>.vtt), then the finished VOD playlists.
ladder.json is never copied here: the runner writes it last, after its before_publish
step and once the lease is confirmed, then switches the row (runner.py). A version prefix
without ladder.json is a run in progress or a dead run's leftovers (library/sweeper.py).

The store being unreachable makes the run wait (retries with backoff, the lease fence
checked in between) up to STORE_WAIT_SECONDS, then fail with a reason that names no path.
"""

from __future__ import annotations

import concurrent.futures
import errno
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, TypeVar

from videoflix.platform import media
from videoflix.platform.storage import StorageError
from videoflix.transcode.errors import TranscodeError
from videoflix.transcode.playlist import PlaylistError, parse_media_playlist

if TYPE_CHECKING:  # botocore is imported only by a run with a bucket (job.py)
    from videoflix.platform.s3blocking import BlockingS3

log = logging.getLogger(__name__)

T = TypeVar("T")

# How often the growing folder is looked at while ffmpeg runs: a finished segment is in
# the bucket at most this long plus its upload after ffmpeg listed it.
POLL_SECONDS = 0.2
# Uploads in flight at once (segments of several renditions, the finish's backlog).
UPLOAD_THREADS = 4
# An unreachable store is retried with backoff from RETRY_FIRST_SECONDS up to
# RETRY_MAX_SECONDS; after STORE_WAIT_SECONDS of failures in a row the run fails.
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 10.0
STORE_WAIT_SECONDS = 300.0
STORE_UNREACHABLE = "The media store could not be reached for %d s; run the transcode again."
# A store error with one of these is this host's scratch disk full (or the run's file-size
# limit reached) while a fetch writes to it: waiting for the store would not help.
_LOCAL_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
NO_SCRATCH_SPACE = "Not enough space on this host's scratch disk for the run's input."


def _store_errors() -> tuple[type[BaseException], ...]:
    """What the store's client raises when the store is down or refuses (not "missing");
    botocore is imported here, by a run with a bucket only."""
    import botocore.exceptions

    return (StorageError, OSError, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


# Called between transfers: raises (job.LeaseLost) once the run must stop.
Check = Callable[[], None]


def with_retries(what: str, operation: Callable[[], T], check: Check, wait_seconds: float = STORE_WAIT_SECONDS) -> T:
    """`operation()`, retried while the store is unreachable (TranscodeError after
    `wait_seconds` of failures, or at once when this host's disk is full); `check()`
    before every attempt."""
    started = time.monotonic()
    backoff = RETRY_FIRST_SECONDS
    while True:
        check()
        try:
            return operation()
        except _store_errors() as exc:
            if isinstance(exc, OSError) and exc.errno in _LOCAL_SPACE_ERRNOS:
                log.error("%s: %s", what, exc)
                raise TranscodeError(NO_SCRATCH_SPACE) from exc
            waited = time.monotonic() - started
            if waited + backoff > wait_seconds:
                log.error("%s: the store is unreachable (%s); giving up after %.0f s", what, exc, waited)
                raise TranscodeError(STORE_UNREACHABLE % round(waited + backoff)) from exc
            log.warning("%s: the store is unreachable (%s); retrying in %.1f s", what, exc, backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, RETRY_MAX_SECONDS)


def fetch_source(
    store: BlockingS3, source: Path, out_dir: Path, check: Check, wait_seconds: float = STORE_WAIT_SECONDS
) -> Path | None:
    """The original (the bucket's `sources/<id>`) copied into the run's folder; None
    when the bucket has none (removed by VIDEOFLIX_ORIGINALS)."""
    target = out_dir / media.FETCHED_SOURCE_NAME
    what = f"fetching {store.key(source)}"
    found = with_retries(what, lambda: store.get_file(source, target), check, wait_seconds)
    return target if found else None


def fetch_rung(store: BlockingS3, rung_dir: Path, out_dir: Path, check: Check) -> Path:
    """The live version's top rung (its playlist and every segment it lists) copied into
    out_dir/RUNG_FETCH_DIR/<vN>/<res>/, the folder originals.join_rung reads. ValueError
    when the bucket has no such rendition."""
    local = out_dir / media.RUNG_FETCH_DIR / rung_dir.parent.name / rung_dir.name
    playlist = local / media.MEDIA_PLAYLIST_NAME
    remote = rung_dir / media.MEDIA_PLAYLIST_NAME
    if not with_retries(f"fetching {store.key(remote)}", lambda: store.get_file(remote, playlist), check):
        raise ValueError("no rendition in the store: %s" % store.key(rung_dir))
    _, entries = parse_media_playlist(playlist.read_text(encoding="utf-8"))
    names = [uri for uri, _ in entries]
    if not all(media.is_segment_name(name) for name in names):
        raise ValueError("not a finished rendition: %s" % store.key(rung_dir))

    def fetch(name: str) -> None:
        what = f"fetching {store.key(rung_dir / name)}"
        if not with_retries(what, lambda: store.get_file(rung_dir / name, local / name), check):
            raise ValueError("a segment of the rendition is missing: %s" % name)

    with concurrent.futures.ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="s3-fetch") as threads:
        list(threads.map(fetch, names))
    return local


def remove_fetched(out_dir: Path) -> None:
    """The inputs fetched into the run's folder (blocking)."""
    (out_dir / media.FETCHED_SOURCE_NAME).unlink(missing_ok=True)
    shutil.rmtree(out_dir / media.RUNG_FETCH_DIR, ignore_errors=True)


def version_object(relative: PurePosixPath) -> bool:
    """Whether a file of a version folder belongs in the bucket: the names platform/media.py
    gives a version's outputs, and nothing else (inputs, temporary files, ladder.json)."""
    parts = relative.parts
    if len(parts) == 1:
        return parts[0] in (media.POSTER_NAME, media.THUMBNAIL_NAME)
    if len(parts) != 2:
        return False
    folder, name = parts
    if folder in media.RESOLUTIONS:
        return name in (media.MEDIA_PLAYLIST_NAME, media.IFRAME_PLAYLIST_NAME) or media.is_segment_name(name)
    if folder == media.THUMBS_DIR:
        return media.is_thumbs_file_name(name)
    if folder == media.TRACKS_DIR_NAME:
        return media.is_track_file(relative.as_posix())
    return False


def _is_media_playlist(relative: PurePosixPath) -> bool:
    return len(relative.parts) == 2 and relative.name == media.MEDIA_PLAYLIST_NAME


class Mirror:
    """Copies one run's version folder (`out_dir`, a media.version_dir in scratch) into the
    bucket under the same keys: `start` a thread for the growing playlists, `stop` it,
    `finish` with everything else. `on_playable` is called once the bucket holds a segment
    of every rendition, the playlists listing them and the provisional ladder."""

    def __init__(self, store: BlockingS3, out_dir: Path, check: Check, on_playable: Callable[[], None] | None) -> None:
        self.store = store
        self.out = out_dir
        self.check = check
        self.on_playable = on_playable
        self._sent: dict[str, bytes | tuple[int, int]] = {}  # relative name -> playlist text, or (size, mtime_ns)
        self._threads = concurrent.futures.ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="s3-put")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._playable_locally = False
        self._playable_told = False
        self.failing_since: float | None = None

    # --- what the transcode tells it ---------------------------------------------------
    def playable_locally(self) -> None:
        """job.transcode's on_playable: every rendition lists a segment on disk (and the
        provisional ladder has its start time); told on once the bucket has them too."""
        self._playable_locally = True

    # --- the growing phase ------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="s3-mirror", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _watch(self) -> None:
        backoff = RETRY_FIRST_SECONDS
        while not self._stop.wait(POLL_SECONDS if self.failing_since is None else backoff):
            try:
                self.sync_growing()
                self.failing_since = None
                backoff = RETRY_FIRST_SECONDS
            except _store_errors() as exc:
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                    log.warning("%s: the store is unreachable (%s); the run goes on, uploads wait", self.out, exc)
                backoff = min(backoff * 2, RETRY_MAX_SECONDS)
            except BaseException as exc:  # the lease ended (check) or a bug: finish() says so
                self._failure = exc
                return

    def sync_growing(self) -> None:
        """One pass: new listed segments, then the playlists listing them, then the
        provisional ladder (blocking; raises the store's errors)."""
        playable_before = self._playable_locally
        playlists: list[tuple[PurePosixPath, bytes]] = []
        segments: list[PurePosixPath] = []
        for rung in media.RESOLUTIONS:
            relative = PurePosixPath(rung, media.MEDIA_PLAYLIST_NAME)
            try:
                text = (self.out / relative).read_bytes()
            except FileNotFoundError:
                continue
            if self._sent.get(str(relative)) == text:
                continue
            try:
                _, entries = parse_media_playlist(text.decode("utf-8"))
            except (PlaylistError, UnicodeDecodeError, ValueError):
                continue  # no segment listed yet
            names = [uri for uri, _ in entries]
            if not all(media.is_segment_name(name) for name in names):
                raise TranscodeError("Unusable output: a playlist names a file that is not a segment.")
            segments += [
                PurePosixPath(rung, name) for name in names if str(PurePosixPath(rung, name)) not in self._sent
            ]
            playlists.append((relative, text))
        self._put_files(segments)
        for relative, text in playlists:
            self.check()
            self.store.put_bytes(self.out / relative, text)
            self._sent[str(relative)] = text
        ladder = self.out / media.LADDER_NAME
        try:
            text = ladder.read_bytes()
        except FileNotFoundError:
            return
        if self._sent.get(media.BUILDING_LADDER_NAME) != text:
            self.check()
            self.store.put_bytes(self.out / media.BUILDING_LADDER_NAME, text)
            self._sent[media.BUILDING_LADDER_NAME] = text
        if playable_before:
            self._tell_playable()

    def _tell_playable(self) -> None:
        if not self._playable_told and self.on_playable is not None:
            self._playable_told = True
            self.on_playable()

    def _put_files(self, names: Iterable[PurePosixPath]) -> None:
        """Upload these files of the folder, in parallel, each recorded once sent."""

        def put(relative: PurePosixPath) -> None:
            self.check()
            path = self.out / relative
            info = path.stat()
            self.store.put_file(path, path)
            self._sent[str(relative)] = (info.st_size, info.st_mtime_ns)

        for future in [self._threads.submit(put, name) for name in names]:
            future.result()

    # --- the end --------------------------------------------------------------------------
    def finish(self) -> None:
        """After the run: every object of the version but ladder.json, the media playlists
        last; waits for an unreachable store (with_retries). Raises what stopped the
        growing phase (the lease ended)."""
        self.stop()
        try:
            if self._failure is not None:
                raise self._failure
            with_retries(f"uploading {self.store.key(self.out)}", self._upload_rest, self.check)
            self._tell_playable()
        finally:
            self._threads.shutdown(wait=True, cancel_futures=True)

    def abandon(self) -> None:
        """The run failed: stop the thread, send nothing more."""
        self.stop()
        self._threads.shutdown(wait=True, cancel_futures=True)

    def _upload_rest(self) -> None:
        files: list[PurePosixPath] = []
        playlists: list[PurePosixPath] = []
        for path in sorted(self.out.rglob("*")):
            relative = PurePosixPath(path.relative_to(self.out).as_posix())
            if not path.is_file() or path.is_symlink() or not version_object(relative):
                continue
            info = path.stat()
            if self._sent.get(str(relative)) == (info.st_size, info.st_mtime_ns):
                continue
            if _is_media_playlist(relative):
                playlists.append(relative)
            elif str(relative) not in self._sent or not media.is_segment_name(relative.name):
                files.append(relative)
        self._put_files(files)
        self._put_files(playlists)  # VOD, after every segment and picture they lead to
