"""The ffmpeg command lines of a job (pure): the one-decode ladder and the poster frame,
with the settings and OS limits they run under.

`build_command` is the ladder's one ffmpeg process (DESIGN.md, "One decode, the whole
ladder"); `build_poster_command` picks the poster and thumbnail frame. Running them is
ffmpeg.py's; what a job does with them, in which order, is job.py's. Everything here is
pure except `prepare_output` (the folders the command writes into).

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
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from videoflix.platform.media import MEDIA_PLAYLIST_NAME, POSTER_NAME, SEGMENT_PATTERN, THUMBNAIL_NAME, THUMBS_DIR
from videoflix.transcode import colour, copyfit, sprites
from videoflix.transcode.ladder import Rendition
from videoflix.transcode.limits import MediaCaps, ResourceLimits, ffmpeg_limits
from videoflix.transcode.probe import Probe, input_options

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
# Beside a copied rung, every output timestamp is moved this far later: each rendition's
# HLS muxer otherwise shifts its own streams by their own most negative DTS (a copied
# stream's B-frame delay, an encoder's, AAC priming), and the rungs' timestamps would
# disagree by a few frames. Above any delay a camera's stream carries.
COPY_TS_OFFSET_SECONDS = 1.0


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
    caps: MediaCaps = field(default_factory=MediaCaps)  # checked again here: the upload's check may be older
    memory_mb: int = 0  # address-space limit of each ffmpeg run; 0 = sized from the job
    cpu_factor: float = 30.0  # CPU-seconds per second of 1080p video (limits.ffmpeg_limits)

    storyboard: bool = True  # sprite sheets + thumbnails.vtt (bench/transcode.py turns them off)
    copy_when_fits: bool = True  # copy a fitting source's streams into the top rung (copyfit.py)
    sprite_columns: int = sprites.DEFAULT_COLUMNS
    sprite_rows: int = sprites.DEFAULT_ROWS

    def __post_init__(self) -> None:
        if self.gop_seconds <= 0 or self.segment_seconds % self.gop_seconds:
            # Segments can only be cut at keyframes: they must fall on GOP boundaries.
            raise ValueError("segment_seconds must be a multiple of gop_seconds")


def time_limit_seconds(duration: float, settings: TranscodeSettings) -> float:
    return max(MIN_TIME_LIMIT_SECONDS, settings.time_limit_factor * duration)


def job_limits(probe: Probe, settings: TranscodeSettings) -> ResourceLimits:
    """Memory and CPU-time limits of each ffmpeg run on this source."""
    pixels = max(w * h for w, h in [(probe.width, probe.height), *probe.video_sizes])
    return ffmpeg_limits(pixels, probe.duration, memory_mb=settings.memory_mb, cpu_factor=settings.cpu_factor)


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
    return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"


def tone_map_filters(probe: Probe, size: tuple[int, int]) -> list[str]:
    """The HDR-to-SDR filters for this source at `size` ([] for SDR: colour.py)."""
    return colour.tone_map_filters(probe.color_transfer, probe.color_primaries, probe.color_space, size)


def _gop_frames(fps: float, settings: TranscodeSettings) -> int:
    return max(1, round(fps * settings.gop_seconds))


def _hls_slave(
    out_dir: str | os.PathLike[str],
    rendition: Rendition,
    video_index: int,
    audio_index: int | None,
    settings: TranscodeSettings,
) -> str:
    """One tee slave: an HLS muxer for one rendition (its video + the shared audio)."""
    directory = os.path.join(_path_arg(out_dir), rendition.name)
    select = str(video_index) if audio_index is None else f"{video_index},{audio_index}"
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
    muxer_options = ":".join(f"{key}={_tee_quote(value)}" for key, value in options)
    spec = f"[{muxer_options}]{os.path.join(directory, MEDIA_PLAYLIST_NAME)}"
    # Two unescaping levels: the tee splits slaves with av_get_token, then each option
    # value goes through av_get_token again.
    return _tee_quote(spec)


def _copy_ladder_encoder_args(index: int, settings: TranscodeSettings, gop: int, keyframes: str) -> list[str]:
    """libx264's options for output video stream `index` beside a copied top rung: each
    stream-specific, since the copied stream refuses encoder options such as -profile;
    keyframes at `keyframes` (the source's) and nowhere else."""
    spec = f"v:{index}"
    return [
        f"-c:{spec}",
        "libx264",
        f"-preset:{spec}",
        settings.preset,
        f"-crf:{spec}",
        str(settings.crf),
        f"-profile:{spec}",
        VIDEO_PROFILE,
        f"-g:{spec}",
        str(gop),
        f"-sc_threshold:{spec}",
        "0",
        f"-flags:{spec}",
        "+cgop",
        f"-forced-idr:{spec}",
        "1",
        f"-force_key_frames:{spec}",
        keyframes,
    ]


def build_command(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    probe: Probe,
    renditions: Sequence[Rendition],
    settings: TranscodeSettings,
    copy: copyfit.CopyPlan | None = None,
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

    With a `copy` plan whose video is copied (copyfit.py), the top rendition is the
    source's video stream as is (-c copy), the cascade starts at the second rendition,
    and the encoders force keyframes at the plan's times (the source's) and nowhere
    else; the audio is copied too when the plan says so. A source with a single
    rendition, copied, is decoded only for the storyboard (if any).
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
    copied = copy is not None and copy.video
    first_encoded = 1 if copied else 0
    plan = sprite_plan(probe, renditions, settings)
    # HDR sources are tone mapped once, at the top rendition's size, before the cascade
    # (a copied source is never HDR: copyfit.stream_refusal).
    tone_map = [] if copied else tone_map_filters(probe, (renditions[0].width, renditions[0].height))
    decoded = ",".join([f"fps={fps_arg(fps)}", *tone_map])
    chains: list[str] = []
    if first_encoded < count or plan is not None:
        chains.append(f"[0:{probe.video_stream_index}]{decoded}[c{first_encoded}]")
    for i in range(first_encoded, count):
        r = renditions[i]
        scaled = f"[c{i}]scale={r.width}:{r.height},setsar=1,format={PIXEL_FORMAT}"
        last = i == count - 1
        if not last:
            chains.append(f"{scaled},split=2[v{i}][c{i + 1}]")
        elif plan is None:
            chains.append(f"{scaled}[v{i}]")
        else:
            # The storyboard branches off the smallest rendition: the fewest pixels to scale.
            chains.append(f"{scaled},split=2[v{i}][{SPRITE_SOURCE_PAD}]")
            chains.append(sprites.filter_chain(plan, SPRITE_SOURCE_PAD, SPRITE_OUTPUT_PAD))
    if first_encoded == count and plan is not None:
        # Every rendition copied: the storyboard still needs frames, at the rendition's size.
        r = renditions[-1]
        chains.append(f"[c{count}]scale={r.width}:{r.height},setsar=1,format={PIXEL_FORMAT}[{SPRITE_SOURCE_PAD}]")
        chains.append(sprites.filter_chain(plan, SPRITE_SOURCE_PAD, SPRITE_OUTPUT_PAD))
    command = [
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-y",
        "-v",
        "error",
        "-nostats",
        "-progress",
        "pipe:1",
        *input_options(probe.demuxer),
        "-i",
        _input_arg(source),
    ]
    if chains:
        command += ["-filter_complex", ";".join(chains)]
    if copied:
        command += ["-map", f"0:{probe.video_stream_index}"]
    for i in range(first_encoded, count):
        command += ["-map", f"[v{i}]"]
    audio_index = None
    if probe.has_audio and probe.audio_stream_index is not None:
        audio_index = count  # tee output stream index: after the videos
        command += ["-map", f"0:{probe.audio_stream_index}"]
    command += [
        "-map_metadata",
        "-1",
        "-map_chapters",
        "-1",  # no GPS tags or titles leak out
    ]
    if copy is not None and copy.video:
        command += ["-c:v:0", "copy"]
        # No keyframe but the source's: keyint beyond the longest gap between them.
        gop = math.ceil(copy.longest_gap * fps) + 2
        keyframes = copyfit.keyframe_arg(copy.keyframes)
        for i in range(first_encoded, count):
            command += _copy_ladder_encoder_args(i, settings, gop, keyframes)
    else:
        gop = _gop_frames(fps, settings)
        command += [
            "-c:v",
            "libx264",
            "-preset",
            settings.preset,
            "-crf",
            str(settings.crf),
            "-profile:v",
            VIDEO_PROFILE,
            "-g",
            str(gop),
            "-keyint_min",
            str(gop),
            "-sc_threshold",
            "0",
            "-flags:v",
            "+cgop",
            "-forced-idr",
            "1",
            "-force_key_frames:v",
            f"expr:gte(t,n_forced*{settings.gop_seconds})",
        ]
    command += colour.output_args(tone_map)
    for i in range(first_encoded, count):
        r = renditions[i]
        command += [f"-maxrate:v:{i}", f"{r.max_kbps}k", f"-bufsize:v:{i}", f"{r.bufsize_kbps}k"]
    if audio_index is not None and copy is not None and copy.audio:
        command += ["-c:a", "copy"]
    elif audio_index is not None:
        command += [
            "-c:a",
            "aac",
            "-profile:a",
            AUDIO_PROFILE,
            "-b:a",
            f"{settings.audio_kbps}k",
            "-ac",
            str(AUDIO_CHANNELS),
            "-ar",
            str(AUDIO_SAMPLE_RATE),
        ]
    if copied:
        command += ["-output_ts_offset", str(COPY_TS_OFFSET_SECONDS)]
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


def sprite_plan(
    probe: Probe, renditions: Sequence[Rendition], settings: TranscodeSettings
) -> sprites.SpritePlan | None:
    """The storyboard of this job (pure), None when sprites are off: from the smallest
    rendition (the last, the ladder is highest first)."""
    if not settings.storyboard or not renditions:
        return None
    smallest = renditions[-1]
    return sprites.plan_sprites(
        probe.duration, smallest.width, smallest.height, settings.sprite_columns, settings.sprite_rows
    )


def _fit(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Even size with the long side at most max_side, never upscaled."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def build_poster_command(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    probe: Probe,
    start_seconds: float | None = None,
) -> list[str]:
    """ffmpeg argv writing poster.jpg and thumbnail.jpg from one representative frame."""
    if start_seconds is None:
        start_seconds = probe.duration * POSTER_POSITION
    candidates = min(POSTER_MAX_CANDIDATES, max(POSTER_MIN_CANDIDATES, round(probe.fps * POSTER_WINDOW_SECONDS)))
    poster_w, poster_h = _fit(probe.width, probe.height, POSTER_MAX_SIDE)
    thumb_w, thumb_h = _fit(probe.width, probe.height, THUMBNAIL_MAX_SIDE)
    tone_map = tone_map_filters(probe, (poster_w, poster_h))
    tone_mapped = "".join(f + "," for f in tone_map)
    graph = (
        f"[0:{probe.video_stream_index}]{tone_mapped}scale={poster_w}:{poster_h},setsar=1,"
        f"thumbnail=n={candidates},split=2[poster][t];[t]scale={thumb_w}:{thumb_h}[thumb]"
    )
    directory = _path_arg(out_dir)
    return [
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-y",
        "-v",
        "error",
        *input_options(probe.demuxer),
        "-ss",
        f"{start_seconds:.3f}",
        "-i",
        _input_arg(source),
        "-filter_complex",
        graph,
        "-map",
        "[poster]",
        "-frames:v",
        "1",
        "-q:v",
        "2",
        "-update",
        "1",
        os.path.join(directory, POSTER_NAME),
        "-map",
        "[thumb]",
        "-frames:v",
        "1",
        "-q:v",
        "3",
        "-update",
        "1",
        os.path.join(directory, THUMBNAIL_NAME),
    ]
