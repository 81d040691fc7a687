"""Wave-1 videos (version 0) moved into a version folder at start-up (library/version_zero.py).

A wave-1 video is made as wave 1 and sql/004 left one: the files of a real transcode
directly in media/<id>/ (the master playlist wave 1 wrote, each rendition's playlist and
segments, poster.jpg, thumbnail.jpg) under a ready row at live_version 0. The move is
killed (a real process, SIGKILL) after each of its steps and inside the two that touch
many files; after every kill the video is whole, old or new (and a new one plays), the
next start finishes the move, and the video plays at the same URLs with the same bytes.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from videoflix.library import version_zero
from videoflix.library.sweeper import Sweeper
from videoflix.platform import media
from videoflix.platform.db import cursor
from videoflix.tables import videos
from videoflix.transcode.command import TranscodeSettings
from videoflix.transcode.job import transcode
from videoflix.transcode.ladderfile import read_ladder
from videoflix.transcode.playlist import render_master
from videoflix.transcode.probe import first_video_pts

from helpers import cli_env, stop_process, untokened, wait_until

RENDITIONS = ("720p", "480p")


@pytest.fixture(scope="module")
def transcoded(tmp_path_factory) -> Path:
    """A real transcode of a 1280x720 test pattern with sound: 720p and 480p, two segments each."""
    root = tmp_path_factory.mktemp("wave1")
    clip = root / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "6", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(clip)],
                   check=True)
    result = transcode(clip, root / "out", TranscodeSettings(preset="ultrafast"))
    assert tuple(result.resolutions) == RENDITIONS
    return root / "out"


def write_wave1_files(transcoded: Path, folder: Path) -> dict[str, tuple[int, int]]:
    """The wave-1 layout of `transcoded` in `folder`: its master (as wave 1 wrote it: no
    trick play then), playlists, segments and images; {name: (inode, size)} of the files
    a version keeps."""
    folder.mkdir(parents=True, exist_ok=True)
    ladder = read_ladder(transcoded / media.LADDER_NAME)
    (folder / media.MASTER_PLAYLIST_NAME).write_text(render_master({**ladder, "iframes": []}))
    names = [media.POSTER_NAME, media.THUMBNAIL_NAME]
    for rendition in RENDITIONS:
        (folder / rendition).mkdir()
        names += [f"{rendition}/{path.name}" for path in sorted((transcoded / rendition).iterdir())
                  if path.name == media.MEDIA_PLAYLIST_NAME or media.is_segment_name(path.name)]
    for name in names:
        shutil.copy2(transcoded / name, folder / name)
    return identities(folder, names)


def identities(folder: Path, names) -> dict[str, tuple[int, int]]:
    found = {}
    for name in names:
        info = (folder / name).lstat()
        found[name] = (info.st_ino, info.st_size)
    return found


@pytest.fixture
def make_wave1_video(services, config, transcoded):
    """A ready row at live_version 0 (as sql/004 left one) with the wave-1 files in
    media/<id>/; returns (id, {name: (inode, size)})."""
    async def make(owner_id: int, *, files: bool = True) -> tuple[int, dict[str, tuple[int, int]]]:
        async with cursor(services.pool) as cur:
            video_id = await videos.insert_video(cur, owner_id=owner_id, title="Wave one", description="",
                                                 category="Old", visibility="private", status="queued")
            await cur.execute("UPDATE videos SET status = 'ready', duration = 6.0, width = 1280, height = 720,"
                              " fps = 25.0, has_audio = true, resolutions = %s, ready_at = now(),"
                              " live_version = 0, live_since = now() WHERE id = %s", (list(RENDITIONS), video_id))
        if not files:
            return video_id, {}
        return video_id, write_wave1_files(transcoded, media.video_dir(config.media_dir, video_id))
    return make


async def row_of(services, video_id: int) -> videos.Video:
    async with cursor(services.pool) as cur:
        return await videos.get_video(cur, video_id)


async def whole(services, config, video_id: int, originals: dict[str, tuple[int, int]]) -> int:
    """The live version, once the video is found whole: 0 with every wave-1 file where
    it was, or N with every one of them (the very same files) and a ladder in v<N>."""
    live = (await row_of(services, video_id)).live_version
    base = media.video_dir(config.media_dir, video_id)
    if live == 0:
        assert identities(base, originals) == originals
        assert (base / media.MASTER_PLAYLIST_NAME).is_file()
    else:
        folder = media.version_dir(config.media_dir, video_id, live)
        assert identities(folder, originals) == originals
        assert read_ladder(folder / media.LADDER_NAME) is not None
    return live


async def plays(client, transcoded: Path, video_id: int, version: int) -> None:
    """The wave-1 master's variants (now under v<N>/), and every playlist, segment and
    image with the transcode's bytes at the URLs wave 1 gave them."""
    master = await client.get(f"/api/video/{video_id}/master.m3u8")
    assert master.status == 200
    wave1 = render_master({**read_ladder(transcoded / media.LADDER_NAME), "iframes": []})
    assert untokened(master.body.decode()).splitlines() == [
        line if line.startswith("#") else f"v{version}/{line}" for line in wave1.splitlines()]
    for rendition in RENDITIONS:
        for name in (media.MEDIA_PLAYLIST_NAME, "seg_00000.ts", "seg_00001.ts"):
            data = (transcoded / rendition / name).read_bytes()
            for path in (f"{rendition}/{name}", f"v{version}/{rendition}/{name}"):
                response = await client.get(f"/api/video/{video_id}/{path}")
                assert (response.status, response.body == data) == (200, True), path
    for kind in ("thumbnail", "poster"):
        response = await client.get(f"/media/{kind}/{video_id}.jpg")
        assert response.status == 200 and response.body == (transcoded / f"{kind}.jpg").read_bytes()


