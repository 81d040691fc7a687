"""Private images are private (issue 8, item 2; CWE-639, CWE-200).

A private video's thumbnail and poster at /media/{thumbnail,poster}/<id>.jpg are for its
owner and admins only (access cookie or Bearer); everyone else gets the 404 of a missing
video. The catalog and the detail give those who may see the video an unguessable keyed
URL that works in an <img> without cookies. Public videos' images stay public and
cacheable by anyone. Served from MEDIA_DIR and from a real SeaweedFS bucket (STORAGE_BACKENDS).
"""
from __future__ import annotations

import json
import subprocess

import pytest

from videoflix.accounts import tokens
from videoflix.platform import media
from videoflix.platform.db import cursor
from videoflix.tables import videos

from helpers import login
from store_helpers import STORAGE_BACKENDS

KINDS = (("thumbnail", "thumbnail.jpg"), ("poster", "poster.jpg"))
ORIGIN = "http://127.0.0.1:5500"


@pytest.fixture(params=STORAGE_BACKENDS)
def storage_backend(request):
    return request.param


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    """A real thumbnail and poster made by ffmpeg."""
    out = tmp_path_factory.mktemp("images")
    for name, size in (("thumbnail.jpg", "480x270"), ("poster.jpg", "1280x720")):
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}",
                        "-frames:v", "1", str(out / name)], check=True)
    return {name: (out / name).read_bytes() for _, name in KINDS}


@pytest.fixture
def make_video(services, config, jpegs):
    """A ready video row of `owner_id` with its thumbnail and poster in place."""
    async def make(owner_id: int, visibility: str, ready: bool = True) -> int:
        async with cursor(services.pool) as cur:
            video_id = await videos.insert_video(cur, owner_id=owner_id, title="Holiday", description="",
                                                 category="Home", visibility=visibility, status="queued")
            if ready:
                version = (await videos.mark_processing(cur, video_id)).building_version
                assert await videos.mark_ready(cur, video_id, version=version, duration=5.0, width=1280, height=720,
                                               fps=25.0, has_audio=False, resolutions=["720p"])
        directory = media.version_dir(config.media_dir, video_id, 1)  # its first (and live) version
        for name, data in jpegs.items():
            await services.storage.write_bytes(directory / name, data)  # MEDIA_DIR, or the bucket
        return video_id
    return make


async def get(client, path: str, *, headers: dict | None = None, cookies: bool = True):
    all_headers = dict(headers or {})
    if cookies and client.cookies:
        all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    return await client.http.fetch(client.base_url + path, headers=all_headers, raise_error=False,
                                   follow_redirects=False, request_timeout=60)


def bearer(client) -> dict:
    return {"Authorization": f"Bearer {client.cookies['access_token']}"}


def assert_404(response) -> None:
    assert response.code == 404, (response.code, response.body[:200])
    assert json.loads(response.body) == {"detail": "Not found."}
    assert response.headers["Cache-Control"] == "no-store"


@pytest.fixture
def people(client, new_client, make_user, make_admin, io_loop):
    """owner (cookie browser), another user, an admin and an anonymous browser."""
    owner = io_loop.run_sync(lambda: make_user("owner@example.com"))
    other = new_client()
    io_loop.run_sync(lambda: _register(other, make_user))
    admin = new_client()
    io_loop.run_sync(lambda: make_admin(admin))
    return {"owner_id": owner["id"], "owner": client, "other": other, "admin": admin, "anonymous": new_client()}


async def _register(browser, make_user):
    # make_user logs in on the shared `client`; log the other user in on its own browser.
    await make_user("other@example.com", log_in=False)
    await login(browser, "other@example.com")


# --- the plain URL of a private video ---------------------------------------------------

@pytest.mark.gen_test
@pytest.mark.parametrize("kind, name", KINDS)
async def test_private_image_is_404_for_anonymous_and_other_users(people, make_video, kind, name):
    video_id = await make_video(people["owner_id"], "private")
    path = f"/media/{kind}/{video_id}.jpg"
    assert_404(await get(people["anonymous"], path))
    assert_404(await get(people["other"], path))
    assert_404(await get(people["other"], path, headers=bearer(people["other"]), cookies=False))
    # The same answer as for an id that does not exist at all.
    assert_404(await get(people["other"], f"/media/{kind}/{video_id + 1000}.jpg"))


@pytest.mark.gen_test
@pytest.mark.parametrize("kind, name", KINDS)
async def test_private_image_is_served_to_owner_and_admin_by_cookie_or_bearer(people, make_video, jpegs,
                                                                             kind, name):
    video_id = await make_video(people["owner_id"], "private")
    path = f"/media/{kind}/{video_id}.jpg"
    for who in ("owner", "admin"):
        for response in (await get(people[who], path),
                         await get(people[who], path, headers=bearer(people[who]), cookies=False)):
            assert response.code == 200, (who, response.code, response.body[:200])
            assert response.body == jpegs[name]
            assert response.headers["Content-Type"] == "image/jpeg"
            assert response.headers["Cache-Control"] == "private, max-age=3600"
            assert "Cookie" in response.headers["Vary"] and "Authorization" in response.headers["Vary"]


