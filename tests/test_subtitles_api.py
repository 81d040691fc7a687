"""POST/GET/DELETE /api/video/<id>/subtitles/ (API.md §6) and the detail's `subtitles`."""
from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest

from videoflix.library import subtitle_formats
from videoflix.platform import media

from helpers import login, make_ready_video, multipart
from store_helpers import STORAGE_BACKENDS, publish_stored, read_stored, stored_keys

SRT = (b"1\n00:00:01,000 --> 00:00:02,500\nHello <i>world</i>\n\n"
       b"2\n00:00:03,000 --> 00:00:04,000\nSecond line\n")
VTT = b"WEBVTT\n\n00:00.500 --> 00:01.500\nBonjour\n"


def subtitle_body(filename: str | None = "film.srt", content: bytes | None = SRT, **fields: str) -> tuple[bytes, str]:
    return multipart(fields, filename, content)


async def post_subtitles(client, video_id: int, filename: str | None = "film.srt", content: bytes | None = SRT,
                         headers: dict | None = None, **fields: str):
    body, content_type = subtitle_body(filename, content, **fields)
    return await client.fetch("POST", f"/api/video/{video_id}/subtitles/", raw_body=body,
                              headers={"Content-Type": content_type, **(headers or {})})


@pytest.fixture(params=STORAGE_BACKENDS)
def storage_backend(request):
    """The local store and a bucket: a track's file and its cut are objects there."""
    return request.param


@pytest.fixture
def owned_video(io_loop, make_user, services):
    """(user, video id): a ready private video of a logged-in user (no files needed)."""
    async def make():
        user = await make_user("owner@example.com")
        video_id = await make_ready_video(services, user["id"], visibility="private")
        return user, video_id
    return io_loop.run_sync(make)


@pytest.mark.gen_test(timeout=30)
async def test_owner_uploads_srt_and_the_detail_lists_it(client, owned_video, config, services):
    _, video_id = owned_video
    response = await post_subtitles(client, video_id, language="EN-us", label="English (CC)")
    assert response.status == 201, response.body
    url = f"{config.public_url}/api/video/{video_id}/subtitles/en-US/"
    assert response.json() == {"language": "en-US", "label": "English (CC)", "url": url}
    detail = (await client.get(f"/api/video/{video_id}/")).json()
    assert detail["subtitles"] == [{"language": "en-US", "label": "English (CC)", "url": url}]
    stored = (await read_stored(services, media.subtitle_path(config.media_dir, video_id, "en-US"))).decode()
    assert await stored_keys(services, config, media.subtitles_dir(config.media_dir, video_id)) == [
        f"{video_id}/subtitles/en-US.4000.cut", f"{video_id}/subtitles/en-US.vtt"]
    assert stored.startswith("WEBVTT\n\n00:00:01.000 --> 00:00:02.500\nHello <i>world</i>\n")
    served = await client.get(f"/api/video/{video_id}/subtitles/en-us/")
    assert served.status == 200
    assert served.headers["Content-Type"].startswith("text/vtt")
    assert served.body.decode() == stored


@pytest.mark.gen_test(timeout=30)
async def test_vtt_upload_without_label_is_named_after_its_language(client, owned_video):
    _, video_id = owned_video
    response = await post_subtitles(client, video_id, "bonjour.VTT", VTT, language="fra")
    assert response.status == 201, response.body
    assert response.json()["language"] == "fr" and response.json()["label"] == "French"
    cues = subtitle_formats.parse_vtt((await client.get(f"/api/video/{video_id}/subtitles/fr/")).body)
    assert cues == [subtitle_formats.Cue(500, 1500, "Bonjour")]


@pytest.mark.gen_test(timeout=30)
async def test_same_language_again_replaces_it(client, owned_video):
    _, video_id = owned_video
    assert (await post_subtitles(client, video_id, language="en", label="Old")).status == 201
    response = await post_subtitles(client, video_id, "new.vtt", VTT, language="en", label="New")
    assert response.status == 201, response.body
    detail = (await client.get(f"/api/video/{video_id}/")).json()
    assert [(s["language"], s["label"]) for s in detail["subtitles"]] == [("en", "New")]
    assert b"Bonjour" in (await client.get(f"/api/video/{video_id}/subtitles/en/")).body


