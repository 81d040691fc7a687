"""One transcode job as the pool child runs it: from the source file to a finished version.

`run_child_job` is the pool child's entry point (module-level, its ChildJob picklable):
it caps the size of any file the run writes (limits.limit_file_size), runs `transcode`
and reports into Redis as it goes (progress.py): the progress, the moment the version
becomes playable. At every progress report it stops the run (and so its ffmpeg) once
the video was deleted (JobCancelled) or the lease fence has passed (LeaseLost, fence.py).

`transcode` probes the source (refusing what exceeds the media caps), decides whether
its streams can be copied into the top rung (`plan_copy`, copyfit.py: the probe's
rules, then a packet scan), writes a provisional ladder.json, runs the ladder's one ffmpeg (command.py) under the watchdog
and the job's memory/CPU-time limits (ffmpeg.py, limits.py), says when the version
becomes playable, makes the poster and thumbnail, extracts the source's text
subtitle tracks (subtracks.py), measures the segments, turns the media playlists into
VOD, measures the version's bytes (footprint.py) and writes the final ladder.json. It
never writes outside `out_dir`; it needs no Redis (the tests call it directly). Without
the original (originals.py), `transcode_rung` joins the live version's top rung into
`out_dir`/input.ts and transcodes that.

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
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from videoflix.platform.media import LADDER_NAME, MEDIA_PLAYLIST_NAME, POSTER_NAME, SEGMENT_PATTERN, THUMBNAIL_NAME
from videoflix.transcode import copyfit, footprint, iframes, ladderfile, mirror, originals, progress, sprites, subtracks

if TYPE_CHECKING:
    from videoflix.platform.s3store import S3Settings
from videoflix.transcode.command import (
    MIN_TIME_LIMIT_SECONDS,
    TranscodeSettings,
    build_command,
    build_poster_command,
    job_limits,
    prepare_output,
    sprite_plan,
    time_limit_seconds,
)
from videoflix.transcode.errors import TranscodeError, public_reason
from videoflix.transcode.fence import fence_passed
from videoflix.transcode.ffmpeg import ProgressCallback, run_ffmpeg, run_quiet
from videoflix.transcode.ladder import Rendition, pick_renditions
from videoflix.transcode.limits import ResourceLimits, limit_file_size
from videoflix.transcode.playlist import PlaylistError, Variant, codecs_attribute, measure_rendition, vod_playlist
from videoflix.transcode.probe import Probe, ProbeError, first_video_pts, packet_scan_sync, probe_file_sync
from videoflix.transcode.subtracks import ExtractedTrack

log = logging.getLogger(__name__)

# Called once, from the progress callback's thread, when every rendition lists a segment.
PlayableCallback = Callable[[], None]

# Output that ends this much before the source did means ffmpeg hit a truncated or
# corrupt file (it exits 0 after decode errors at EOF): max(1 s, 2% of the duration).
TRUNCATION_MIN_SECONDS = 1.0
TRUNCATION_FRACTION = 0.02
# ffmpeg's share of the progress bar; posters, measuring and the master take the rest.
FFMPEG_PROGRESS_SHARE = 98.0
# Progress is written to Redis at most this often per job.
PROGRESS_INTERVAL_SECONDS = 0.5


@dataclass(frozen=True)
class JobResult:
    """What a finished run made: the row's new facts, and the tracks to import at publish
    (returned by `transcode`, and by `run_child_job` across the process boundary)."""

    duration: float  # seconds, of the source
    width: int  # of the highest rendition
    height: int
    fps: float  # constant output frame rate
    resolutions: list[str]  # highest first
    has_audio: bool
    # Text subtitle tracks written to tracks/ (subtracks.extract_tracks), imported at publish.
    subtitle_tracks: list[ExtractedTrack] = field(default_factory=list)
    # Whether the top rung is the source's stream copied, and why not (copyfit.py).
    copy: copyfit.CopyPlan | None = None
    # What the run read: "the original", or a rung of the live version (originals.py).
    input: str = "the original"
    # The version's bytes by kind and the run's CPU (footprint.py).
    storage: footprint.VersionStorage | None = None


class JobCancelled(Exception):
    """The video was deleted while its job ran."""


class LeaseLost(Exception):
    """The job's lease ended (taken over, or not renewable in time): the run stopped
    its ffmpeg, or finished but may not publish."""


@dataclass(frozen=True)
class ChildJob:
    """Everything the child process needs (picklable)."""

    video_id: int
    source: str
    work_dir: str  # media.version_dir of the version this run writes
    redis_url: str
    settings: TranscodeSettings
    fence: str = ""  # media.lease_fence of that version
    # Without an original (originals.py): the live version's top rung folder, read instead.
    source_rung: str = ""
    max_file_bytes: int = 0  # RLIMIT_FSIZE of the run's ffmpeg (0: unchanged)
    version: int = 0  # the version written (reported as playable once it is)
    # Object storage (mirror.py): the bucket, and the MEDIA_DIR its keys are relative to
    # (`source`, `source_rung` and `work_dir` are then this host's scratch names of them).
    store: S3Settings | None = None
    media_dir: str = ""


def run_child_job(job: ChildJob) -> JobResult:
    """Runs in a pool process: the whole transcode, progress into Redis."""
    limit_file_size(job.max_file_bytes)
    # Fail fast: a progress report must never hold up the watchdog loop.
    client = redis.Redis.from_url(
        job.redis_url, socket_connect_timeout=1, socket_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    last = [0.0]

    def on_progress(percent: float) -> None:
        if job.fence and fence_passed(job.fence):
            raise LeaseLost(f"video {job.video_id}: the lease ended; ffmpeg stopped")
        now = time.monotonic()
        if now - last[0] < PROGRESS_INTERVAL_SECONDS and percent < 100.0:
            return
        last[0] = now
        try:
            progress.record(client, job.video_id, percent)
            cancelled = progress.cancel_requested(client, job.video_id)
        except redis.RedisError as exc:
            log.warning("video %s: progress not recorded: %s", job.video_id, exc)
            return
        if cancelled:
            raise JobCancelled(f"video {job.video_id} was deleted")

    def on_playable() -> None:
        try:
            progress.record_playable(client, job.video_id, job.version)
        except redis.RedisError as exc:
            log.warning("video %s: playable not recorded: %s", job.video_id, exc)

    try:
        if job.store is not None:
            return _run_with_store(job, job.store, on_progress, on_playable)
        if job.source_rung and not os.path.exists(job.source):
            return transcode_rung(job.source_rung, job.work_dir, job.settings, on_progress, on_playable)
        return transcode(job.source, job.work_dir, job.settings, on_progress, on_playable)
    finally:
        client.close()


def _run_with_store(
    job: ChildJob, settings: S3Settings, on_progress: ProgressCallback, on_playable: PlayableCallback
) -> JobResult:
    """The job with object storage (mirror.py): the input fetched from the bucket into the
    run's scratch folder, the folder copied into the bucket as it grows and when it is
    done, ladder.json excepted (the runner writes it last). `on_playable` once the bucket
    lets a player start."""
    from videoflix.platform.s3blocking import BlockingS3  # botocore: only a run with a bucket

    out = Path(job.work_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = BlockingS3(settings, job.media_dir)

    def check() -> None:
        if job.fence and fence_passed(job.fence):
            raise LeaseLost(f"video {job.video_id}: the lease ended; uploads stopped")

    copier = mirror.Mirror(store, out, check, on_playable)
    try:
        source = mirror.fetch_source(store, Path(job.source), out, check)
        note = "the original"
        if source is None:
            if not job.source_rung:
                raise TranscodeError("The original is missing and no version is live to transcode from.")
            try:
                rung = mirror.fetch_rung(store, Path(job.source_rung), out, check)
                source, note = originals.join_rung(rung, out)
            except (OSError, ValueError, PlaylistError) as error:
                log.warning("video %s: no original and no usable rung in the store: %s", job.video_id, error)
                raise TranscodeError("The original was removed and no rendition is left to transcode from.") from error
            finally:
                mirror.remove_fetched(out)
        copier.start()
        try:
            result = transcode(source, out, job.settings, on_progress, copier.playable_locally, input_note=note)
        except BaseException:
            copier.abandon()
            raise
        finally:
            source.unlink(missing_ok=True)
        copier.finish()
        return result
    finally:
        mirror.remove_fetched(out)
        store.close()


def transcode_rung(
    rung_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    settings: TranscodeSettings | None = None,
    on_progress: ProgressCallback | None = None,
    on_playable: PlayableCallback | None = None,
) -> JobResult:
    """`transcode` with a finished rendition as the source (the original is gone): its
    segments joined into one file of the run's folder, removed when the run ends."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    try:
        joined, note = originals.join_rung(rung_dir, out_dir)
    except (OSError, ValueError, PlaylistError) as error:
        log.warning("no original and no usable rung at %s: %s", rung_dir, error)
        raise TranscodeError("The original was removed and no rendition is left to transcode from.") from error
    try:
        return transcode(joined, out_dir, settings, on_progress, on_playable, input_note=note)
    finally:
        joined.unlink(missing_ok=True)


