"""HLS delivery (API.md §3, §4 stream URLs and images) against the real server.

The media are real: the transcoder's HLS ladder of the shared 1080p park clip
(1080p, 720p, 480p MPEG-TS segments with AAC), made once per session and copied into
each test's media directory as the live version of a real ready row. Players are real too: ffprobe and ffmpeg open the
signed stream URL without cookies.

Every test that serves files runs against both stores (STORAGE_BACKENDS): MEDIA_DIR, and a
real SeaweedFS bucket the files are put into (nothing of them under MEDIA_DIR then);
those about the local files themselves (inodes, symlinks, FIFOs) run on MEDIA_DIR only.
"""
from __future__ import annotations

import asyncio
import gzip
import json
import os
import shutil
import tempfile
import time
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import pytest

from videoflix.accounts import tokens
from videoflix.delivery import playback
from videoflix.platform import media
from videoflix.platform.db import cursor
from videoflix.tables import videos
from videoflix.transcode.command import TranscodeSettings
from videoflix.transcode.job import transcode

from helpers import login, put_folder
from store_helpers import STORAGE_BACKENDS
from media import PARK, clip

ORIGIN = "http://127.0.0.1:5500"
LADDER = ("1080p", "720p", "480p")
SEGMENT = "seg_00000.ts"


# --- fixtures ----------------------------------------------------------------------

@pytest.fixture(params=STORAGE_BACKENDS)
def storage_backend(request):
    return request.param


LOCAL_ONLY = pytest.mark.parametrize("storage_backend", ["local"])  # about files on disk

@pytest.fixture(scope="session")
def hls_ladder():
    """A version folder as a transcode leaves it (ladder.json, <res>/index.m3u8 and
    seg_NNNNN.ts, poster.jpg, thumbnail.jpg, trick play), made once by the real transcoder from
    the 5.8 s 1080p park clip: 1080p, 720p, 480p, two segments each. `ultrafast`
    only to keep the session short; the layout is the same for every preset."""
    root = Path(tempfile.mkdtemp(prefix="videoflix-hls-"))
    result = transcode(clip(PARK), root, TranscodeSettings(preset="ultrafast"))
    assert result.resolutions == list(LADDER)
    yield root, result
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_video(services, config, hls_ladder):
    """A video row (ready unless told otherwise) with the ladder's files in place as
    its version 1 (media/<id>/v1/: its first transcode's)."""
    ladder, result = hls_ladder

    async def make(owner_id: int, *, visibility: str = "public", ready: bool = True,
                   resolutions: tuple[str, ...] = LADDER) -> int:
        async with cursor(services.pool) as cur:
            video_id = await videos.insert_video(
                cur, owner_id=owner_id, title="Test pattern", description="", category="Test",
                visibility=visibility, status="queued")
            if ready:
                version = (await videos.mark_processing(cur, video_id)).building_version
                assert await videos.mark_ready(cur, video_id, version=version, duration=result.duration,
                                               width=result.width, height=result.height, fps=result.fps,
                                               has_audio=result.has_audio, resolutions=list(resolutions))
        target = version_dir(config, video_id)
        target.mkdir(parents=True)
        for name in ("ladder.json", "thumbnail.jpg", "poster.jpg"):
            shutil.copy2(ladder / name, target / name)
        for rendition in resolutions:
            shutil.copytree(ladder / rendition, target / rendition)
        if not config.storage_location.is_local:
            await put_folder(services, config, target, media.version_dir(config.media_dir, video_id, 1))
        return video_id
    return make


def version_dir(config, video_id: int) -> Path:
    """Where make_video puts the files: version 1, the one its row says is live
    (media/<id>/v1/); with object storage, the copy of what it put into the bucket
    (outside MEDIA_DIR: the server must find the files in the bucket)."""
    if not config.storage_location.is_local:
        return Path(config.var_dir).parent / "in-bucket" / str(video_id) / "v1"
    return media.version_dir(config.media_dir, video_id, 1)


@pytest.fixture
def owner(make_user):
    """The registered, logged-in owner (on `client`): {"id", "email"}."""
    async def make() -> dict:
        return await make_user("owner@example.com")
    return make


async def get(client, path: str, *, method: str = "GET", headers: dict | None = None,
              cookies: bool = True, gzip_ok: bool = False):
    """A request without Tornado's transparent gzip (so the raw answer is seen)."""
    all_headers = dict(headers or {})
    if cookies and client.cookies:
        all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    if gzip_ok:
        all_headers["Accept-Encoding"] = "gzip"
    return await client.http.fetch(client.base_url + path, method=method, headers=all_headers,
                                   raise_error=False, decompress_response=False,
                                   follow_redirects=False, request_timeout=60)


def segment_bytes(config, video_id: int, rendition: str = "720p", name: str = SEGMENT) -> bytes:
    return (version_dir(config, video_id) / rendition / name).read_bytes()


def assert_json_404(response) -> None:
    assert response.code == 404, (response.code, response.body[:200])
    assert response.headers["Content-Type"].startswith("application/json")
    assert json.loads(response.body) == {"detail": "Not found."}


# --- pure parts ----------------------------------------------------------------------

