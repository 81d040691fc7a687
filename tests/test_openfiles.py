"""Segments' open files kept a few seconds (openfiles.py, used by web/media_handlers.py).

The cache on its own, with real descriptors: lending, giving back, expiry, eviction
and shutdown close exactly the descriptors they should, a lent one only at its
release. Through the server: a second GET of a segment reuses the open file (no
new open), ranges and HEAD answer from it, playlists are never kept, access is
still decided first (a stranger, a deleted video), and a file removed, renamed
over or changed on disk is never answered from the cache.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from videoflix.delivery import mediafiles, openfiles
from videoflix.platform import media

from helpers import make_ready_video, open_fds_to, wait_until


def opened(tmp_path: Path, name: str) -> mediafiles.OpenFile:
    path = tmp_path / name
    if not path.exists():
        path.write_bytes(name.encode() * 100)
    found = mediafiles.open_inside(tmp_path, (name,), prefetch=64)
    assert found is not None and found.first
    return found


# --- the cache alone ------------------------------------------------------------------------

@pytest.mark.gen_test
async def test_lent_entries_come_back_and_are_reused(tmp_path):
    cache = openfiles.OpenFileCache(valid_seconds=60)
    assert cache.acquire("a") is None
    entry = cache.add("a", opened(tmp_path, "a"))
    assert entry.file.first == b""  # the cache keeps no bytes, only the descriptor
    again = cache.acquire("a")
    assert again is entry and cache.lent() == 2
    cache.release(entry)
    cache.release(again)
    assert cache.lent() == 0 and open_fds_to(tmp_path / "a") == 1
    cache.close()
    assert open_fds_to(tmp_path / "a") == 0 and len(cache) == 0


@pytest.mark.gen_test
async def test_an_expired_entry_is_closed_and_not_lent(tmp_path):
    cache = openfiles.OpenFileCache(valid_seconds=0.05)
    entry = cache.add("a", opened(tmp_path, "a"))
    cache.release(entry)
    # The timer closes it with no request coming.
    await wait_until(lambda: open_fds_to(tmp_path / "a") == 0, "the expired file to be closed", 10)
    assert cache.acquire("a") is None and len(cache) == 0
    cache.close()


@pytest.mark.gen_test
async def test_an_entry_lent_when_it_expires_is_closed_at_its_release(tmp_path):
    cache = openfiles.OpenFileCache(valid_seconds=0.05)
    entry = cache.add("a", opened(tmp_path, "a"))
    await wait_until(lambda: len(cache) == 0, "the entry to expire", 10)
    assert open_fds_to(tmp_path / "a") == 1  # still being sent
    assert os.pread(entry.file.fd, 1, 0) == b"a"
    cache.release(entry)
    assert open_fds_to(tmp_path / "a") == 0
    cache.close()


@pytest.mark.gen_test
async def test_the_oldest_entry_is_evicted_past_the_limit(tmp_path):
    cache = openfiles.OpenFileCache(valid_seconds=60, max_entries=2)
    lent = {name: cache.add(name, opened(tmp_path, name)) for name in ("a", "b")}
    cache.release(lent["a"])
    cache.release(cache.add("c", opened(tmp_path, "c")))
    assert open_fds_to(tmp_path / "a") == 0 and cache.acquire("a") is None  # evicted, was free: closed
    cache.release(cache.add("d", opened(tmp_path, "d")))
    assert cache.acquire("b") is None and open_fds_to(tmp_path / "b") == 1  # evicted while lent
    cache.release(lent["b"])
    assert open_fds_to(tmp_path / "b") == 0
    cache.close()
    assert [open_fds_to(tmp_path / n) for n in "abcd"] == [0, 0, 0, 0]


@pytest.mark.gen_test
async def test_two_opens_of_one_file_keep_one_descriptor(tmp_path):
    cache = openfiles.OpenFileCache(valid_seconds=60)
    first = cache.add("a", opened(tmp_path, "a"))
    second = cache.add("a", opened(tmp_path, "a"))  # a request that missed while the first opened
    assert cache.acquire("a") is second
    cache.release(first)
    assert open_fds_to(tmp_path / "a") == 1
    cache.close()
    assert open_fds_to(tmp_path / "a") == 1  # `second` is lent twice still
    cache.release(second)
    cache.release(second)
    assert open_fds_to(tmp_path / "a") == 0


# --- through the server ------------------------------------------------------------------------

@pytest.fixture
def segment(io_loop, make_user, client, services, config):
    """A private ready video of the logged-in owner with one 720p segment and playlist."""
    async def make():
        user = await make_user()
        video_id = await make_ready_video(services, user["id"], visibility="private")
        folder = media.version_dir(config.media_dir, video_id, 1) / "720p"  # its first (and live) version
        folder.mkdir(parents=True)
        (folder / "seg_00000.ts").write_bytes(os.urandom(200_000))
        (folder / "index.m3u8").write_text("#EXTM3U\n#EXT-X-ENDLIST\n")
        return video_id, folder
    return io_loop.run_sync(make)


@pytest.mark.gen_test(timeout=60)
async def test_a_second_get_answers_from_the_open_file(segment, app, client):
    video_id, folder = segment
    cache = app.settings["open_files"]
    data = (folder / "seg_00000.ts").read_bytes()
    path = f"/api/video/{video_id}/720p/seg_00000.ts"
    first = await client.get(path)
    assert first.status == 200 and first.body == data
    assert len(cache) == 1 and cache.lent() == 0
    entry = cache.acquire(cache.keys()[0])
    cache.release(entry)
    again = await client.get(path)
    ranged = await client.get(path, headers={"Range": "bytes=1000-1999"})
    head = await client.fetch("HEAD", path)
    revalidated = await client.get(path, headers={"If-None-Match": first.headers["Etag"]})
    assert again.status == 200 and again.body == data and again.headers["Etag"] == first.headers["Etag"]
    assert again.headers["Last-Modified"] == first.headers["Last-Modified"]
    assert ranged.status == 206 and ranged.body == data[1000:2000]
    assert head.status == 200 and head.headers["Content-Length"] == str(len(data)) and head.body == b""
    assert revalidated.status == 304
    assert len(cache) == 1 and cache.acquire(entry.key) is entry  # the same descriptor throughout
    cache.release(entry)
    assert open_fds_to(folder / "seg_00000.ts") == 1
    # Playlists change (EVENT playlists grow): never kept.
    assert (await client.get(f"/api/video/{video_id}/720p/index.m3u8")).status == 200
    assert len(cache) == 1 and open_fds_to(folder / "index.m3u8") == 0


@pytest.mark.gen_test(timeout=60)
async def test_access_is_decided_before_the_open_file_is_used(segment, app, client, new_client):
    video_id, _ = segment
    path = f"/api/video/{video_id}/720p/seg_00000.ts"
    assert (await client.get(path)).status == 200
    assert len(app.settings["open_files"]) == 1
    stranger = new_client()
    assert (await stranger.get(path)).status == 401
    assert (await client.fetch("DELETE", f"/api/video/{video_id}/")).status == 204
    gone = await client.get(path)
    assert gone.status == 404 and gone.body.startswith(b"{")


@pytest.mark.gen_test(timeout=60)
async def test_a_removed_or_replaced_file_is_never_served_from_the_cache(segment, app, client):
    video_id, folder = segment
    cache = app.settings["open_files"]
    path = f"/api/video/{video_id}/720p/seg_00000.ts"
    assert (await client.get(path)).status == 200 and len(cache) == 1
    replacement = os.urandom(150_000)
    (folder / "new.ts").write_bytes(replacement)
    os.replace(folder / "new.ts", folder / "seg_00000.ts")  # as ffmpeg's temp_file rename
    anew = await client.get(path)
    assert anew.status == 200 and anew.body == replacement
    assert open_fds_to(folder / "seg_00000.ts") == 1  # the old descriptor was let go
    with open(folder / "seg_00000.ts", "r+b") as changed:  # changed in place: size and mtime
        changed.truncate(100_000)
    assert (await client.get(path)).body == replacement[:100_000]
    (folder / "seg_00000.ts").unlink()  # the sweeper removed the version
    gone = await client.get(path)
    assert gone.status == 404 and gone.body.startswith(b"{") and len(cache) == 0
