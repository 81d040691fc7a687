"""Media bombs (issue 8, item 9; CWE-400, CWE-770).

Files beyond the configured caps (picture size, pixel count, frame rate, duration, stream
count) are refused at upload with 400 and nothing kept, and again in the transcode child.
Every ffprobe and ffmpeg on user data runs under RLIMIT_AS and RLIMIT_CPU; hitting one
is a clean error with a reason (a `failed` video), never a dead host.

The bombs are real files made by ffmpeg here: each would have been accepted, and fed to
the decoder, before the caps existed.
"""
from __future__ import annotations

import dataclasses
import resource
import signal
import subprocess
from pathlib import Path

import pytest

from videoflix.platform import media
from videoflix.platform.db import cursor
from videoflix.transcode import queue
from videoflix.transcode.command import TranscodeSettings, build_command, job_limits, prepare_output
from videoflix.transcode.errors import TranscodeError
from videoflix.transcode.ffmpeg import run_ffmpeg
from videoflix.transcode.job import transcode
from videoflix.transcode.ladder import pick_renditions
from videoflix.transcode.limits import (
    CPU_HARD_GRACE_SECONDS,
    FFMPEG_MEMORY_BASE_BYTES,
    MIB,
    MIN_CPU_SECONDS,
    PROBE_LIMITS,
    MediaCaps,
    ResourceLimits,
    ffmpeg_limits,
)
from videoflix.transcode.probe import (
    TOO_DEMANDING_MESSAGE,
    ProbeError,
    parse_probe,
    probe_file,
    probe_file_sync,
)
from videoflix.transcode.runner import TranscodeRunner

from helpers import upload, wait_for_status
from media import BBB_ROTATED, BBB_WEBM, FIRE_VFR, PARK, PEOPLE, STREET, clip, ffmpeg, probe_facts

SIZE_MESSAGE = "The picture is too large"


def x264(path: Path, *lavfi: str, extra: tuple[str, ...] = ()) -> Path:
    """Encode the lavfi source(s) to `path` with the cheapest x264 settings."""
    args: list[str] = []
    for source in lavfi:
        args += ["-f", "lavfi", "-i", source]
    ffmpeg(*args, *extra, "-c:v", "libx264", "-preset", "ultrafast", str(path))
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    """Small files that claim big pictures, rates, durations or stream counts."""
    d = tmp_path_factory.mktemp("bombs")
    return {
        # 64 Mpixel frame in 200 kB: every decoded frame takes 100 MB.
        "8192x8192": x264(d / "huge.mkv", "color=c=gray:size=8192x8192:rate=1",
                          extra=("-frames:v", "1", "-qp", "51")),
        "10000x16": x264(d / "wide.mp4", "color=c=gray:size=10000x16:rate=25", extra=("-t", "1")),
        "16x10000": x264(d / "tall.mp4", "color=c=gray:size=16x10000:rate=25", extra=("-t", "1")),
        "240fps": x264(d / "fast.mp4", "testsrc2=size=160x90:rate=240", extra=("-t", "0.5")),
        # 21 streams: the demuxer and ffprobe set up a decoder for each.
        "21 streams": x264(d / "streams.mkv", "testsrc2=size=160x90:rate=25", "sine=r=8000",
                           extra=("-t", "0.5", "-map", "0:v", *["-map", "1:a"] * 20, "-c:a", "pcm_s16le")),
        # Two frames, the second at 50000 s: the constant-rate filter would make 1.25
        # million frames out of 7 kB.
        "claims 13.9 h": x264(d / "long.mkv", "testsrc2=size=160x90:rate=25",
                              extra=("-frames:v", "2", "-vf", "setpts='if(eq(N,1),50000/TB,PTS)'",
                                     "-fps_mode", "passthrough")),
    }


EXPECTED = {
    "8192x8192": "The picture is too large (8192x8192): at most 7680 pixels wide, 7680 high and "
                 "33177600 pixels in all are accepted.",
    "10000x16": "The picture is too large (10000x16): at most 7680 pixels wide, 7680 high and "
                "33177600 pixels in all are accepted.",
    "16x10000": "The picture is too large (16x10000): at most 7680 pixels wide, 7680 high and "
                "33177600 pixels in all are accepted.",
    "240fps": "The frame rate is too high (240 fps): at most 120 fps is accepted.",
    "21 streams": "The file has too many streams (21): at most 16 are accepted.",
    "claims 13.9 h": "The video is too long (13:53:20): at most 12:00:00 is accepted.",
}