def test_stream_token_round_trip_and_refusals():
    sid = tokens.new_session_id()
    token, expires_at = tokens.make_stream_token("secret", video_id=7, user_id=42, token_version=3,
                                                 now=1000, ttl_seconds=60, session_id=sid)
    assert expires_at == 1060
    assert set(token) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    claims = tokens.read_stream_token("secret", token, video_id=7, now=1059)
    assert claims == tokens.StreamClaims(user_id=42, token_version=3, expires_at=1060, session_id=sid)
    refused = [
        ("secret", token, 8, 1000),  # another video
        ("other", token, 7, 1000),  # another key
        ("secret", token, 7, 1060),  # expired
        ("secret", token.replace(".", ".0", 1), 7, 1000),  # same number, other text
        ("secret", token.replace(sid, tokens.new_session_id()), 7, 1000),  # another session
        ("secret", token.replace(f".{sid}", ""), 7, 1000),  # no session
        ("secret", token[:-1], 7, 1000),
        ("secret", token + "é", 7, 1000),
        ("secret", "", 7, 1000),
        ("secret", "a.b.c", 7, 1000),
        ("secret", "x" * 200, 7, 1000),
    ]
    for secret, candidate, video_id, now in refused:
        with pytest.raises(tokens.TokenError):
            tokens.read_stream_token(secret, candidate, video_id=video_id, now=now)


@pytest.mark.parametrize("name, ok", [
    ("seg_00000.ts", True), ("seg_99999.ts", True), ("seg_0.ts", False), ("SEG_00000.TS", False),
    ("seg_00000.ts\n", False), ("seg_\u0660\u0660\u0660\u0660\u0660.ts", False),
    ("seg_000000.ts", False), ("../seg_00000.ts", False),
])
def test_segment_names_are_strict(name, ok):
    assert media.is_segment_name(name) is ok


@pytest.mark.parametrize("path, handler, kind", [
    ("/api/video/7/subtitles/en/", "SubtitleHandler", None),  # has the shape of a segment path
    ("/api/video/7/v1/720p/iframes.m3u8", "VideoFileHandler", "iframes"),
    ("/api/video/7/v1/thumbs/sprite_000.jpg", "VideoFileHandler", "thumbs"),
    ("/api/video/7/v1/720p/index.m3u8", "VideoFileHandler", "vplaylist"),
    ("/api/video/7/720p/index.m3u8", "VideoFileHandler", "playlist"),
    ("/api/video/7/v1/subtitles/en/seg_00000.vtt", "VideoSubtitleHLSHandler", "subsegment"),
    ("/api/video/7/v1/720p/seg_00000.ts/", "VideoFileHandler", "vsegment"),
    ("/api/video/7/720p/seg_00000.ts", "VideoFileHandler", "segment"),
    ("/api/stream/t.k/7/v1/720p/iframes.m3u8", "StreamFileHandler", "iframes"),
    ("/api/stream/t.k/7/720p/index.m3u8", "StreamFileHandler", "playlist"),
    ("/api/stream/t.k/7/v1/subtitles/en/index.m3u8", "StreamSubtitleHLSHandler", "subtitles"),
    ("/api/stream/t.k/7/720p/seg_00000.ts", "StreamFileHandler", "segment"),
])
def test_the_first_route_matching_a_path_is_its_own_whatever_the_module(path, handler, kind):
    """The segment routes take any name, so they come after every other route
    (app.collect_routes), and every HLS route has a twin per credential."""
    import re

    from videoflix.app import collect_routes

    route = next(route for route in collect_routes() if re.fullmatch(route[0], path))
    assert (route[1].__name__, (route[2] if len(route) > 2 else {}).get("kind")) == (handler, kind)


def test_every_hls_route_has_one_twin_per_credential():
    """Cookie and stream token: every kind; a media token (in the path, or carried in a query
    parameter or header): the kinds under one version's folder."""
    from videoflix.web import media_handlers

    prefixes = {"cookie": "/api/video/([^/]+)/", "stream token": "/api/stream/([^/]+)/([^/]+)/",
                "media token": "/api/media/([^/]+)/([^/]+)/", "carried media token": "/api/media/([^/]+)/"}
    tails: dict[str, list[str]] = {}
    routes = [route for route in media_handlers.ROUTES + media_handlers.CATCH_ALL_ROUTES if len(route) == 3
              and not route[0].startswith("/media/")]
    for pattern, handler, kwargs in routes:
        credential = ("carried media token" if handler.__name__.startswith("CarriedToken")
                      else next(name for name, prefix in prefixes.items() if pattern.startswith(prefix)))
        tail = pattern.removeprefix(prefixes[credential])
        tails.setdefault(f"{kwargs['kind']} {tail}", []).append(f"{credential} {handler.__name__}")
    assert len(tails) == 9
    files = ("carried media token CarriedTokenFileHandler", "cookie VideoFileHandler",
             "media token MediaTokenFileHandler", "stream token StreamFileHandler")
    subtitles = ("carried media token CarriedTokenSubtitleHLSHandler", "cookie VideoSubtitleHLSHandler",
                 "media token MediaTokenSubtitleHLSHandler", "stream token StreamSubtitleHLSHandler")
    unversioned = {"master", "playlist", "segment"}
    for key, handlers in tails.items():
        kind = key.split()[0]
        expected = subtitles if kind.startswith("sub") else files
        if kind in unversioned:  # a media token opens one version's folder, nothing else
            expected = tuple(name for name in expected if "media token" not in name)
        assert tuple(sorted(handlers)) == expected, key


# --- playlists -----------------------------------------------------------------------

