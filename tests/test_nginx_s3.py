"""The shipped nginx site with media in a bucket (README "Object storage", "Serving from the bucket"):
nginx fetches the files a media token opens from the S3 endpoint itself, signed with
SigV4 in njs (deploy/s3-sign.js), in 1 MiB slices kept in its proxy_cache, so Videoflix
carries no segment bytes. Real nginx (tests/nginx_site.py), the real SeaweedFS bucket.
"""
from __future__ import annotations

import asyncio
import dataclasses
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urljoin

import pytest
from test_media_tokens import IMMUTABLE, app_requests, make_owner_id, tokened_folder, viewer

from videoflix.accounts import tokens
from videoflix.delivery import storefiles

import nginx_site
from helpers import publish_ladder


@pytest.fixture
def storage_backend():
    return "s3"


@pytest.fixture
def config(config):
    return dataclasses.replace(config, x264_preset="ultrafast")


@pytest.fixture
def s3_front(app, config, http_port, io_loop, new_client):
    """nginx running deploy/nginx.conf with the app's bucket settings: (base URL, process)."""
    from videoflix.platform.embedded import free_port

    port = free_port()
    prefix = Path(tempfile.mkdtemp(prefix="videoflix-nginx-s3-"))
    prefix.chmod(0o755)
    s3 = {"storage": config.storage, "endpoint": config.s3_endpoint, "region": config.s3_region,
          "access_key": config.s3_access_key, "secret_key": config.s3_secret_key}
    proc = nginx_site.start(prefix / "nginx", upstream_port=http_port, listen_port=port,
                            media_dir=config.media_dir, media_key=tokens.media_key(config.secret_key), s3=s3)
    base = f"http://127.0.0.1:{port}"

    async def started() -> None:
        probe = new_client()
        probe.base_url = base
        for _ in range(200):
            try:
                await probe.get("/api/health/")
                return
            except ConnectionRefusedError:
                assert proc.poll() is None, proc.stderr.read().decode()
                await asyncio.sleep(0.05)
        raise AssertionError("nginx did not start")

    io_loop.run_sync(started)
    yield base, proc, prefix / "nginx" / "s3-cache"
    nginx_site.stop(proc)
    shutil.rmtree(prefix, ignore_errors=True)


