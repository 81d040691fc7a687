"""One ffmpeg process per job: decode once, encode the whole ladder, write HLS.

`build_command` and `build_poster_command` are pure. `transcode` is the child-process
entry point (module-level, picklable arguments): it probes (refusing what exceeds the
media caps), writes a provisional ladder.json, runs ffmpeg at a lower CPU priority
under a watchdog (`run_ffmpeg`) and memory/CPU-time limits sized from the job
(limits.py), makes the poster and thumbnail, measures the segments, turns the media
playlists into VOD and writes the final ladder.json. It never writes outside `out_dir`.

Watching while it runs (issue 12): every rendition's playlist is an EVENT playlist
that grows by one segment at a time. ffmpeg 5.1's hls muxer writes each playlist to
index.m3u8.tmp and renames it (always), and with `hls_flags temp_file` each segment
to seg_NNNNN.ts.tmp, renamed once complete (checked with strace): a reader never
sees half a segment or half a playlist, and a listed segment is always complete.
`hls_init_time` (a short first segment) is not used: with every segment kept in the
playlist (hls_list_size 0) ffmpeg applies it to all segments, not the first.

Sharing one audio encode across renditions: ffmpeg 5.1's HLS muxer rejects the same
audio stream in two `-var_stream_map` variants ("Same elementary stream found more than
once in two different variant definitions"), which would force one AAC encode per
rendition. Instead the encoded streams go to the `tee` muxer, whose slaves are plain HLS
muxers, one per rendition, each `select`ing its video stream plus the one audio stream.
Every `<res>/index.m3u8` therefore plays standalone with sound (clients pick a
resolution blindly, API.md section 3) while AAC is encoded once.

Output layout inside out_dir (one version, media.version_dir):
    ladder.json               ours (transcode/ladderfile.py): provisional, then final
    <res>/index.m3u8          media playlist, bare segment names: EVENT, then VOD
    <res>/seg_00000.ts ...    MPEG-TS, each starting with an IDR frame
    poster.jpg                long side <= 1280
    thumbnail.jpg             long side <= 480
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import IO

from videoflix.platform.media import (
    LADDER_NAME,
    MEDIA_PLAYLIST_NAME,
    POSTER_NAME,
    SEGMENT_PATTERN,
    THUMBNAIL_NAME,
    THUMBS_DIR,
)
from videoflix.platform.proc import die_with_parent
from videoflix.transcode import colour, iframes, ladderfile, sprites, subtracks
from videoflix.transcode.errors import TranscodeError
from videoflix.transcode.ladder import Rendition, pick_renditions
from videoflix.transcode.limits import MediaCaps, ResourceLimits, ffmpeg_limits
from videoflix.transcode.playlist import (
    PlaylistError,
    Variant,
    codecs_attribute,
    measure_rendition,
    vod_playlist,
)
from videoflix.transcode.probe import (
    Probe,
    ProbeError,
    input_options,
    probe_file_sync,
)

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float], None]
# Called once, from the progress callback's thread, when every rendition lists a segment.
PlayableCallback = Callable[[], None]

# Long-side limits: the poster fills a 720p player, the thumbnail a catalog tile.
POSTER_MAX_SIDE = 1280
THUMBNAIL_MAX_SIDE = 480
# Where the representative frame is searched: a third of the way in skips black fade-ins
# and title cards; the `thumbnail` filter then picks the frame nearest the average
# histogram among the next few seconds.
POSTER_POSITION = 1 / 3
POSTER_WINDOW_SECONDS = 3.0
# The thumbnail filter buffers every candidate frame (at poster size, ~1.4 MB each).
POSTER_MAX_CANDIDATES = 50
POSTER_MIN_CANDIDATES = 2  # the filter's own minimum

# A run may never be shorter than this, however short the video: ffmpeg start-up, probing
# and encoder lookahead take seconds on a loaded host.
MIN_TIME_LIMIT_SECONDS = 120.0
# Output that ends this much before the source did means ffmpeg hit a truncated or
# corrupt file (it exits 0 after decode errors at EOF): max(1 s, 2% of the duration).
TRUNCATION_MIN_SECONDS = 1.0
TRUNCATION_FRACTION = 0.02
# How often the watchdog wakes when ffmpeg is silent.
WATCHDOG_POLL_SECONDS = 0.25
# How often an exiting ffmpeg is polled for its exit status and CPU time.
REAP_POLL_SECONDS = 0.02
# Lines of ffmpeg's stderr kept for the error message of a failed run.
STDERR_TAIL_LINES = 8
# ffmpeg's share of the progress bar; posters, measuring and the master take the rest.
FFMPEG_PROGRESS_SHARE = 98.0

# Filter-graph pads of the storyboard branch (sprites.py).
SPRITE_SOURCE_PAD = "sprite_in"
SPRITE_OUTPUT_PAD = "sprites"

# Encoding constants that are not knobs: HLS clients decode H.264 High 8-bit 4:2:0 and
# AAC-LC stereo everywhere (Apple's HLS authoring spec).
VIDEO_PROFILE = "high"
PIXEL_FORMAT = "yuv420p"
AUDIO_PROFILE = "aac_low"
AUDIO_CHANNELS = 2  # -ac 2 downmixes 5.1 with the standard matrix
AUDIO_SAMPLE_RATE = 48000


# An absolute path (optionally behind ffmpeg's "file:" prefix) in a message.
_PATH_IN_TEXT = re.compile(r"(?<![\w.:/])(?:file:)?/[^\s'\"|,;:]*")


def public_reason(message: str) -> str:
    """`message` without server paths, fit for the video's `error` (CWE-209).

    ffmpeg and the OS name the files they fail on; each absolute path is replaced by
    its last component, so "file:/srv/media/.work/7-1/720p/index.m3u8: No space"
    becomes "index.m3u8: No space".
    """
    def last_part(match: re.Match[str]) -> str:
        name = match.group(0).rstrip("/").rsplit("/", 1)[-1]
        return name or "<path>"
    return _PATH_IN_TEXT.sub(last_part, message)


@dataclass(frozen=True)
class TranscodeSettings:
    preset: str = "veryfast"  # PeerTube's and Jellyfin's default (DESIGN.md)
    crf: int = 21
    segment_seconds: int = 4
    gop_seconds: int = 2
    audio_kbps: int = 128
    stall_seconds: float = 60.0
    time_limit_factor: float = 10.0  # limit = max(MIN_TIME_LIMIT_SECONDS, factor * duration)
    nice: int = 10
    caps: MediaCaps = MediaCaps()  # checked again here: the upload's check may be older
    memory_mb: int = 0  # address-space limit of each ffmpeg run; 0 = sized from the job
    cpu_factor: float = 30.0  # CPU-seconds per second of 1080p video (limits.ffmpeg_limits)

    storyboard: bool = True  # sprite sheets + thumbnails.vtt (bench/transcode.py turns them off)
    sprite_columns: int = sprites.DEFAULT_COLUMNS
    sprite_rows: int = sprites.DEFAULT_ROWS

    def __post_init__(self) -> None:
        if self.gop_seconds <= 0 or self.segment_seconds % self.gop_seconds:
            # Segments can only be cut at keyframes: they must fall on GOP boundaries.
            raise ValueError("segment_seconds must be a multiple of gop_seconds")


@dataclass(frozen=True)
class TranscodeResult:
    duration: float  # seconds, of the source
    width: int  # of the highest rendition
    height: int
    fps: float  # constant output frame rate
    resolutions: list[str]  # highest first
    has_audio: bool
    # Text subtitle tracks written to tracks/ (subtracks.extract_tracks), imported at publish.
    subtitle_tracks: list[dict] = field(default_factory=list)


def time_limit_seconds(duration: float, settings: TranscodeSettings) -> float:
    return max(MIN_TIME_LIMIT_SECONDS, settings.time_limit_factor * duration)


def job_limits(probe: Probe, settings: TranscodeSettings) -> ResourceLimits:
    """Memory and CPU-time limits of each ffmpeg run on this source."""
    pixels = max(w * h for w, h in [(probe.width, probe.height), *probe.video_sizes])
    return ffmpeg_limits(pixels, probe.duration, memory_mb=settings.memory_mb,
                         cpu_factor=settings.cpu_factor)


def _path_arg(path: str | os.PathLike[str]) -> str:
    """A path ffmpeg cannot mistake for an option."""
    text = os.fspath(path)
    return text if os.path.isabs(text) or not text.startswith("-") else os.path.join(".", text)


def _input_arg(path: str | os.PathLike[str]) -> str:
    # "file:" keeps names such as "http:x" from being opened as URLs.
    return "file:" + os.fspath(path)


def _tee_quote(value: str) -> str:
    """Quote for ffmpeg's av_get_token: '...' with embedded quotes as '\\''."""
    return "'" + value.replace("'", "'\\''") + "'"


def fps_arg(fps: float) -> str:
    rate = Fraction(fps).limit_denominator(1001)
    return str(rate.numerator) if rate.denominator == 1 else "%d/%d" % (rate.numerator, rate.denominator)


def tone_map_filters(probe: Probe, size: tuple[int, int]) -> list[str]:
    """The HDR-to-SDR filters for this source at `size` ([] for SDR: colour.py)."""
    return colour.tone_map_filters(probe.color_transfer, probe.color_primaries, probe.color_space, size)


def _gop_frames(fps: float, settings: TranscodeSettings) -> int:
    return max(1, round(fps * settings.gop_seconds))


def _hls_slave(
    out_dir: str | os.PathLike[str], rendition: Rendition, video_index: int,
    audio_index: int | None, settings: TranscodeSettings,
) -> str:
    """One tee slave: an HLS muxer for one rendition (its video + the shared audio)."""
    directory = os.path.join(_path_arg(out_dir), rendition.name)
    select = str(video_index) if audio_index is None else "%d,%d" % (video_index, audio_index)
    options = [
        ("f", "hls"),
        ("select", select),  # tee output stream indexes
        ("hls_time", str(settings.segment_seconds)),
        # EVENT: the playlist only grows, so it can be watched while the run goes;
        # finish_playlists() makes it VOD at the end.
        ("hls_playlist_type", "event"),
        ("hls_segment_type", "mpegts"),
        # temp_file: a segment appears under its name only once complete.
        ("hls_flags", "independent_segments+temp_file"),
        ("hls_segment_filename", os.path.join(directory, SEGMENT_PATTERN)),
    ]
    spec = "[%s]%s" % (
        ":".join("%s=%s" % (key, _tee_quote(value)) for key, value in options),
        os.path.join(directory, MEDIA_PLAYLIST_NAME),
    )
    # Two unescaping levels: the tee splits slaves with av_get_token, then each option
    # value goes through av_get_token again.
    return _tee_quote(spec)


def build_command(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    probe: Probe,
    renditions: Sequence[Rendition],
    settings: TranscodeSettings,
) -> list[str]:
    """The one-decode ffmpeg argv for the whole ladder (pure).

    The source is decoded once; `fps` makes the rate constant, then the frames cascade
    down the ladder: each rendition is scaled (and converted to 8-bit 4:2:0) once, and
    `split` hands it both to its own libx264 encoder and to the next, smaller `scale`,
    which is cheaper than scaling every rung from the full-size source. Keyframes
    are forced every gop_seconds of output time in every encoder, so GOPs (closed, IDR)
    and therefore segment boundaries are identical across renditions. Autorotation
    stays on, so rotated phone video comes out upright at its displayed size. An HDR
    source is tone mapped to BT.709 SDR once, right after `fps`, at the top
    rendition's size (colour.py), and the output is tagged BT.709.
    """
    if not renditions:
        raise ValueError("no renditions")
    if "%" in os.fspath(out_dir):
        # The hls muxer expands %d anywhere in the segment path and has no escape for %.
        raise ValueError("out_dir must not contain '%'")
    fps_values = {r.fps for r in renditions}
    if len(fps_values) != 1:
        raise ValueError("renditions must share one frame rate to share keyframes")
    fps = fps_values.pop()
    count = len(renditions)
    plan = sprite_plan(probe, renditions, settings)
    # HDR sources are tone mapped once, at the top rendition's size, before the cascade.
    tone_map = tone_map_filters(probe, (renditions[0].width, renditions[0].height))
    chains = ["[0:%d]%s[c0]" % (probe.video_stream_index, ",".join(["fps=%s" % fps_arg(fps), *tone_map]))]
    for i, r in enumerate(renditions):
        scaled = "[c%d]scale=%d:%d,setsar=1,format=%s" % (i, r.width, r.height, PIXEL_FORMAT)
        last = i == count - 1
        if not last:
            chains.append(scaled + ",split=2[v%d][c%d]" % (i, i + 1))
        elif plan is None:
            chains.append(scaled + "[v%d]" % i)
        else:
            # The storyboard branches off the smallest rendition: the fewest pixels to scale.
            chains.append(scaled + ",split=2[v%d][%s]" % (i, SPRITE_SOURCE_PAD))
            chains.append(sprites.filter_chain(plan, SPRITE_SOURCE_PAD, SPRITE_OUTPUT_PAD))
    gop = _gop_frames(fps, settings)
    command = [
        "ffmpeg", "-hide_banner", "-nostdin", "-y", "-v", "error",
        "-nostats", "-progress", "pipe:1",
        *input_options(probe.demuxer),
        "-i", _input_arg(source),
        "-filter_complex", ";".join(chains),
    ]
    for i in range(count):
        command += ["-map", "[v%d]" % i]
    audio_index = None
    if probe.has_audio and probe.audio_stream_index is not None:
        audio_index = count  # tee output stream index: after the videos
        command += ["-map", "0:%d" % probe.audio_stream_index]
    command += [
        "-map_metadata", "-1", "-map_chapters", "-1",  # no GPS tags or titles leak out
        "-c:v", "libx264", "-preset", settings.preset, "-crf", str(settings.crf),
        "-profile:v", VIDEO_PROFILE,
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
        "-flags:v", "+cgop", "-forced-idr", "1",
        "-force_key_frames:v", "expr:gte(t,n_forced*%d)" % settings.gop_seconds,
        *colour.output_args(tone_map),
    ]
    for i, r in enumerate(renditions):
        command += ["-maxrate:v:%d" % i, "%dk" % r.max_kbps, "-bufsize:v:%d" % i, "%dk" % r.bufsize_kbps]
    if audio_index is not None:
        command += [
            "-c:a", "aac", "-profile:a", AUDIO_PROFILE, "-b:a", "%dk" % settings.audio_kbps,
            "-ac", str(AUDIO_CHANNELS), "-ar", str(AUDIO_SAMPLE_RATE),
        ]
    slaves = [_hls_slave(out_dir, r, i, audio_index, settings) for i, r in enumerate(renditions)]
    command += ["-f", "tee", "|".join(slaves)]
    if plan is not None:
        command += sprites.output_args(SPRITE_OUTPUT_PAD, _path_arg(out_dir), fps_arg(fps))
    return command


def prepare_output(out: Path, probe: Probe, renditions: Sequence[Rendition], settings: TranscodeSettings) -> None:
    """The folders build_command's outputs write into (ffmpeg creates none of them)."""
    for rendition in renditions:
        (out / rendition.name).mkdir(parents=True, exist_ok=True)
    if sprite_plan(probe, renditions, settings) is not None:
        (out / THUMBS_DIR).mkdir(exist_ok=True)