@pytest.mark.gen_test
async def test_media_playlist_is_served_with_hls_type_and_short_private_cache(client, owner, make_video, config):
    user = await owner()
    video_id = await make_video(user["id"])
    response = await get(client, f"/api/video/{video_id}/720p/index.m3u8")
    assert response.code == 200
    assert response.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert response.headers["Cache-Control"] == "private, max-age=5"
    assert "Accept-Encoding" in response.headers.get_list("Vary")
    assert "Content-Encoding" not in response.headers
    body = response.body.decode()
    assert body.startswith("#EXTM3U")
    assert "#EXT-X-ENDLIST" in body
    uris = [line for line in body.splitlines() if line and not line.startswith("#")]
    assert uris and all(media.is_segment_name(uri) for uri in uris)  # bare names (API.md §3)
    assert response.body == (version_dir(config, video_id) / "720p" / "index.m3u8").read_bytes()


@pytest.mark.gen_test
async def test_playlist_is_gzipped_when_the_client_accepts_it(client, owner, make_video, config):
    user = await owner()
    video_id = await make_video(user["id"])
    plain = await get(client, f"/api/video/{video_id}/720p/index.m3u8")
    zipped = await get(client, f"/api/video/{video_id}/720p/index.m3u8", gzip_ok=True)
    assert zipped.code == 200
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert int(zipped.headers["Content-Length"]) == len(zipped.body) < len(plain.body)
    assert gzip.decompress(zipped.body) == plain.body
    # A different representation, so a different ETag (RFC 7232 §2.3).
    assert zipped.headers["Etag"] != plain.headers["Etag"]
    # Ranges are ignored on gzipped playlists (and said so), honoured on plain ones.
    ranged = await get(client, f"/api/video/{video_id}/720p/index.m3u8", gzip_ok=True,
                       headers={"Range": "bytes=0-9"})
    assert ranged.code == 200 and ranged.headers["Accept-Ranges"] == "none"
    ranged_plain = await get(client, f"/api/video/{video_id}/720p/index.m3u8", headers={"Range": "bytes=0-6"})
    assert ranged_plain.code == 206 and ranged_plain.body == b"#EXTM3U"
    head = await get(client, f"/api/video/{video_id}/720p/index.m3u8", method="HEAD", gzip_ok=True)
    assert head.code == 200 and head.body == b""
    assert head.headers["Content-Length"] == zipped.headers["Content-Length"]
    again = await get(client, f"/api/video/{video_id}/720p/index.m3u8", gzip_ok=True,
                      headers={"If-None-Match": zipped.headers["Etag"]})
    assert again.code == 304 and again.body == b""


@pytest.mark.gen_test
async def test_master_playlist_lists_the_renditions(client, owner, make_video):
    user = await owner()
    video_id = await make_video(user["id"])
    response = await get(client, f"/api/video/{video_id}/master.m3u8")
    assert response.code == 200
    assert response.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    # Rendered per request from the version's ladder.json: revalidated every time (a 304).
    assert response.headers["Cache-Control"] == "private, no-cache"
    body = response.body.decode()
    assert "#EXT-X-STREAM-INF" in body and "#EXT-X-INDEPENDENT-SEGMENTS" in body
    assert all(f"{rendition}/index.m3u8" in body for rendition in LADDER)


# --- segments ------------------------------------------------------------------------

@pytest.mark.gen_test
@pytest.mark.parametrize("suffix", ["", "/"])
async def test_unversioned_segment_is_served_whole_as_mpeg_ts_with_short_cache(client, owner, make_video, config,
                                                                                suffix):
    user = await owner()
    video_id = await make_video(user["id"])
    response = await get(client, f"/api/video/{video_id}/720p/{SEGMENT}{suffix}")
    expected = segment_bytes(config, video_id)
    assert response.code == 200
    assert response.headers["Content-Type"] == "video/MP2T"
    # The live version behind an unversioned path changes with a re-transcode: never immutable.
    assert response.headers["Cache-Control"] == "private, max-age=60"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert int(response.headers["Content-Length"]) == len(expected)
    assert response.headers["Etag"].startswith('"')
    assert "Last-Modified" in response.headers
    assert response.body == expected
    assert expected[0] == 0x47  # an MPEG-TS sync byte: the fixture is real


@pytest.mark.gen_test
async def test_every_segment_listed_in_the_playlist_is_served(client, owner, make_video, config):
    user = await owner()
    video_id = await make_video(user["id"])
    for rendition in LADDER:
        playlist = await get(client, f"/api/video/{video_id}/{rendition}/index.m3u8")
        names = [line for line in playlist.body.decode().splitlines() if line and not line.startswith("#")]
        on_disk = sorted(p.name for p in (version_dir(config, video_id) / rendition).glob("seg_*"))
        assert names == on_disk and len(names) >= 2
        for name in names:
            response = await get(client, f"/api/video/{video_id}/{rendition}/{name}")
            assert response.code == 200
            assert response.body == segment_bytes(config, video_id, rendition, name)


@pytest.mark.gen_test
async def test_byte_ranges_are_answered_206_with_content_range(client, owner, make_video, config):
    user = await owner()
    video_id = await make_video(user["id"])
    data = segment_bytes(config, video_id)
    size = len(data)
    path = f"/api/video/{video_id}/720p/{SEGMENT}"
    cases = {
        "bytes=0-99": (0, 100),  # first bytes
        "bytes=1000-1999": (1000, 2000),  # middle
        "bytes=-500": (size - 500, size),  # suffix
        f"bytes={size - 300}-": (size - 300, size),  # open-ended
        f"bytes={size - 10}-{size + 5000}": (size - 10, size),  # last byte clipped
    }
    for header, (start, end) in cases.items():
        response = await get(client, path, headers={"Range": header})
        assert response.code == 206, header
        assert response.headers["Content-Range"] == f"bytes {start}-{end - 1}/{size}", header
        assert int(response.headers["Content-Length"]) == end - start
        assert response.body == data[start:end], header
        assert response.headers["Content-Type"] == "video/MP2T"