@pytest.mark.gen_test(timeout=180)
async def test_nginx_sends_tokened_segments_from_the_bucket_with_ranges_and_asks_videoflix_nothing_warm(
        s3_front, new_client, make_user, services, config, small_ladder):
    base, proc, slices = s3_front
    owner = await viewer(new_client, make_user, base, "owner@example.com")
    owner_id = await make_owner_id(services, "owner@example.com")
    video_id = await publish_ladder(services, config, owner_id, *small_ladder, visibility="private")
    assert not (Path(config.media_dir) / str(video_id)).exists()  # in the bucket only
    folder = await tokened_folder(owner, video_id)
    cookieless = new_client()
    cookieless.base_url = base
    path = folder + "480p/seg_00000.ts"
    expected = (small_ladder[0] / "480p" / "seg_00000.ts").read_bytes()
    stored = await services.storage.head(Path(config.media_dir) / str(video_id) / "v1" / "480p" / "seg_00000.ts")

    first = await cookieless.get(path)
    assert first.status == 200 and first.body == expected, (first.status, first.body[:300])
    assert first.headers["Cache-Control"] == IMMUTABLE
    assert first.headers["Content-Type"] == "video/mp2t"
    assert first.headers["X-Content-Type-Options"] == "nosniff"
    assert first.headers["ETag"] == stored.etag  # the bucket's, as Videoflix's own answer says
    assert "X-Request-ID" not in first.headers  # nginx's answer, not Videoflix's
    assert len(storefiles.hot_cache(config, services)) == 0  # no segment byte went through Videoflix
    ranged = await cookieless.get(path, headers={"Range": "bytes=100-199"})
    assert ranged.status == 206 and ranged.body == expected[100:200]
    assert ranged.headers["Content-Range"] == f"bytes 100-199/{len(expected)}"
    tail = await cookieless.get(path, headers={"Range": "bytes=-500"})
    assert tail.status == 206 and tail.body == expected[-500:]
    again = await cookieless.get(path, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304 and again.body == b""
    for name, kind in (("thumbs/sprite_000.jpg", "image/jpeg"), ("thumbs/thumbnails.vtt", "text/vtt")):
        response = await cookieless.get(folder + name)
        assert response.status == 200 and response.headers["Content-Type"].startswith(kind), name
        assert response.body == (small_ladder[0] / name).read_bytes(), name
    missing = await cookieless.get(folder + "480p/seg_00077.ts")
    assert (missing.status, missing.json()) == (404, {"detail": "Not found."})
    # Playlists come from Videoflix, from the bucket too.
    playlist = await cookieless.get(folder + "480p/index.m3u8")
    assert playlist.status == 200 and "X-Request-ID" in playlist.headers
    assert playlist.body == (small_ladder[0] / "480p" / "index.m3u8").read_bytes()

    # The warm path asks Videoflix nothing (at most one check as the cached verdict runs out),
    # and the bucket nothing either: the slices are in nginx's cache.
    assert any(p.is_file() for p in slices.rglob("*"))
    before = app_requests(services)
    for _ in range(30):
        response = await cookieless.get(path)
        assert response.status == 200 and response.body == expected
    assert app_requests(services) - before <= 1
    # A forged token is refused by nginx before anything is fetched.
    forged = folder.replace("/api/media/", "/api/media/x", 1)
    assert (await cookieless.get(forged + "480p/seg_00000.ts")).status == 403


@pytest.mark.gen_test(timeout=180)
@pytest.mark.parametrize("carrier", ["query", "header"])
async def test_nginx_sends_carried_token_files_from_the_bucket(
        carrier, app, config, http_port, io_loop, new_client, make_user, services, small_ladder, tmp_path):
    """The query and header forms of the token (VIDEOFLIX_MEDIA_TOKEN_FORM) open the same
    files from the bucket, and playlists from the bucket carry the query form's token."""
    from test_media_token_forms import FORMS, get_carrying, handed_out, uri_lines

    from videoflix.platform.embedded import free_port

    form = FORMS[carrier]
    served = dataclasses.replace(config, media_token_form=form)
    app.settings["config"] = served
    port = free_port()
    prefix = Path(tempfile.mkdtemp(prefix="videoflix-nginx-s3-"))
    prefix.chmod(0o755)
    s3 = {"storage": config.storage, "endpoint": config.s3_endpoint, "region": config.s3_region,
          "access_key": config.s3_access_key, "secret_key": config.s3_secret_key}
    proc = nginx_site.start(prefix / "nginx", upstream_port=http_port, listen_port=port, media_dir=config.media_dir,
                            media_key=tokens.media_key(config.secret_key), token_form=str(form), s3=s3)
    base = f"http://127.0.0.1:{port}"
    try:
        probe = new_client()
        probe.base_url = base
        for _ in range(200):
            try:
                await probe.get("/api/health/")
                break
            except ConnectionRefusedError:
                assert proc.poll() is None, proc.stderr.read().decode()
                await asyncio.sleep(0.05)
        owner = await viewer(new_client, make_user, base, "owner@example.com")
        owner_id = await make_owner_id(services, "owner@example.com")
        video_id = await publish_ladder(services, served, owner_id, *small_ladder, visibility="private")
        handed = await handed_out(owner, video_id, served)
        cookieless = new_client()
        cookieless.base_url = base
        path = handed.folder + "480p/seg_00000.ts"
        expected = (small_ladder[0] / "480p" / "seg_00000.ts").read_bytes()
        first = await get_carrying(cookieless, form, path, handed.token)
        assert first.status == 200 and first.body == expected
        assert "X-Request-ID" not in first.headers  # nginx's answer, from the bucket
        ranged = await get_carrying(cookieless, form, path, handed.token, {"Range": "bytes=100-199"})
        assert ranged.status == 206 and ranged.body == expected[100:200]
        playlist = await get_carrying(cookieless, form, handed.folder + "480p/index.m3u8", handed.token)
        assert playlist.status == 200
        assert (f"?token={handed.token}" in playlist.body.decode()) == (carrier == "query")
        target = urljoin(handed.folder + "480p/index.m3u8", uri_lines(playlist.body.decode())[-1])
        headers = {form.name: handed.token} if carrier == "header" else {}
        last = await cookieless.get(target, headers=headers)
        assert last.status == 200 and last.body == (small_ladder[0] / "480p" / target.rsplit("/", 1)[1].split("?")[0]).read_bytes()
        assert (await get_carrying(cookieless, form, path, handed.token[:-2] + "xx")).status == 403
        assert (await get_carrying(cookieless, form, path, None)).status in (401, 403)
    finally:
        nginx_site.stop(proc)
        shutil.rmtree(prefix, ignore_errors=True)
