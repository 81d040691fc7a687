"""Media tokens (issue 20; API.md §7; README "Edge delivery"): the master hands out each
version's folder under a signed, directory-scoped token, checked by the embedded server
and by the shipped nginx site (njs + a cached auth_request) by the same rule.

The nginx tests run real nginx with deploy/nginx.conf and deploy/media-token.js
(tests/nginx_site.py) in front of the test's server, on a real transcode's files.
"""
from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import urljoin

import pytest

from videoflix.accounts import tokens
from videoflix.platform import metrics
from videoflix.platform.db import cursor

import nginx_site
from helpers import link_from_mail, login, publish_ladder
from store_helpers import STORAGE_BACKENDS

TOKEN_FOLDER = re.compile(r"^/api/media/([^/]+)/([0-9]+)/(v[0-9]+)/")
# The embedded server's token path from MEDIA_DIR and from a real SeaweedFS bucket (the
# nginx tests' site reads the disk here; tests/test_nginx_s3.py has it read the bucket).
BOTH_STORES = pytest.mark.parametrize("storage_backend", STORAGE_BACKENDS)
REVOCATION_SECONDS = 10.0  # the bound (README "Edge delivery")
POLL_SECONDS = 0.2
IMMUTABLE = "private, max-age=31536000, immutable"


@pytest.fixture
def config(config):
    return dataclasses.replace(config, x264_preset="ultrafast")


def folder_of(master: str) -> str:
    """The tokened folder of the master's first variant: /api/media/<token>/<id>/v<N>/."""
    uri = next(line for line in master.splitlines() if line and not line.startswith("#"))
    match = TOKEN_FOLDER.match(uri)
    assert match, uri
    return match.group(0)


async def tokened_folder(client, video_id: int) -> str:
    response = await client.get(f"/api/video/{video_id}/master.m3u8")
    assert response.status == 200, response.body
    assert response.headers["Cache-Control"] == "private, no-cache"  # never in a shared cache
    return folder_of(response.body.decode())


def app_requests(services) -> float:
    """Requests Videoflix has answered so far (its own metrics)."""
    registry = metrics.of(services).registry
    return sum(sample.value for family in registry.collect() if family.name == "videoflix_http_requests"
               for sample in family.samples if sample.name.endswith("_total"))


def other_token(config, folder: str, **changes) -> str:
    """`folder` with its token re-made with `changes` (expiry, scope...), signed by `secret`."""
    token, video_id, version = TOKEN_FOLDER.match(folder).groups()
    fields = token.split(".")
    claims = dict(user_id=int(fields[0], 36), token_version=int(fields[1], 36), expires_at=int(fields[2], 36),
                  is_admin=fields[3] == "1", session_id=fields[4], video_id=int(video_id), version=int(version[1:]))
    secret = changes.pop("secret", config.secret_key)
    claims.update(changes)
    made = tokens.make_media_token(secret, **claims)
    return f"/api/media/{made}/{claims['video_id']}/v{claims['version']}/"


def forged_folders(config, folder: str, video_id: int, other_id: int) -> dict[str, str]:
    """`folder` (/api/media/<token>/<id>/v1/) under tokens that must not open it: what each is."""
    token = TOKEN_FOLDER.match(folder).group(1)
    return {
        "tampered": folder.replace(token, tampered(token)),
        "truncated": folder.replace(token, token[:-5]),
        "admin flag forged": folder.replace(token, token.replace(".0.", ".1.", 1)),
        "expired": other_token(config, folder, expires_at=int(time.time()) - 1),
        "other video": folder.replace(f"/{video_id}/v1/", f"/{other_id}/v1/"),
        "other version": folder.replace(f"/{video_id}/v1/", f"/{video_id}/v2/"),
        "another key": other_token(config, folder, secret="another-secret-key-long-enough-for-hs256!"),
    }


def tampered(token: str) -> str:
    """The token with the last character of its MAC changed."""
    return token[:-1] + ("A" if token[-1] != "A" else "B")


# --- the embedded server ------------------------------------------------------------------