@pytest.mark.gen_test
async def test_unsatisfiable_range_is_416_with_the_size(client, owner, make_video, config):
    user = await owner()
    video_id = await make_video(user["id"])
    size = len(segment_bytes(config, video_id))
    for header in (f"bytes={size}-", f"bytes={size + 100}-{size + 200}", "bytes=-0"):
        response = await get(client, f"/api/video/{video_id}/720p/{SEGMENT}", headers={"Range": header})
        assert response.code == 416, header
        assert response.headers["Content-Range"] == f"bytes */{size}"
        assert json.loads(response.body) == {"detail": "Requested range not satisfiable."}


@pytest.mark.gen_test
async def test_full_malformed_or_multiple_ranges_give_200_and_everything(client, owner, make_video, config):
    user = await owner()
    video_id = await make_video(user["id"])
    data = segment_bytes(config, video_id)
    for header in ("bytes=0-", f"bytes=0-{len(data) - 1}", "bytes=abc", "bytes=10-5", "pages=1-2",
                   "bytes=0-1,4-5", "bytes"):
        response = await get(client, f"/api/video/{video_id}/720p/{SEGMENT}", headers={"Range": header})
        assert response.code == 200, header
        assert "Content-Range" not in response.headers
        assert response.body == data


@pytest.mark.gen_test
async def test_if_range_with_a_stale_validator_sends_everything(client, owner, make_video, config):
    user = await owner()
    video_id = await make_video(user["id"])
    path = f"/api/video/{video_id}/720p/{SEGMENT}"
    first = await get(client, path)
    current = await get(client, path, headers={"Range": "bytes=0-9", "If-Range": first.headers["Etag"]})
    assert current.code == 206 and len(current.body) == 10
    stale = await get(client, path, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert stale.code == 200 and stale.body == first.body


@pytest.mark.gen_test
async def test_head_is_get_without_a_body(client, owner, make_video, config):
    user = await owner()
    video_id = await make_video(user["id"])
    for path in (f"/api/video/{video_id}/720p/{SEGMENT}", f"/api/video/{video_id}/720p/{SEGMENT}/",
                 f"/api/video/{video_id}/720p/index.m3u8", f"/api/video/{video_id}/master.m3u8"):
        full = await get(client, path)
        head = await get(client, path, method="HEAD")
        assert head.code == 200 and head.body == b""
        for name in ("Content-Length", "Content-Type", "Etag", "Last-Modified", "Cache-Control"):
            if name == "Last-Modified" and path.endswith("master.m3u8"):
                assert name not in head.headers and name not in full.headers  # rendered: no file date
                continue
            assert head.headers[name] == full.headers[name], (path, name)
    ranged = await get(client, f"/api/video/{video_id}/720p/{SEGMENT}", method="HEAD",
                       headers={"Range": "bytes=0-99"})
    assert ranged.code == 206 and ranged.headers["Content-Length"] == "100" and ranged.body == b""


@pytest.mark.gen_test
async def test_conditional_requests_get_304(client, owner, make_video):
    user = await owner()
    video_id = await make_video(user["id"])
    for path in (f"/api/video/{video_id}/720p/{SEGMENT}", f"/api/video/{video_id}/720p/index.m3u8"):
        first = await get(client, path)
        etag, modified = first.headers["Etag"], first.headers["Last-Modified"]
        by_etag = await get(client, path, headers={"If-None-Match": etag})
        assert by_etag.code == 304 and by_etag.body == b""
        assert by_etag.headers["Etag"] == etag
        by_list = await get(client, path, headers={"If-None-Match": f'"nope", {etag}'})
        assert by_list.code == 304
        by_date = await get(client, path, headers={"If-Modified-Since": modified})
        assert by_date.code == 304 and by_date.body == b""
        earlier = format_datetime(parsedate_to_datetime(modified).replace(year=2000), usegmt=True)
        changed = await get(client, path, headers={"If-Modified-Since": earlier})
        assert changed.code == 200 and changed.body == first.body
        # If-None-Match wins over If-Modified-Since (RFC 7232 §6).
        mismatch = await get(client, path, headers={"If-None-Match": '"other"', "If-Modified-Since": modified})
        assert mismatch.code == 200


@LOCAL_ONLY
@pytest.mark.gen_test
async def test_etag_is_not_a_content_hash_and_follows_the_file(client, owner, make_video, config):
    user = await owner()
    video_id = await make_video(user["id"])
    path = f"/api/video/{video_id}/720p/{SEGMENT}"
    before = (await get(client, path)).headers["Etag"]
    segment = version_dir(config, video_id) / "720p" / SEGMENT
    info = segment.stat()
    assert before == f'"{info.st_size:x}-{info.st_mtime_ns:x}-{info.st_ino:x}"'
    # A re-transcode renames a new file into place: a new ETag, no stale cache.
    replacement = segment.with_name("new.tmp")
    replacement.write_bytes(segment.read_bytes()[:-188])
    os.replace(replacement, segment)
    after = await get(client, path, headers={"If-None-Match": before})
    assert after.code == 200 and after.headers["Etag"] != before


# --- CORS ----------------------------------------------------------------------------

@pytest.mark.gen_test
async def test_cors_headers_on_playlists_segments_and_errors(client, owner, make_video):
    user = await owner()
    video_id = await make_video(user["id"])
    for path in (f"/api/video/{video_id}/720p/index.m3u8", f"/api/video/{video_id}/720p/{SEGMENT}",
                 f"/api/video/{video_id}/master.m3u8", f"/api/video/{video_id}/720p/seg_00042.ts"):
        response = await get(client, path, headers={"Origin": ORIGIN, "Range": "bytes=0-9"})
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN, path
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
        exposed = response.headers["Access-Control-Expose-Headers"].lower()
        assert "content-range" in exposed and "content-length" in exposed
        assert "Origin" in response.headers.get_list("Vary")
    stranger = await get(client, f"/api/video/{video_id}/720p/{SEGMENT}", headers={"Origin": "http://evil.test"})
    assert stranger.code == 200 and "Access-Control-Allow-Origin" not in stranger.headers


@pytest.mark.gen_test
async def test_preflight_on_hls_paths_needs_no_auth(client, owner, make_video, new_client):
    user = await owner()
    video_id = await make_video(user["id"])
    response = await get(new_client(), f"/api/video/{video_id}/720p/{SEGMENT}", method="OPTIONS",
                         headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
                                  "Access-Control-Request-Headers": "range"})
    assert response.code == 204
    assert "range" in response.headers["Access-Control-Allow-Headers"]
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


