"""Request text never grows server state (issue 18 item 1): a real `serve` process
flooded with thousands of distinct, huge method names, paths and header values keeps
its metric series, its scrape, its RSS and its log lines flat."""
from __future__ import annotations

import os
import random
import socket

import requests

from faultkit import Api, make_user

TOKEN = "bounded-state-metrics-token-0123456789abcdef"
# Big enough that 2,000 kept copies would be ~80 MB, under Tornado's 64 KiB header cap.
BIG = 40_000
ATTACKS_PER_KIND = 1500


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def raw_request(port: int, request: bytes) -> bytes:
    """One request on its own connection; the status line (or b"" if cut off)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n" not in received:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
        return received.split(b"\r\n", 1)[0]


def token(rng: random.Random, length: int) -> str:
    """A distinct HTTP token (tchar only): a method name Tornado accepts."""
    return rng.choice("ABC!~*") + rng.randbytes(length // 2).hex().upper()


def attack(port: int, kind: str, rng: random.Random, count: int, cookie: str) -> None:
    for n in range(count):
        size = BIG + rng.randrange(BIG // 2)
        method, path, headers = "GET", "/api/video/", ""
        if kind == "method":
            method = token(rng, size)
        elif kind == "path":
            prefix = rng.choice(["/api/video/1/720p/", "/api/video/", "/nowhere/", "/api/stream/"])
            path = prefix + token(rng, size) + f"/{n}.ts"
        elif kind == "headers":
            headers = (f"X-Request-ID: {token(rng, size // 4)}\r\nOrigin: http://{token(rng, size // 4)}\r\n"
                       f"X-Forwarded-For: {token(rng, size // 4)}\r\nCookie: {cookie}; x={token(rng, size // 8)}\r\n")
            path = f"/api/video/{rng.randrange(10**9)}/"
        elif kind == "mixed":
            method = token(rng, size // 3)
            path = "/api/video/" + token(rng, size // 3) + "?q=\x7f" + token(rng, 100)
            headers = f"User-Agent: {token(rng, size // 4)}\r\n"
        line = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}Connection: close\r\n\r\n"
        status = raw_request(port, line.encode("latin-1"))
        assert status.startswith(b"HTTP/1.1 "), status[:200]


def series(base: str) -> list[str]:
    response = requests.get(base + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert response.status_code == 200
    return sorted(line.rsplit(" ", 1)[0] for line in response.text.splitlines()
                  if line.startswith("videoflix_http_") and not line.startswith("#"))


def test_distinct_methods_paths_and_headers_leave_series_rss_and_log_lines_flat(servers, db):
    server = servers(VIDEOFLIX_METRICS_TOKEN=TOKEN, VIDEOFLIX_LOG_LEVEL="DEBUG")
    api = Api(server.base)
    make_user(api, db)
    cookie = "; ".join(f"{c.name}={c.value}" for c in api.session.cookies)
    rng = random.Random(18)
    series(server.base)  # the scrape's own series
    kinds = ("method", "path", "headers", "mixed")
    for kind in kinds:  # warm-up: every label, code path and allocator pool seen once
        attack(server.port, kind, rng, 100, cookie)
    before_series = series(server.base)
    before_rss = rss_kib(server.pid)
    before_log = os.path.getsize(server.log_path)

    for kind in kinds:
        attack(server.port, kind, rng, ATTACKS_PER_KIND, cookie)

    after_series = series(server.base)
    grown_kib = rss_kib(server.pid) - before_rss
    log_per_request = (os.path.getsize(server.log_path) - before_log) / (len(kinds) * ATTACKS_PER_KIND)
    assert set(after_series) ^ set(before_series) == set()  # no new label value from request text
    assert len(after_series) < 200
    assert all(len(name) < 300 for name in after_series)
    # ~240 MB of request text went in; keeping even 1 % of it would be 2.4 MB per kind.
    assert grown_kib < 8 * 1024, f"RSS grew {grown_kib} KiB"
    assert log_per_request < 3000, f"{log_per_request:.0f} bytes of log per request"
    lines = server.log().splitlines()
    assert max(len(line) for line in lines) < 6000
    assert not any("\x7f" in line for line in lines)
