"""The media token's query and header forms (issue 20 item 4; VIDEOFLIX_MEDIA_TOKEN_FORM;
README "Edge delivery"): the master hands out /api/media/<id>/v<N>/ with the token in a
query parameter (on every URI, playlists and the thumbnails track rewritten per request) or
in a header, checked by the embedded server and by the shipped nginx site by the same rule
as the path form (tests/test_media_tokens.py), each form in every test here.
"""
from __future__ import annotations

import asyncio
import dataclasses
import gzip
import logging
import re
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from videoflix.accounts import tokens
from videoflix.platform.config import MediaTokenForm
from videoflix.web import segment_lane

from helpers import login, publish_ladder
from test_media_tokens import (  # noqa: F401  (front: a fixture, nginx running the shipped site)
    IMMUTABLE, REVOCATION_SECONDS, POLL_SECONDS, app_requests, front, make_owner_id, published, tampered, viewer)
from test_subtitles_api import post_subtitles

FORMS = {"query": MediaTokenForm("query", "token"), "header": MediaTokenForm("header", "X-Media-Token")}
BARE_FOLDER = re.compile(r"^(?:https?://[^/]+)?/api/media/([0-9]+)/(v[0-9]+)/")
REFUSED = {"detail": "Invalid or expired media token."}
VTT = b"WEBVTT\n\n00:00.500 --> 00:01.500\nfirst\n\n00:03.000 --> 00:05.000\nsecond\n"


@pytest.fixture(params=sorted(FORMS))
def form(request) -> MediaTokenForm:
    return FORMS[request.param]


@pytest.fixture
def config(config, form):
    return dataclasses.replace(config, x264_preset="ultrafast", media_token_form=form)


@dataclasses.dataclass
class Handed:
    """What a master handed out: the bare folder (/api/media/<id>/v<N>/) and the token."""

    folder: str
    token: str
    master: str


async def handed_out(client, video_id: int, config) -> Handed:
    form = config.media_token_form
    response = await client.get(f"/api/video/{video_id}/master.m3u8")
    assert response.status == 200, response.body
    assert response.headers["Cache-Control"] == "private, no-cache"
    master = response.body.decode()
    uris = [line for line in master.splitlines() if line and not line.startswith("#")]
    uris += re.findall(r'URI="([^"]+)"', master)
    folder = BARE_FOLDER.match(uris[0]).group(0)
    if form.carrier == "query":
        token = uris[0].rpartition(f"?{form.name}=")[2]
        assert all(uri.startswith(folder) and uri.endswith(f"?{form.name}={token}") for uri in uris), uris
        assert form.name not in response.headers
    else:
        token = response.headers[form.name]
        assert all(uri.startswith(folder) and "?" not in uri for uri in uris), uris
    assert f"/{video_id}/v1/" in folder
    tokens.read_media_token(config.secret_key, token, video_id=video_id, version=1, now=int(time.time()))
    return Handed(urlsplit(folder).path, token, master)


def carrying(form: MediaTokenForm, path: str, token: str | None, headers: dict | None = None):
    """(path, headers) of a GET of `path` carrying `token` in `form` (None: no token)."""
    headers = dict(headers or {})
    if token is None:
        return path, headers
    if form.carrier == "query":
        return f"{path}{'&' if '?' in path else '?'}{form.name}={token}", headers
    headers[form.name] = token
    return path, headers


async def get_carrying(client, form: MediaTokenForm, path: str, token: str | None, headers: dict | None = None):
    path, headers = carrying(form, path, token, headers)
    return await client.get(path, headers=headers)


def uri_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def forged_tokens(config, token: str, video_id: int) -> dict[str, str]:
    """Tokens that must not open /<video_id>/v1/ (what each is)."""
    fields = token.split(".")
    claims = dict(user_id=int(fields[0], 36), token_version=int(fields[1], 36), expires_at=int(fields[2], 36),
                  is_admin=fields[3] == "1", session_id=fields[4], video_id=video_id, version=1)

    def remade(secret: str = config.secret_key, **changes) -> str:
        return tokens.make_media_token(secret, **{**claims, **changes})

    return {
        "tampered": tampered(token),
        "truncated": token[:-5],
        "admin flag forged": token.replace(".0.", ".1.", 1),
        "expired": remade(expires_at=int(time.time()) - 1),
        "other video": remade(video_id=video_id + 1000),
        "other version": remade(version=2),
        "another key": remade("another-secret-key-long-enough-for-hs256!"),
    }


