"""Versioned renditions and watching while a video transcodes (issue 12, items 1, 2, 6).

Real runs of the real runner on real clips: every run writes media/<id>/v<N>/ in
place with EVENT playlists, a re-transcode keeps the old version listed and playing
until one UPDATE switches, the sweeper removes the old one after the grace period.
Moments "while it runs" are held still by stopping the run's ffmpeg (SIGSTOP) once
the condition under test was reached, never by sleeping and hoping. Every test runs
against both stores (MEDIA_DIR, and a SeaweedFS bucket where MEDIA_DIR is scratch): what a
run wrote is read back through the store (services.storage).
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import time
from pathlib import Path

import pytest

from videoflix.delivery import playback
from videoflix.library.sweeper import Sweeper
from videoflix.platform import media
from videoflix.platform.db import cursor
from videoflix.tables import videos
from videoflix.transcode import progress
from videoflix.transcode.playlist import parse_media_playlist

from helpers import login, publish_ladder, publish_version, untokened, upload, wait_for_status
from store_helpers import STORAGE_BACKENDS
from media import PARK, clip, ffprobe_json

IMMUTABLE = "private, max-age=31536000, immutable"


@pytest.fixture(params=STORAGE_BACKENDS)
def storage_backend(request):
    return request.param


async def stored(services, path: Path) -> bytes:
    data = await services.storage.read_bytes(path)
    assert data is not None, path
    return data


async def stored_copy(services, path: Path, tmp_path: Path) -> Path:
    """A local file with the stored object's bytes (the object itself on MEDIA_DIR)."""
    if services.storage.is_local:
        return path
    target = tmp_path / "copies" / path.parent.name / path.name
    assert await services.storage.get_file(path, target), path
    return target


async def stored_names(services, folder: Path) -> list[str]:
    return [info.key for info in await services.storage.list_tree(folder)]


@pytest.fixture
def config(config):
    # ultrafast: these tests are about when files appear, not how they look (test_ffmpeg.py).
    return dataclasses.replace(config, x264_preset="ultrafast")


@pytest.fixture
def admin_client(new_client, make_admin, io_loop):
    browser = new_client()
    io_loop.run_sync(lambda: make_admin(browser))
    return browser


def ffmpeg_of(runner) -> list[int]:
    """Pids of the ffmpeg processes the runner's pool workers run now."""
    workers = set(runner.pool.worker_pids())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if name == "ffmpeg" and parent in workers:
            found.append(int(entry))
    return found


STEP_SECONDS = 0.15


async def hold_when(runner, condition, what: str, timeout: float = 180) -> list[int]:
    """Let the run's ffmpeg go in short steps (SIGCONT ... SIGSTOP) until `condition()`
    holds; return its pids, stopped: the moment under test stays put."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pids: list[int] = []
    while True:
        assert loop.time() < deadline, f"timed out waiting for {what}"
        if not pids:
            pids = ffmpeg_of(runner)
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
        if pids and await condition():
            return pids
        if not pids:
            await asyncio.sleep(0.01)
            continue
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        await asyncio.sleep(STEP_SECONDS)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        assert all(os.path.exists(f"/proc/{pid}") for pid in pids), f"the run's ffmpeg ended before {what}"


@contextlib.contextmanager
def held(pids: list[int]):
    """The run's ffmpeg stopped (SIGSTOP) inside the block, continued after it."""
    assert pids, "no ffmpeg to hold"
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


async def row(services, video_id: int) -> videos.Video:
    async with cursor(services.pool) as cur:
        return await videos.get_video(cur, video_id)


def segments_of(text: str) -> list[str]:
    return [uri for uri, _ in parse_media_playlist(text)[1]]


async def detail(browser, video_id: int) -> dict:
    response = await browser.get(f"/api/video/{video_id}/")
    assert response.status == 200, response.body
    return response.json()


