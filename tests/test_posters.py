"""Custom posters (issue 22 item 5): the owner or an admin replaces a video's poster with an
uploaded image (checked by decoding it, re-encoded at both sizes, capped) or with the frame
at a chosen time; the choice survives a re-transcode."""
from __future__ import annotations

import json
import subprocess

import pytest

from videoflix.platform import media
from videoflix.platform.db import cursor

from helpers import PASSWORD, login, multipart, wait_for_status
from store_helpers import STORAGE_BACKENDS, publish_stored, read_stored, stored_keys


@pytest.fixture(params=STORAGE_BACKENDS)
def storage_backend(request):
    return request.param


@pytest.fixture
def ready(io_loop, client, make_user, config, services, small_ladder):
    async def make():
        owner = await make_user()
        return await publish_stored(services, config, owner["id"], *small_ladder, title="Poster me")
    return io_loop.run_sync(make)


def image(tmp_path, name: str, size: str, *extra: str) -> bytes:
    path = tmp_path / name
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=1",
                    "-frames:v", "1", *extra, str(path)], check=True)
    return path.read_bytes()


def dimensions(data: bytes) -> tuple[int, int]:
    out = subprocess.run(["ffprobe", "-v", "error", "-f", "jpeg_pipe", "-i", "pipe:0", "-show_entries",
                          "stream=width,height,codec_name", "-of", "json"], input=data, capture_output=True,
                         check=True).stdout
    stream = json.loads(out)["streams"][0]
    assert stream["codec_name"] == "mjpeg"
    return stream["width"], stream["height"]


async def send_image(client, video_id: int, data: bytes, filename: str = "poster.png"):
    body, content_type = multipart({}, filename, data)
    return await client.fetch("POST", f"/api/video/{video_id}/poster/", raw_body=body,
                              headers={"Content-Type": content_type})


async def live_images(services, config, video_id: int, version: int) -> tuple[bytes, bytes]:
    """The version's images, from whichever store the test runs on."""
    folder = media.version_dir(config.media_dir, video_id, version)
    return (await read_stored(services, folder / media.POSTER_NAME),
            await read_stored(services, folder / media.THUMBNAIL_NAME))


async def live_version(services, video_id: int) -> int:
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT live_version FROM videos WHERE id = %s", (video_id,))
        return (await cur.fetchone())["live_version"]


@pytest.mark.gen_test(timeout=60)
async def test_an_uploaded_image_becomes_the_poster_and_thumbnail_re_encoded(client, ready, config, services,
                                                                             tmp_path):
    png = image(tmp_path, "p.png", "1600x1200")
    version = await live_version(services, ready)
    before = await live_images(services, config, ready, version)
    answer = await send_image(client, ready, png)
    assert answer.status == 200, answer.body
    urls = answer.json()
    assert urls["poster_url"].startswith(f"{config.public_url}/media/poster/{ready}-")
    poster, thumbnail = await live_images(services, config, ready, version)
    assert (poster, thumbnail) != before
    assert dimensions(poster) == (1280, 960) and dimensions(thumbnail) == (480, 360)  # both sizes, JPEG
    chosen = media.custom_poster_dir(config.media_dir, ready)
    assert await read_stored(services, chosen / media.POSTER_NAME) == poster  # kept for later versions
    assert await read_stored(services, chosen / media.THUMBNAIL_NAME) == thumbnail
    if services.storage.is_local:  # (serving images from a bucket: delivery's part of issue 21)
        served = await client.get(urls["poster_url"].removeprefix(config.public_url))
        assert served.status == 200 and served.body == poster
        thumb = await client.get(urls["thumbnail_url"].removeprefix(config.public_url))
        assert thumb.body == thumbnail


@pytest.mark.gen_test(timeout=60)
async def test_webp_and_jpeg_are_taken_too(client, ready, tmp_path):
    for name in ("p.jpg", "p.webp"):
        answer = await send_image(client, ready, image(tmp_path, name, "320x240"), name)
        assert answer.status == 200, (name, answer.body)


@pytest.mark.gen_test(timeout=60)
async def test_hostile_images_are_clean_400s_and_change_nothing(client, ready, config, services, tmp_path):
    version = await live_version(services, ready)
    before = await live_images(services, config, ready, version)
    png = image(tmp_path, "p.png", "64x64")
    cases = {
        "text": b"just some words, not an image",
        "gif": image(tmp_path, "p.gif", "64x64"),
        "truncated png": png[:40],
        "png magic, garbage after": png[:8] + b"\x00" * 500,
        "too wide": image(tmp_path, "wide.png", "8200x8", "-pix_fmt", "gray"),
        "empty": b"",
    }
    for what, data in cases.items():
        answer = await send_image(client, ready, data)
        assert answer.status == 400, (what, answer.body)
        assert "file" in answer.json(), what
    assert await live_images(services, config, ready, version) == before
    assert await stored_keys(services, config, media.custom_poster_dir(config.media_dir, ready)) == []
    assert not media.custom_poster_dir(config.media_dir, ready).exists()