def sprite_plan(probe: Probe, renditions: Sequence[Rendition],
                settings: TranscodeSettings) -> sprites.SpritePlan | None:
    """The storyboard of this job (pure), None when sprites are off: from the smallest
    rendition (the last, the ladder is highest first)."""
    if not settings.storyboard or not renditions:
        return None
    smallest = renditions[-1]
    return sprites.plan_sprites(probe.duration, smallest.width, smallest.height,
                                settings.sprite_columns, settings.sprite_rows)


def _fit(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Even size with the long side at most max_side, never upscaled."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def build_poster_command(
    source: str | os.PathLike[str], out_dir: str | os.PathLike[str], probe: Probe,
    start_seconds: float | None = None,
) -> list[str]:
    """ffmpeg argv writing poster.jpg and thumbnail.jpg from one representative frame."""
    if start_seconds is None:
        start_seconds = probe.duration * POSTER_POSITION
    candidates = min(POSTER_MAX_CANDIDATES,
                     max(POSTER_MIN_CANDIDATES, round(probe.fps * POSTER_WINDOW_SECONDS)))
    poster_w, poster_h = _fit(probe.width, probe.height, POSTER_MAX_SIDE)
    thumb_w, thumb_h = _fit(probe.width, probe.height, THUMBNAIL_MAX_SIDE)
    tone_map = tone_map_filters(probe, (poster_w, poster_h))
    graph = (
        "[0:%d]%sscale=%d:%d,setsar=1,thumbnail=n=%d,split=2[poster][t];[t]scale=%d:%d[thumb]"
        % (probe.video_stream_index, "".join(f + "," for f in tone_map), poster_w, poster_h,
           candidates, thumb_w, thumb_h)
    )
    directory = _path_arg(out_dir)
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-y", "-v", "error",
        *input_options(probe.demuxer),
        "-ss", "%.3f" % start_seconds, "-i", _input_arg(source),
        "-filter_complex", graph,
        "-map", "[poster]", "-frames:v", "1", "-q:v", "2", "-update", "1",
        os.path.join(directory, POSTER_NAME),
        "-map", "[thumb]", "-frames:v", "1", "-q:v", "3", "-update", "1",
        os.path.join(directory, THUMBNAIL_NAME),
    ]


