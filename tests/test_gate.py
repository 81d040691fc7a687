"""The Host is checked (issue 18 item 8): a request naming any host but ours is a JSON
400 before any handler, so a DNS-rebinding page cannot pass for our own origin."""
from __future__ import annotations

import asyncio
import dataclasses
import json
from urllib.parse import urlsplit

import pytest

from videoflix.platform.config import Config, ConfigError

ROUTES = [
    ("GET", "/api/health/", b""),
    ("HEAD", "/api/health/", b""),
    ("POST", "/api/login/", b'{"email": "user@example.com", "password": "correct-horse-9"}'),
    ("GET", "/api/video/1/720p/seg_00000.ts", b""),  # the segment lane's
    ("GET", "/pages/auth/login.html", b""),
    ("GET", "/no/such/path", b""),
    ("OPTIONS", "/api/login/", b""),
]
BAD_HOSTS = ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil.example",
             "127.0.0.2", "[::2]", "127.0.0.1, evil.example", "", "evil.example:{port}:1"]
GOOD_HOSTS = ["127.0.0.1:{port}", "127.0.0.1", "localhost:{port}", "LOCALHOST", "localhost.", "[::1]:{port}",
              "videos.example.org", "Videos.Example.Org:443"]


async def raw(base_url: str, method: str, path: str, host: str | None, body: bytes = b"",
              headers: str = "") -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        host_line = "" if host is None else f"Host: {host.format(port=parts.port)}\r\n"
        length = f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n" if body else ""
        writer.write(f"{method} {path} HTTP/1.1\r\n{host_line}{length}{headers}Connection: close\r\n\r\n".encode()
                     + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    found = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), found, payload


@pytest.fixture
def config(config):
    return dataclasses.replace(config, allowed_hosts=("videos.example.org",))


@pytest.mark.gen_test
@pytest.mark.parametrize("method, path, body", ROUTES)
@pytest.mark.parametrize("host", BAD_HOSTS)
async def test_a_request_naming_another_host_is_400_before_any_handler(client, method, path, body, host):
    status, headers, payload = await raw(client.base_url, method, path, host, body)
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    assert headers["x-content-type-options"] == "nosniff"
    if method != "HEAD":
        assert json.loads(payload) == {"detail": "Invalid Host header."}


@pytest.mark.gen_test
@pytest.mark.parametrize("host", GOOD_HOSTS)
async def test_our_own_host_names_are_served(client, host):
    status, _, payload = await raw(client.base_url, "GET", "/api/health/", host)
    assert status == 200, payload


@pytest.mark.gen_test
async def test_a_dns_rebinding_page_cannot_log_in_as_its_own_origin(client, make_user):
    await make_user(log_in=False)
    port = urlsplit(client.base_url).port
    body = b'{"email": "user@example.com", "password": "correct-horse-9"}'
    # What a page on http://evil.example:<port>, re-pointed at us, sends: Host and Origin agree.
    status, headers, _ = await raw(client.base_url, "POST", "/api/login/", f"evil.example:{port}", body,
                                   f"Origin: http://evil.example:{port}\r\n")
    assert (status, "set-cookie" in headers) == (400, False)


@pytest.mark.gen_test
async def test_the_refused_body_is_never_read(client):
    """A declared 1 GB body: the 400 comes at once and the connection closes."""
    parts = urlsplit(client.base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(b"POST /api/login/ HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000000000\r\n\r\n{")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)  # EOF: the server closed after answering
    writer.close()
    assert data.startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize("value", ["https://videos.example.org", "videos.example.org:8000", "a/b", "a b", "*"])
def test_allowed_hosts_are_bare_names(value):
    with pytest.raises(ConfigError, match="VIDEOFLIX_ALLOWED_HOSTS"):
        Config.from_env({"VIDEOFLIX_ALLOWED_HOSTS": value})


def test_allowed_hosts_are_read_lower_cased():
    config = Config.from_env({"VIDEOFLIX_ALLOWED_HOSTS": "Videos.Example.org, 10.0.0.5 ,[fd00::1]"})
    assert config.allowed_hosts == ("videos.example.org", "10.0.0.5", "[fd00::1]")


# --- no body where none is taken (issue 18 item 3) --------------------------------------

BODILESS = [
    ("GET", "/api/health/"), ("HEAD", "/api/health/"), ("GET", "/api/video/1/720p/seg_00000.ts"),
    ("GET", "/pages/auth/login.html"), ("GET", "/"), ("DELETE", "/api/video/1/"), ("OPTIONS", "/api/login/"),
    ("GET", "/api/video/"), ("GET", "/no/such/path"),
]


@pytest.mark.gen_test
@pytest.mark.parametrize("method, path", BODILESS)
@pytest.mark.parametrize("framing", ["Content-Length: 5\r\n", "Transfer-Encoding: chunked\r\n",
                                     "Content-Length: 1000000000\r\n", "Content-Length: x\r\n"])
async def test_a_body_where_none_is_taken_is_400_and_never_read(client, method, path, framing):
    parts = urlsplit(client.base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\n".encode())  # no body sent
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)  # answered and closed without waiting for it
    finally:
        writer.close()
    assert data.startswith(b"HTTP/1.1 400 "), data[:200]
    if method != "HEAD":
        assert json.loads(data.partition(b"\r\n\r\n")[2]) == {"detail": "This request takes no body."}


@pytest.mark.gen_test
@pytest.mark.parametrize("method, path, expected", [("GET", "/api/health/", 200), ("OPTIONS", "/api/login/", 204),
                                                    ("HEAD", "/api/video/1/720p/index.m3u8", 401)])
async def test_an_empty_body_is_no_body(client, method, path, expected):
    status, _, _ = await raw(client.base_url, method, path, "127.0.0.1", headers="Content-Length: 0\r\n")
    assert status == expected