def make_posters(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    probe: Probe,
    settings: TranscodeSettings,
    limits: ResourceLimits | None = None,
) -> None:
    timeout = min(settings.stall_seconds, MIN_TIME_LIMIT_SECONDS)
    poster = Path(out_dir) / POSTER_NAME
    run_quiet(build_poster_command(source, out_dir, probe), timeout, settings.nice, limits)
    if not poster.exists():
        # A third of the way in lies past the last video frame (a long audio tail):
        # fall back to the start.
        log.info("no frame a third into %s; poster from the start", source)
        run_quiet(build_poster_command(source, out_dir, probe, start_seconds=0.0), timeout, settings.nice, limits)
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


def plan_copy(
    source: str | os.PathLike[str],
    probe: Probe,
    renditions: Sequence[Rendition],
    settings: TranscodeSettings,
    limits: ResourceLimits | None = None,
) -> copyfit.CopyPlan:
    """Copy or encode (copyfit.py): the probe first, the packets only when it allows."""
    if not settings.copy_when_fits:
        return copyfit.encode_everything("copy turned off")
    refusal = copyfit.stream_refusal(probe, renditions[0], settings.segment_seconds)
    if refusal is not None:
        return copyfit.encode_everything(refusal)
    try:
        scan = packet_scan_sync(
            source,
            probe.demuxer,
            probe.video_stream_index,
            timeout=time_limit_seconds(probe.duration, settings),
            limits=limits or ResourceLimits(),
        )
    except ProbeError:
        return copyfit.encode_everything("source packets unreadable")
    return copyfit.plan_copy(
        probe, scan, renditions[0], settings.segment_seconds, settings.gop_seconds, settings.audio_kbps
    )