# --- the embedded server ------------------------------------------------------------------

@pytest.mark.gen_test(timeout=120)
async def test_master_hands_out_the_bare_folder_and_its_files_need_only_the_token(
        client, new_client, make_user, services, config, form, small_ladder):
    owner = await make_user("owner@example.com")
    video_id = await publish_ladder(services, config, owner["id"], *small_ladder, visibility="private")
    assert (await post_subtitles(client, video_id, "en.vtt", VTT, language="en")).status == 201
    handed = await handed_out(client, video_id, config)
    folder, token = handed.folder, handed.token
    cookieless = new_client()
    on_disk = Path(config.media_dir) / str(video_id) / "v1"

    playlist = await get_carrying(cookieless, form, folder + "480p/index.m3u8", token)
    assert playlist.status == 200, playlist.body
    assert playlist.headers["Cache-Control"] == IMMUTABLE  # private: per token under the query form
    segments = uri_lines(playlist.body.decode())
    plain = (on_disk / "480p" / "index.m3u8").read_text()
    if form.carrier == "query":
        assert segments == [f"{uri}?token={token}" for uri in uri_lines(plain)]
        assert playlist.body.decode().replace(f"?token={token}", "") == plain  # nothing else changes
    else:
        assert playlist.body.decode() == plain
    # Each URI, resolved as a player resolves it, opens its file with that token alone.
    first = urljoin(folder + "480p/index.m3u8", segments[0])
    segment = await cookieless.get(first, headers={form.name: token} if form.carrier == "header" else {})
    name = urlsplit(first).path.rsplit("/", 1)[1]
    assert segment.status == 200 and segment.body == (on_disk / "480p" / name).read_bytes()
    assert segment.headers["Cache-Control"] == IMMUTABLE and segment.headers["Content-Type"] == "video/MP2T"
    ranged = await get_carrying(cookieless, form, folder + f"480p/{name}", token, {"Range": "bytes=0-99"})
    assert ranged.status == 206 and ranged.body == segment.body[:100]

    # The I-frame playlist, the subtitles playlist and the thumbnails track carry the token
    # on every URI under the query form (they name segments, WebVTT segments and sprites).
    for tail in ("480p/iframes.m3u8", "subtitles/en/index.m3u8", "thumbs/thumbnails.vtt"):
        response = await get_carrying(cookieless, form, folder + tail, token)
        assert response.status == 200, (tail, response.status)
        text = response.body.decode()
        named = (re.findall(r"^(sprite_[0-9]{3}\.jpg[^#\s]*)#", text, re.M) if tail.endswith(".vtt")
                 else uri_lines(text))
        assert named, tail
        if form.carrier == "query":
            assert all(uri.endswith(f"?token={token}") for uri in named), (tail, named)
        else:
            assert not any("?" in uri for uri in named), (tail, named)
        target = urljoin(folder + tail, named[0])
        headers = {form.name: token} if form.carrier == "header" else {}
        assert (await cookieless.get(target, headers=headers)).status == 200, target
    # The master under the media token is not there (a token opens its version's folder).
    assert (await get_carrying(cookieless, form, f"/api/media/{video_id}/master.m3u8", token)).status in (403, 404)


@pytest.mark.gen_test(timeout=120)
async def test_a_rewritten_playlist_is_per_token_and_revalidates(
        client, new_client, make_user, services, config, form, small_ladder):
    owner = await make_user("owner@example.com")
    video_id = await publish_ladder(services, config, owner["id"], *small_ladder, visibility="public")
    first = await handed_out(client, video_id, config)
    second_viewer = new_client()
    await make_user("second@example.com", log_in=False)
    await login(second_viewer, "second@example.com")
    second = await handed_out(second_viewer, video_id, config)
    assert first.token != second.token
    cookieless = new_client()
    one = await get_carrying(cookieless, form, first.folder + "480p/index.m3u8", first.token)
    other = await get_carrying(cookieless, form, second.folder + "480p/index.m3u8", second.token)
    assert one.headers["Cache-Control"] == other.headers["Cache-Control"] == IMMUTABLE
    if form.carrier == "query":
        assert one.body != other.body and one.headers["ETag"] != other.headers["ETag"]
    else:
        assert one.body == other.body
    again = await get_carrying(cookieless, form, first.folder + "480p/index.m3u8", first.token,
                               {"If-None-Match": one.headers["ETag"]})
    assert again.status == 304 and again.body == b""
    # Another token's tag is another representation's.
    stale = await get_carrying(cookieless, form, second.folder + "480p/index.m3u8", second.token,
                               {"If-None-Match": one.headers["ETag"]})
    assert stale.status == (200 if form.carrier == "query" else 304)
    # gzip: the rewritten text, compressed (Tornado's client asks for it and unzips: here raw).
    path, headers = carrying(form, first.folder + "480p/index.m3u8", first.token, {"Accept-Encoding": "gzip"})
    zipped = await cookieless.http.fetch(cookieless.base_url + path, headers=headers, decompress_response=False)
    assert zipped.headers["Content-Encoding"] == "gzip" and gzip.decompress(zipped.body) == one.body
    assert "Accept-Encoding" in zipped.headers["Vary"]