@pytest.mark.gen_test(timeout=30)
async def test_label_of_another_language_returns_400(client, owned_video):
    _, video_id = owned_video
    assert (await post_subtitles(client, video_id, language="en", label="Subs")).status == 201
    response = await post_subtitles(client, video_id, language="de", label="Subs")
    assert response.status == 400
    assert "label" in response.json()


@pytest.mark.gen_test(timeout=30)
async def test_default_label_taken_is_numbered(client, owned_video):
    _, video_id = owned_video
    assert (await post_subtitles(client, video_id, language="de", label="English")).status == 201
    response = await post_subtitles(client, video_id, language="en")
    assert response.status == 201 and response.json()["label"] == "English (2)"


@pytest.mark.gen_test(timeout=30)
async def test_not_owner_gets_404_and_admin_may(client, new_client, owned_video, make_user, make_admin):
    _, video_id = owned_video
    other = new_client()
    await make_user("other@example.com", log_in=False)
    await login(other, "other@example.com")
    response = await post_subtitles(other, video_id, language="en")
    assert response.status == 404
    assert (await other.get(f"/api/video/{video_id}/subtitles/en/")).status == 404
    assert (await post_subtitles(client, video_id, language="en")).status == 201
    assert (await other.fetch("DELETE", f"/api/video/{video_id}/subtitles/en/")).status == 404
    assert (await other.get(f"/api/video/{video_id}/subtitles/en/")).status == 404  # private video
    admin = new_client()
    await make_admin(admin)
    assert (await post_subtitles(admin, video_id, language="de")).status == 201
    assert (await admin.fetch("DELETE", f"/api/video/{video_id}/subtitles/en/")).status == 204


@pytest.mark.gen_test(timeout=30)
async def test_unknown_video_returns_404(client, owned_video):
    assert (await post_subtitles(client, 999999, language="en")).status == 404
    assert (await client.fetch("DELETE", "/api/video/999999/subtitles/en/")).status == 404
    assert (await post_subtitles(client, 0, language="en")).status == 404


@pytest.mark.gen_test(timeout=30)
async def test_anonymous_gets_401(client, new_client, owned_video):
    _, video_id = owned_video
    anonymous = new_client()
    assert (await post_subtitles(anonymous, video_id, language="en")).status == 401
    assert (await anonymous.fetch("DELETE", f"/api/video/{video_id}/subtitles/en/")).status == 401
    assert (await anonymous.get(f"/api/video/{video_id}/subtitles/en/")).status == 401


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("language", ["xx", "english", "en_US", "en-", "a" * 70, "../../etc", "de\u0000", "fr-YY"])
async def test_bad_language_tag_returns_400(client, owned_video, language):
    _, video_id = owned_video
    response = await post_subtitles(client, video_id, language=language)
    assert response.status == 400, response.body
    assert "language" in response.json()


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("filename, content, message", [
    ("film.srt", b"this is not a subtitle file\n", "Line 1"),
    ("film.srt", b"1\n00:00:05,000 --> 00:00:01,000\nbackwards\n", "ends before it starts"),
    ("film.vtt", b"WEBVTT\n\n00:01.000 --> 00:02.000\nx\x00\n", "NUL"),
    ("film.srt", bytes(range(256)) * 40, ""),
    ("film.vtt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ""),
    ("film.srt", b"1\n00:00:01,000 --> 00:00:02,000\n\xc3\x28\n", "UTF-8"),
    ("film.txt", SRT, ".vtt or .srt"),
    ("film", SRT, ".vtt or .srt"),
    ("film.vtt", SRT, "WEBVTT"),
    ("film.srt", b"", ""),
])
async def test_bad_file_returns_400_with_the_reason(client, owned_video, filename, content, message):
    _, video_id = owned_video
    response = await post_subtitles(client, video_id, filename, content, language="en")
    assert response.status == 400, response.body
    errors = response.json()
    assert "file" in errors and message in errors["file"][0]


@pytest.mark.gen_test(timeout=30)
async def test_oversized_file_returns_413(client, owned_video):
    _, video_id = owned_video
    big = b"1\n00:00:01,000 --> 00:00:02,000\n" + b"x" * subtitle_formats.MAX_FILE_BYTES
    response = await post_subtitles(client, video_id, "big.srt", big, language="en")
    assert response.status == 413
    assert "too large" in response.json()["detail"]


@pytest.mark.gen_test(timeout=30)
async def test_declared_oversized_body_returns_413_before_reading_it(client, owned_video, base_url):
    _, video_id = owned_video
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        # Only the head is sent: the answer comes without the body.
        writer.write((f"POST /api/video/{video_id}/subtitles/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
                      "Content-Type: multipart/form-data; boundary=zz\r\n"
                      f"Content-Length: {subtitle_formats.MAX_FILE_BYTES * 2}\r\n\r\n").encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    assert status_line.split()[1] == b"413"


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "application/x-www-form-urlencoded",
                                          "text/vtt", ""])