# --- the ladder of a wave-1 video (pure, and from its files) ------------------------------

def test_the_ladder_of_a_wave1_video_is_the_one_its_transcode_wrote(transcoded, tmp_path):
    write_wave1_files(transcoded, tmp_path)
    derived = version_zero.read_ladder_of(tmp_path)
    written = read_ladder(transcoded / media.LADDER_NAME)
    assert derived["variants"] == written["variants"]
    assert (derived["start_pts"], derived["segment_seconds"]) == (written["start_pts"], written["segment_seconds"])
    assert derived["start_pts"] == first_video_pts(transcoded / "480p" / "seg_00000.ts") is not None
    assert abs(derived["duration"] - written["duration"]) < 0.1 and derived["complete"] is True
    assert (derived["iframes"], derived["thumbnails_vtt"]) == ([], None)  # wave 1 had no trick play
    # Rendered back, it is the wave-1 master but for the version in each URI.
    master = (tmp_path / media.MASTER_PLAYLIST_NAME).read_text()
    assert render_master(derived, prefix="v1/") == master.replace("\n720p/", "\nv1/720p/").replace(
        "\n480p/", "\nv1/480p/")


@pytest.mark.parametrize("line, uri", [
    ('BANDWIDTH=1,RESOLUTION=1x1,CODECS="avc1.64001f"', "1440p/index.m3u8"),  # not a rendition
    ('BANDWIDTH=1,RESOLUTION=1x1,CODECS="avc1.64001f"', "720p/other.m3u8"),
    ('BANDWIDTH=1,CODECS="avc1.64001f"', "720p/index.m3u8"),  # no size
    ('RESOLUTION=1x1,CODECS="avc1.64001f"', "720p/index.m3u8"),  # no bandwidth
    ('BANDWIDTH=x,RESOLUTION=1x1,CODECS="avc1.64001f"', "720p/index.m3u8"),
])
def test_wave1_variants_leave_out_what_they_cannot_render(line, uri):
    good = '#EXT-X-STREAM-INF:BANDWIDTH=9,RESOLUTION=854x480,CODECS="avc1.64001e,mp4a.40.2"\n480p/index.m3u8\n'
    variants = version_zero.wave1_variants(f"#EXTM3U\n#EXT-X-STREAM-INF:{line}\n{uri}\n{good}")
    assert [(v.name, v.width, v.height, v.codecs, v.peak_bps, v.average_bps) for v in variants] == [
        ("480p", 854, 480, "avc1.64001e,mp4a.40.2", 9, 9)]