async def master_uris(browser, video_id: int) -> list[str]:
    response = await browser.get(f"/api/video/{video_id}/master.m3u8")
    assert response.status == 200, response.body
    return [line for line in untokened(response.body.decode()).splitlines() if line and not line.startswith("#")]


async def hold_when_playable(runner, browser, video_id: int) -> tuple[list[int], dict]:
    """The run's ffmpeg stopped once the detail says playable; (its pids, that detail)."""
    found: dict = {}

    async def check() -> bool:
        found.update(await detail(browser, video_id))
        assert found["status"] != "failed", found
        return found["playable"] and found["status"] == "processing"
    pids = await hold_when(runner, check, "the building version to become playable")
    return pids, found


# --- watch while it transcodes ---------------------------------------------------------

@pytest.mark.slow
@pytest.mark.gen_test(timeout=300)
async def test_building_version_is_watchable_by_its_owner_as_a_growing_event_playlist(
        client, new_client, make_user, make_admin, runner, services, config, park_17s, caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="videoflix.access")
    owner = await make_user("owner@example.com")
    video_id = (await upload(client, park_17s, title="Growing", visibility="private")).json()["id"]
    stranger = new_client()
    await make_user("stranger@example.com", log_in=False)
    await login(stranger, "stranger@example.com")
    admin = new_client()
    await make_admin(admin)

    # Not playable before its first segment: no master, detail says so.
    first = await detail(client, video_id)
    assert first["playable"] is False and first["master_url"] is None

    pids, shown = await hold_when_playable(runner, client, video_id)
    state = await row(services, video_id)
    assert shown["status"] == "processing" and state.live_version is None
    version = state.building_version
    assert version == 1 and shown["master_url"] == f"{config.public_url}/api/video/{video_id}/master.m3u8"
    folder = media.version_dir(config.media_dir, video_id, version)
    assert folder == Path(config.media_dir) / str(video_id) / "v1"  # written in place

    # The files grow while it runs: watched over HTTP, each playlist EVENT.
    seen: dict[int, str] = {}

    async def grew() -> bool:
        response = await client.get(f"/api/video/{video_id}/v1/480p/index.m3u8")
        assert response.status == 200, response.body
        text = response.body.decode()
        assert "#EXT-X-PLAYLIST-TYPE:EVENT" in text and "#EXT-X-ENDLIST" not in text
        seen.setdefault(len(segments_of(text)), text)
        return len(seen) >= 2
    await hold_when(runner, grew, "the 480p playlist to grow")
    assert min(seen) >= 1 and max(seen) > min(seen)

    with held(pids):
        on_disk = {rung: segments_of((await stored(services, folder / rung / "index.m3u8")).decode())
                   for rung in ("1080p", "720p", "480p")}
        # Every listed segment is complete (temp_file): ffprobe reads its whole duration.
        for rung, names in on_disk.items():
            assert names, rung
            for name in names:
                copy = await stored_copy(services, folder / rung / name, tmp_path)
                probed = ffprobe_json(copy, "-show_entries", "format=duration")
                assert float(probed["format"]["duration"]) > 3.5, (rung, name)
        assert not [name for name in await stored_names(services, folder) if name.endswith(".m3u8.tmp")]

        # The master of the building version: every rendition, BANDWIDTH from the caps.
        response = await client.get(f"/api/video/{video_id}/master.m3u8")
        assert response.status == 200
        assert response.headers["Cache-Control"] == "private, no-cache"
        master = untokened(response.body.decode())
        assert [u for u in master.splitlines() if u and not u.startswith("#")] == [
            "v1/720p/index.m3u8", "v1/1080p/index.m3u8", "v1/480p/index.m3u8"]
        assert "BANDWIDTH=3440800" in master and 'CODECS="avc1.64001f,mp4a.40.2"' in master

        playlist = await client.get(f"/api/video/{video_id}/v1/720p/index.m3u8")
        assert playlist.headers["Cache-Control"] == "private, no-cache"
        segment = await client.get(f"/api/video/{video_id}/v1/720p/seg_00000.ts")
        assert segment.status == 200 and segment.headers["Cache-Control"] == IMMUTABLE
        assert segment.body == await stored(services, folder / "720p" / "seg_00000.ts")

        # A segment not written yet: waited for, then 503 + Retry-After (hls.js retries a 5xx).
        started = time.monotonic()
        missing = await client.get(f"/api/video/{video_id}/v1/720p/seg_00004.ts")
        assert missing.status == 503, missing.body
        assert missing.headers["Retry-After"] == "1"
        assert missing.json() == {"detail": "Not transcoded yet: try again shortly."}
        assert time.monotonic() - started >= 2.5
        waited = [r for r in caplog.records if r.name == "videoflix.access" and r.path.endswith("v1/720p/seg_00004.ts")]
        assert [r.levelno for r in waited] == [logging.INFO]  # an expected "retry shortly", not a warning
        # ... but a rendition the version does not make is a plain 404 at once.
        assert (await client.get(f"/api/video/{video_id}/v1/2160p/seg_00000.ts")).status == 404

        # Access: the owner and admins watch the building version; nobody else sees it.
        assert (await admin.get(f"/api/video/{video_id}/v1/480p/index.m3u8")).status == 200
        assert (await detail(admin, video_id))["playable"] is True
        for path in (f"/api/video/{video_id}/master.m3u8", f"/api/video/{video_id}/v1/480p/index.m3u8",
                     f"/api/video/{video_id}/v1/480p/seg_00000.ts", f"/api/video/{video_id}/480p/index.m3u8",
                     f"/api/video/{video_id}/"):
            assert (await stranger.get(path)).status == 404, path
        # API.md §3's unversioned paths (and the catalog) keep meaning "ready" for everyone.
        assert (await client.get(f"/api/video/{video_id}/480p/index.m3u8")).status == 404
        assert (await client.get("/api/video/")).json() == []
        # Other version numbers are not this one's.
        for other in ("v2", "v0", "v01", "1"):
            assert (await client.get(f"/api/video/{video_id}/{other}/480p/index.m3u8")).status == 404, other

        # The signed stream URL plays the building version too, without cookies.
        stream = (await client.get(f"/api/video/{video_id}/stream/")).json()["url"]
        prefix = stream[len(config.public_url):].rsplit("/", 1)[0]
        assert (await new_client().get(f"{prefix}/master.m3u8")).status == 200
        assert (await new_client().get(f"{prefix}/v1/480p/seg_00000.ts")).status == 200
        assert (await new_client().get(f"{prefix}/v1/480p/seg_00004.ts")).status == 503

    ready = await wait_for_status(client, video_id, "ready", timeout=240)
    assert ready["playable"] is True
    state = await row(services, video_id)
    assert (state.live_version, state.building_version) == (1, None)
    for rung in ("1080p", "720p", "480p"):
        text = (await stored(services, folder / rung / "index.m3u8")).decode()
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in text and text.endswith("#EXT-X-ENDLIST\n")
        # The same segments as while it grew: a player that watched keeps its place.
        assert segments_of(text)[:len(on_disk[rung])] == on_disk[rung]
    # Finished: immutable playlists, a missing segment is 404 at once (no wait).
    playlist = await client.get(f"/api/video/{video_id}/v1/720p/index.m3u8")
    assert playlist.headers["Cache-Control"] == IMMUTABLE
    started = time.monotonic()
    assert (await client.get(f"/api/video/{video_id}/v1/720p/seg_00099.ts")).status == 404
    assert time.monotonic() - started < 2.0
    assert (await stranger.get(f"/api/video/{video_id}/v1/480p/index.m3u8")).status == 404  # still private


