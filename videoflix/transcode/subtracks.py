"""Text subtitle tracks of the source, extracted to WebVTT in the transcode child.

One short ffmpeg run after the encode (it only demuxes: no decode of the picture)
writes every text track (probe.TEXT_SUBTITLE_CODECS) to `<out>/tracks/<index>.vtt`
(media.track_file_name), with the same forced, allow-listed demuxer as every other
run (probe.input_options). If that run fails, each track is tried alone, so one
broken track does not lose the others; a track that still fails is skipped: the
video is fine without it. The loop side imports the files at publish
(library/subtitle_tracks.import_tracks), parsing them as strictly as an upload.

`build_extract_command` and `order_streams` are pure.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from videoflix.platform.media import TRACKS_DIR_NAME, track_file_name
from videoflix.transcode.errors import TranscodeError
from videoflix.transcode.ffmpeg import run_quiet
from videoflix.transcode.limits import ResourceLimits
from videoflix.transcode.probe import Probe, SubtitleStream, input_options

log = logging.getLogger(__name__)

# Tracks extracted at most (a file may carry dozens of languages).
MAX_TRACKS = 16
# Demuxing reads the whole file; a minute plus a tenth of the duration is plenty.
EXTRACT_BASE_SECONDS = 60.0
EXTRACT_SECONDS_PER_SECOND = 0.1


@dataclass(frozen=True)
class ExtractedTrack:
    """A text track the run wrote: its file (relative to the version folder) and what the
    container said about it (as is: the library cleans the language and title at import)."""

    file: str  # media.track_file_name(index)
    language: str | None
    title: str | None
    index: int  # the source's stream index


def order_streams(streams: Sequence[SubtitleStream]) -> list[SubtitleStream]:
    """Full tracks before forced ones (those only translate foreign dialogue), the
    default first, then the file's order; at most MAX_TRACKS."""
    ranked = sorted(streams, key=lambda s: (s.forced, not s.default, s.index))
    return ranked[:MAX_TRACKS]


def build_extract_command(
    source: str | os.PathLike[str], out_dir: str | os.PathLike[str], probe: Probe, streams: Sequence[SubtitleStream]
) -> list[str]:
    """ffmpeg argv writing each stream to <out_dir>/tracks/<index>.vtt (pure)."""
    command = [
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-y",
        "-v",
        "error",
        *input_options(probe.demuxer),
        "-i",
        "file:" + os.fspath(source),
    ]
    for stream in streams:
        command += [
            "-map",
            f"0:{stream.index}",
            "-map_metadata",
            "-1",
            "-c:s",
            "webvtt",
            "-f",
            "webvtt",
            os.path.join(os.fspath(out_dir), track_file_name(stream.index)),
        ]
    return command


def extract_tracks(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    probe: Probe,
    nice: int,
    limits: ResourceLimits | None = None,
) -> list[ExtractedTrack]:
    """Extract the text tracks; returns each one written, in import preference order.
    Never raises for a bad track."""
    streams = order_streams(probe.subtitle_streams)
    if not streams:
        return []
    out = Path(out_dir)
    (out / TRACKS_DIR_NAME).mkdir(parents=True, exist_ok=True)
    timeout = EXTRACT_BASE_SECONDS + EXTRACT_SECONDS_PER_SECOND * probe.duration

    try:
        run_quiet(build_extract_command(source, out, probe, streams), timeout, nice, limits)
    except TranscodeError as error:
        log.info("%s: extracting %d subtitle track(s) together failed (%s); one by one", source, len(streams), error)
        for stream in streams:
            try:
                run_quiet(build_extract_command(source, out, probe, [stream]), timeout, nice, limits)
            except TranscodeError as single:
                log.info("%s: subtitle stream %d skipped: %s", source, stream.index, single)
                (out / track_file_name(stream.index)).unlink(missing_ok=True)
    written = []
    for stream in streams:
        path = out / track_file_name(stream.index)
        if path.is_file() and path.stat().st_size > 0:
            written.append(ExtractedTrack(track_file_name(stream.index), stream.language, stream.title, stream.index))
    return written