# --- moving --------------------------------------------------------------------------------

@pytest.mark.gen_test(timeout=60)
async def test_a_wave1_video_is_moved_to_v1_once_and_plays_at_the_same_urls(
        client, make_user, make_wave1_video, services, config, transcoded, caplog):
    user = await make_user("owner@example.com")
    video_id, originals = await make_wave1_video(user["id"])
    caplog.set_level(logging.INFO, logger="videoflix.library.version_zero")
    assert await version_zero.move_wave1_videos(config, services) == {video_id: 1}
    row = await row_of(services, video_id)
    assert (row.live_version, row.version_seq, row.building_version) == (1, 1, None)
    assert await whole(services, config, video_id, originals) == 1
    base = media.video_dir(config.media_dir, video_id)
    assert sorted(path.name for path in base.iterdir()) == ["v1"]  # nothing of the wave-1 layout is left
    assert [r.getMessage() for r in caplog.records] == [
        f"video {video_id}: moved from the wave-1 layout (version 0) to {base / 'v1'}"]
    await plays(client, transcoded, video_id, 1)
    # As before: no version 0 path, listed, playable.
    assert (await client.get(f"/api/video/{video_id}/v0/480p/seg_00000.ts")).status == 404
    assert [item["id"] for item in (await client.get("/api/video/")).json()] == [video_id]
    assert (await client.get(f"/api/video/{video_id}/")).json()["playable"] is True
    # Once only: a second start finds nothing to do and says nothing.
    caplog.clear()
    assert await version_zero.move_wave1_videos(config, services) == {}
    assert caplog.records == [] and sorted(path.name for path in base.iterdir()) == ["v1"]


@pytest.mark.gen_test(timeout=60)
async def test_a_wave1_row_without_files_gets_an_empty_version(client, make_user, make_wave1_video, services,
                                                               config):
    user = await make_user("owner@example.com")
    video_id, _ = await make_wave1_video(user["id"], files=False)
    assert await version_zero.move_wave1_videos(config, services) == {video_id: 1}
    assert not any(media.version_dir(config.media_dir, video_id, 1).iterdir())
    # What it answered before, it answers now: listed, no master, no segment.
    assert [item["id"] for item in (await client.get("/api/video/")).json()] == [video_id]
    assert (await client.get(f"/api/video/{video_id}/master.m3u8")).status == 404
    assert (await client.get(f"/api/video/{video_id}/480p/seg_00000.ts")).status == 404


@pytest.mark.gen_test(timeout=60)
async def test_a_video_moved_by_another_process_meanwhile_is_left_to_it(make_user, make_wave1_video, services,
                                                                       config):
    user = await make_user("owner@example.com")
    video_id, _ = await make_wave1_video(user["id"])
    async with cursor(services.pool) as cur:  # another process published its own version 3 first
        await cur.execute("UPDATE videos SET live_version = 3, version_seq = 3 WHERE id = %s", (video_id,))
    assert await version_zero.move_video(config, services, video_id) is None
    base = media.video_dir(config.media_dir, video_id)
    assert not [path for path in base.iterdir() if path.name.startswith(media.WAVE1_MOVE_PREFIX)]
    assert (await row_of(services, video_id)).version_seq == 3