@pytest.mark.slow
@pytest.mark.gen_test(timeout=120)
async def test_playable_change_is_published_on_the_event_stream(client, make_user, runner, services, park_17s):
    from test_events import EventStream

    await make_user("owner@example.com")
    stream = await EventStream.open(client)
    try:
        video_id = (await upload(client, park_17s, title="Events")).json()["id"]
        seen = await stream.wait_for(lambda event, data: event == "video" and data.get("id") == video_id
                                     and data["playable"], timeout=180)
        event, data = seen[-1]
        # Announced by the transcode child the moment it is true, while the run goes.
        assert data["status"] == "processing" and data["master_url"] is not None
        assert any(not data["playable"] for event, data in seen if data.get("id") == video_id)
    finally:
        stream.close()


# --- versions: re-transcode, switch-over, grace ------------------------------------------

@pytest.mark.gen_test(timeout=60)
async def test_a_session_started_after_a_switch_plays_the_new_version_before_this_process_hears_of_it(
        new_client, make_admin, services, config, small_ladder):
    folder, result = small_ladder
    viewer = new_client()
    owner = await make_admin(viewer)
    video_id = await publish_ladder(services, config, owner, folder, result)
    assert await master_uris(viewer, video_id) == ["v1/480p/index.m3u8"]  # its row is cached now
    # Another process (a worker) publishes a re-run: the files, then the row; the change's
    # message has not reached this process yet.
    async with cursor(services.pool) as cur:
        assert await videos.mark_queued(cur, video_id)
    version = await publish_version(services, config, video_id, folder, result)
    assert (await detail(viewer, video_id))["status"] == "ready"
    assert await master_uris(viewer, video_id) == [f"v{version}/480p/index.m3u8"]
    # A player of the old version plays on: its playlists and segments are still there.
    assert (await viewer.get(f"/api/video/{video_id}/v1/480p/index.m3u8")).status == 200