@pytest.mark.gen_test(timeout=120)
async def test_behind_accel_redirect_a_rewritten_playlist_is_still_made_here(
        app, client, new_client, make_user, services, config, form, small_ladder):
    """With VIDEOFLIX_ACCEL_REDIRECT nginx would send a playlist from disk, without the
    query form's token on its URIs: under the query form Videoflix makes it; segments
    are still nginx's to send."""
    app.settings["config"] = dataclasses.replace(config, accel_redirect="/internal-media/")
    owner = await make_user("owner@example.com")
    video_id = await publish_ladder(services, config, owner["id"], *small_ladder, visibility="private")
    handed = await handed_out(client, video_id, config)
    cookieless = new_client()
    playlist = await get_carrying(cookieless, form, handed.folder + "480p/index.m3u8", handed.token)
    segment = await get_carrying(cookieless, form, handed.folder + "480p/seg_00000.ts", handed.token)
    assert segment.status == 200 and segment.headers["X-Accel-Redirect"].startswith("/internal-media/")
    assert playlist.status == 200
    if form.carrier == "query":
        assert "X-Accel-Redirect" not in playlist.headers and f"?token={handed.token}" in playlist.body.decode()
    else:
        assert playlist.headers["X-Accel-Redirect"].endswith("/480p/index.m3u8")


def hostile_carriers(form: MediaTokenForm, folder: str, token: str) -> dict[str, tuple[str, dict]]:
    """Requests of a segment carrying the token wrongly: (path, headers) by what each is."""
    segment = folder + "480p/seg_00000.ts"
    name = form.name
    if form.carrier == "query":
        return {
            "none": (segment, {}),
            "empty": (f"{segment}?{name}=", {}),
            "twice": (f"{segment}?{name}={token}&{name}={token}", {}),
            "other name": (f"{segment}?{name.upper()}={token}", {}),
            "percent-encoded": (f"{segment}?{name}={token.replace('.', '%2E')}", {}),
            "traversal": (f"{segment}?{name}=..%2F..%2F{token}", {}),
            "slashes": (f"{segment}?{name}={token}/../x", {}),
            "long": (f"{segment}?{name}={token}{'0' * 4000}", {}),
            "junk": (f"{segment}?{name}=%00%ff%0d%0a", {}),
            "in a header": (segment, {name: token}),
            "in the path form's place": (segment.replace("/api/media/", f"/api/media/x{token}/"), {}),
        }
    return {
        "none": (segment, {}),
        "empty": (segment, {name: ""}),
        "spaces": (segment, {name: f"{token} {token}"}),
        "comma": (segment, {name: f"{token},{token}"}),
        "traversal": (segment, {name: f"../../{token}"}),
        "long": (segment, {name: token + "0" * 4000}),
        "latin-1": (segment, {name: token[:-1] + "\u00e9"}),
        "in the query": (f"{segment}?{name}={token}", {}),
        "other header": (segment, {"X-Other-Token": token}),
    }