@BOTH_STORES
@pytest.mark.gen_test(timeout=120)
async def test_master_hands_out_a_tokened_folder_whose_files_need_no_cookie(
        client, new_client, make_user, services, config, small_ladder):
    owner = await make_user("owner@example.com")
    video_id = await publish_ladder(services, config, owner["id"], *small_ladder, visibility="private")
    master = (await client.get(f"/api/video/{video_id}/master.m3u8")).body.decode()
    folder = folder_of(master)
    assert folder.endswith(f"/{video_id}/v1/")
    # Every URI of the master is under that one folder (variants, I-frames, nothing else).
    uris = [line for line in master.splitlines() if line and not line.startswith("#")]
    uris += re.findall(r'URI="([^"]+)"', master)
    assert uris and all(uri.startswith(folder) for uri in uris), uris

    cookieless = new_client()
    playlist = await cookieless.get(folder + "480p/index.m3u8")
    assert playlist.status == 200, playlist.body
    segment_names = [line for line in playlist.body.decode().splitlines() if line.endswith(".ts")]
    assert segment_names and all("/" not in name for name in segment_names)  # relative: they inherit it
    segment = await cookieless.get(urljoin(folder + "480p/index.m3u8", segment_names[0]))
    assert segment.status == 200 and segment.headers["Content-Type"] == "video/MP2T"
    assert segment.headers["Cache-Control"] == IMMUTABLE
    on_disk = small_ladder[0] / "480p" / segment_names[0]  # what was published (to MEDIA_DIR or the bucket)
    assert segment.body == on_disk.read_bytes()
    for tail in ("480p/iframes.m3u8", "thumbs/thumbnails.vtt", "thumbs/sprite_000.jpg"):
        assert (await cookieless.get(folder + tail)).status == 200, tail
    ranged = await cookieless.get(folder + "480p/" + segment_names[0], headers={"Range": "bytes=0-99"})
    assert ranged.status == 206 and ranged.body == on_disk.read_bytes()[:100]


@BOTH_STORES
@pytest.mark.gen_test(timeout=120)
async def test_bad_tokens_are_refused_with_403_by_the_embedded_server(
        client, new_client, make_user, services, config, small_ladder):
    owner = await make_user("owner@example.com")
    video_id = await publish_ladder(services, config, owner["id"], *small_ladder, visibility="private")
    other_id = await publish_ladder(services, config, owner["id"], *small_ladder, visibility="private")
    folder = await tokened_folder(client, video_id)
    token = TOKEN_FOLDER.match(folder).group(1)
    cookieless = new_client()
    good = await cookieless.get(folder + "480p/seg_00000.ts")
    assert good.status == 200
    bad = {
        **forged_folders(config, folder, video_id, other_id),
        "empty": folder.replace(token, "."),
        "long": folder.replace(token, token + "0" * 200),
    }
    for what, path in bad.items():
        response = await cookieless.get(path + "480p/seg_00000.ts")
        assert response.status == 403, (what, response.status)
        assert response.json() == {"detail": "Invalid or expired media token."}, what
    # A token opens its version's folder, nothing above or beside it.
    for tail in ("../master.m3u8", "master.m3u8", "480p/../../v1/480p/seg_00000.ts", "480p/seg_00000.ts%00",
                 "480p/..%2F..%2Fladder.json", "ladder.json", "480p/seg_0.ts", "2160p/index.m3u8"):
        response = await cookieless.get(folder + tail)
        assert response.status in (403, 404), (tail, response.status)
        assert b"#EXTM3U" not in response.body and b"variants" not in response.body, tail
    # The check nginx asks: 204 for the good one, 403 for the rest.
    assert (await cookieless.get(folder)).status == 204
    assert (await cookieless.get(bad["tampered"])).status == 403


@pytest.mark.gen_test(timeout=120)
async def test_warm_tokened_segments_take_the_lane_with_the_handlers_answer(
        client, new_client, make_user, services, config, small_ladder):
    from videoflix.web import segment_lane

    owner = await make_user("owner@example.com")
    video_id = await publish_ladder(services, config, owner["id"], *small_ladder, visibility="private")
    folder = await tokened_folder(client, video_id)
    cookieless = new_client()
    before = segment_lane.answered
    first = await cookieless.get(folder + "480p/seg_00000.ts")  # the handler: caches warm up
    assert first.status == 200 and segment_lane.answered == before
    second = await cookieless.get(folder + "480p/seg_00000.ts")
    assert segment_lane.answered == before + 1
    assert (second.status, second.body) == (200, first.body)
    drop = {"Date", "X-Request-Id"}
    assert {k: v for k, v in second.headers.get_all() if k not in drop} == {
        k: v for k, v in first.headers.get_all() if k not in drop}
    # A bad token is still the handler's to refuse, warm or not.
    token = TOKEN_FOLDER.match(folder).group(1)
    bad = await cookieless.get(folder.replace(token, tampered(token))
                               + "480p/seg_00000.ts")
    assert bad.status == 403 and segment_lane.answered == before + 1
    expired = await cookieless.get(other_token(config, folder, expires_at=int(time.time()) - 1) + "480p/seg_00000.ts")
    assert expired.status == 403 and segment_lane.answered == before + 1