# --- access --------------------------------------------------------------------------

@pytest.mark.gen_test
async def test_unauthenticated_hls_requests_get_401_json(client, owner, make_video, new_client):
    user = await owner()
    video_id = await make_video(user["id"])
    anonymous = new_client()
    for path in (f"/api/video/{video_id}/720p/index.m3u8", f"/api/video/{video_id}/720p/{SEGMENT}",
                 f"/api/video/{video_id}/master.m3u8", f"/api/video/{video_id}/stream/"):
        response = await get(anonymous, path)
        assert response.code == 401, path
        assert json.loads(response.body) == {"detail": "Authentication credentials were not provided."}
    bad = await get(anonymous, f"/api/video/{video_id}/720p/{SEGMENT}",
                    headers={"Authorization": "Bearer not-a-jwt"})
    assert bad.code == 401 and json.loads(bad.body) == {"detail": "Invalid or expired token."}


@pytest.mark.gen_test
async def test_expired_or_forged_access_jwt_is_401_even_after_it_worked(client, owner, make_video, config,
                                                                      new_client):
    """Verified JWTs are cached by the file handlers; expiry is still checked each time."""
    user = await owner()
    video_id = await make_video(user["id"])
    path = f"/api/video/{video_id}/720p/{SEGMENT}"
    now = int(time.time())
    short, _ = tokens.make_session_token(config.secret_key, user_id=user["id"], kind="access", now=now - 60,
                                         ttl_seconds=62, is_admin=False, token_version=0,
                                         session_id=tokens.new_session_id())
    assert (await get(new_client(), path, headers={"Authorization": f"Bearer {short}"})).code == 200
    expired, _ = tokens.make_session_token(config.secret_key, user_id=user["id"], kind="access",
                                           now=now - 3600, ttl_seconds=60, is_admin=False, token_version=0,
                                         session_id=tokens.new_session_id())
    forged, _ = tokens.make_session_token("another-secret-that-is-long-enough-for-hs256", user_id=user["id"],
                                          kind="access", now=now, ttl_seconds=60, is_admin=True, token_version=0,
                                         session_id=tokens.new_session_id())
    refresh, _ = tokens.make_session_token(config.secret_key, user_id=user["id"], kind="refresh", now=now,
                                           ttl_seconds=60, is_admin=False, token_version=0,
                                         session_id=tokens.new_session_id())
    for token in (expired, forged, refresh):
        response = await get(new_client(), path, headers={"Authorization": f"Bearer {token}"})
        assert response.code == 401
        assert json.loads(response.body) == {"detail": "Invalid or expired token."}


@pytest.mark.gen_test
async def test_bearer_token_works_without_cookies(client, owner, make_video, config, new_client):
    user = await owner()
    video_id = await make_video(user["id"], visibility="private")
    access = client.cookies["access_token"]
    response = await get(new_client(), f"/api/video/{video_id}/720p/{SEGMENT}",
                         headers={"Authorization": f"Bearer {access}"})
    assert response.code == 200 and response.body == segment_bytes(config, video_id)


@pytest.mark.gen_test
async def test_private_video_is_404_for_others_and_200_for_owner_and_admin(
        client, owner, make_user, make_admin, make_video, new_client):
    user = await owner()
    video_id = await make_video(user["id"], visibility="private")
    await make_user("other@example.com", log_in=False)
    other = new_client()
    await login(other, "other@example.com")
    admin = new_client()
    await make_admin(admin)
    paths = (f"/api/video/{video_id}/720p/index.m3u8", f"/api/video/{video_id}/720p/{SEGMENT}",
             f"/api/video/{video_id}/master.m3u8")
    for path in paths:
        assert_json_404(await get(other, path))
        assert (await get(client, path)).code == 200
        assert (await get(admin, path)).code == 200
    assert (await get(other, f"/api/video/{video_id}/stream/")).code == 404
    # The same video made public: everyone may watch.
    public_id = await make_video(user["id"], visibility="public")
    assert (await get(other, f"/api/video/{public_id}/720p/{SEGMENT}")).code == 200