@pytest.mark.gen_test
async def test_private_image_with_a_forged_or_expired_token_is_401(people, make_video, config):
    video_id = await make_video(people["owner_id"], "private")
    forged = people["owner"].cookies["access_token"][:-4] + "AAAA"
    # The owner's own token, but expired (signed with the server's key).
    expired, _ = tokens.make_session_token(config.secret_key, user_id=people["owner_id"], kind="access",
                                           now=1_000_000, ttl_seconds=60, is_admin=False, token_version=0,
                                           session_id=tokens.new_session_id())
    for token in (forged, expired, "not-a-jwt"):
        response = await get(people["anonymous"], f"/media/thumbnail/{video_id}.jpg",
                             headers={"Authorization": f"Bearer {token}"}, cookies=False)
        assert response.code == 401
        assert json.loads(response.body) == {"detail": "Invalid or expired token."}
    # No token at all is the 404 of a missing video.
    assert_404(await get(people["anonymous"], f"/media/thumbnail/{video_id}.jpg"))


@pytest.mark.gen_test
async def test_not_ready_private_video_has_no_image_even_for_its_owner(people, make_video):
    video_id = await make_video(people["owner_id"], "private", ready=False)
    assert_404(await get(people["owner"], f"/media/thumbnail/{video_id}.jpg"))


# --- the keyed URL the catalog hands out --------------------------------------------------

@pytest.mark.gen_test
async def test_catalog_and_detail_give_the_owner_a_keyed_url_that_works_without_cookies(
        people, make_video, config, jpegs):
    video_id = await make_video(people["owner_id"], "private")
    key = tokens.image_key(config.secret_key, video_id)
    expected = f"{config.public_url}/media/thumbnail/{video_id}-{key}.jpg"
    catalog = (await people["owner"].get("/api/video/")).json()
    assert [item["thumbnail_url"] for item in catalog] == [expected]
    assert (await people["owner"].get(f"/api/video/{video_id}/")).json()["thumbnail_url"] == expected
    admin_catalog = (await people["admin"].get("/api/video/")).json()
    assert [item["thumbnail_url"] for item in admin_catalog] == [expected]
    # An <img> without cookies (another site, an expired session) still loads it.
    for kind, name in KINDS:
        response = await get(people["anonymous"], f"/media/{kind}/{video_id}-{key}.jpg")
        assert response.code == 200 and response.body == jpegs[name]
        assert response.headers["Cache-Control"] == "private, max-age=604800"
    # Listed nowhere for anyone else.
    assert (await people["other"].get("/api/video/")).json() == []
    assert (await people["other"].get(f"/api/video/{video_id}/")).status == 404


@pytest.mark.gen_test
async def test_wrong_keys_are_404(people, make_video, config):
    mine = await make_video(people["owner_id"], "private")
    theirs = await make_video(people["owner_id"], "private")
    key = tokens.image_key(config.secret_key, mine)
    flipped = key[:-1] + ("A" if key[-1] != "A" else "B")
    other_secret = tokens.image_key(config.secret_key + "x", mine)
    for path in (f"/media/thumbnail/{mine}-{flipped}.jpg",
                 f"/media/thumbnail/{mine}-{other_secret}.jpg",
                 f"/media/thumbnail/{theirs}-{key}.jpg",  # another video's key
                 f"/media/thumbnail/{mine}-{key[:-1]}.jpg",  # too short
                 f"/media/thumbnail/{mine}-{key}A.jpg",  # too long
                 f"/media/thumbnail/{mine}-.jpg",
                 f"/media/thumbnail/{mine}-{key}.png",
                 f"/media/thumbnail/{mine}-{key.lower()}.jpg" if key != key.lower() else "/media/thumbnail/x.jpg",
                 f"/media/poster/{mine}-{key}%2F.jpg"):
        assert_404(await get(people["anonymous"], path))


@pytest.mark.gen_test
async def test_keyed_url_dies_with_the_video(people, make_video, config):
    video_id = await make_video(people["owner_id"], "private")
    key = tokens.image_key(config.secret_key, video_id)
    assert (await get(people["anonymous"], f"/media/thumbnail/{video_id}-{key}.jpg")).code == 200
    assert (await people["owner"].fetch("DELETE", f"/api/video/{video_id}/")).status == 204
    assert_404(await get(people["anonymous"], f"/media/thumbnail/{video_id}-{key}.jpg"))


# --- public videos stay public ----------------------------------------------------------

@pytest.mark.gen_test
@pytest.mark.parametrize("kind, name", KINDS)
async def test_public_image_is_public_and_cacheable_by_anyone(people, make_video, config, jpegs, kind, name):
    video_id = await make_video(people["owner_id"], "public")
    for who in ("anonymous", "other", "owner"):
        response = await get(people[who], f"/media/{kind}/{video_id}.jpg", headers={"Origin": ORIGIN})
        assert response.code == 200 and response.body == jpegs[name]
        assert response.headers["Cache-Control"] == "public, max-age=604800"
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        again = await get(people[who], f"/media/{kind}/{video_id}.jpg",
                          headers={"If-None-Match": response.headers["Etag"]})
        assert again.code == 304
    catalog = (await people["other"].get("/api/video/")).json()
    assert [item["thumbnail_url"] for item in catalog] == [f"{config.public_url}/media/thumbnail/{video_id}.jpg"]