# --- the caps (pure, on ffprobe facts) --------------------------------------------------

def facts(name: str = PARK, **video: object) -> dict:
    data = probe_facts(name)
    data["streams"][0].update(video)
    return data


@pytest.mark.parametrize("name", [PARK, BBB_ROTATED, STREET, PEOPLE, FIRE_VFR, BBB_WEBM])
def test_every_shared_clip_is_within_the_default_caps(name):
    assert MediaCaps().violation(parse_probe(probe_facts(name))) is None


@pytest.mark.parametrize("width, height", [(7680, 4320), (4320, 7680), (3840, 2160), (2160, 3840)])
def test_8k_and_4k_in_either_orientation_are_accepted(width, height):
    assert MediaCaps().violation(parse_probe(facts(width=width, height=height))) is None


@pytest.mark.parametrize("video, message", [
    ({"width": 7681, "height": 4320}, "too large (7681x4320)"),
    ({"width": 16, "height": 7681}, "too large (16x7681)"),
    ({"width": 7680, "height": 4322}, "too large (7680x4322)"),  # pixel count only
    ({"width": 6000, "height": 6000}, "too large (6000x6000)"),  # pixel count only
    # Stretched by its sample aspect ratio to 15360 wide on display.
    ({"width": 3840, "height": 2160, "sample_aspect_ratio": "4:1"}, "too large (15360x2160)"),
    ({"avg_frame_rate": "121/1", "r_frame_rate": "121/1"}, "frame rate is too high (121 fps)"),
    # Past the plausibility bound the rate is not used for the ladder, but still counts.
    ({"avg_frame_rate": "5000/1", "r_frame_rate": "30/1"}, "frame rate is too high (5000 fps)"),
    ({"duration": "43200.5"}, "too long (12:00:00)"),
])
def test_caps_refuse_what_the_chosen_video_stream_claims(video, message):
    assert message in MediaCaps().violation(parse_probe(facts(**video)))


def test_caps_look_at_every_video_stream_and_the_longest_duration():
    data = probe_facts(PARK)
    # A second, non-default video stream of 16K: ffprobe decodes it too.
    data["streams"].append({"index": 2, "codec_type": "video", "width": 15360, "height": 8640,
                            "disposition": {"default": 0}})
    assert "too large (15360x8640)" in MediaCaps().violation(parse_probe(data))
    data = probe_facts(PARK)
    data["streams"][1]["duration"] = "99999"  # an audio stream far longer than the container
    assert "too long (27:46:39)" in MediaCaps().violation(parse_probe(data))


def test_caps_count_every_stream():
    data = probe_facts(PARK)
    for index in range(2, 17):
        data["streams"].append({"index": index, "codec_type": "subtitle"})
    assert MediaCaps().violation(parse_probe(data)) == "The file has too many streams (17): at most 16 are accepted."
    data["streams"].pop()
    assert MediaCaps().violation(parse_probe(data)) is None


def test_caps_are_configurable():
    from videoflix.platform.config import Config
    from videoflix.transcode.limits import caps_from_config

    strict = caps_from_config(Config.from_env({"MAX_VIDEO_WIDTH": "1280", "MAX_VIDEO_HEIGHT": "1280",
                                               "MAX_VIDEO_PIXELS": "921600", "MAX_VIDEO_FPS": "29.5",
                                               "MAX_VIDEO_SECONDS": "5", "MAX_VIDEO_STREAMS": "1"}))
    assert strict == MediaCaps(1280, 1280, 921600, 29.5, 5, 1)
    assert "too large (1920x1080)" in strict.violation(parse_probe(probe_facts(PARK)))
    assert caps_from_config(Config()) == MediaCaps()  # the defaults


# --- real bombs: ffprobe, the transcode child and the upload ---------------------------

@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_probe_with_caps_refuses_each_bomb(bombs, kind):
    assert probe_file_sync(bombs[kind]).format_name  # readable: only the caps stop it
    with pytest.raises(ProbeError) as raised:
        probe_file_sync(bombs[kind], caps=MediaCaps())
    assert str(raised.value) == EXPECTED[kind]


