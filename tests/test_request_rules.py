"""API.md §5: origins, content types, body sizes and timeouts, hostile JSON (issue 8, items 5, 7, 8)."""
from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from videoflix.platform.db import cursor
from videoflix.web import base, requestrules

from helpers import PASSWORD, login, upload

CROSS_SITE = {"detail": "Cross-site request refused."}
EXPECTED_JSON = {"detail": "Expected application/json."}

HOSTILE_ORIGINS = [
    "http://evil.example",
    "http://127.0.0.1:5501",            # same host, another port: same-site, not same-origin
    "https://127.0.0.1:5500",           # allow-listed host and port, other scheme
    "http://127.0.0.1:5500.evil.example",
    "null",                             # sandboxed frame
    "http://localhost:5500@evil.example",
    "garbage",
]


# --- pure parts ---------------------------------------------------------------

@pytest.mark.parametrize("url, origin", [
    ("HTTP://Example.COM:80/path?q", "http://example.com"),
    ("https://example.com:443", "https://example.com"),
    ("http://127.0.0.1:5500/", "http://127.0.0.1:5500"),
    ("http://[::1]:8000/x", "http://[::1]:8000"),
    ("null", "null"),
    ("ftp://example.com", None),
    ("http://", None),
    ("http://host:99999", None),
])
def test_origin_of_normalises(url, origin):
    assert requestrules.origin_of(url) == origin


@pytest.mark.parametrize("content_type, ok", [
    ("application/json", True), ("Application/JSON; charset=utf-8", True),
    ("application/merge-patch+json", True), ("text/plain", False),
    ("application/x-www-form-urlencoded", False), ("multipart/form-data; boundary=x", False),
    ("", False), ("application/jsonx", False),
])
def test_json_content_types(content_type, ok):
    assert requestrules.is_json_type(content_type) is ok


# --- Origin -------------------------------------------------------------------

async def active_user(client, make_user) -> None:
    await make_user()
    client.cookies.clear()


@pytest.mark.gen_test
@pytest.mark.parametrize("origin", HOSTILE_ORIGINS)
async def test_cross_site_login_is_refused_with_403_and_no_cookies(client, make_user, origin):
    await active_user(client, make_user)
    response = await client.post("/api/login/", {"email": "user@example.com", "password": PASSWORD},
                                 headers={"Origin": origin})
    assert (response.status, response.json()) == (403, CROSS_SITE)
    assert response.cookies() == {}


@pytest.mark.gen_test
@pytest.mark.parametrize("referer", ["http://evil.example/page", "http://127.0.0.1:5501/x", "not a url"])
async def test_cross_site_referer_without_origin_is_refused(client, make_user, referer):
    await active_user(client, make_user)
    response = await client.post("/api/login/", {"email": "user@example.com", "password": PASSWORD},
                                 headers={"Referer": referer})
    assert (response.status, response.json()) == (403, CROSS_SITE)


@pytest.mark.gen_test
async def test_allowed_origins_referers_and_no_header_log_in(client, make_user, config):
    await active_user(client, make_user)
    own = requestrules.origin_of(config.public_url)
    for headers in ({"Origin": "http://127.0.0.1:5500"}, {"Origin": "http://localhost:5500/"},
                    {"Origin": own}, {"Referer": own + "/pages/auth/login.html"},
                    {"Referer": "http://127.0.0.1:5500/index.html"}, {}):
        response = await client.post("/api/login/", {"email": "user@example.com", "password": PASSWORD},
                                     headers=headers)
        assert response.status == 200, (headers, response.body)


@pytest.mark.gen_test
async def test_a_page_served_under_another_host_name_posts_back_same_origin(client, make_user, base_url):
    # `make run` serves http://127.0.0.1:8000, but a user may open http://localhost:8000:
    # the pages' own requests then carry Origin and Host of localhost (same origin).
    await active_user(client, make_user)
    port = urlsplit(base_url).port
    response = await client.post("/api/login/", {"email": "user@example.com", "password": PASSWORD},
                                 headers={"Origin": f"http://localhost:{port}", "Host": f"localhost:{port}"})
    assert response.status == 200, response.body
    # ... while the same Origin sent to the server under its other name is cross-site.
    response = await client.post("/api/login/", {"email": "user@example.com", "password": PASSWORD},
                                 headers={"Origin": f"http://localhost:{port + 1}"})
    assert (response.status, response.json()) == (403, CROSS_SITE)