@pytest.mark.gen_test(timeout=60)
async def test_an_image_over_the_cap_is_413(client, ready, tmp_path):
    big = image(tmp_path, "p.png", "64x64") + b"\x00" * (10 * 1024 * 1024)
    answer = await send_image(client, ready, big)
    assert answer.status == 413


@pytest.mark.gen_test(timeout=60)
async def test_only_the_owner_or_an_admin_may_change_the_poster(client, new_client, make_user, make_admin, ready,
                                                              tmp_path):
    png = image(tmp_path, "p.png", "64x64")
    stranger = new_client()
    await make_user("stranger@example.com", log_in=False)
    await login(stranger, "stranger@example.com", PASSWORD)
    assert (await send_image(stranger, ready, png)).status == 404
    assert (await stranger.fetch("PUT", f"/api/video/{ready}/poster/frame/", {"time": 1})).status == 404
    anonymous = new_client()
    assert (await send_image(anonymous, ready, png)).status == 401
    admin = new_client()
    await make_admin(admin)
    assert (await send_image(admin, ready, png)).status == 200
    not_multipart = await client.fetch("POST", f"/api/video/{ready}/poster/", {"file": "x"})
    assert not_multipart.status == 415


@pytest.mark.gen_test(timeout=60)
async def test_the_frame_at_a_chosen_time_becomes_the_poster(client, ready, config, services):
    version = await live_version(services, ready)
    before = await live_images(services, config, ready, version)
    answer = await client.fetch("PUT", f"/api/video/{ready}/poster/frame/", {"time": 4.5})
    assert answer.status == 200, answer.body
    poster, thumbnail = await live_images(services, config, ready, version)
    assert poster != before[0] and thumbnail != before[1]
    assert dimensions(poster) == (640, 360) and max(dimensions(thumbnail)) == 480
    other = await client.fetch("PUT", f"/api/video/{ready}/poster/frame/", {"time": 0.5})
    assert other.status == 200
    assert (await live_images(services, config, ready, version))[0] != poster  # another frame, another picture
    for bad in ({"time": -1}, {"time": "3"}, {"time": True}, {}, {"time": 60}, {"time": 1e308}):
        refused = await client.fetch("PUT", f"/api/video/{ready}/poster/frame/", bad)
        assert refused.status == 400, (bad, refused.body)
        assert "time" in refused.json()


@pytest.mark.slow
@pytest.mark.gen_test(timeout=180)
async def test_a_chosen_poster_survives_a_re_transcode(client, new_client, make_admin, ready, config, services,
                                                        runner, small_clip, tmp_path, storage_backend):
    if storage_backend != "local":
        pytest.skip("transcoding into a bucket is the transcode part of issue 21 (see test_poster_kept_in_a_new_version_in_the_store)")
    source = media.source_path(config.media_dir, ready)
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(small_clip.read_bytes())
    assert (await send_image(client, ready, image(tmp_path, "p.png", "800x600"))).status == 200
    chosen = media.custom_poster_dir(config.media_dir, ready) / media.POSTER_NAME
    first = await live_version(services, ready)
    admin = new_client()
    await make_admin(admin)
    assert (await admin.post(f"/api/video/{ready}/retranscode/")).status == 202
    await wait_for_status(client, ready, "ready")
    second = await live_version(services, ready)
    assert second != first
    assert (await live_images(services, config, ready, second))[0] == chosen.read_bytes()
    assert dimensions(chosen.read_bytes()) == (800, 600)


@pytest.mark.gen_test(timeout=60)
async def test_poster_kept_in_a_new_version_in_the_store(client, ready, config, services, tmp_path):
    """The runner's before_publish step (posters.apply_custom) on a new version: the chosen
    pair read from the store (with a bucket the runner may be on any host) and written
    into the new version, there and in the run's folder on this host."""
    from videoflix.library import posters

    assert (await send_image(client, ready, image(tmp_path, "p.png", "800x600"))).status == 200
    chosen = media.custom_poster_dir(config.media_dir, ready)
    version_dir = media.version_dir(config.media_dir, ready, 7)
    version_dir.mkdir(parents=True)  # the run's folder (scratch with a bucket)
    (version_dir / media.POSTER_NAME).write_bytes(b"the run's own frame")
    await posters.apply_custom(config, services, ready, version_dir)
    wanted = await read_stored(services, chosen / media.POSTER_NAME)
    assert dimensions(wanted) == (800, 600)
    assert await read_stored(services, version_dir / media.POSTER_NAME) == wanted
    assert (version_dir / media.POSTER_NAME).read_bytes() == wanted
    assert await read_stored(services, version_dir / media.THUMBNAIL_NAME) == await read_stored(
        services, chosen / media.THUMBNAIL_NAME)