@pytest.mark.parametrize("kind", ["8192x8192", "240fps", "claims 13.9 h"])
def test_transcode_child_refuses_a_bomb_before_running_ffmpeg(bombs, tmp_path, kind):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(TranscodeError) as raised:
        transcode(bombs[kind], out, TranscodeSettings(preset="ultrafast"))
    assert str(raised.value) == EXPECTED[kind]
    assert list(out.iterdir()) == []  # no rendition directory, no segment


async def count_rows(services) -> int:
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT count(*) AS n FROM videos")
        return (await cur.fetchone())["n"]


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.gen_test(timeout=60)
async def test_upload_of_each_bomb_is_refused_with_400_and_nothing_kept(bombs, client, make_user, services,
                                                                        config):
    await make_user()
    for kind in sorted(EXPECTED):
        response = await upload(client, bombs[kind], filename=bombs[kind].name)
        assert (response.status, response.json()) == (400, {"detail": EXPECTED[kind]}), kind
    assert await count_rows(services) == 0
    assert files_under(Path(config.media_dir)) == []  # no source, no .part
    assert await queue.pending_video_ids(services.redis) == set()


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("setting, detail", [
    ({"max_video_fps": 24.0}, "The frame rate is too high (25 fps): at most 24 fps is accepted."),
    ({"max_video_width": 600}, "The picture is too large (640x360): at most 600 pixels wide, 7680 high "
                               "and 33177600 pixels in all are accepted."),
    ({"max_video_pixels": 640 * 360 - 1}, "The picture is too large (640x360): at most 7680 pixels wide, "
                                          "7680 high and 230399 pixels in all are accepted."),
    ({"max_video_seconds": 5}, "The video is too long (0:00:06): at most 0:00:05 is accepted."),
    ({"max_video_streams": 1}, "The file has too many streams (2): at most 1 are accepted."),
])
async def test_upload_caps_follow_the_configuration(app, client, make_user, services, config, small_clip,
                                                   setting, detail):
    await make_user()
    app.settings["config"] = dataclasses.replace(config, **setting)
    response = await upload(client, small_clip)
    assert (response.status, response.json()) == (400, {"detail": detail})
    assert await count_rows(services) == 0
    app.settings["config"] = config
    assert (await upload(client, small_clip)).status == 201


@pytest.mark.gen_test(timeout=120)
async def test_worker_with_stricter_caps_fails_the_queued_video_with_the_reason(
        client, make_user, services, config, small_clip):
    # Accepted under the upload's caps, the job meets stricter ones in the transcode
    # child: the video ends `failed` with the cap's message, and nothing is published.
    await make_user()
    response = await upload(client, small_clip)
    assert response.status == 201, response.body
    video_id = response.json()["id"]
    strict = dataclasses.replace(config, max_video_fps=20.0)
    worker = TranscodeRunner(strict, services, consumer="strict")
    await worker.start()
    try:
        detail = await wait_for_status(client, video_id, "failed", timeout=60)
    finally:
        await worker.stop()
    assert detail["error"] == "The frame rate is too high (25 fps): at most 20 fps is accepted."
    assert not media.video_dir(config.media_dir, video_id).exists()
    assert await queue.pending_video_ids(services.redis) == set()


# --- resource limits on the child processes ---------------------------------------------

def test_ffmpeg_limits_are_sized_from_the_job():
    small = ffmpeg_limits(640 * 360, 6.0, cpus=2)
    assert small.cpu_seconds == MIN_CPU_SECONDS
    assert small.memory_bytes == FFMPEG_MEMORY_BASE_BYTES + 2 * 768 * MIB + 64 * 640 * 360
    more_cpus = ffmpeg_limits(640 * 360, 6.0, cpus=16)
    assert more_cpus.memory_bytes > small.memory_bytes
    long_8k = ffmpeg_limits(7680 * 4320, 3600.0, cpus=2)
    assert long_8k.cpu_seconds == 30 * 3600 * 16 + 1  # 16 times the pixels of 1080p
    assert ffmpeg_limits(1920 * 1080, 1.0, memory_mb=700).memory_bytes == 700 * MIB
    # The transcode uses the largest coded picture in the file.
    probe = parse_probe(probe_facts(PARK))
    assert job_limits(probe, TranscodeSettings(memory_mb=900)) == ResourceLimits(900 * MIB, MIN_CPU_SECONDS)


def probe_and_command(tmp_path: Path, name: str = PARK):
    probe = probe_file_sync(clip(name))
    out = tmp_path / "out"
    renditions = pick_renditions(probe)
    prepare_output(out, probe, renditions, TranscodeSettings())
    return probe, build_command(clip(name), out, probe, renditions, TranscodeSettings())