@pytest.mark.gen_test
async def test_cross_site_logout_does_not_end_the_session(client, make_user):
    await make_user()
    response = await client.post("/api/logout/", headers={"Origin": "http://evil.example"})
    assert (response.status, response.json()) == (403, CROSS_SITE)
    refreshed = await client.post("/api/token/refresh/")
    assert refreshed.status == 200


@pytest.mark.gen_test
async def test_cross_site_upload_and_delete_are_refused(client, make_user, make_admin, new_client,
                                                       services, config, small_clip):
    await make_user()
    body_origin = {"Origin": "http://evil.example"}
    from helpers import multipart
    body, content_type = multipart({"title": "t"}, "clip.mp4", small_clip.read_bytes())
    response = await client.fetch("POST", "/api/video/", raw_body=body,
                                  headers={"Content-Type": content_type, **body_origin})
    assert (response.status, response.json()) == (403, CROSS_SITE)
    admin = new_client()
    await make_admin(admin)
    created = await upload(admin, small_clip)
    assert created.status == 201
    video_id = created.json()["id"]
    response = await admin.fetch("DELETE", f"/api/video/{video_id}/", headers=body_origin)
    assert (response.status, response.json()) == (403, CROSS_SITE)
    assert (await admin.get(f"/api/video/{video_id}/", headers=body_origin)).status == 200
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT count(*) AS n FROM videos")
        assert (await cur.fetchone())["n"] == 1


@pytest.mark.gen_test
async def test_safe_methods_ignore_origin(client, make_user):
    await make_user()
    response = await client.get("/api/video/", headers={"Origin": "http://evil.example"})
    assert response.status == 200
    assert "Access-Control-Allow-Origin" not in response.headers


# --- Content type ---------------------------------------------------------------

@pytest.mark.gen_test
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=xyz", "application/xml", ""])
async def test_json_endpoints_refuse_other_content_types_with_415(client, make_user, content_type):
    await active_user(client, make_user)
    body = json.dumps({"email": "user@example.com", "password": PASSWORD}).encode()
    for path in ("/api/login/", "/api/register/", "/api/password_reset/"):
        response = await client.fetch("POST", path, raw_body=body, headers={"Content-Type": content_type})
        assert (response.status, response.json()) == (415, EXPECTED_JSON), path
    assert "access_token" not in client.cookies


@pytest.mark.gen_test
async def test_json_with_charset_and_bodyless_refresh_and_logout_still_work(client, make_user):
    await active_user(client, make_user)
    response = await client.post("/api/login/", {"email": "user@example.com", "password": PASSWORD},
                                 headers={"Content-Type": "application/json; charset=UTF-8"})
    assert response.status == 200
    # The official frontend refreshes and logs out with no body and no Content-Type worth reading.
    refreshed = await client.fetch("POST", "/api/token/refresh/", headers={"Content-Type": "text/plain"})
    assert refreshed.status == 200
    logged_out = await client.fetch("POST", "/api/logout/", headers={"Content-Type": ""})
    assert logged_out.status == 200


# --- Sizes and timeouts --------------------------------------------------------------

@pytest.mark.gen_test
async def test_json_body_over_64_kib_is_413(client, make_user):
    await active_user(client, make_user)
    big = {"email": "user@example.com", "password": PASSWORD, "padding": "x" * requestrules.MAX_JSON_BODY_BYTES}
    response = await client.post("/api/login/", big)
    assert response.status == 413
    assert "limited to 65536 bytes" in response.json()["detail"]


@pytest.mark.gen_test
async def test_json_body_just_under_the_cap_is_accepted(client, make_user):
    await active_user(client, make_user)
    body = {"email": "user@example.com", "password": PASSWORD}
    body["padding"] = "x" * (requestrules.MAX_JSON_BODY_BYTES - len(json.dumps(body)) - 20)
    response = await client.post("/api/login/", body)
    assert response.status == 200


async def raw_exchange(base_url: str, request: bytes, read_timeout: float = 15) -> bytes:
    """Send bytes on a fresh connection; return everything until the server closes."""
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), read_timeout)
    finally:
        writer.close()


@pytest.mark.gen_test
async def test_chunked_json_body_over_the_cap_is_413_json(client, base_url):
    chunk = b"x" * 16384
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(6)) + b"0\r\n\r\n"
    request = (b"POST /api/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks)
    answer = await raw_exchange(base_url, request)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert "limited to" in json.loads(body)["detail"]


@pytest.mark.gen_test
async def test_declared_oversize_json_is_refused_before_the_body_is_sent(http_server, base_url):
    request = (b"POST /api/register/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: 100000000\r\n\r\n{")
    answer = await raw_exchange(base_url, request)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]