@pytest.mark.gen_test(timeout=120)
async def test_bad_and_hostile_tokens_are_refused_with_403_by_the_embedded_server(
        client, new_client, make_user, services, config, form, small_ladder):
    owner = await make_user("owner@example.com")
    video_id = await publish_ladder(services, config, owner["id"], *small_ladder, visibility="private")
    handed = await handed_out(client, video_id, config)
    cookieless = new_client()
    assert (await get_carrying(cookieless, form, handed.folder + "480p/seg_00000.ts", handed.token)).status == 200
    for what, token in forged_tokens(config, handed.token, video_id).items():
        for tail in ("480p/seg_00000.ts", "480p/index.m3u8", "thumbs/thumbnails.vtt"):
            response = await get_carrying(cookieless, form, handed.folder + tail, token)
            assert response.status == 403, (what, tail, response.status)
            assert response.json() == REFUSED, what
    for what, (path, headers) in hostile_carriers(form, handed.folder, handed.token).items():
        response = await cookieless.get(path, headers=headers)
        assert response.status in (403, 404), (what, response.status)  # never a 500
        assert b"#EXTM3U" not in response.body and len(response.body) < 200, what
    # A token opens its version's folder, nothing above or beside it.
    other_id = await publish_ladder(services, config, owner["id"], *small_ladder, visibility="private")
    for path in (f"/api/media/{other_id}/v1/480p/seg_00000.ts", f"/api/media/{video_id}/v2/480p/seg_00000.ts",
                 handed.folder + "ladder.json", handed.folder + "480p/../../v1/480p/seg_00000.ts",
                 handed.folder + "480p/..%2F..%2Fladder.json"):
        response = await get_carrying(cookieless, form, path, handed.token)
        assert response.status in (403, 404), (path, response.status)
    # The path form's URLs still open with their token (handed out before a switch).
    path_form = f"/api/media/{handed.token}/{video_id}/v1/480p/seg_00000.ts"
    assert (await cookieless.get(path_form)).status == 200


@pytest.mark.gen_test(timeout=120)
async def test_warm_carried_segments_take_the_lane_and_a_logout_stops_them_at_once(
        client, new_client, make_user, services, config, form, small_ladder):
    owner = await make_user("owner@example.com")
    video_id = await publish_ladder(services, config, owner["id"], *small_ladder, visibility="private")
    handed = await handed_out(client, video_id, config)
    cookieless = new_client()
    segment = handed.folder + "480p/seg_00000.ts"
    before = segment_lane.answered
    first = await get_carrying(cookieless, form, segment, handed.token)
    assert first.status == 200 and segment_lane.answered == before
    second = await get_carrying(cookieless, form, segment, handed.token)
    assert (second.status, second.body) == (200, first.body) and segment_lane.answered == before + 1
    drop = {"Date", "X-Request-Id"}
    assert {k: v for k, v in second.headers.get_all() if k not in drop} == {
        k: v for k, v in first.headers.get_all() if k not in drop}
    bad = await get_carrying(cookieless, form, segment, tampered(handed.token))
    assert bad.status == 403 and segment_lane.answered == before + 1
    assert (await client.post("/api/logout/")).status == 200
    assert (await get_carrying(cookieless, form, segment, handed.token)).status == 403


@pytest.mark.gen_test(timeout=120)
async def test_the_access_log_never_writes_a_media_token(
        client, new_client, make_user, services, config, form, small_ladder, caplog):
    owner = await make_user("owner@example.com")
    video_id = await publish_ladder(services, config, owner["id"], *small_ladder, visibility="private")
    handed = await handed_out(client, video_id, config)
    cookieless = new_client()
    mac = handed.token.rsplit(".", 1)[1]
    with caplog.at_level(logging.DEBUG, logger="videoflix.access"):
        for tail in ("480p/index.m3u8", "480p/seg_00000.ts", "480p/seg_00000.ts", "thumbs/thumbnails.vtt"):
            assert (await get_carrying(cookieless, form, handed.folder + tail, handed.token)).status == 200
        await get_carrying(cookieless, form, handed.folder + "480p/seg_00000.ts", tampered(handed.token))
        await cookieless.get(f"/api/media/{handed.token}/{video_id}/v1/480p/seg_00000.ts")  # the path form
        await cookieless.get(f"/api/media/{tampered(handed.token)}/{video_id}/v1/")  # the check, refused
    lines = [record.getMessage() for record in caplog.records if record.name == "videoflix.access"]
    assert len(lines) >= 7, lines
    assert not any(mac[:20] in line or handed.token[:30] in line for line in lines), lines
    if form.carrier == "query":
        assert any(f"?{form.name}=***" in line for line in lines), lines


