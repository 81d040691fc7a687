"""Many hosts for real (issue 21 item 7): one `videoflix serve` and two `videoflix worker`
processes, each with its own MEDIA_DIR (scratch) and no media directory shared between
them, one SeaweedFS bucket holding the library.

What each test checks is read from the bucket directly (botocore, as an operator would)
and from the rows, never through the HTTP routes that serve media.
"""
from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pytest

from videoflix.platform.embedded_s3 import EmbeddedS3

from faultkit import Api, Bucket, ffmpeg_pids, make_clip, make_user, wait_for

pytestmark = pytest.mark.slow

BUCKET = "videoflix-hosts"


@pytest.fixture(scope="module")
def store(fault_dir):
    server = EmbeddedS3(fault_dir / f"seaweedfs-{uuid.uuid4().hex[:8]}")
    server.start()
    server.ensure_bucket(BUCKET)
    yield server
    server.resume()
    server.stop(graceful=False)


@pytest.fixture(scope="module")
def medium_clip(fault_dir) -> Path:
    """30 s of 1280x720 (two renditions): a run of several seconds at veryfast, a small file."""
    return make_clip(fault_dir / "medium_720p.mp4", 30, size="1280x720")


@pytest.fixture
def hosts(servers, store, tmp_path):
    """make(command, **env) -> a Server on its own "host": its own scratch and var
    folders, the shared bucket under this test's prefix; (make, Bucket)."""
    prefix = f"t{uuid.uuid4().hex[:12]}/"
    count = [0]

    def make(command: str = "serve", **env: str):
        count[0] += 1
        host = tmp_path / f"host-{count[0]}"
        (host / "var").mkdir(parents=True)
        return servers(command, VIDEOFLIX_STORAGE=f"s3://{BUCKET}/{prefix}",
                       VIDEOFLIX_S3_ENDPOINT=store.endpoint, AWS_ACCESS_KEY_ID=store.access_key,
                       AWS_SECRET_ACCESS_KEY=store.secret_key, VIDEOFLIX_VAR_DIR=str(host / "var"),
                       VIDEOFLIX_MEDIA_DIR=str(host / "scratch"), **env)

    bucket = Bucket(store, BUCKET, prefix)
    yield make, bucket
    bucket.close()


def scratch_of(server) -> Path:
    return Path(server.env["VIDEOFLIX_MEDIA_DIR"])


def run_leftovers(server) -> list[str]:
    """Version folders and lease fences in a host's scratch (a run's working copy)."""
    root = scratch_of(server)
    found = [str(p.relative_to(root)) for p in root.glob("[1-9]*/v*")]
    return found + [str(p.relative_to(root)) for p in root.glob(".work/*")]


def ran_on(servers, video_id: int) -> list[int]:
    return [i for i, server in enumerate(servers) if re.search(rf"video {video_id} job \S+: ready", server.log())]


def test_six_uploads_are_transcoded_across_hosts_into_complete_versions_in_the_bucket(hosts, db, short_clip):
    make, bucket = hosts
    web = make("serve")
    workers = [make("worker"), make("worker")]
    api = Api(web.base)
    make_user(api, db)
    ids = []
    for _ in range(6):
        response = api.upload(short_clip)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])

    def all_ready() -> bool:
        rows = [db.video(video_id) for video_id in ids]
        failed = [row for row in rows if row["status"] == "failed"]
        assert not failed, failed
        return all(row["status"] == "ready" for row in rows)
    wait_for(all_ready, "six videos to be ready", timeout=240, interval=0.5)

    everyone = [web, *workers]
    for video_id in ids:
        assert db.video(video_id)["live_version"] == 1
        assert bucket.missing(video_id, 1) == [], video_id
        assert bucket.read(f"sources/{video_id}") == short_clip.read_bytes()
        assert len(ran_on(everyone, video_id)) == 1
    # More than one host did the work, and no host kept a run's copy.
    assert len({ran_on(everyone, video_id)[0] for video_id in ids}) >= 2
    for server in everyone:
        wait_for(lambda: run_leftovers(server) == [], "every scratch copy to go", timeout=30)
        assert not (scratch_of(server) / "sources").exists() or not any((scratch_of(server) / "sources").iterdir())