def _children_cpu_seconds() -> float:
    """User + system CPU of this process's finished children (ffmpeg, ffprobe)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def check_complete(produced: float, duration: float) -> None:
    """Raise when the output ends well before the source's duration (pure)."""
    missing = duration - produced
    if missing > max(TRUNCATION_MIN_SECONDS, TRUNCATION_FRACTION * duration):
        raise TranscodeError(
            f"The video stops at {produced:.1f} s of {duration:.1f} s: the file is truncated or corrupt."
        )


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
    settings: TranscodeSettings | None = None,
    on_progress: ProgressCallback | None = None,
    on_playable: PlayableCallback | None = None,
    input_note: str = "the original",
) -> JobResult:
    """Transcode `source` into the HLS ladder in `out_dir` (run in a child process);
    `settings` None: the defaults; `input_note` says what `source` is (ladder.json)."""
    try:
        return _transcode(source, Path(out_dir), settings or TranscodeSettings(), on_progress, on_playable, input_note)
    except TranscodeError as error:
        raise TranscodeError(public_reason(str(error))) from error


def _transcode(
    source: str | os.PathLike[str],
    out: Path,
    settings: TranscodeSettings,
    on_progress: ProgressCallback | None,
    on_playable: PlayableCallback | None = None,
    input_note: str = "the original",
) -> JobResult:
    cpu_before = _children_cpu_seconds()
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
        source,
        probe.width,
        probe.height,
        probe.fps,
        probe.duration,
        probe.has_audio,
        ", ".join(f"{r.name} {r.width}x{r.height}@{r.fps:.3f}" for r in renditions),
    )
    copy = plan_copy(source, probe, renditions, settings, limits)
    log.info("%s: %s (audio %s)", source, copy.note(), "copied" if copy.audio else copy.audio_reason or "none")
    prepare_output(out, probe, renditions, settings)
    plan = sprite_plan(probe, renditions, settings)
    provisional = ladderfile.provisional_variants(renditions, probe.has_audio, settings.audio_kbps)
    ladder_file = out / LADDER_NAME
    ladderfile.write_ladder(
        ladder_file,
        ladderfile.make_ladder(
            provisional,
            complete=False,
            duration=probe.duration,
            segment_seconds=settings.segment_seconds,
            copy=copy,
            input_note=input_note,
        ),
    )
    start_pts: list[int | None] = [None]  # measured once the first segments exist
    reported = [False]

    def ffmpeg_progress(percent: float) -> None:
        if on_progress is not None:
            on_progress(percent * FFMPEG_PROGRESS_SHARE / 100.0)
        if not reported[0] and playable(out, renditions):
            reported[0] = True
            start_pts[0] = first_video_pts(out / renditions[-1].name / (SEGMENT_PATTERN % 0))
            ladderfile.write_ladder(
                ladder_file,
                ladderfile.make_ladder(
                    provisional,
                    complete=False,
                    duration=probe.duration,
                    segment_seconds=settings.segment_seconds,
                    start_pts=start_pts[0],
                    copy=copy,
                    input_note=input_note,
                ),
            )
            if on_playable is not None:
                on_playable()

    started = time.monotonic()
    ladder_cpu_before = _children_cpu_seconds()
    produced = run_ffmpeg(
        build_command(source, out, probe, renditions, settings, copy),
        duration=probe.duration,
        stall_seconds=settings.stall_seconds,
        time_limit=time_limit_seconds(probe.duration, settings),
        nice=settings.nice,
        on_progress=ffmpeg_progress,
        limits=limits,
    )
    ladder_cpu = _children_cpu_seconds() - ladder_cpu_before
    check_complete(produced, probe.duration)
    log.info("encoded %s in %.1f s (%.1f s of video)", source, time.monotonic() - started, produced)

    try:
        finish_playlists(out, renditions)
    except (OSError, PlaylistError) as error:
        raise TranscodeError(f"Unusable output: {error}") from error
    if not reported[0]:  # a run too short for a progress report after its first segment
        reported[0] = True
        start_pts[0] = first_video_pts(out / renditions[-1].name / (SEGMENT_PATTERN % 0))
        if on_playable is not None:
            on_playable()
    make_posters(source, out, probe, settings, limits)
    subtitle_tracks = subtracks.extract_tracks(source, out, probe, settings.nice, limits)
    try:
        variants = [_variant(out, r, probe.has_audio) for r in renditions]
        trickplay = write_trickplay(out, variants, plan)
    except (PlaylistError, ProbeError) as error:
        raise TranscodeError(f"Unusable output: {error}") from error
    storage = footprint.measure_version(out, renditions, _children_cpu_seconds() - cpu_before, ladder_cpu, copy)
    ladderfile.write_ladder(
        ladder_file,
        ladderfile.make_ladder(
            variants,
            storage=footprint.storage_dict(storage),
            complete=True,
            duration=probe.duration,
            segment_seconds=settings.segment_seconds,
            start_pts=start_pts[0],
            iframes=[dataclasses.asdict(stream) for stream in trickplay.iframes],
            thumbnails_vtt=trickplay.thumbnails_vtt,
            copy=copy,
            input_note=input_note,
        ),
    )
    if on_progress is not None:
        on_progress(100.0)
    top = renditions[0]
    return JobResult(
        duration=probe.duration,
        width=top.width,
        height=top.height,
        fps=top.fps,
        resolutions=[r.name for r in renditions],
        has_audio=probe.has_audio,
        subtitle_tracks=subtitle_tracks,
        copy=copy,
        input=input_note,
        storage=storage,
    )
