"""Segment bodies by os.sendfile (zerocopy.py, used by web/media_handlers.py), over real sockets.

Byte-exact bodies for full and ranged GETs, HEAD and 304 (several on one keep-alive
connection, so the framing after each is checked too), a file of several MB read
by a slow client (the sendfile meets EAGAIN and waits for writability), clients
that leave mid-body (no traceback, the file closed, the server still serving), the
TLS fallback to chunked reads, and the one private Tornado attribute the seam
relies on, pinned.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import ssl
import struct
import subprocess
from pathlib import Path

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

from videoflix.delivery import zerocopy
from videoflix.platform import media

from helpers import make_ready_version, open_fds_to, wait_until

BIG = 24 * 1024 * 1024 + 12345  # several MB and not a round number
SMALL = 300_001
SMALL_RCVBUF = 16 * 1024  # the client's receive buffer: the server meets EAGAIN often


# --- fixtures ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def payloads():
    big = os.urandom(BIG)
    small = os.urandom(SMALL)
    return {"seg_00000.ts": big, "seg_00001.ts": small}


@pytest.fixture
def segments(io_loop, make_user, client, services, config, payloads):
    """A ready private video of the logged-in owner whose live version's 720p segments are
    the payloads; returns (video id, {name: path})."""
    async def make():
        user = await make_user()
        video_id, version = await make_ready_version(services, user["id"])
        folder = media.version_dir(config.media_dir, video_id, version) / "720p"
        folder.mkdir(parents=True)
        paths = {}
        for name, data in payloads.items():
            (folder / name).write_bytes(data)
            paths[name] = folder / name
        return video_id, paths
    return io_loop.run_sync(make)


def cookie_header(client) -> str:
    return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


class RawConnection:
    """One keep-alive HTTP/1.1 connection on a plain socket, read at the client's pace."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sock: socket.socket):
        self.reader, self.writer, self.sock = reader, writer, sock

    @classmethod
    async def open(cls, port: int, rcvbuf: int | None = SMALL_RCVBUF) -> "RawConnection":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1024 * 1024)
        return cls(reader, writer, sock)

    async def send(self, method: str, path: str, cookie: str, **headers: str) -> None:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Cookie: {cookie}"]
        lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self.writer.drain()

    async def head(self) -> tuple[int, dict[str, str]]:
        block = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 30)
        status_line, *header_lines = block.decode("latin-1").split("\r\n")[:-2]
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), headers

    async def response(self, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        status, headers = await self.head()
        assert "transfer-encoding" not in headers, headers
        if method == "HEAD" or status == 304:
            return status, headers, b""
        body = await asyncio.wait_for(self.reader.readexactly(int(headers["content-length"])), 120)
        return status, headers, body

    def close(self, reset: bool = False) -> None:
        if reset:  # RST instead of FIN: the server's next send fails with ECONNRESET/EPIPE
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.close()


async def files_given_back(app, path: Path) -> None:
    """Every request gave its file back: none lent out, at most the one descriptor the
    open-file cache keeps (openfiles.py), and none once the cache is closed."""
    cache = app.settings["open_files"]
    await wait_until(lambda: cache.lent() == 0 and open_fds_to(path) <= 1, "the file to be given back", 30)
    cache.close()
    assert open_fds_to(path) == 0


# --- bodies ------------------------------------------------------------------------------

@pytest.mark.gen_test(timeout=120)
async def test_full_ranged_head_and_304_are_byte_exact_on_one_keep_alive_connection(
        segments, client, http_port, payloads):
    video_id, _ = segments
    big, small = payloads["seg_00000.ts"], payloads["seg_00001.ts"]
    path = f"/api/video/{video_id}/720p/seg_00000.ts"
    cookie = cookie_header(client)
    before = zerocopy.bodies_sent
    conn = await RawConnection.open(http_port)
    try:
        await conn.send("GET", path, cookie)
        status, headers, body = await conn.response()
        assert (status, int(headers["content-length"]), headers["content-type"]) == (200, BIG, "video/MP2T")
        assert hashlib.sha256(body).digest() == hashlib.sha256(big).digest()
        etag = headers["etag"]

        await conn.send("GET", path, cookie, Range="bytes=1000-5000999")
        status, headers, body = await conn.response()
        assert (status, headers["content-range"]) == (206, f"bytes 1000-5000999/{BIG}")
        assert body == big[1000:5001000]

        await conn.send("GET", path, cookie, Range="bytes=-7")  # a suffix range
        status, headers, body = await conn.response()
        assert (status, body) == (206, big[-7:])

        await conn.send("HEAD", path, cookie)
        status, headers, body = await conn.response("HEAD")
        assert (status, int(headers["content-length"]), headers["etag"]) == (200, BIG, etag)

        await conn.send("GET", path, cookie, If_None_Match=etag)
        status, headers, body = await conn.response()
        assert (status, body, headers["etag"]) == (304, b"", etag)

        await conn.send("GET", path, cookie, Range=f"bytes={BIG}-")
        status, headers, body = await conn.response()
        assert (status, headers["content-range"]) == (416, f"bytes */{BIG}")

        # A small segment, then the big one again: the framing held after every answer.
        await conn.send("GET", f"/api/video/{video_id}/720p/seg_00001.ts", cookie)
        assert (await conn.response())[2] == small
        await conn.send("GET", path, cookie, Range="bytes=0-")  # the full range is a plain 200
        status, _, body = await conn.response()
        assert status == 200 and body == big
    finally:
        conn.close()
    assert zerocopy.bodies_sent - before == 5  # full, two ranges, small, full again: all by sendfile


@pytest.mark.gen_test(timeout=120)
async def test_tornado_client_gets_the_whole_big_segment(segments, client, payloads, caplog):
    video_id, _ = segments
    caplog.set_level(logging.DEBUG, logger="videoflix.access")
    before = zerocopy.bodies_sent
    response = await client.get(f"/api/video/{video_id}/720p/seg_00000.ts")
    assert response.status == 200 and response.body == payloads["seg_00000.ts"]
    assert zerocopy.bodies_sent == before + 1
    # Counted as served (the access log's bytes, which metrics count too) like any body.
    access = [r for r in caplog.records if r.name == "videoflix.access" and r.path.endswith("seg_00000.ts")]
    assert [r.bytes for r in access] == [BIG]


@pytest.mark.gen_test(timeout=120)
async def test_refusals_send_no_file_bytes(segments, new_client, client, http_port):
    video_id, _ = segments
    stranger = new_client()
    for path in (f"/api/video/{video_id}/720p/seg_00000.ts", f"/api/video/{video_id}/720p/seg_00009.ts",
                 f"/api/video/{video_id}/720p/..%2F..%2Fetc%2Fpasswd"):
        response = await stranger.get(path)
        assert response.status == 401 and response.body.startswith(b"{")
        response = await client.get(path.replace(str(video_id), str(video_id + 1000)))
        assert response.status == 404 and response.body.startswith(b"{")


# --- clients that leave ------------------------------------------------------------------

@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
@pytest.mark.gen_test(timeout=120)
async def test_client_leaving_mid_body_ends_quietly_and_closes_the_file(
        segments, app, client, http_port, payloads, caplog, reset):
    video_id, paths = segments
    path = f"/api/video/{video_id}/720p/seg_00000.ts"
    cookie = cookie_header(client)
    caplog.set_level(logging.WARNING)
    conn = await RawConnection.open(http_port)
    await conn.send("GET", path, cookie)
    status, headers = await conn.head()
    assert status == 200
    assert await conn.reader.readexactly(256 * 1024) == payloads["seg_00000.ts"][:256 * 1024]
    conn.close(reset=reset)  # 24 MB still to come: the server is mid-sendfile or waiting to write
    await files_given_back(app, paths["seg_00000.ts"])
    # The server goes on serving, and said nothing alarming about the client that left.
    response = await client.get(f"/api/video/{video_id}/720p/seg_00001.ts")
    assert response.status == 200 and response.body == payloads["seg_00001.ts"]
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING and "Uncaught" in r.getMessage()
            or r.exc_info is not None or r.levelno >= logging.ERROR]
    assert loud == [], [r.getMessage() for r in loud]