@pytest.mark.slow
@pytest.mark.gen_test(timeout=300)
async def test_retranscode_keeps_the_old_version_listed_and_playing_then_switches_and_sweeps_it(
        admin_client, new_client, make_user, runner, services, config):
    # The 5.8 s park clip, not park_17s: two segments per rung are all this needs (v1's
    # second one plays on after the switch), and it is transcoded twice.
    video_id = (await upload(admin_client, clip(PARK), title="Twice")).json()["id"]
    await wait_for_status(admin_client, video_id, "ready", timeout=240)
    viewer = new_client()
    await make_user("viewer@example.com", log_in=False)
    await login(viewer, "viewer@example.com")
    assert await master_uris(viewer, video_id) == ["v1/720p/index.m3u8", "v1/1080p/index.m3u8",
                                                   "v1/480p/index.m3u8"]
    first_segment = await viewer.get(f"/api/video/{video_id}/v1/480p/seg_00000.ts")
    assert first_segment.status == 200 and first_segment.headers["Cache-Control"] == IMMUTABLE
    master = await viewer.get(f"/api/video/{video_id}/master.m3u8")
    etag = master.headers["Etag"]
    again = await viewer.get(f"/api/video/{video_id}/master.m3u8", headers={"If-None-Match": etag})
    assert again.status == 304 and again.body == b""

    assert (await admin_client.post(f"/api/video/{video_id}/retranscode/")).status == 202

    async def second_version_playable() -> bool:
        # What the transcode child reports (the detail says playable anyway: v1 is live).
        return await progress.read_playable(services.redis, video_id) == 2
    pids = await hold_when(runner, second_version_playable, "version 2 to become playable")
    with held(pids):
        state = await row(services, video_id)
        assert (state.status, state.live_version, state.building_version) == ("processing", 1, 2)
        # Still listed, still the old version for everyone (the admin too: the live one wins).
        assert [item["id"] for item in (await viewer.get("/api/video/")).json()] == [video_id]
        assert (await master_uris(viewer, video_id))[0] == "v1/720p/index.m3u8"
        assert (await master_uris(admin_client, video_id))[0] == "v1/720p/index.m3u8"
        unversioned = await viewer.get(f"/api/video/{video_id}/480p/seg_00000.ts")
        assert unversioned.body == first_segment.body
        viewer_detail = await detail(viewer, video_id)
        assert viewer_detail["playable"] is True and viewer_detail["thumbnail_url"] is not None
        # The new version: the admin may watch it, the viewer not yet.
        assert (await admin_client.get(f"/api/video/{video_id}/v2/480p/index.m3u8")).status == 200
        assert (await viewer.get(f"/api/video/{video_id}/v2/480p/index.m3u8")).status == 404

    await wait_for_status(admin_client, video_id, "ready", timeout=240)
    state = await row(services, video_id)
    assert (state.live_version, state.building_version) == (2, None)
    assert await master_uris(viewer, video_id) == ["v2/720p/index.m3u8", "v2/1080p/index.m3u8",
                                                   "v2/480p/index.m3u8"]
    # A player that loaded v1 before the switch plays on during the grace period.
    assert (await viewer.get(f"/api/video/{video_id}/v1/480p/seg_00001.ts")).status == 200
    assert (await viewer.get(f"/api/video/{video_id}/v1/480p/index.m3u8")).status == 200
    thumbnail = await viewer.get(f"/media/thumbnail/{video_id}.jpg")
    v2 = media.version_dir(config.media_dir, video_id, 2)
    assert thumbnail.status == 200 and thumbnail.body == await stored(services, v2 / "thumbnail.jpg")

    # The sweeper keeps v1 within the grace period, removes it after.
    v1 = media.version_dir(config.media_dir, video_id, 1)
    patient = Sweeper(config, services, lambda: set())
    assert await patient.sweep_versions() == [] and await stored_names(services, v1)
    hasty = Sweeper(dataclasses.replace(config, version_grace_seconds=0), services, lambda: set())
    swept = await hasty.sweep_versions()
    assert len(swept) == 1 and swept[0].rstrip("/").endswith(f"{video_id}/v1")
    assert await stored_names(services, v1) == [] and await stored_names(services, v2)
    playback.forget_video(services, video_id)
    assert (await viewer.get(f"/api/video/{video_id}/v1/480p/seg_00001.ts")).status == 404
    assert (await viewer.get(f"/api/video/{video_id}/v2/480p/seg_00001.ts")).status == 200


