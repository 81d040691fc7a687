"""Every body has a deadline and a size (issue 18 item 3): 50 connections held one byte
short of their body on each kind of route are all cut off within that route's limit,
by a real `serve` (upload idle limit 2 s, body deadline 10 s)."""
from __future__ import annotations

import selectors
import socket
import time

import pytest

from videoflix.app import BODY_TIMEOUT_SECONDS

from faultkit import Api, make_user

CONNECTIONS = 50
IDLE = 2  # the fault servers' VIDEOFLIX_UPLOAD_IDLE_SECONDS
MARGIN = 5  # scheduling slack on a busy 2-core machine


def kinds(cookie: str, video_id: int, upload_url: str) -> dict[str, tuple[str, float]]:
    """{kind: (request one byte short of its declared body, seconds it may be held)}."""
    json_head = "Content-Type: application/json\r\nContent-Length: {n}\r\n"
    multipart = "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {n}\r\n"
    tus = ("Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
           "Upload-Offset: 0\r\nContent-Length: {n}\r\n")

    def request(line: str, headers: str, body: str) -> str:
        head = f"{line} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n" + headers.format(n=len(body) + 1)
        return head + "\r\n" + body

    upload = '--b\r\nContent-Disposition: form-data; name="file"; filename="x.mp4"\r\n\r\nxxxx'
    subtitle = '--b\r\nContent-Disposition: form-data; name="file"; filename="x.srt"\r\n\r\n1\n'
    return {
        "json login": (request("POST /api/login/", json_head, '{"email": "a@b.c"'), BODY_TIMEOUT_SECONDS),
        "json edit": (request(f"PATCH /api/video/{video_id}/", json_head, '{"title": "x"'), BODY_TIMEOUT_SECONDS),
        "json refresh": (request("POST /api/token/refresh/", json_head, "{"), BODY_TIMEOUT_SECONDS),
        "video upload": (request("POST /api/video/", multipart, upload), IDLE),
        "subtitle upload": (request(f"POST /api/video/{video_id}/subtitles/", multipart, subtitle), IDLE),
        # One holds the upload (cut off when idle), the others are refused at once (423).
        "resumable PATCH": (request(f"PATCH {upload_url}", tus, "x" * 100), IDLE),
        "unknown route": (request("POST /no/such/route/", json_head, "{"), BODY_TIMEOUT_SECONDS),
        "health GET": (request("GET /api/health/", json_head, "{"), 0),
        "segment GET": (request(f"GET /api/video/{video_id}/720p/seg_00000.ts", json_head, "x"), 0),
        "page GET": (request("GET /studio", json_head, "x"), 0),
        "HEAD": (request(f"HEAD /api/video/{video_id}/720p/index.m3u8", json_head, "x"), 0),
        "DELETE": (request(f"DELETE /api/video/{video_id}/", json_head, "x"), 0),
    }


def hold(port: int, payload: bytes, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(payload)
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def wait_closed(groups: dict[str, tuple[list[socket.socket], float]], started: float) -> dict[str, float]:
    """{kind: seconds from `started` until the server had closed all its connections};
    fails as soon as a group outlives its limit (what the server sends is read and dropped)."""
    selector = selectors.DefaultSelector()
    kind_of = {}
    for kind, (sockets, _limit) in groups.items():
        for sock in sockets:
            selector.register(sock, selectors.EVENT_READ)
            kind_of[sock] = kind
    left = {kind: len(sockets) for kind, (sockets, _limit) in groups.items()}
    closed_at: dict[str, float] = {}
    while len(closed_at) < len(groups):
        now = time.monotonic() - started
        late = [kind for kind in left if kind not in closed_at and now > groups[kind][1]]
        assert not late, f"still open after their limit: {[(kind, left[kind]) for kind in late]}"
        for key, _ in selector.select(timeout=0.5):
            sock = key.fileobj
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            except BlockingIOError:
                continue
            if not data:
                selector.unregister(sock)
                sock.close()
                kind = kind_of[sock]
                left[kind] -= 1
                if left[kind] == 0:
                    closed_at[kind] = time.monotonic() - started
    return closed_at


@pytest.fixture
def target(servers, db, short_clip):
    server = servers()
    api = Api(server.base)
    make_user(api, db)
    video_id = api.upload(short_clip).json()["id"]
    cookie = "; ".join(f"{c.name}={c.value}" for c in api.session.cookies)
    created = api.call("POST", "/api/uploads/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "1000",
                                                         "Upload-Metadata": "title dA=="})
    assert created.status_code == 201, created.text
    return server, cookie, video_id, created.headers["Location"]


def test_fifty_connections_one_byte_short_on_every_kind_of_route_are_all_cut_off_within_its_limit(target):
    server, cookie, video_id, upload_url = target
    started = time.monotonic()
    groups = {kind: (hold(server.port, payload.encode(), CONNECTIONS), limit + MARGIN)
              for kind, (payload, limit) in kinds(cookie, video_id, upload_url).items()}
    closed_at = wait_closed(groups, started)
    assert set(closed_at) == set(groups)
    # And the server still answers.
    assert Api(server.base).call("GET", "/api/health/").status_code == 200