@BOTH_STORES
@pytest.mark.gen_test(timeout=120)
async def test_a_logout_stops_the_embedded_servers_segments_at_once(
        client, new_client, make_user, services, config, small_ladder):
    owner = await make_user("owner@example.com")
    video_id = await publish_ladder(services, config, owner["id"], *small_ladder, visibility="private")
    folder = await tokened_folder(client, video_id)
    cookieless = new_client()
    assert (await cookieless.get(folder + "480p/seg_00000.ts")).status == 200
    assert (await client.post("/api/logout/")).status == 200
    assert (await cookieless.get(folder + "480p/seg_00000.ts")).status == 403


# --- behind the shipped nginx site ----------------------------------------------------------

@pytest.fixture
def front(app, config, http_port, tmp_path, io_loop, new_client):
    """nginx running deploy/nginx.conf in front of the app, and a media folder its
    workers can read: (base URL, nginx process, the config the app now runs with)."""
    from videoflix.platform.embedded import free_port

    media_root = Path(tempfile.mkdtemp(prefix="videoflix-tokens-"))
    media_root.chmod(0o755)  # nginx's workers run as another user
    served = dataclasses.replace(config, media_dir=str(media_root))
    app.settings["config"] = served
    port = free_port()
    prefix = Path(tempfile.mkdtemp(prefix="videoflix-nginx-"))  # (workers write their cache there)
    prefix.chmod(0o755)
    proc = nginx_site.start(prefix / "nginx", upstream_port=http_port, listen_port=port,
                            media_dir=str(media_root), media_key=tokens.media_key(config.secret_key),
                            token_form=str(config.media_token_form))  # (the site says what the app says)
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
    yield base, proc, served
    nginx_site.stop(proc)
    shutil.rmtree(media_root, ignore_errors=True)
    shutil.rmtree(prefix, ignore_errors=True)


def readable(root: str) -> None:
    for path in Path(root).rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


async def viewer(new_client, make_user, base: str, email: str):
    browser = new_client()
    browser.base_url = base
    await make_user(email, log_in=False)
    await login(browser, email)
    return browser


async def published(services, served, owner_id: int, small_ladder, visibility: str = "public") -> int:
    video_id = await publish_ladder(services, served, owner_id, *small_ladder, visibility=visibility)
    readable(served.media_dir)
    return video_id