@pytest.mark.gen_test
async def test_video_that_is_not_ready_is_404_even_with_files(client, owner, make_video):
    user = await owner()
    video_id = await make_video(user["id"], ready=False)  # queued, files present anyway
    for path in (f"/api/video/{video_id}/720p/index.m3u8", f"/api/video/{video_id}/720p/{SEGMENT}",
                 f"/api/video/{video_id}/master.m3u8", f"/api/video/{video_id}/stream/"):
        assert_json_404(await get(client, path))


@pytest.mark.gen_test
async def test_unknown_videos_and_ids_are_404(client, owner):
    await owner()
    for raw in ("999", "0", "01", "-1", "abc", "1.0", "9" * 19, "9" * 400, "%31"):
        assert_json_404(await get(client, f"/api/video/{raw}/720p/{SEGMENT}"))
        assert_json_404(await get(client, f"/api/video/{raw}/720p/index.m3u8"))


@pytest.mark.gen_test
async def test_rendition_above_the_highest_is_served_from_the_highest(client, owner, make_video, config):
    user = await owner()
    video_id = await make_video(user["id"], resolutions=("480p",))
    lowest = version_dir(config, video_id) / "480p"
    for requested in ("720p", "1080p"):
        playlist = await get(client, f"/api/video/{video_id}/{requested}/index.m3u8")
        assert playlist.code == 200 and playlist.body == (lowest / "index.m3u8").read_bytes()
        segment = await get(client, f"/api/video/{video_id}/{requested}/{SEGMENT}")
        assert segment.code == 200 and segment.body == (lowest / SEGMENT).read_bytes()


@pytest.mark.gen_test
async def test_unknown_or_missing_resolution_is_404(client, owner, make_video):
    user = await owner()
    video_id = await make_video(user["id"], resolutions=("720p",))
    for resolution in ("360p", "1440p", "4k", "720P", "720", "480p", "..", "%2e%2e", "720p%00"):
        assert_json_404(await get(client, f"/api/video/{video_id}/{resolution}/index.m3u8"))
        assert_json_404(await get(client, f"/api/video/{video_id}/{resolution}/{SEGMENT}"))


@pytest.mark.gen_test
async def test_unknown_segment_names_are_404(client, owner, make_video):
    user = await owner()
    video_id = await make_video(user["id"])
    for name in ("seg_00004.ts", "seg_99999.ts", "thumbnail.jpg", "master.m3u8"):
        for suffix in ("", "/"):
            assert_json_404(await get(client, f"/api/video/{video_id}/720p/{name}{suffix}"))
    # Playlists have no trailing-slash form: that path names a segment.
    assert_json_404(await get(client, f"/api/video/{video_id}/720p/index.m3u8/"))


TRAVERSALS = [
    "..%2F..%2Fetc%2Fpasswd",
    "..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%2e%2e",
    "%2E%2E%2F",
    "..",
    ".",
    "..%252F..%252Fetc%252Fpasswd",
    "%252e%252e%252fetc%252fpasswd",
    "..%5C..%5Cetc%5Cpasswd",
    "..%5c..%5c..%5cwindows%5cwin.ini",
    "seg_00000.ts%00.jpg",
    "seg_00000.ts%00",
    "%00seg_00000.ts",
    "%2Fetc%2Fpasswd",
    "%2F%2Fetc%2Fpasswd",
    "%2Fproc%2Fself%2Fenviron",
    "file:%2F%2F%2Fetc%2Fpasswd",
    "seg_0.ts",
    "SEG_00000.TS",
    "seg_00000.TS",
    "seg_000000.ts",
    "seg_00000.ts.bak",
    "seg_00000.ts%2F",
    "seg_00000.ts%0A",
    "seg_%D9%A0%D9%A0%D9%A0%D9%A0%D9%A0.ts",  # Arabic-Indic digits match a Unicode \d
    "seg_00000.ts%20",
    "%ff%fe",
    "~root",
    "seg_" + "0" * 292 + ".ts",  # 300 characters
    "a" * 300,
    "..%2F480p%2F" + SEGMENT,
    "seg_00099.ts",  # a symlink to /etc/passwd inside the directory
    "seg_00098.ts",  # a symlink to another video's segment (outside media/<id>/)
    "seg_00097.ts",  # a FIFO: must neither hang nor be served
    "seg_00096.ts",  # a directory
]


@LOCAL_ONLY
@pytest.mark.gen_test
async def test_traversal_and_odd_names_are_404_json_and_touch_nothing_outside(
        client, owner, make_video, config):
    user = await owner()
    video_id = await make_video(user["id"])
    neighbour = await make_video(user["id"])
    rendition = version_dir(config, video_id) / "720p"
    (rendition / "seg_00099.ts").symlink_to("/etc/passwd")
    (rendition / "seg_00098.ts").symlink_to(version_dir(config, neighbour) / "720p" / SEGMENT)
    os.mkfifo(rendition / "seg_00097.ts")
    (rendition / "seg_00096.ts").mkdir()
    for name in TRAVERSALS:
        for suffix in ("", "/"):
            response = await get(client, f"/api/video/{video_id}/720p/{name}{suffix}")
            assert_json_404(response)
            assert b"root:" not in response.body
    # The same in the other path parts, and as whole paths.
    for path in (f"/api/video/{video_id}/..%2F..%2F/{SEGMENT}",
                 f"/api/video/{video_id}/%2e%2e/index.m3u8",
                 f"/api/video/..%2F{video_id}/720p/{SEGMENT}",
                 f"/api/video/{video_id}/720p/../../../../etc/passwd",
                 f"/api/video/{video_id}/720p/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                 "/api/video//etc/passwd/seg_00000.ts",
                 f"/api/video/{video_id}//etc/passwd",
                 "/media/thumbnail/..%2F..%2Fetc%2Fpasswd",
                 "/media/thumbnail/1.jpg%00",
                 f"/api/stream/x/{video_id}/720p/..%2F..%2Fetc%2Fpasswd"):
        assert_json_404(await get(client, path))


