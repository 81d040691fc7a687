"""Faults inside a transcode: a lease that expires mid-run with two consumers, a frozen
ffmpeg, and a full disk (RLIMIT_FSIZE) (issue 11, item 2). Those three run on both stores
(issue 21): with object storage the run's scratch is MEDIA_DIR and the bucket must show
only the new holder's version, or nothing of a failed run."""
from __future__ import annotations

import os
import re
import signal

import pytest
import requests

from store_helpers import STORAGE_BACKENDS

from faultkit import Api, ffmpeg_pids, files_under, gone, make_user, redis_client, wait_for


def encoding(server, api, video_id):
    """Wait until the video's ffmpeg runs and has made progress; its pid."""
    def running():
        pids = ffmpeg_pids(server.pid)
        return pids and api.detail(video_id)["progress"] > 0 and pids
    return wait_for(running, "ffmpeg to be encoding", timeout=90, interval=0.2)[0]


@pytest.mark.parametrize("storage_backend", STORAGE_BACKENDS)
def test_lease_expiring_mid_run_stops_ffmpeg_before_takeover_and_only_the_new_holder_publishes(
        servers, db, media_dir, bucket, long_clip):
    # veryfast: this run must outlast the fence (3 s after its last renewal); the
    # take-over's run below may be quick.
    first = servers(TRANSCODE_LEASE_SECONDS="4", VIDEOFLIX_X264_PRESET="veryfast")
    api = Api(first.base)
    make_user(api, db)
    video_id = api.upload(long_clip).json()["id"]
    ffmpeg = encoding(first, api, video_id)

    first.signal(signal.SIGSTOP)  # its loop is frozen: no renewals from now on
    try:
        second = servers("worker", TRANSCODE_LEASE_SECONDS="4")
        # The frozen server's run fences itself: its ffmpeg stops before the lease ends ...
        wait_for(lambda: gone(ffmpeg), "the first run's ffmpeg to stop", timeout=10)
        # ... so before anyone could take the job over.
        assert db.video(video_id)["attempts"] == 1
        assert "taken over" not in second.log()
        wait_for(lambda: re.search(rf"video {video_id} job \S+ taken over", second.log()),
                 "the second consumer to take the job over", timeout=30)
    finally:
        first.signal(signal.SIGCONT)
    wait_for(lambda: db.video(video_id)["status"] == "ready", "the new holder to finish", timeout=240,
             interval=0.5)
    wait_for(lambda: f"video {video_id} job" in first.log() and "abandoned, nothing published" in first.log(),
             "the first run to give up", timeout=30)
    assert re.search(rf"video {video_id} job \S+: ready", second.log())
    assert not re.search(rf"video {video_id} job \S+: ready", first.log())
    assert db.video(video_id)["attempts"] == 2
    wait_for(lambda: files_under(media_dir / ".work") == [], "no work folder left", timeout=30)
    if bucket is not None:
        assert db.video(video_id)["live_version"] == 2
        assert bucket.missing(video_id, 2) == []
        assert bucket.read(f"{video_id}/v1/ladder.json") is None  # the fenced run published nothing


def test_transient_redis_errors_do_not_end_the_lease_keeper(servers, db, fault_redis, short_clip, long_clip):
    server = servers(TRANSCODE_LEASE_SECONDS="6")
    api = Api(server.base)
    make_user(api, db)
    video_id = api.upload(long_clip).json()["id"]
    encoding(server, api, video_id)
    # Redis refuses commands for a moment (a blip shorter than the fence): the keeper retries.
    client = redis_client(fault_redis.url)
    client.client_pause(1200, all=True)
    # Whether a renewal meets the pause depends on its phase; what must hold either way:
    # the job finishes in its first attempt and no lease is lost.
    wait_for(lambda: db.video(video_id)["status"] == "ready", "the job to finish", timeout=240, interval=0.5)
    assert db.video(video_id)["attempts"] == 1
    assert "lease lost" not in server.log()


@pytest.mark.parametrize("storage_backend", STORAGE_BACKENDS)
def test_frozen_ffmpeg_is_ended_by_the_watchdog_and_the_video_fails_with_the_reason(
        servers, db, media_dir, bucket, long_clip):
    server = servers(TRANSCODE_STALL_SECONDS="3")
    api = Api(server.base)
    make_user(api, db)
    video_id = api.upload(long_clip).json()["id"]
    ffmpeg = encoding(server, api, video_id)

    os.kill(ffmpeg, signal.SIGSTOP)

    wait_for(lambda: api.detail(video_id)["status"] == "failed", "the watchdog to end the job", timeout=60,
             interval=0.2)
    assert "stalled" in api.detail(video_id)["error"]
    assert gone(ffmpeg)
    assert files_under(media_dir / ".work") == []
    assert not (media_dir / str(video_id)).exists()
    assert requests.get(server.base + "/api/health/", timeout=5).status_code == 200
    if bucket is not None:  # the source stays; nothing of the failed run
        assert bucket.keys(f"{video_id}/") == set()


@pytest.mark.parametrize("storage_backend", STORAGE_BACKENDS)
def test_no_space_for_renditions_fails_the_video_with_the_reason_and_leaves_nothing(
        servers, db, media_dir, bucket, long_clip, short_clip):
    server = servers(TRANSCODE_MAX_FILE_BYTES=str(64 * 1024))
    api = Api(server.base)
    make_user(api, db)
    video_id = api.upload(long_clip).json()["id"]

    wait_for(lambda: api.detail(video_id)["status"] == "failed", "the job to fail", timeout=120, interval=0.3)

    error = api.detail(video_id)["error"]
    assert "Not enough space" in error
    assert str(media_dir) not in error and "/" not in error  # no server path (public_reason)
    assert files_under(media_dir / ".work") == []
    assert not (media_dir / str(video_id)).exists()
    assert requests.get(server.base + "/api/health/", timeout=5).status_code == 200
    assert server.proc.poll() is None
    if bucket is not None:
        assert bucket.keys(f"{video_id}/") == set()