@pytest.mark.gen_test(timeout=180)
async def test_nginx_sends_tokened_files_itself_with_ranges_304s_and_immutable(
        front, new_client, make_user, services, small_ladder):
    base, proc, served = front
    owner = await viewer(new_client, make_user, base, "owner@example.com")
    owner_id = await make_owner_id(services, "owner@example.com")
    video_id = await published(services, served, owner_id, small_ladder, "private")
    folder = await tokened_folder(owner, video_id)
    cookieless = new_client()
    cookieless.base_url = base
    path = folder + "480p/seg_00000.ts"
    on_disk = (Path(served.media_dir) / str(video_id) / "v1" / "480p" / "seg_00000.ts").read_bytes()
    first = await cookieless.get(path)
    assert first.status == 200 and first.body == on_disk
    assert first.headers["Cache-Control"] == IMMUTABLE
    assert first.headers["Content-Type"] == "video/mp2t"
    assert first.headers["X-Content-Type-Options"] == "nosniff"
    assert "X-Request-ID" not in first.headers  # nginx's own answer, not Videoflix's
    ranged = await cookieless.get(path, headers={"Range": "bytes=100-199"})
    assert ranged.status == 206 and ranged.body == on_disk[100:200]
    assert ranged.headers["Content-Range"] == f"bytes 100-199/{len(on_disk)}"
    again = await cookieless.get(path, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304 and again.body == b""
    for tail, kind in (("thumbs/sprite_000.jpg", "image/jpeg"), ("thumbs/thumbnails.vtt", "text/vtt")):
        response = await cookieless.get(folder + tail)
        assert response.status == 200 and response.headers["Content-Type"].startswith(kind), tail
    # Playlists come from Videoflix (which checks the same token).
    playlist = await cookieless.get(folder + "480p/index.m3u8")
    assert playlist.status == 200 and "X-Request-ID" in playlist.headers

    # The warm path asks Videoflix nothing: 30 segment GETs, at most one check between them
    # (the cached answer may just have run out).
    before = app_requests(services)
    for _ in range(30):
        assert (await cookieless.get(path)).status == 200
    assert app_requests(services) - before <= 1


@pytest.mark.gen_test(timeout=180)
async def test_nginx_refuses_bad_tokens_traversal_and_its_internal_locations(
        front, new_client, make_user, services, small_ladder):
    base, proc, served = front
    owner = await viewer(new_client, make_user, base, "owner@example.com")
    owner_id = await make_owner_id(services, "owner@example.com")
    video_id = await published(services, served, owner_id, small_ladder, "private")
    other_id = await published(services, served, owner_id, small_ladder, "private")
    folder = await tokened_folder(owner, video_id)
    cookieless = new_client()
    cookieless.base_url = base
    before = app_requests(services)
    forged = forged_folders(served, folder, video_id, other_id)
    for what, bad in forged.items():
        response = await cookieless.get(bad + "480p/seg_00000.ts")
        assert response.status == 403, (what, response.status)
        assert response.json() == {"detail": "Invalid or expired media token."}, what
        assert response.headers["Cache-Control"] == "no-store", what
    assert app_requests(services) == before  # njs refused them all: Videoflix never asked
    for tail in (f"480p/../../../{other_id}/v1/480p/seg_00000.ts", "480p/..%2F..%2Fladder.json", "ladder.json",
                 "480p/seg_00000.ts%00", "480p/seg_0.ts", "../../../../etc/passwd", "%2e%2e/%2e%2e/ladder.json",
                 "480p/./seg_00000.ts/", "thumbs/../ladder.json"):
        response = await cookieless.get(folder + tail)
        assert response.status in (400, 403, 404), (tail, response.status)
        assert b"root:" not in response.body and b"variants" not in response.body, tail
    for inside in ("/internal-media/1/v1/480p/seg_00000.ts", "/_videoflix_media_check",
                   f"/internal-media/{video_id}/v1/ladder.json"):
        assert (await cookieless.get(inside)).status == 404, inside


async def make_owner_id(services, email: str) -> int:
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT id FROM users WHERE email = %s", (email,))
        return (await cur.fetchone())["id"]


@pytest.mark.gen_test(timeout=240)
async def test_revocations_stop_nginxs_segments_within_ten_seconds(
        front, new_client, make_user, services, mailbox, small_ladder):
    """Logout, a password reset, a deactivation, a video made private, a video deleted:
    each stops its tokens' segments through nginx within REVOCATION_SECONDS."""
    base, proc, served = front
    owner = await viewer(new_client, make_user, base, "owner@example.com")
    owner_id = await make_owner_id(services, "owner@example.com")
    kept = await published(services, served, owner_id, small_ladder)  # stays public and watchable
    to_hide = await published(services, served, owner_id, small_ladder)
    to_delete = await published(services, served, owner_id, small_ladder)
    watchers = {name: await viewer(new_client, make_user, base, f"{name}@example.com")
                for name in ("logout", "reset", "deactivated", "hidden", "deleted", "control")}
    watched = {"logout": kept, "reset": kept, "deactivated": kept, "hidden": to_hide, "deleted": to_delete,
               "control": kept}
    segments = {}
    cookieless = new_client()
    cookieless.base_url = base
    for name, browser in watchers.items():
        segments[name] = await tokened_folder(browser, watched[name]) + "480p/seg_00000.ts"
        assert (await cookieless.get(segments[name])).status == 200, name  # checked and cached by nginx

    async def reset_password() -> None:
        mailbox.clear()
        await watchers["reset"].post("/api/password_reset/", {"email": "reset@example.com"})
        await services.mailer.drain()
        uid, token = link_from_mail(mailbox.messages[-1])
        body = {"new_password": "brand-new-pass-7", "confirm_password": "brand-new-pass-7"}
        assert (await watchers["reset"].post(f"/api/password_confirm/{uid}/{token}/", body)).status == 200

    async def deactivate() -> None:
        async with cursor(services.pool) as cur:
            await cur.execute("UPDATE users SET is_active = false WHERE email = 'deactivated@example.com'")

    async def logout() -> None:
        assert (await watchers["logout"].post("/api/logout/")).status == 200

    async def hide() -> None:
        assert (await owner.fetch("PATCH", f"/api/video/{to_hide}/", {"visibility": "private"})).status == 200

    async def delete() -> None:
        assert (await owner.fetch("DELETE", f"/api/video/{to_delete}/")).status == 204

    actions = {"logout": logout, "reset": reset_password, "deactivated": deactivate, "hidden": hide,
               "deleted": delete}
    done_at = {}
    for name, action in actions.items():
        await action()
        done_at[name] = time.monotonic()

    async def stops(name: str) -> float:
        deadline = done_at[name] + REVOCATION_SECONDS + 2
        while time.monotonic() < deadline:
            response = await cookieless.get(segments[name])
            # (A deleted video's files may be gone before the check runs out: 404.)
            if response.status == 403 or (name == "deleted" and response.status == 404):
                return time.monotonic() - done_at[name]
            assert response.status == 200, (name, response.status)
            await asyncio.sleep(POLL_SECONDS)
        return float("inf")

    took = dict(zip(actions, await asyncio.gather(*(stops(name) for name in actions))))
    print("revocation seconds:", {name: round(seconds, 2) for name, seconds in took.items()})
    assert all(seconds <= REVOCATION_SECONDS + POLL_SECONDS for seconds in took.values()), took
    # A viewer whom none of it concerns still watches.
    assert (await cookieless.get(segments["control"])).status == 200