@pytest.mark.gen_test(timeout=30)
async def test_a_stalled_json_body_is_cut_off_and_the_server_keeps_serving(client, base_url, monkeypatch):
    monkeypatch.setattr(base, "JSON_BODY_TIMEOUT_SECONDS", 1.0)
    parts = urlsplit(base_url)
    stalled = []
    for _ in range(5):
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(b"POST /api/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"email\":")
        await writer.drain()
        stalled.append((reader, writer))
    # Meanwhile the server answers others at once.
    assert (await client.get("/api/health/")).status == 200
    for reader, writer in stalled:
        # The server closes each half-sent request: EOF well before our 10 s guard.
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()


# --- Hostile JSON: never a 500 -------------------------------------------------------

def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE_VALUES = {
    "nul": '"a\\u0000b"',
    "only_nul": '"\\u0000"',
    "lone_high_surrogate": '"\\ud800"',
    "lone_low_surrogate": '"x\\udfff"',
    "nested_list": nested(50),
    "nested_object": '{"a":' * 40 + "1" + "}" * 40,
    "number": "1e999",
    "big_int": "9" * 5000,
    "bool": "true",
    "null": "null",
    "list_of_nul": '["\\u0000"]',
    "object": '{"\\u0000": 1}',
    "long_string": '"' + "a" * 60000 + '"',
}
JSON_ENDPOINTS = {
    "/api/register/": ("email", "password", "confirmed_password"),
    "/api/login/": ("email", "password"),
    "/api/password_reset/": ("email",),
    "/api/password_confirm/MQ/bogus-token/": ("new_password", "confirm_password"),
}


@pytest.mark.gen_test(timeout=120)
@pytest.mark.parametrize("path", sorted(JSON_ENDPOINTS))
async def test_hostile_json_values_never_cause_a_5xx(client, make_user, path):
    await make_user()
    fields = JSON_ENDPOINTS[path]
    for kind, value in HOSTILE_VALUES.items():
        for field in fields:
            others = ", ".join(f'"{name}": "{PASSWORD}"' for name in fields if name != field)
            raw = ("{" + f'"{field}": {value}' + (", " + others if others else "") + "}").encode()
            response = await client.fetch("POST", path, raw_body=raw)
            assert response.status < 500, (path, kind, field, response.body[:200])
            assert isinstance(response.json(), dict), (path, kind, field)
            if kind in ("nul", "only_nul", "list_of_nul", "object"):
                assert response.status == 400 and response.json().get(field) == [
                    "Null characters are not allowed."], (path, kind, field, response.body)
            if kind.startswith("lone"):
                assert response.status == 400 and response.json().get(field) == ["Invalid Unicode text."]


@pytest.mark.gen_test
@pytest.mark.parametrize("raw", [nested(100000).encode(), b'{"email": ' + nested(5000).encode() + b"}",
                                 b"NaN", b'{"email": NaN}', b'{"email": -Infinity}', b"\xff\xfe{}",
                                 b'{"email": "a"', b"[]", b'"string"', b"{}" * 3])
async def test_malformed_json_bodies_are_400_invalid_json(client, raw):
    response = await client.fetch("POST", "/api/login/", raw_body=raw)
    assert response.status in (400, 413), response.body[:200]
    if response.status == 400:
        body = response.json()
        assert body == {"detail": "Invalid JSON body."} or "email" in body, body


@pytest.mark.gen_test
async def test_unknown_keys_with_hostile_values_are_ignored(client, mailbox):
    raw = (b'{"email": "new@example.com", "password": "correct-horse-9", "confirmed_password": '
           b'"correct-horse-9", "privacy_policy": "\\u0000\\ud800"}')
    response = await client.fetch("POST", "/api/register/", raw_body=raw)
    assert response.status == 201, response.body


@pytest.mark.gen_test
async def test_nul_in_password_at_login_is_a_field_error_not_a_bcrypt_crash(client, make_user):
    await active_user(client, make_user)
    response = await client.fetch("POST", "/api/login/",
                                  raw_body=b'{"email": "user@example.com", "password": "correct\\u0000horse"}')
    assert (response.status, response.json()) == (400, {"password": ["Null characters are not allowed."]})
    assert (await login(client, "user@example.com")).status == 200


# --- Uploads: parts, duplicates, concurrency, stalls (item 7) ---------------------------