@LOCAL_ONLY
@pytest.mark.gen_test
async def test_no_symlink_below_the_video_directory_is_followed(client, owner, make_video, config, services):
    """Stricter than "resolves inside": every component below media/<id>/ is opened
    with O_NOFOLLOW, so even a link to a sibling file is refused; the video
    directory itself may be a link (media on another disk)."""
    user = await owner()
    video_id = await make_video(user["id"], resolutions=("720p", "480p"))
    directory = media.video_dir(config.media_dir, video_id)
    version = version_dir(config, video_id)
    (version / "720p" / "seg_00090.ts").symlink_to(version / "720p" / SEGMENT)
    (version / "1080p").symlink_to(version / "720p", target_is_directory=True)
    async with cursor(services.pool) as cur:
        await cur.execute("UPDATE videos SET resolutions = %s WHERE id = %s",
                          (["1080p", "720p", "480p"], video_id))
    assert_json_404(await get(client, f"/api/video/{video_id}/720p/seg_00090.ts"))
    assert_json_404(await get(client, f"/api/video/{video_id}/1080p/{SEGMENT}"))
    assert_json_404(await get(client, f"/api/video/{video_id}/1080p/index.m3u8"))
    moved = directory.with_name(f"{video_id}-elsewhere")
    directory.rename(moved)
    directory.symlink_to(moved, target_is_directory=True)
    response = await get(client, f"/api/video/{video_id}/720p/{SEGMENT}")
    assert response.code == 200 and response.body == (moved / version.name / "720p" / SEGMENT).read_bytes()


@pytest.mark.gen_test
async def test_video_row_cache_is_dropped_by_forget_video(client, owner, make_video, services):
    user = await owner()
    video_id = await make_video(user["id"])
    path = f"/api/video/{video_id}/720p/{SEGMENT}"
    assert (await get(client, path)).code == 200
    async with cursor(services.pool) as cur:
        assert await videos.delete_video(cur, video_id)  # the row only: the files are still there
    playback.forget_video(services, video_id)
    assert_json_404(await get(client, path))


# --- signed stream URLs ----------------------------------------------------------------

async def stream_url(client, video_id: int) -> str:
    response = await get(client, f"/api/video/{video_id}/stream/")
    assert response.code == 200, response.body
    return json.loads(response.body)["url"]


def relative(config, url: str) -> str:
    assert url.startswith(config.public_url + "/")
    return url[len(config.public_url):]


@pytest.mark.gen_test
async def test_stream_url_shape(client, owner, make_video, config):
    user = await owner()
    video_id = await make_video(user["id"], visibility="private")
    before = int(time.time())
    response = await get(client, f"/api/video/{video_id}/stream/")
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["Cache-Control"] == "no-store"
    body = json.loads(response.body)
    assert set(body) == {"url", "expires_at"}
    prefix = f"{config.public_url}/api/stream/"
    assert body["url"].startswith(prefix) and body["url"].endswith(f"/{video_id}/master.m3u8")
    token = body["url"][len(prefix):].split("/")[0]
    assert tokens.read_stream_token(config.secret_key, token, video_id=video_id, now=before).user_id == user["id"]
    assert body["expires_at"].endswith("Z")
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert expires.tzinfo is not None and expires.utcoffset().total_seconds() == 0
    assert before + config.stream_token_ttl - 5 <= expires.timestamp() <= time.time() + config.stream_token_ttl


@pytest.mark.gen_test
async def test_stream_url_serves_every_file_without_cookies(client, owner, make_video, config, new_client):
    user = await owner()
    video_id = await make_video(user["id"], visibility="private")
    url = await stream_url(client, video_id)
    player = new_client()  # no cookies at all
    base = relative(config, url).rsplit("/", 1)[0]
    master = await get(player, relative(config, url), headers={"Origin": ORIGIN})
    assert master.code == 200 and master.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert master.headers["Access-Control-Allow-Origin"] == ORIGIN
    playlist = await get(player, f"{base}/720p/index.m3u8")
    assert playlist.code == 200 and b"seg_00000.ts" in playlist.body
    for suffix in ("", "/"):
        segment = await get(player, f"{base}/720p/{SEGMENT}{suffix}", headers={"Range": "bytes=0-187"})
        assert segment.code == 206 and segment.body == segment_bytes(config, video_id)[:188]
    head = await get(player, f"{base}/480p/{SEGMENT}", method="HEAD")
    assert head.code == 200 and head.body == b""
    assert_json_404(await get(player, f"{base}/720p/seg_0.ts"))
    assert_json_404(await get(player, f"{base}/360p/index.m3u8"))


async def run(*command: str) -> tuple[int, bytes, bytes]:
    process = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.DEVNULL,
                                                   stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 50)
    return process.returncode, out, err