@pytest.mark.gen_test(timeout=60)
async def test_cors_lets_a_player_on_another_origin_read_and_send_the_header(
        client, new_client, make_user, services, config, form, small_ladder):
    origin = config.cors_origins[0]
    owner = await make_user("owner@example.com")
    video_id = await publish_ladder(services, config, owner["id"], *small_ladder, visibility="private")
    master = await client.get(f"/api/video/{video_id}/master.m3u8", headers={"Origin": origin})
    exposed = [name.strip().lower() for name in master.headers["Access-Control-Expose-Headers"].split(",")]
    preflight = await new_client().fetch("OPTIONS", f"/api/media/{video_id}/v1/480p/seg_00000.ts", headers={
        "Origin": origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": form.name.lower()})
    allowed = [name.strip() for name in preflight.headers["Access-Control-Allow-Headers"].split(",")]
    assert preflight.status == 204
    if form.carrier == "header":
        assert form.name.lower() in exposed and form.name.lower() in allowed
    else:
        assert form.name.lower() not in exposed and form.name.lower() not in allowed


# --- behind the shipped nginx site ----------------------------------------------------------

@pytest.mark.gen_test(timeout=180)
async def test_nginx_sends_carried_token_files_itself(front, new_client, make_user, services, small_ladder, form):
    base, proc, served = front
    owner = await viewer(new_client, make_user, base, "owner@example.com")
    owner_id = await make_owner_id(services, "owner@example.com")
    video_id = await published(services, served, owner_id, small_ladder, "private")
    handed = await handed_out(owner, video_id, served)
    cookieless = new_client()
    cookieless.base_url = base
    path = handed.folder + "480p/seg_00000.ts"
    on_disk = (Path(served.media_dir) / str(video_id) / "v1" / "480p" / "seg_00000.ts").read_bytes()
    first = await get_carrying(cookieless, form, path, handed.token)
    assert first.status == 200 and first.body == on_disk
    assert first.headers["Cache-Control"] == IMMUTABLE and first.headers["Content-Type"] == "video/mp2t"
    assert "X-Request-ID" not in first.headers  # nginx's own answer, not Videoflix's
    ranged = await get_carrying(cookieless, form, path, handed.token, {"Range": "bytes=100-199"})
    assert ranged.status == 206 and ranged.body == on_disk[100:200]
    again = await get_carrying(cookieless, form, path, handed.token, {"If-None-Match": first.headers["ETag"]})
    assert again.status == 304
    sprite = await get_carrying(cookieless, form, handed.folder + "thumbs/sprite_000.jpg", handed.token)
    assert sprite.status == 200 and sprite.headers["Content-Type"] == "image/jpeg"
    assert "X-Request-ID" not in sprite.headers
    # Playlists and the thumbnails track come from Videoflix, which puts the query form's
    # token on their URIs; those URIs then open through nginx.
    for tail in ("480p/index.m3u8", "480p/iframes.m3u8", "thumbs/thumbnails.vtt"):
        response = await get_carrying(cookieless, form, handed.folder + tail, handed.token)
        assert response.status == 200 and "X-Request-ID" in response.headers, tail
        assert (f"?token={handed.token}" in response.body.decode()) == (form.carrier == "query"), tail
    playlist = (await get_carrying(cookieless, form, handed.folder + "480p/index.m3u8", handed.token)).body.decode()
    target = urljoin(handed.folder + "480p/index.m3u8", uri_lines(playlist)[-1])
    headers = {form.name: handed.token} if form.carrier == "header" else {}
    assert (await cookieless.get(target, headers=headers)).status == 200
    # The warm path asks Videoflix nothing (at most one check: the cached answer may have run out).
    before = app_requests(services)
    for _ in range(30):
        assert (await get_carrying(cookieless, form, path, handed.token)).status == 200
    assert app_requests(services) - before <= 1


@pytest.mark.gen_test(timeout=60)
async def test_nginx_passes_a_preflight_of_a_tokened_file_to_videoflix(front, new_client, form):
    base, proc, served = front
    origin = served.cors_origins[0]
    browser = new_client()
    browser.base_url = base
    preflight = await browser.fetch("OPTIONS", "/api/media/7/v1/480p/seg_00000.ts", headers={
        "Origin": origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": form.name.lower()})
    assert preflight.status == 204 and preflight.headers["Access-Control-Allow-Origin"] == origin
    allowed = [name.strip() for name in preflight.headers["Access-Control-Allow-Headers"].split(",")]
    assert (form.name.lower() in allowed) == (form.carrier == "header")
    # Only a preflight: any other method there is checked as a GET is.
    assert (await browser.fetch("DELETE", "/api/media/7/v1/480p/seg_00000.ts")).status == 403


@pytest.mark.gen_test(timeout=180)
async def test_nginx_refuses_bad_and_hostile_carried_tokens(front, new_client, make_user, services, small_ladder,
                                                            form):
    base, proc, served = front
    owner = await viewer(new_client, make_user, base, "owner@example.com")
    owner_id = await make_owner_id(services, "owner@example.com")
    video_id = await published(services, served, owner_id, small_ladder, "private")
    other_id = await published(services, served, owner_id, small_ladder, "private")
    handed = await handed_out(owner, video_id, served)
    cookieless = new_client()
    cookieless.base_url = base
    before = app_requests(services)
    for what, token in forged_tokens(served, handed.token, video_id).items():
        response = await get_carrying(cookieless, form, handed.folder + "480p/seg_00000.ts", token)
        assert response.status == 403, (what, response.status)
        assert response.json() == REFUSED and response.headers["Cache-Control"] == "no-store", what
    hostile = hostile_carriers(form, handed.folder, handed.token)
    for what, (path, headers) in hostile.items():
        response = await cookieless.get(path, headers=headers)
        assert response.status == 403, (what, response.status)
    assert app_requests(services) == before  # refused inside nginx: Videoflix never asked
    other = await get_carrying(cookieless, form, f"/api/media/{other_id}/v1/480p/seg_00000.ts", handed.token)
    assert other.status == 403
    for tail in (f"480p/../../../{other_id}/v1/480p/seg_00000.ts", "480p/..%2F..%2Fladder.json", "ladder.json",
                 "../../../../etc/passwd", "%2e%2e/%2e%2e/ladder.json", "thumbs/../ladder.json"):
        response = await get_carrying(cookieless, form, handed.folder + tail, handed.token)
        assert response.status in (400, 403, 404), (tail, response.status)
        assert b"root:" not in response.body and b"variants" not in response.body, tail


@pytest.mark.gen_test(timeout=180)
async def test_revocations_stop_nginxs_carried_token_segments_within_ten_seconds(
        front, new_client, make_user, services, small_ladder, form):
    """A logout and a video made private (the other revocations take the same check:
    tests/test_media_tokens.py holds all five in the path form)."""
    base, proc, served = front
    owner = await viewer(new_client, make_user, base, "owner@example.com")
    owner_id = await make_owner_id(services, "owner@example.com")
    kept = await published(services, served, owner_id, small_ladder)
    to_hide = await published(services, served, owner_id, small_ladder)
    watchers = {name: await viewer(new_client, make_user, base, f"{name}@example.com")
                for name in ("logout", "hidden", "control")}
    watched = {"logout": kept, "hidden": to_hide, "control": kept}
    cookieless = new_client()
    cookieless.base_url = base
    handed = {}
    for name, browser in watchers.items():
        handed[name] = await handed_out(browser, watched[name], served)
        segment = handed[name].folder + "480p/seg_00000.ts"
        assert (await get_carrying(cookieless, form, segment, handed[name].token)).status == 200, name
    assert (await watchers["logout"].post("/api/logout/")).status == 200
    logged_out = time.monotonic()
    assert (await owner.fetch("PATCH", f"/api/video/{to_hide}/", {"visibility": "private"})).status == 200
    hidden = time.monotonic()

    async def stops(name: str, since: float) -> float:
        segment = handed[name].folder + "480p/seg_00000.ts"
        while time.monotonic() < since + REVOCATION_SECONDS + 2:
            response = await get_carrying(cookieless, form, segment, handed[name].token)
            if response.status == 403:
                return time.monotonic() - since
            assert response.status == 200, (name, response.status)
            await asyncio.sleep(POLL_SECONDS)
        return float("inf")

    took = dict(zip(("logout", "hidden"), await asyncio.gather(stops("logout", logged_out), stops("hidden", hidden))))
    print("revocation seconds:", form, {name: round(seconds, 2) for name, seconds in took.items()})
    assert all(seconds <= REVOCATION_SECONDS + POLL_SECONDS for seconds in took.values()), took
    control = handed["control"]
    assert (await get_carrying(cookieless, form, control.folder + "480p/seg_00000.ts", control.token)).status == 200


def test_the_openapi_document_says_where_this_servers_tokens_travel(form):
    from videoflix.app import collect_routes
    from videoflix.platform.config import Config
    from videoflix.web.openapi import openapi_document

    paths = openapi_document(collect_routes(), Config(public_url="http://x", media_token_form=form))["paths"]
    carried = paths["/api/media/{id}/{version}/{resolution}/{segment}"]["get"]
    where = {"query": "query parameter", "header": "request header"}[form.carrier]
    assert f"on this server the {where} `{form.name}`" in carried["description"]
    assert set(carried["responses"]) >= {"200", "206", "304", "403", "404"} and carried["security"] == []
    assert "VIDEOFLIX_MEDIA_TOKEN_FORM" in paths["/api/video/{id}/master.m3u8"]["get"]["description"]
