"""Graceful shutdown with a real SIGTERM: during a transcode and during a download
(issue 11, item 5), on both stores (issue 21: from the bucket a segment is streamed, not
sent from a file)."""
from __future__ import annotations

import re
import signal
import socket
import urllib.parse

import pytest

from videoflix.transcode import queue

from store_helpers import STORAGE_BACKENDS

from faultkit import Api, ffmpeg_pids, files_under, gone, make_clip, make_user, redis_client, wait_for


@pytest.mark.parametrize("storage_backend", STORAGE_BACKENDS)
def test_sigterm_during_a_transcode_hands_the_job_back_and_exits_0(servers, db, media_dir, bucket, fault_redis,
                                                                   long_clip):
    lease = 60  # a job not handed back would wait this long
    server = servers(TRANSCODE_LEASE_SECONDS=str(lease))
    api = Api(server.base)
    make_user(api, db)
    video_id = api.upload(long_clip).json()["id"]
    ffmpeg = wait_for(lambda: ffmpeg_pids(server.pid), "ffmpeg to be encoding", timeout=90)[0]

    server.signal(signal.SIGTERM)

    assert server.wait_exit(30) == 0
    assert gone(ffmpeg)
    assert files_under(media_dir / ".work") == []
    [pending] = redis_client(fault_redis.url).xpending_range(queue.STREAM, queue.GROUP, "-", "+", 10)
    assert pending["time_since_delivered"] > lease * 1000  # claimable at once by anyone
    assert "stopped" in server.log()

    restarted = servers(TRANSCODE_LEASE_SECONDS=str(lease))
    wait_for(lambda: re.search(rf"video {video_id} job \S+ taken over", restarted.log()),
             "the next start to resume the job", timeout=lease / 3)
    api = Api(restarted.base)
    assert api.login("owner@example.com").status_code == 200
    wait_for(lambda: api.detail(video_id)["status"] == "ready", "the resumed job to finish", timeout=240,
             interval=0.5)
    assert db.video(video_id)["attempts"] == 2
    if bucket is not None:
        assert bucket.missing(video_id, db.video(video_id)["live_version"]) == []


@pytest.mark.parametrize("storage_backend", STORAGE_BACKENDS)
def test_sigterm_during_a_download_finishes_the_response_refuses_new_connections_and_exits_0(
        servers, db, fault_dir, bucket):
    clip = make_clip(fault_dir / "heavy.mp4", 8, size="1280x720", noise=True)
    server = servers()
    api = Api(server.base)
    make_user(api, db)
    video_id = api.upload(clip).json()["id"]
    wait_for(lambda: api.detail(video_id)["status"] == "ready", "the clip to be ready", timeout=240,
             interval=0.5)
    playlist_path = f"/api/video/{video_id}/720p/index.m3u8"
    playlist = api.call("GET", playlist_path).text
    segment = next(line for line in playlist.splitlines() if line and not line.startswith("#"))
    path = urllib.parse.urljoin(playlist_path, segment)
    cookie = "; ".join(f"{c.name}={c.value}" for c in api.session.cookies)

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the client reads slowly
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n".encode())
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(4096)
    head, body = received.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    assert length > 512 * 1024, length  # far more than the socket buffers hold

    server.signal(signal.SIGTERM)
    # Usually 1; 0 when the kernel's socket buffers on loopback already took the whole segment.
    wait_for(lambda: re.search(r"[01] request\(s\) in flight", server.log()), "the server to start shutting down")

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            return False
        except OSError:
            return True
    wait_for(refused, "new connections to be refused", timeout=10)
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(body)} of {length} bytes"
        body += chunk
    sock.close()
    assert len(body) == length
    assert server.wait_exit(30) == 0
    assert "still in flight" not in server.log()