def multipart_parts(parts: list[tuple[str, str | None, bytes]]) -> tuple[bytes, str]:
    boundary = "----vf" + "0123456789abcdef"
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


async def upload_files(config) -> list[str]:
    root = Path(config.media_dir)
    return sorted(str(p) for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.gen_test
@pytest.mark.parametrize("parts, message", [
    ([("title", None, b"a"), ("title", None, b"b")], "The field 'title' was sent more than once."),
    ([("visibility", None, b"private"), ("visibility", None, b"public")], "was sent more than once"),
    ([(f"extra{i}", None, b"x") for i in range(20)], "Too many parts"),
])
async def test_duplicate_fields_and_too_many_parts_are_refused(client, make_user, config, small_clip,
                                                               parts, message):
    await make_user()
    body, content_type = multipart_parts([*parts, ("file", "a.mp4", small_clip.read_bytes())])
    response = await client.fetch("POST", "/api/video/", raw_body=body, headers={"Content-Type": content_type})
    assert response.status == 400, response.body
    assert message in response.json()["detail"]
    assert await upload_files(config) == []


@pytest.mark.gen_test
async def test_a_second_file_part_is_refused_while_streaming(client, make_user, config, small_clip):
    await make_user()
    data = small_clip.read_bytes()
    body, content_type = multipart_parts([("title", None, b"t"), ("file", "a.mp4", data), ("file", "b.mp4", data)])
    response = await client.fetch("POST", "/api/video/", raw_body=body, headers={"Content-Type": content_type})
    assert (response.status, response.json()) == (400, {"detail": "Only one file per upload."})
    assert await upload_files(config) == []


@pytest.mark.gen_test
async def test_a_few_unknown_form_fields_are_ignored(client, make_user, small_clip):
    await make_user()
    body, content_type = multipart_parts([("title", None, b"t"), ("csrfmiddlewaretoken", None, b"x"),
                                          ("submit", None, b"Upload"), ("file", "a.mp4", small_clip.read_bytes())])
    response = await client.fetch("POST", "/api/video/", raw_body=body, headers={"Content-Type": content_type})
    assert response.status == 201, response.body


async def open_upload(base_url: str, cookie: str, declared: int, first: bytes):
    """An upload whose body stops after `first` (a stalled or slow client)."""
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write((f"POST /api/video/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
                  f"Content-Type: multipart/form-data; boundary=zz\r\nContent-Length: {declared}\r\n\r\n").encode()
                 + first)
    await writer.drain()
    return reader, writer


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_uploads_per_user_are_bounded_and_slots_come_back(client, make_user, config,
                                                                          base_url, small_clip):
    await make_user()
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    first = b'--zz\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n' + b"x" * 1000
    held = [await open_upload(base_url, cookie, 10_000_000, first) for _ in range(config.max_concurrent_uploads)]
    # The held uploads have reached the handler (their .part files exist) ...
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while len([f for f in await upload_files(config) if f.endswith(".part")]) < len(held):
        assert loop.time() < deadline
        await asyncio.sleep(0.05)
    # ... so one more is refused at once, before its body is read.
    body, content_type = multipart_parts([("title", None, b"t"), ("file", "a.mp4", small_clip.read_bytes())])
    refused = await client.fetch("POST", "/api/video/", raw_body=body, headers={"Content-Type": content_type})
    assert refused.status == 429, refused.body
    assert "at most 2 in progress" in refused.json()["detail"]
    for reader, writer in held:  # clients that give up free their slots and files
        writer.close()
    deadline = loop.time() + 10
    while await upload_files(config):
        assert loop.time() < deadline
        await asyncio.sleep(0.05)
    accepted = await client.fetch("POST", "/api/video/", raw_body=body, headers={"Content-Type": content_type})
    assert accepted.status == 201, accepted.body


@pytest.mark.gen_test(timeout=60)
async def test_a_stalled_upload_is_cut_off_and_leaves_nothing(app, client, make_user, base_url, config,
                                                               monkeypatch):
    monkeypatch.setitem(app.settings, "config", dataclasses.replace(config, upload_idle_seconds=1))
    await make_user()
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    first = b'--zz\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n' + b"x" * 1000
    reader, writer = await open_upload(base_url, cookie, 10_000_000, first)
    # Cut off by the server: EOF well before the test's own guard, and nothing kept.
    assert await asyncio.wait_for(reader.read(), 20) == b""
    writer.close()
    assert await upload_files(config) == []
    assert (await client.get("/api/health/")).status == 200