async def test_wrong_content_type_returns_415(client, owned_video, content_type):
    _, video_id = owned_video
    response = await client.fetch("POST", f"/api/video/{video_id}/subtitles/", raw_body=SRT,
                                  headers={"Content-Type": content_type})
    assert response.status == 415
    assert response.json() == {"detail": "Expected multipart/form-data."}


@pytest.mark.gen_test(timeout=30)
async def test_missing_fields_return_400_per_field(client, owned_video):
    _, video_id = owned_video
    no_file = await post_subtitles(client, video_id, None, None, language="en")
    assert no_file.status == 400 and no_file.json() == {"file": ["No file was submitted."]}
    no_language = await post_subtitles(client, video_id)
    assert no_language.status == 400 and no_language.json() == {"language": ["This field is required."]}
    nothing = await post_subtitles(client, video_id, None, None)
    assert set(nothing.json()) == {"file", "language"}


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("label", ['Say "hi"', "x" * 65, "bell\x07"])
async def test_bad_label_returns_400(client, owned_video, label):
    _, video_id = owned_video
    response = await post_subtitles(client, video_id, language="en", label=label)
    assert response.status == 400 and "label" in response.json()


@pytest.mark.gen_test(timeout=30)
async def test_malformed_multipart_and_two_files_return_400(client, owned_video):
    _, video_id = owned_video
    response = await client.fetch("POST", f"/api/video/{video_id}/subtitles/", raw_body=b"--nope\r\ngarbage",
                                  headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert response.status == 400
    body, content_type = multipart({"language": "en"}, "a.srt", SRT)
    twice = body.replace(b"--\r\n", b"\r\n", 1)  # drop the closing delimiter ...
    boundary = content_type.split("boundary=")[1]
    twice = body[:body.rindex(f"--{boundary}--".encode())] + (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="b.srt"\r\n\r\n'.encode()
        + SRT + f"\r\n--{boundary}--\r\n".encode())
    response = await client.fetch("POST", f"/api/video/{video_id}/subtitles/", raw_body=twice,
                                  headers={"Content-Type": content_type})
    assert response.status == 400
    assert "one file" in response.json()["detail"]


@pytest.mark.gen_test(timeout=30)
async def test_cross_site_upload_returns_403(client, owned_video):
    _, video_id = owned_video
    response = await post_subtitles(client, video_id, language="en", headers={"Origin": "https://evil.example"})
    assert response.status == 403


@pytest.mark.gen_test(timeout=30)
async def test_delete_removes_row_and_file(client, owned_video, config, services):
    _, video_id = owned_video
    assert (await post_subtitles(client, video_id, language="pt-BR")).status == 201
    assert (await post_subtitles(client, video_id, language="en")).status == 201
    folder = media.subtitles_dir(config.media_dir, video_id)
    assert len(await stored_keys(services, config, folder)) == 4  # two files, two cuts
    response = await client.fetch("DELETE", f"/api/video/{video_id}/subtitles/PT-br/")
    assert response.status == 204
    assert await stored_keys(services, config, folder) == [
        f"{video_id}/subtitles/en.4000.cut", f"{video_id}/subtitles/en.vtt"]
    assert [item["language"] for item in (await client.get(f"/api/video/{video_id}/")).json()["subtitles"]] == ["en"]
    assert (await client.get(f"/api/video/{video_id}/subtitles/pt-BR/")).status == 404


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("language", ["de", "xx", "..", "en%2F..", "a" * 200])
async def test_delete_of_an_unknown_language_returns_404(client, owned_video, language):
    _, video_id = owned_video
    assert (await post_subtitles(client, video_id, language="en")).status == 201
    response = await client.fetch("DELETE", f"/api/video/{video_id}/subtitles/{language}/")
    assert response.status == 404
    assert (await client.get(f"/api/video/{video_id}/")).json()["subtitles"] != []


@pytest.mark.gen_test(timeout=30)
async def test_deleting_the_video_removes_its_subtitles(client, owned_video, config, services):
    _, video_id = owned_video
    assert (await post_subtitles(client, video_id, language="en")).status == 201
    assert (await client.fetch("DELETE", f"/api/video/{video_id}/")).status == 204
    assert not media.subtitles_dir(config.media_dir, video_id).exists()
    assert await stored_keys(services, config, media.subtitles_dir(config.media_dir, video_id)) == []
    from videoflix.platform.db import cursor
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT count(*) AS n FROM subtitles")
        assert (await cur.fetchone())["n"] == 0


@pytest.mark.gen_test(timeout=60)
async def test_a_track_is_served_as_hls_from_its_cut_and_cut_again_when_replaced(
        client, make_user, services, config, small_ladder):
    """The version's subtitle playlist and segments (subtitle_hls.render_hls, what the
    HLS handlers answer) from either store: a segment is a read of the cut made at upload;
    a replaced file's cut is remade; a cut for another segment length is made on request."""
    from videoflix.library import subtitle_hls

    user = await make_user("owner@example.com")
    video_id = await publish_stored(services, config, user["id"], *small_ladder)
    srt = (b"1\n00:00:00,500 --> 00:00:01,500\nfirst\n\n"
           b"2\n00:00:03,000 --> 00:00:05,000\nacross the boundary\n")
    assert (await post_subtitles(client, video_id, "en.srt", srt, language="en")).status == 201
    playlist = (await subtitle_hls.render_hls(config, services, video_id, 1, "en", None)).decode()
    assert playlist.startswith("#EXTM3U") and "seg_00000.vtt" in playlist and "seg_00001.vtt" in playlist
    first = (await subtitle_hls.render_hls(config, services, video_id, 1, "en", "seg_00000.vtt")).decode()
    assert first.startswith("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:") and "first" in first and "across" in first
    second = (await subtitle_hls.render_hls(config, services, video_id, 1, "en", "seg_00001.vtt")).decode()
    assert "across the boundary" in second and "first" not in second
    with pytest.raises(subtitle_hls.SubtitleUnavailable):
        await subtitle_hls.render_hls(config, services, video_id, 1, "fr", None)
    with pytest.raises(subtitle_hls.SubtitleUnavailable):
        await subtitle_hls.render_hls(config, services, video_id, 1, "en", "seg_09999.vtt")
    # Replaced: the new file's cut answers (a stale cut is never served).
    assert (await post_subtitles(client, video_id, "en.vtt", VTT, language="en")).status == 201
    again = (await subtitle_hls.render_hls(config, services, video_id, 1, "en", "seg_00000.vtt")).decode()
    assert "Bonjour" in again and "first" not in again
    # A stale cut (the file rewritten behind its back) is cut again on request.
    source = media.subtitle_path(config.media_dir, video_id, "en")
    await services.storage.write_bytes(source, b"WEBVTT\n\n00:00.100 --> 00:00.900\nrewritten\n")
    rewritten = (await subtitle_hls.render_hls(config, services, video_id, 1, "en", "seg_00000.vtt")).decode()
    assert "rewritten" in rewritten and "Bonjour" not in rewritten
