"""Transcoding with no shared disk (issue 21 item 3), against both stores: MEDIA_DIR, and a
real SeaweedFS bucket where MEDIA_DIR is only the run's scratch.

The real runner and ffmpeg (ultrafast, short clips); what a run leaves is read back through
the store itself (services.storage), never through the HTTP routes that serve it.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import subprocess
from pathlib import Path

import pytest

from videoflix.library.sweeper import Sweeper
from videoflix.platform import media
from videoflix.platform.db import cursor
from videoflix.tables import videos
from videoflix.transcode import progress
from videoflix.transcode.playlist import parse_media_playlist

from helpers import upload, wait_for_status
from store_helpers import STORAGE_BACKENDS
from stored_versions import missing_objects
from test_versions import held, hold_when


@pytest.fixture(params=STORAGE_BACKENDS)
def storage_backend(request):
    return request.param


@pytest.fixture
def config(config, request):
    # ultrafast: these tests are about where the files go, not how they look (test_ffmpeg.py).
    return dataclasses.replace(config, x264_preset="ultrafast", originals=getattr(request, "param", "keep"))


@pytest.fixture(scope="session")
def clip_20s(state_dir) -> Path:
    """20 s of 640x360 (one rendition, five segments): a run that grows for a while, cheaply."""
    path = state_dir / "clip_20s.mp4"
    if not path.exists():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
                        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "20", "-c:v", "libx264",
                        "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)],
                       check=True)
    return path


@pytest.fixture
def admin_client(new_client, make_admin, io_loop):
    browser = new_client()
    io_loop.run_sync(lambda: make_admin(browser))
    return browser


async def stored_version(services, config, video_id: int, version: int) -> tuple[set[str], dict[str, bytes | None]]:
    """(names under the version's folder in the store, a cache of the small ones read)."""
    folder = media.version_dir(config.media_dir, video_id, version)
    prefix = f"{video_id}/v{version}/"
    listed = {info.key[len(prefix):] for info in await services.storage.list_tree(folder)}
    small = {}
    for name in listed:
        if name.endswith((".json", ".m3u8", ".vtt")):
            small[name] = await services.storage.read_bytes(folder / name)
    return listed, small


def scratch_leftovers(config, video_id: int) -> list[str]:
    root = Path(config.media_dir)
    found = [str(p.relative_to(root)) for p in media.video_dir(config.media_dir, video_id).rglob("*")]
    found += [p.name for p in media.work_dir(config.media_dir).glob(f"{video_id}-*")]
    if media.source_path(config.media_dir, video_id).exists():
        found.append("the source")
    return found


@pytest.mark.slow
@pytest.mark.gen_test(timeout=180)
async def test_a_published_version_is_whole_in_the_store_and_the_scratch_copy_is_gone(
        admin_client, runner, services, config, storage_backend, small_clip):
    video_id = (await upload(admin_client, small_clip, title="Stored")).json()["id"]
    await wait_for_status(admin_client, video_id, "ready")
    async with cursor(services.pool) as cur:
        row = await videos.get_video(cur, video_id)
    assert (row.live_version, row.building_version) == (1, None)

    listed, small = await stored_version(services, config, video_id, 1)
    assert missing_objects(listed, small.get) == []
    ladder = json.loads(small[media.LADDER_NAME])
    assert ladder["complete"] is True and [v["name"] for v in ladder["variants"]] == ["480p"]
    assert not any(name.endswith((".tmp", ".part")) or name.startswith(".") for name in listed), listed
    assert media.FETCHED_SOURCE_NAME not in listed and media.RUNG_INPUT_NAME not in listed
    # The original stays (VIDEOFLIX_ORIGINALS=keep), in the store.
    assert await services.storage.head(media.source_path(config.media_dir, video_id)) is not None
    if storage_backend == "s3":
        # The bucket has it all: nothing of the run is left in this host's scratch.
        assert scratch_leftovers(config, video_id) == []


@pytest.mark.slow
@pytest.mark.gen_test(timeout=240)
async def test_a_version_being_built_is_in_the_store_segment_by_segment_without_ladder_json(
        admin_client, runner, services, config, storage_backend, clip_20s):
    video_id = (await upload(admin_client, clip_20s, title="Growing")).json()["id"]
    seen: dict[str, list[str]] = {}

    async def playable_in_store() -> bool:
        return await progress.read_playable(services.redis, video_id) == 1

    pids = await hold_when(runner, playable_in_store, "the building version to become playable")
    with held(pids):
        listed, small = await stored_version(services, config, video_id, 1)
        if storage_backend == "s3":
            # Never ladder.json while the run goes: the provisional one has its own name.
            assert media.LADDER_NAME not in listed
            provisional = json.loads(small[media.BUILDING_LADDER_NAME])
        else:
            provisional = json.loads(small[media.LADDER_NAME])
        assert provisional["complete"] is False and provisional["start_pts"] is not None
        for variant in provisional["variants"]:
            text = small[f"{variant['name']}/index.m3u8"].decode()
            assert "#EXT-X-PLAYLIST-TYPE:EVENT" in text and "#EXT-X-ENDLIST" not in text
            names = [uri for uri, _ in parse_media_playlist(text)[1]]
            assert names  # playable: every rendition lists a segment ...
            for name in names:  # ... and the store has every segment its playlist lists
                assert f"{variant['name']}/{name}" in listed, (variant["name"], name, sorted(listed))
            seen[variant["name"]] = names

    await wait_for_status(admin_client, video_id, "ready", timeout=200)
    listed, small = await stored_version(services, config, video_id, 1)
    assert missing_objects(listed, small.get) == []
    for rung, names in seen.items():  # the segments a watcher saw stay what they were
        final = [uri for uri, _ in parse_media_playlist(small[f"{rung}/index.m3u8"].decode())[1]]
        assert final[:len(names)] == names
    if storage_backend == "s3":
        assert scratch_leftovers(config, video_id) == []


@pytest.mark.slow
@pytest.mark.parametrize("config", ["remove"], indirect=True)
@pytest.mark.gen_test(timeout=240)
async def test_without_the_original_a_rerun_reads_the_live_top_rung_from_the_store(
        admin_client, runner, services, config, storage_backend, small_clip):
    video_id = (await upload(admin_client, small_clip, title="Gone")).json()["id"]
    await wait_for_status(admin_client, video_id, "ready")
    assert await services.storage.head(media.source_path(config.media_dir, video_id)) is None

    assert (await admin_client.post(f"/api/video/{video_id}/retranscode/")).status == 202
    await wait_for_status(admin_client, video_id, "ready")
    async with cursor(services.pool) as cur:
        row = await videos.get_video(cur, video_id)
    assert row.live_version == 2
    listed, small = await stored_version(services, config, video_id, 2)
    assert missing_objects(listed, small.get) == []
    assert json.loads(small[media.LADDER_NAME])["input"] == "the 480p rung of v1 (no original)"
    assert media.RUNG_FETCH_DIR not in {name.split("/")[0] for name in listed}
    if storage_backend == "s3":
        assert scratch_leftovers(config, video_id) == []


@pytest.mark.gen_test(timeout=60)
async def test_sweeper_removes_old_and_unpublished_versions_from_the_store_but_keeps_live_and_building(
        make_user, services, config, storage_backend):
    user = await make_user("owner@example.com")
    async with cursor(services.pool) as cur:
        video_id = await videos.insert_video(cur, owner_id=user["id"], title="t", description="", category="c",
                                             visibility="private", status="queued")
        # live 3, building 5: v1 (old) and v4 (a dead run) may go; v3 and v5 stay.
        await cur.execute("UPDATE videos SET live_version = 3, building_version = 5, version_seq = 5,"
                          " live_since = now() - interval '1 hour', status = 'processing' WHERE id = %s",
                          (video_id,))
    store = services.storage
    for version in (1, 3, 4, 5):
        folder = media.version_dir(config.media_dir, video_id, version)
        await store.write_bytes(folder / "480p" / "seg_00000.ts", b"segment")
        if version != 4:  # v4: a run that died mid-upload, no ladder.json
            await store.write_bytes(folder / media.LADDER_NAME, b"{}")
    await store.write_bytes(media.subtitle_path(config.media_dir, video_id, "en"), b"WEBVTT\n")

    async def stored() -> set[str]:
        return {info.key for info in await store.list_tree(media.video_dir(config.media_dir, video_id))}

    def versions(keys: set[str]) -> set[str]:
        return {key.split("/")[1] for key in keys}

    # Within the lease a dead run may still be writing: kept; v1 is past its grace.
    careful = Sweeper(dataclasses.replace(config, version_grace_seconds=60, transcode_lease_seconds=3600),
                      services, lambda: set())
    await careful.sweep_versions()
    assert versions(await stored()) == {"v3", "v4", "v5", "subtitles"}
    hasty = Sweeper(dataclasses.replace(config, version_grace_seconds=60, transcode_lease_seconds=0),
                    services, lambda: set())
    await hasty.sweep_versions()
    assert versions(await stored()) == {"v3", "v5", "subtitles"}
    assert await store.read_bytes(media.ladder_path(config.media_dir, video_id, 3)) == b"{}"
    assert await store.read_bytes(media.ladder_path(config.media_dir, video_id, 5)) == b"{}"
    assert await hasty.sweep_versions() == []


def test_store_errors_are_retried_with_the_fence_checked_then_fail_with_a_reason():
    from videoflix.platform.storage import StorageError
    from videoflix.transcode import mirror
    from videoflix.transcode.errors import TranscodeError

    answers = [StorageError("GET sources/7: Could not connect to http://10.0.0.9:8333/b/sources/7"),
               OSError("reset"), "fetched"]
    checks = []

    def flaky():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer
    assert mirror.with_retries("fetching", flaky, lambda: checks.append(1), wait_seconds=60) == "fetched"
    assert len(checks) == 3  # the lease fence is looked at before every attempt

    def down():
        raise StorageError("PUT 7/v1/720p/seg_00003.ts: read timeout on http://10.0.0.9:8333/b/7/v1/")
    with pytest.raises(TranscodeError) as failure:
        mirror.with_retries("uploading", down, lambda: None, wait_seconds=1.0)
    assert str(failure.value).startswith("The media store could not be reached for ")
    assert "/" not in str(failure.value) and "10.0.0.9" not in str(failure.value)

    # This host's scratch disk full while a fetch writes: no wait for the store, the run fails.
    attempts = []

    def full_disk():
        attempts.append(1)
        raise OSError(errno.EFBIG, "File too large")
    with pytest.raises(TranscodeError) as failure:
        mirror.with_retries("fetching", full_disk, lambda: None, wait_seconds=60)
    assert attempts == [1] and str(failure.value).startswith("Not enough space")


@pytest.mark.slow  # botocore's own attempts take seconds a call
def test_an_unreachable_store_fails_the_fetch_with_a_reason_and_leaves_nothing(tmp_path):
    from videoflix.platform.embedded import free_port
    from videoflix.platform.s3blocking import BlockingS3
    from videoflix.platform.s3store import S3Settings
    from videoflix.platform.storage import StorageLocation
    from videoflix.transcode import mirror
    from videoflix.transcode.errors import TranscodeError

    nobody = S3Settings(StorageLocation("s3", "videoflix-nowhere"), f"http://127.0.0.1:{free_port()}", "", "k", "s")
    store = BlockingS3(nobody, str(tmp_path))
    try:
        with pytest.raises(TranscodeError) as failure:
            mirror.fetch_source(store, media.source_path(str(tmp_path), 7), tmp_path, lambda: None,
                                wait_seconds=1.0)
    finally:
        store.close()
    assert str(failure.value).startswith("The media store could not be reached for ")
    assert "/" not in str(failure.value) and "127.0.0.1" not in str(failure.value)
    assert not list(tmp_path.iterdir())  # nothing half-fetched