# The move in a real process, killed with SIGKILL right after the named call (the n-th).
KILLED_MOVE = """
import asyncio, inspect, json, os, signal, sys
from videoflix.library import version_zero
from videoflix.platform.config import Config
from videoflix.platform.services import create_services
from videoflix.tables import videos

module, name, calls = {"version_zero": version_zero, "videos": videos}[sys.argv[1]], sys.argv[2], int(sys.argv[3])
config = Config(**json.loads(sys.argv[4]))
made = [0]
original = getattr(module, name)

def counted():
    made[0] += 1
    if made[0] == calls:
        os.kill(os.getpid(), signal.SIGKILL)

if inspect.iscoroutinefunction(original):
    async def killing(*args, **kwargs):
        result = await original(*args, **kwargs)
        counted()
        return result
else:
    def killing(*args, **kwargs):
        result = original(*args, **kwargs)
        counted()
        return result
setattr(module, name, killing)

async def main():
    await version_zero.move_wave1_videos(config, await create_services(config))

asyncio.run(main())
sys.exit(3)  # never killed: the point was not reached
"""

KILL_POINTS = {
    "while linking": ("version_zero", "_link", 3),  # the move folder half made
    "built": ("version_zero", "build_move_folder", 1),
    "allocated": ("videos", "allocate_wave1_version", 1),
    "placed": ("version_zero", "place_move_folder", 1),  # v<N> whole, not published
    "published": ("videos", "publish_wave1_version", 1),
    "while removing": ("version_zero", "remove_tree", 2),  # some wave-1 names removed
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
@pytest.mark.gen_test(timeout=120)
async def test_a_move_killed_at_any_point_leaves_the_video_whole_and_the_next_start_ends_it(
        client, make_user, make_wave1_video, services, config, transcoded, tmp_path, point):
    user = await make_user("owner@example.com")
    video_id, originals = await make_wave1_video(user["id"])
    settings = {name: getattr(config, name) for name in ("database_url", "redis_url", "secret_key", "var_dir",
                                                          "media_dir")}
    killed = subprocess.run([sys.executable, "-c", KILLED_MOVE, *map(str, KILL_POINTS[point]),
                             json.dumps(settings)], capture_output=True, timeout=90)
    assert killed.returncode == -9, killed.stderr.decode()
    live = await whole(services, config, video_id, originals)
    assert live == (0 if point in ("while linking", "built", "allocated", "placed") else 1)
    if live:
        await plays(client, transcoded, video_id, live)
    # The next start: moved (or what was left removed), and it plays.
    await version_zero.move_wave1_videos(config, services)
    final = await whole(services, config, video_id, originals)
    assert final >= 1
    base = media.video_dir(config.media_dir, video_id)
    left = sorted(path.name for path in base.iterdir())
    assert f"v{final}" in left and not [name for name in left if media.is_wave1_name(name)]
    await plays(client, transcoded, video_id, final)
    # A version a killed move made but never published goes as any replaced version does.
    sweeper = Sweeper(dataclasses.replace(config, version_grace_seconds=0), services, set)
    assert await sweeper.sweep_versions() == [str(base / name) for name in left if name != f"v{final}"]
    await plays(client, transcoded, video_id, final)


@pytest.mark.gen_test(timeout=120)
async def test_videoflix_worker_moves_wave1_videos_before_it_transcodes(make_user, make_wave1_video, services,
                                                                      config, tmp_path):
    user = await make_user("owner@example.com")
    video_id, originals = await make_wave1_video(user["id"])
    env = cli_env(DATABASE_URL=config.database_url, REDIS_URL=config.redis_url, SECRET_KEY=config.secret_key,
                  VIDEOFLIX_VAR_DIR=config.var_dir, VIDEOFLIX_MEDIA_DIR=config.media_dir,
                  TRANSCODE_WORKERS="1")
    log_file = tmp_path / "worker.log"
    with log_file.open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "videoflix", "worker"], env=env, cwd=tmp_path,
                                  stdout=subprocess.DEVNULL, stderr=log)
    try:
        async def moved() -> bool:
            assert worker.poll() is None, log_file.read_text()
            return (await row_of(services, video_id)).live_version == 1
        await wait_until(moved, "the worker to move the wave-1 video", 60)
    finally:
        assert stop_process(worker) == 0
    assert await whole(services, config, video_id, originals) == 1
    assert f"video {video_id}: moved from the wave-1 layout" in log_file.read_text()