@pytest.mark.gen_test(timeout=120)
async def test_many_clients_leaving_at_once_leave_no_file_open(segments, app, client, http_port, payloads):
    video_id, paths = segments
    cookie = cookie_header(client)
    conns = [await RawConnection.open(http_port) for _ in range(8)]
    for conn in conns:
        await conn.send("GET", f"/api/video/{video_id}/720p/seg_00000.ts", cookie)
    for index, conn in enumerate(conns):
        await conn.head()
        conn.close(reset=index % 2 == 0)
    await files_given_back(app, paths["seg_00000.ts"])
    response = await client.get(f"/api/video/{video_id}/720p/seg_00000.ts", headers={"Range": "bytes=5-9"})
    assert response.status == 206 and response.body == payloads["seg_00000.ts"][5:10]


# --- where sendfile cannot work: TLS -----------------------------------------------------

@pytest.fixture
def tls_port(app, io_loop, tmp_path):
    """The same application behind TLS (a self-signed certificate): an SSLIOStream."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app, ssl_options=context)
    server.add_sockets(sockets)
    yield sockets[0].getsockname()[1]
    server.stop()
    io_loop.run_sync(server.close_all_connections)


@pytest.mark.gen_test(timeout=120)
async def test_tls_connection_falls_back_to_chunked_reads(segments, client, tls_port, http_client, payloads):
    video_id, _ = segments
    before = zerocopy.bodies_sent
    response = await http_client.fetch(
        f"https://127.0.0.1:{tls_port}/api/video/{video_id}/720p/seg_00000.ts", validate_cert=False,
        headers={"Cookie": cookie_header(client), "Range": "bytes=100-3000099"}, request_timeout=60)
    assert response.code == 206 and response.body == payloads["seg_00000.ts"][100:3000100]
    assert zerocopy.bodies_sent == before  # TLS: chunked reads, not sendfile


# --- the pinned private attribute ---------------------------------------------------------

class _Probe(tornado.web.RequestHandler):
    seen: list = []

    async def get(self) -> None:
        attribute = zerocopy.PINNED_ATTRIBUTE
        connection = self.request.connection
        self.seen.append(("usable", zerocopy.usable(self.request)))
        self.set_header("Content-Length", 5)
        await self.flush()
        self.seen.append(("after headers", getattr(connection, attribute)))
        self.write(b"ab")
        await self.flush()
        self.seen.append(("after 2 bytes", getattr(connection, attribute)))
        self.write(b"cde")


@pytest.mark.gen_test
async def test_tornado_still_counts_body_bytes_where_zerocopy_expects(http_client, io_loop):
    """zerocopy.py subtracts what sendfile sent from HTTP1Connection's private
    count of the body bytes still owed. If a Tornado upgrade renames the attribute
    or stops counting this way, this test fails (and production falls back to
    chunked reads: zerocopy.usable is False)."""
    _Probe.seen = []
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/", _Probe)]))
    server.add_sockets(sockets)
    try:
        response = await http_client.fetch(f"http://127.0.0.1:{sockets[0].getsockname()[1]}/")
    finally:
        server.stop()
    assert response.body == b"abcde"
    assert _Probe.seen == [("usable", True), ("after headers", 5), ("after 2 bytes", 3)]


class _DeafSender(tornado.web.RequestHandler):
    """Sends a file by zerocopy.Sender without hearing of the connection closing
    (no abort): the client's leaving shows up as an error of the sendfile itself."""

    file_path: Path
    outcomes: list = []

    async def get(self) -> None:
        size = self.file_path.stat().st_size
        self.set_header("Content-Length", size)
        fd = os.open(self.file_path, os.O_RDONLY)
        try:
            await zerocopy.Sender().send_body(self, fd, 0, size)
            self.outcomes.append("sent")
        except zerocopy.ClientGone:
            self.outcomes.append("client gone")
        finally:
            os.close(fd)

    def on_connection_close(self) -> None:
        pass  # deaf on purpose


@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
@pytest.mark.gen_test(timeout=60)
async def test_sendfile_error_of_a_vanished_client_is_client_gone(tmp_path, payloads, reset, caplog):
    _DeafSender.file_path = tmp_path / "big.ts"
    _DeafSender.file_path.write_bytes(payloads["seg_00000.ts"])
    _DeafSender.outcomes = []
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/", _DeafSender)]))
    server.add_sockets(sockets)
    try:
        conn = await RawConnection.open(sockets[0].getsockname()[1])
        await conn.send("GET", "/", "")
        status, _ = await conn.head()
        assert status == 200
        await conn.reader.readexactly(100_000)
        conn.close(reset=reset)
        await wait_until(lambda: _DeafSender.outcomes, "the sender to end", 30)
    finally:
        server.stop()
    assert _DeafSender.outcomes == ["client gone"]
    assert open_fds_to(_DeafSender.file_path) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