# Folder ages on disk; the bucket's rules are test_transcode_store.py's.
@pytest.mark.parametrize("storage_backend", ["local"])
@pytest.mark.gen_test(timeout=60)
async def test_sweeper_removes_old_and_unpublished_versions_but_keeps_live_and_building(
        client, make_user, services, config, storage_backend):
    user = await make_user("owner@example.com")
    async with cursor(services.pool) as cur:
        video_id = await videos.insert_video(cur, owner_id=user["id"], title="t", description="", category="c",
                                             visibility="private", status="queued")
        # live 3, building 5: v1 (old) and v4 (a dead run) may go; v3 and v5 stay.
        await cur.execute("UPDATE videos SET live_version = 3, building_version = 5, version_seq = 5,"
                          " live_since = now() - interval '1 hour', status = 'processing' WHERE id = %s",
                          (video_id,))
    base = media.video_dir(config.media_dir, video_id)
    for version in (1, 3, 4, 5):
        (base / f"v{version}" / "480p").mkdir(parents=True)
    (base / "subtitles").mkdir()  # not a version: per video, kept
    old = time.time() - 3600
    os.utime(base / "v4" / "480p", (old, old))
    os.utime(base / "v4", (old, old))
    sweeper = Sweeper(dataclasses.replace(config, version_grace_seconds=60, transcode_lease_seconds=60),
                      services, lambda: set())
    removed = await sweeper.sweep_versions()
    assert sorted(removed) == sorted([str(base / "v1"), str(base / "v4")])
    assert sorted(p.name for p in base.iterdir()) == ["subtitles", "v3", "v5"]
    # A young dead run is left alone for now (it may belong to a run elsewhere, not yet fenced).
    (base / "v6").mkdir()
    assert await sweeper.sweep_versions() == []