@pytest.mark.gen_test(timeout=60)
async def test_stream_url_plays_in_ffprobe_and_ffmpeg(client, owner, make_video, hls_ladder):
    user = await owner()
    video_id = await make_video(user["id"], visibility="private")
    url = await stream_url(client, video_id)
    code, out, err = await run("ffprobe", "-v", "error", "-print_format", "json", "-show_streams",
                               "-show_format", url)
    assert code == 0, err.decode()
    probe = json.loads(out)
    kinds = {stream["codec_type"] for stream in probe["streams"]}
    assert kinds == {"video", "audio"}
    heights = {stream.get("height") for stream in probe["streams"] if stream["codec_type"] == "video"}
    assert heights == {1080, 720, 480}  # every variant of the master playlist opened
    assert abs(float(probe["format"]["duration"]) - hls_ladder[1].duration) < 0.5
    code, out, err = await run("ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", url,
                               "-map", "0", "-c", "copy", "-f", "null", "-")
    assert code == 0, err.decode()
    assert b"error" not in err.lower()


@pytest.mark.gen_test
async def test_expired_stream_token_is_401(client, owner, make_video, config, new_client):
    user = await owner()
    video_id = await make_video(user["id"])
    old, _ = tokens.make_stream_token(config.secret_key, video_id=video_id, user_id=user["id"],
                                      token_version=0, now=int(time.time()) - config.stream_token_ttl - 1,
                                      ttl_seconds=config.stream_token_ttl, session_id=tokens.new_session_id())
    for path in (f"/api/stream/{old}/{video_id}/master.m3u8",
                 f"/api/stream/{old}/{video_id}/720p/index.m3u8",
                 f"/api/stream/{old}/{video_id}/720p/{SEGMENT}"):
        response = await get(new_client(), path)
        assert response.code == 401, path
        assert json.loads(response.body) == {"detail": "Invalid or expired token."}
    fresh, _ = tokens.make_stream_token(config.secret_key, video_id=video_id, user_id=user["id"],
                                        token_version=0, now=int(time.time()), ttl_seconds=60,
                                        session_id=tokens.new_session_id())
    assert (await get(new_client(), f"/api/stream/{fresh}/{video_id}/master.m3u8")).code == 200
    # A token for one video opens no other.
    other_id = await make_video(user["id"])
    assert (await get(new_client(), f"/api/stream/{fresh}/{other_id}/master.m3u8")).code == 401


@pytest.mark.gen_test
async def test_stream_url_dies_with_a_password_change(client, owner, make_video, config, services, new_client):
    user = await owner()
    video_id = await make_video(user["id"])
    path = relative(config, await stream_url(client, video_id))
    segment = path.replace("master.m3u8", f"720p/{SEGMENT}")
    assert (await get(new_client(), segment)).code == 200
    async with cursor(services.pool) as cur:
        await cur.execute("UPDATE users SET token_version = token_version + 1 WHERE id = %s", (user["id"],))
    for target in (path, segment):
        response = await get(new_client(), target)
        assert response.code == 401
        assert json.loads(response.body) == {"detail": "Invalid or expired token."}
    # The old session (its JWT still carries the old version) may not mint new URLs.
    assert (await get(client, f"/api/video/{video_id}/stream/")).code == 401


@pytest.mark.gen_test
async def test_stream_url_dies_with_the_video(client, owner, make_video, config, services, new_client):
    user = await owner()
    video_id = await make_video(user["id"])
    path = relative(config, await stream_url(client, video_id))
    assert (await get(new_client(), path)).code == 200
    async with cursor(services.pool) as cur:
        assert await videos.delete_video(cur, video_id)  # files left on disk on purpose
    assert_json_404(await get(new_client(), path))
    assert_json_404(await get(new_client(), path.replace("master.m3u8", f"720p/{SEGMENT}")))


@pytest.mark.gen_test
async def test_stream_url_for_unknown_or_unwatchable_video_is_404(client, owner, make_video):
    user = await owner()
    not_ready = await make_video(user["id"], ready=False)
    for raw in ("999", "abc", str(not_ready)):
        assert_json_404(await get(client, f"/api/video/{raw}/stream/"))


# --- images ------------------------------------------------------------------------------

@pytest.mark.gen_test
async def test_public_videos_thumbnail_and_poster_are_public_with_long_cache(client, owner, make_video, config,
                                                                            new_client):
    # A private video's images: tests/test_private_images.py.
    user = await owner()
    video_id = await make_video(user["id"], visibility="public")
    anonymous = new_client()
    for kind, name in (("thumbnail", "thumbnail.jpg"), ("poster", "poster.jpg")):
        response = await get(anonymous, f"/media/{kind}/{video_id}.jpg", headers={"Origin": ORIGIN})
        assert response.code == 200
        assert response.headers["Content-Type"] == "image/jpeg"
        assert response.headers["Cache-Control"] == "public, max-age=604800"
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert response.body == (version_dir(config, video_id) / name).read_bytes()
        assert response.body[:2] == b"\xff\xd8"
        again = await get(anonymous, f"/media/{kind}/{video_id}.jpg",
                          headers={"If-None-Match": response.headers["Etag"]})
        assert again.code == 304


@pytest.mark.gen_test
async def test_unknown_thumbnails_are_404_json(client, owner, make_video, new_client):
    user = await owner()
    video_id = await make_video(user["id"])
    anonymous = new_client()
    for path in ("/media/thumbnail/999.jpg", f"/media/thumbnail/{video_id}.png", f"/media/thumbnail/{video_id}",
                 f"/media/thumbnail/0{video_id}.jpg", "/media/thumbnail/abc.jpg", "/media/poster/999.jpg",
                 f"/media/thumbnail/{video_id}.jpg/", f"/media/other/{video_id}.jpg"):
        assert_json_404(await get(anonymous, path))