def parse_progress(lines: Sequence[str]) -> float | None:
    """Latest out_time in seconds from `-progress` key=value lines (pure)."""
    latest: float | None = None
    for line in lines:
        key, _, value = line.strip().partition("=")
        if key == "out_time_us":
            try:
                latest = int(value) / 1_000_000
            except ValueError:
                continue  # "N/A" before the first packet
    return latest


def _drain(stream: IO[bytes], tail: deque[str]) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            tail.append(line)


def _spawn(command: Sequence[str], nice: int, limits: ResourceLimits | None = None) -> subprocess.Popen[bytes]:
    argv = list(command)
    nice_binary = shutil.which("nice") if nice else None
    if nice_binary:
        # nice(1) execs ffmpeg, so every thread ffmpeg starts inherits the priority.
        argv = [nice_binary, "-n", str(nice), *argv]
    # ffmpeg dies with the pool worker that runs it (even by SIGKILL): a killed
    # worker or a crashed server leaves no orphan encode behind. `limits` caps its
    # memory and CPU time (nice(1) execs ffmpeg, which keeps them).
    preexec = die_with_parent(signal.SIGKILL)
    if limits is not None:
        preexec = limits.preexec(then=preexec)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=preexec)
    if nice and not nice_binary:
        os.setpriority(os.PRIO_PROCESS, proc.pid, os.getpriority(os.PRIO_PROCESS, 0) + nice)
    return proc