@pytest.mark.slow
def test_ffmpeg_over_its_memory_limit_fails_with_a_reason(tmp_path):
    # The 1080p ladder needs about 1.2 GiB of address space on 2 CPUs (0.7 on one).
    probe, command = probe_and_command(tmp_path)
    with pytest.raises(TranscodeError) as raised:
        run_ffmpeg(command, duration=probe.duration, stall_seconds=60, time_limit=120,
                   limits=ResourceLimits(memory_bytes=400 * MIB))
    assert str(raised.value) == "ffmpeg ran out of memory (the limit is 400 MiB)."
    # The same run under the sized limits completes.
    assert run_ffmpeg(command, duration=probe.duration, stall_seconds=60, time_limit=300,
                      limits=job_limits(probe, TranscodeSettings())) == pytest.approx(probe.duration, abs=0.5)


@pytest.mark.slow
def test_ffmpeg_over_its_cpu_time_limit_is_stopped_with_a_reason(tmp_path):
    # The ladder takes about 20 CPU-seconds for this clip; the kernel stops it at 1.
    probe, command = probe_and_command(tmp_path)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with pytest.raises(TranscodeError) as raised:
        run_ffmpeg(command, duration=probe.duration, stall_seconds=60, time_limit=120,
                   limits=ResourceLimits(cpu_seconds=1))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert str(raised.value) == "ffmpeg exceeded its CPU-time limit of 1 s."
    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    assert 1 <= used < 1 + CPU_HARD_GRACE_SECONDS + 1  # stopped at the limit, SIGKILL at the latest


def test_cpu_time_limit_stops_a_spinning_child():
    limits = ResourceLimits(cpu_seconds=1)
    done = subprocess.run(["python3", "-c", "while True: pass"], preexec_fn=limits.preexec(),
                          timeout=60, check=False)
    assert done.returncode == -signal.SIGXCPU
    assert limits.failure(done.returncode, None, "") == "exceeded its CPU-time limit of 1 s"


def test_child_sees_the_limits_and_no_core_dumps():
    limits = ResourceLimits(memory_bytes=512 * MIB, cpu_seconds=7)
    done = subprocess.run(["sh", "-c", "ulimit -v; ulimit -t; ulimit -c"], preexec_fn=limits.preexec(),
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == [str(512 * 1024), "7", "0"]


@pytest.mark.slow
def test_transcode_under_a_small_memory_setting_fails_with_the_reason(tmp_path, small_clip):
    with pytest.raises(TranscodeError) as raised:
        transcode(small_clip, tmp_path / "out", TranscodeSettings(preset="ultrafast", memory_mb=350))
    assert str(raised.value) == "ffmpeg ran out of memory (the limit is 350 MiB)."


def test_probe_over_its_memory_limit_is_refused_with_a_reason():
    with pytest.raises(ProbeError) as raised:
        probe_file_sync(clip(PARK), limits=ResourceLimits(memory_bytes=64 * MIB))
    assert str(raised.value) == TOO_DEMANDING_MESSAGE
    assert probe_file_sync(clip(PARK), limits=PROBE_LIMITS).width == 1920


@pytest.mark.gen_test
async def test_async_probe_runs_under_its_limits_too():
    # asyncio.create_subprocess_exec passes preexec_fn through to the child.
    with pytest.raises(ProbeError) as raised:
        await probe_file(clip(PARK), limits=ResourceLimits(memory_bytes=64 * MIB))
    assert str(raised.value) == TOO_DEMANDING_MESSAGE
    assert (await probe_file(clip(PARK))).width == 1920


@pytest.mark.gen_test(timeout=120)
async def test_job_over_its_memory_limit_ends_failed_with_a_reason_and_no_path(
        client, make_user, services, config, small_clip):
    await make_user()
    response = await upload(client, small_clip)
    video_id = response.json()["id"]
    tight = dataclasses.replace(config, transcode_memory_mb=350)
    worker = TranscodeRunner(tight, services, consumer="tight")
    await worker.start()
    try:
        detail = await wait_for_status(client, video_id, "failed", timeout=60)
    finally:
        await worker.stop()
    assert detail["error"] == "ffmpeg ran out of memory (the limit is 350 MiB)."
    assert not media.video_dir(config.media_dir, video_id).exists()
