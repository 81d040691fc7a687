"""The sweeper never takes a live upload (issue 18 item 9): `serve` receives an upload
that trickles 50 bytes every 5 s while a `worker` on the same media directory sweeps
every few seconds with an idle limit of 8 s; the upload arrives whole and plays."""
from __future__ import annotations

import socket
import time
import uuid

from faultkit import Api, make_user, wait_for

IDLE = 8  # seconds: the upload idle limit of both processes (the trickle's gaps are 5 s)
TRICKLE_BYTES = 50
TRICKLE_SECONDS = 5


def test_an_upload_trickling_into_serve_is_not_swept_by_a_worker(servers, db, media_dir, short_clip):
    server = servers(VIDEOFLIX_UPLOAD_IDLE_SECONDS=str(IDLE))
    worker = servers("worker", VIDEOFLIX_UPLOAD_IDLE_SECONDS=str(IDLE))  # sweeps every ~2 s
    api = Api(server.base)
    make_user(api, db)
    cookie = "; ".join(f"{c.name}={c.value}" for c in api.session.cookies)
    boundary = uuid.uuid4().hex
    content = short_clip.read_bytes()
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nTrickle\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="trickle.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    rounds = 4  # 20 s of trickle: more than twice the idle limit
    split = len(content) - rounds * TRICKLE_BYTES
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall((f"POST /api/video/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
                      f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                      f"Content-Length: {len(head) + len(content) + len(tail)}\r\n\r\n").encode())
        sock.sendall(head + content[:split])
        incoming = media_dir / ".incoming"
        [part] = wait_for(lambda: list(incoming.glob("*.part")), "the upload's file")
        for n in range(rounds):
            time.sleep(TRICKLE_SECONDS)  # the client's pace, not a wait for the server
            piece = content[split + n * TRICKLE_BYTES: split + (n + 1) * TRICKLE_BYTES]
            sock.sendall(piece)
            assert part.exists(), f"swept after {n + 1} pieces:\n{worker.log()[-2000:]}"
        sock.sendall(tail)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection"
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 201"), answer[:500]
    assert "removed" not in worker.log()
    video_id = int(answer.split(b'"id":', 1)[1].split(b",", 1)[0])
    wait_for(lambda: api.detail(video_id)["status"] == "ready", "the trickled video to be transcoded",
             timeout=240, interval=0.5)