def _reap(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    """Wait for `proc` to exit; its return code and the CPU time it used (wait4)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() >= deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        time.sleep(REAP_POLL_SECONDS)


def run_ffmpeg(
    command: Sequence[str],
    *,
    duration: float,
    stall_seconds: float,
    time_limit: float,
    nice: int = 0,
    on_progress: ProgressCallback | None = None,
    limits: ResourceLimits | None = None,
) -> float:
    """Run ffmpeg (with `-progress pipe:1`) under a watchdog; return the final out_time.

    ffmpeg is killed, and TranscodeError raised, when its out_time does not advance for
    `stall_seconds` (a hung read, a wedged filter) or the run exceeds `time_limit`.
    It runs under `limits` (address space, CPU time); hitting one is a TranscodeError
    that says which. `on_progress` receives a percentage 0-100 of `duration`.
    """
    proc = _spawn(command, nice, limits)
    assert proc.stdout is not None and proc.stderr is not None
    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    drain = threading.Thread(target=_drain, args=(proc.stderr, tail), daemon=True)
    drain.start()
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    started = last_advance = time.monotonic()
    out_time = 0.0
    pending = b""
    try:
        while True:
            now = time.monotonic()
            if now - started > time_limit:
                raise TranscodeError("ffmpeg exceeded the time limit of %g s." % time_limit)
            if now - last_advance > stall_seconds:
                raise TranscodeError("ffmpeg stalled: no progress for %g s." % stall_seconds)
            if not selector.select(WATCHDOG_POLL_SECONDS):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break  # ffmpeg closed stdout: it is exiting
            pending += chunk
            *complete, partial = pending.split(b"\n")
            pending = partial
            latest = parse_progress([line.decode("ascii", "replace") for line in complete])
            if latest is not None and latest > out_time:
                out_time = latest
                last_advance = now
                if on_progress is not None and duration > 0:
                    on_progress(min(100.0, 100.0 * out_time / duration))
        remaining = max(1.0, time_limit - (time.monotonic() - started))
        try:
            returncode, cpu_used = _reap(proc, remaining)
        except subprocess.TimeoutExpired:
            raise TranscodeError("ffmpeg exceeded the time limit of %g s." % time_limit) from None
    finally:
        selector.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        drain.join(timeout=5)
        proc.stdout.close()
        proc.stderr.close()
    if returncode == -signal.SIGXFSZ:
        # RLIMIT_FSIZE (runner.py): the stand-in for a full media disk.
        raise TranscodeError("Not enough space for the renditions: an output file reached the "
                             "file-size limit.")
    if returncode != 0:
        detail = " | ".join(tail) or "no error output"
        hit = limits.failure(returncode, cpu_used, detail) if limits is not None else None
        if hit is not None:
            raise TranscodeError("ffmpeg %s." % hit)
        raise TranscodeError("ffmpeg failed (exit %d): %s" % (returncode, detail))
    return out_time


def _run_quiet(command: Sequence[str], timeout: float, nice: int, limits: ResourceLimits | None) -> None:
    """A short ffmpeg run (posters) under a plain timeout."""
    run_ffmpeg(command, duration=0.0, stall_seconds=timeout, time_limit=timeout, nice=nice, limits=limits)


def make_posters(
    source: str | os.PathLike[str], out_dir: str | os.PathLike[str], probe: Probe,
    settings: TranscodeSettings, limits: ResourceLimits | None = None,
) -> None:
    timeout = min(settings.stall_seconds, MIN_TIME_LIMIT_SECONDS)
    poster = Path(out_dir) / POSTER_NAME
    _run_quiet(build_poster_command(source, out_dir, probe), timeout, settings.nice, limits)
    if not poster.exists():
        # A third of the way in lies past the last video frame (a long audio tail):
        # fall back to the start.
        log.info("no frame a third into %s; poster from the start", source)
        _run_quiet(build_poster_command(source, out_dir, probe, start_seconds=0.0),
                   timeout, settings.nice, limits)
    if not poster.exists() or not (Path(out_dir) / THUMBNAIL_NAME).exists():
        raise TranscodeError("Could not extract a poster frame.")


def _variant(out_dir: Path, rendition: Rendition, has_audio: bool) -> Variant:
    directory = out_dir / rendition.name
    stats = measure_rendition(directory)
    # CODECS must describe the real stream: the level is the one x264 chose.
    first_segment = directory / (SEGMENT_PATTERN % 0)
    segment = probe_file_sync(first_segment, demuxer="mpegts")
    return Variant(
        name=rendition.name,
        width=segment.width,
        height=segment.height,
        fps=rendition.fps,
        codecs=codecs_attribute(segment.video_profile, segment.video_level, has_audio),
        peak_bps=stats.peak_bps,
        average_bps=stats.average_bps,
    )


@dataclass(frozen=True)
class Trickplay:
    """What write_trickplay made: one I-frame stream per rendition, the thumbnails track."""

    iframes: list[iframes.IFrameStream]
    thumbnails_vtt: str | None  # relative to the output folder, or None without sheets


def write_trickplay(out: Path, variants: Sequence[Variant], plan: sprites.SpritePlan | None) -> Trickplay:
    """After ffmpeg: <res>/iframes.m3u8 for every rendition, thumbs/thumbnails.vtt for
    the sheets (spanning the smallest rendition's measured duration)."""
    streams = [iframes.IFrameStream.of(v, iframes.write_iframe_playlist(out / v.name)) for v in variants]
    vtt = None
    if plan is not None:
        vtt = sprites.write_thumbnails_vtt(out, plan, measure_rendition(out / variants[-1].name).duration)
    return Trickplay(streams, vtt)


def check_complete(produced: float, duration: float) -> None:
    """Raise when the output ends well before the source's duration (pure)."""
    missing = duration - produced
    if missing > max(TRUNCATION_MIN_SECONDS, TRUNCATION_FRACTION * duration):
        raise TranscodeError(
            "The video stops at %.1f s of %.1f s: the file is truncated or corrupt."
            % (produced, duration)
        )


def first_video_pts(segment: str | os.PathLike[str], timeout: float = 30.0) -> int | None:
    """The 90 kHz PTS of the first video packet of an MPEG-TS segment (ffprobe), or None."""
    try:
        done = subprocess.run(
            ["ffprobe", "-v", "error", "-f", "mpegts", "-select_streams", "v:0", "-show_entries", "packet=pts",
             "-read_intervals", "%+#1", "-of", "csv=p=0", _input_arg(segment)],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None
    for line in done.stdout.decode("ascii", "replace").split():
        value = line.strip().strip(",")
        if value.isdigit():
            return int(value)
    return None


def playable(out_dir: Path, renditions: Sequence[Rendition]) -> bool:
    """Every rendition's playlist exists and lists a segment (blocking)."""
    for rendition in renditions:
        try:
            text = (out_dir / rendition.name / MEDIA_PLAYLIST_NAME).read_text(encoding="utf-8")
        except OSError:
            return False
        if "\n#EXTINF:" not in text:
            return False
    return True


def finish_playlists(out_dir: Path, renditions: Sequence[Rendition]) -> None:
    """EVENT -> VOD with the same segments, each playlist replaced atomically: a player
    that is watching has already seen ffmpeg's #EXT-X-ENDLIST and stopped reloading;
    new players get a VOD playlist."""
    for rendition in renditions:
        path = out_dir / rendition.name / MEDIA_PLAYLIST_NAME
        temporary = path.with_name(path.name + ".vod")
        temporary.write_text(vod_playlist(path.read_text(encoding="utf-8")), encoding="utf-8")
        temporary.replace(path)


def transcode(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    settings: TranscodeSettings = TranscodeSettings(),
    on_progress: ProgressCallback | None = None,
    on_playable: PlayableCallback | None = None,
) -> TranscodeResult:
    """Transcode `source` into the HLS ladder in `out_dir` (run in a child process)."""
    try:
        return _transcode(source, Path(out_dir), settings, on_progress, on_playable)
    except TranscodeError as error:
        raise TranscodeError(public_reason(str(error))) from error


def _transcode(
    source: str | os.PathLike[str], out: Path, settings: TranscodeSettings,
    on_progress: ProgressCallback | None, on_playable: PlayableCallback | None = None,
) -> TranscodeResult:
    # The allow-listed probe decides the demuxer; every ffmpeg run below forces it. The
    # caps are checked again: the job may be older than the configured caps, or the
    # source replaced behind the upload's back.
    try:
        probe = probe_file_sync(source, caps=settings.caps)
    except ProbeError as error:
        raise TranscodeError(str(error)) from error
    limits = job_limits(probe, settings)
    renditions = pick_renditions(probe)
    log.info(
        "transcoding %s: %dx%d %.3f fps %.1f s audio=%s -> %s",
        source, probe.width, probe.height, probe.fps, probe.duration, probe.has_audio,
        ", ".join("%s %dx%d@%.3f" % (r.name, r.width, r.height, r.fps) for r in renditions),
    )
    prepare_output(out, probe, renditions, settings)
    plan = sprite_plan(probe, renditions, settings)
    provisional = ladderfile.provisional_variants(renditions, probe.has_audio, settings.audio_kbps)
    ladder_file = out / LADDER_NAME
    ladderfile.write_ladder(ladder_file, ladderfile.make_ladder(
        provisional, complete=False, duration=probe.duration, segment_seconds=settings.segment_seconds))
    start_pts: list[int | None] = [None]  # measured once the first segments exist
    reported = [False]

    def ffmpeg_progress(percent: float) -> None:
        if on_progress is not None:
            on_progress(percent * FFMPEG_PROGRESS_SHARE / 100.0)
        if not reported[0] and playable(out, renditions):
            reported[0] = True
            start_pts[0] = first_video_pts(out / renditions[-1].name / (SEGMENT_PATTERN % 0))
            ladderfile.write_ladder(ladder_file, ladderfile.make_ladder(
                provisional, complete=False, duration=probe.duration, segment_seconds=settings.segment_seconds,
                start_pts=start_pts[0]))
            if on_playable is not None:
                on_playable()

    started = time.monotonic()
    produced = run_ffmpeg(
        build_command(source, out, probe, renditions, settings),
        duration=probe.duration,
        stall_seconds=settings.stall_seconds,
        time_limit=time_limit_seconds(probe.duration, settings),
        nice=settings.nice,
        on_progress=ffmpeg_progress,
        limits=limits,
    )
    check_complete(produced, probe.duration)
    log.info("encoded %s in %.1f s (%.1f s of video)", source, time.monotonic() - started, produced)

    try:
        finish_playlists(out, renditions)
    except (OSError, PlaylistError) as error:
        raise TranscodeError("Unusable output: %s" % error) from error
    if not reported[0]:  # a run too short for a progress report after its first segment
        reported[0] = True
        start_pts[0] = first_video_pts(out / renditions[-1].name / (SEGMENT_PATTERN % 0))
        if on_playable is not None:
            on_playable()
    make_posters(source, out, probe, settings, limits)
    subtitle_tracks = subtracks.extract_tracks(
        source, out, probe, lambda command, timeout, run_limits: _run_quiet(command, timeout, settings.nice,
                                                                            run_limits), limits)
    try:
        variants = [_variant(out, r, probe.has_audio) for r in renditions]
        trickplay = write_trickplay(out, variants, plan)
    except (PlaylistError, ProbeError) as error:
        raise TranscodeError("Unusable output: %s" % error) from error
    ladderfile.write_ladder(ladder_file, ladderfile.make_ladder(
        variants, complete=True, duration=probe.duration, segment_seconds=settings.segment_seconds,
        start_pts=start_pts[0], iframes=[dataclasses.asdict(stream) for stream in trickplay.iframes],
        thumbnails_vtt=trickplay.thumbnails_vtt))
    if on_progress is not None:
        on_progress(100.0)
    top = renditions[0]
    return TranscodeResult(
        duration=probe.duration,
        width=top.width,
        height=top.height,
        fps=top.fps,
        resolutions=[r.name for r in renditions],
        has_audio=probe.has_audio,
        subtitle_tracks=subtitle_tracks,
    )