def test_a_worker_killed_mid_upload_publishes_nothing_and_the_job_reruns_on_another_host(
        hosts, db, medium_clip, long_clip):
    make, bucket = hosts
    # veryfast: the web server's own consumer stays busy with a long run while the workers
    # take the next job; the killed run must still be uploading when it dies.
    web = make("serve", VIDEOFLIX_X264_PRESET="veryfast")
    api = Api(web.base)
    make_user(api, db)
    busy = api.upload(long_clip).json()["id"]
    wait_for(lambda: ffmpeg_pids(web.pid), "the web server to be encoding", timeout=90, interval=0.2)
    first, second = make("worker", VIDEOFLIX_X264_PRESET="veryfast"), make("worker", VIDEOFLIX_X264_PRESET="veryfast")
    video_id = api.upload(medium_clip).json()["id"]

    def uploading_worker():
        for worker in (first, second):
            if ffmpeg_pids(worker.pid) and len(bucket.keys(f"{video_id}/v1/")) >= 3:
                return worker
        return None
    victim = wait_for(uploading_worker, "a worker to be uploading the run", timeout=120, interval=0.2)
    victim.kill()  # SIGKILL: its pool and ffmpeg die with it (pool.py)
    dead_run = bucket.keys(f"{video_id}/v1/")
    assert dead_run and "ladder.json" not in dead_run

    wait_for(lambda: db.video(video_id)["status"] == "ready", "the job to be run again elsewhere", timeout=240,
             interval=0.5)
    row = db.video(video_id)
    assert (row["live_version"], row["building_version"]) == (2, None)
    assert bucket.missing(video_id, 2) == []
    survivors = [server for server in (web, first, second) if server is not victim]
    assert len(ran_on(survivors, video_id)) == 1 and ran_on([victim], video_id) == []
    # The sweepers (every process runs one) remove the dead run's objects after the lease.
    wait_for(lambda: bucket.keys(f"{video_id}/v1/") == set(), "the dead run's objects to be swept", timeout=60,
             interval=0.5)
    assert bucket.read(f"{video_id}/v1/ladder.json") is None
    # The dead host, back, cleans its scratch.
    assert run_leftovers(victim)
    victim.start()
    wait_for(lambda: run_leftovers(victim) == [], "the restarted host to clean its scratch", timeout=60,
             interval=0.5)
    assert api.call("DELETE", f"/api/video/{busy}/").status_code == 204  # the long run is not under test


def test_the_store_stopped_for_a_while_makes_jobs_wait_and_publishes_nothing_half(hosts, db, store, short_clip,
                                                                                 medium_clip):
    make, bucket = hosts
    web = make("serve", VIDEOFLIX_X264_PRESET="veryfast")
    workers = [make("worker", VIDEOFLIX_X264_PRESET="veryfast"), make("worker", VIDEOFLIX_X264_PRESET="veryfast")]
    api = Api(web.base)
    make_user(api, db)
    ids = [api.upload(clip).json()["id"] for clip in (medium_clip, short_clip, medium_clip)]
    wait_for(lambda: any(bucket.keys(f"{video_id}/v1/") for video_id in ids), "a run to be uploading",
             timeout=120, interval=0.2)
    store.pause()
    try:
        paused_at = time.monotonic()
        ready_before = {video_id for video_id in ids if db.video(video_id)["status"] == "ready"}
        # While the store is stopped nothing can be published: ladder.json is the last write.
        while time.monotonic() - paused_at < 15:
            for video_id in ids:
                if video_id not in ready_before:
                    assert db.video(video_id)["status"] in ("queued", "processing"), db.video(video_id)
            time.sleep(0.5)
    finally:
        store.resume()

    def settled() -> bool:
        return all(db.video(video_id)["status"] in ("ready", "failed") for video_id in ids)
    wait_for(settled, "every job to end once the store is back", timeout=300, interval=0.5)
    for video_id in ids:
        row = db.video(video_id)
        if row["status"] == "failed":  # allowed, with a reason and nothing published
            assert row["error"] and "/" not in row["error"], row
            assert row["live_version"] is None
            continue
        assert bucket.missing(video_id, row["live_version"]) == [], video_id
    # Without a restart: a new upload goes through every process as before.
    again = api.upload(short_clip).json()["id"]
    wait_for(lambda: db.video(again)["status"] == "ready", "a new upload after the outage", timeout=120,
             interval=0.5)
    assert bucket.missing(again, 1) == []
    for server in [web, *workers]:
        assert server.proc.poll() is None
