"""Load: simulated HLS players against one server while uploads keep it transcoding.

    python bench/load.py [--players 200] [--seconds 60] [--media DIR]

One run, everything on 127.0.0.1, bounded in time:
1. `videoflix dev` in a child process with a temporary ./var (embedded PostgreSQL and
   Redis, migrated, an admin account), logging at WARNING.
2. As the admin: upload the park clip (1080p, 5 s: three renditions) and wait for
   `ready`; then keep one more upload transcoding for the whole run (the 139 s people
   clip, uploaded again each time it is ready), so the players compete with a real
   ffmpeg job for the two cores.
3. --players players, each an asyncio task with its own keep-alive connection and the
   admin's cookies, started over the first two seconds: GET master.m3u8, pick a
   rendition, GET its index.m3u8, then GET its segments in order at playback pace
   (the first three back to back, as players fill their buffer, then one per segment
   duration), looping at the end; now and then (10 % of segments) a player switches
   to another rendition and fetches its playlist first, as ABR does.
4. Reported: requests, errors (any status but 200, a short body, a reset, or a
   timeout of 10 s; target 0), p50/p99/max segment latency, the server's CPU (% of
   one core, user+system, the server process only: ffmpeg runs in the pool's
   children) and its peak RSS, sampled every 0.5 s, plus the transcodes finished.
Exit status 0 when there were no errors.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import time
from urllib.parse import urljoin
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import devserver

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("VIDEOFLIX_TEST_MEDIA", ROOT.parent / "shared" / "media"))
READY_CLIP = "park_1080p_h264_aac_5s.mp4"
BUSY_CLIP = "people_768x432_10fps_noaudio_139s.mp4"
ADMIN_EMAIL = "load@example.com"
ADMIN_PASSWORD = "load-password-9"
REQUEST_TIMEOUT = 10.0
BUFFER_SEGMENTS = 3
SWITCH_PROBABILITY = 0.1



# --- a small keep-alive HTTP/1.1 client (one connection per player, like hls.js) ----

class HTTPError(Exception):
    pass


class Connection:
    def __init__(self, port: int, cookie: str) -> None:
        self.port = port
        self.cookie = cookie
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> bytes:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {self.cookie}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        if match is None:
            raise HTTPError(f"{path}: no Content-Length")
        body = await self.reader.readexactly(int(match.group(1)))
        if re.search(rb"(?i)\r\nconnection:\s*close", head):
            self.close()
        if status != 200:
            raise HTTPError(f"{path}: status {status}")
        return body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@dataclass
class Stats:
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    segment_ms: list[float] = field(default_factory=list)
    switches: int = 0


def media_playlist(text: str) -> list[tuple[str, float]]:
    segments, duration = [], 0.0
    for line in text.splitlines():
        if line.startswith("#EXTINF:"):
            duration = float(line[8:].split(",")[0])
        elif line and not line.startswith("#"):
            segments.append((line, duration))
    return segments


def variants(master: str) -> list[str]:
    return [line for line in master.splitlines() if line and not line.startswith("#")]


async def player(port: int, cookie: str, video_id: int, stop_at: float, stats: Stats, seed: int) -> None:
    rng = random.Random(seed)
    connection = Connection(port, cookie)
    base = f"/api/video/{video_id}/"
    loop = asyncio.get_running_loop()

    async def fetch(path: str) -> bytes | None:
        stats.requests += 1
        try:
            return await asyncio.wait_for(connection.get(path), REQUEST_TIMEOUT)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, HTTPError, ValueError) as exc:
            stats.errors.append(f"{path}: {exc.__class__.__name__} {exc}")
            connection.close()
            return None

    try:
        master = await fetch(base + "master.m3u8")
        if master is None:
            return
        renditions = variants(master.decode())
        rendition = rng.choice(renditions)
        playlist = await fetch(urljoin(base, rendition))  # (the master's URIs: absolute paths under media tokens)
        if playlist is None:
            return
        segments = media_playlist(playlist.decode())
        directory = rendition.rsplit("/", 1)[0]
        index, clock = 0, loop.time()
        while loop.time() < stop_at:
            if rng.random() < SWITCH_PROBABILITY and len(renditions) > 1:
                rendition = rng.choice([r for r in renditions if r != rendition])
                directory = rendition.rsplit("/", 1)[0]
                stats.switches += 1
                if await fetch(urljoin(base, rendition)) is None:
                    return
            name, duration = segments[index % len(segments)]
            started = loop.time()
            body = await fetch(urljoin(base, f"{directory}/{name}"))
            if body is None:
                return
            stats.segment_ms.append((loop.time() - started) * 1000)
            index += 1
            if index > BUFFER_SEGMENTS:  # buffer full: one segment per segment duration
                clock += duration
                await asyncio.sleep(max(0.0, clock - loop.time()))
            else:
                clock = loop.time()
    finally:
        connection.close()


# --- the server and its data ------------------------------------------------------------

def http_json(port: int, method: str, path: str, cookie: str = "", body: bytes | None = None,
              content_type: str = "application/json") -> tuple[int, dict, list[str]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=body,
                                     headers={"Content-Type": content_type, "Cookie": cookie})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read() or b"{}"), response.headers.get_all("Set-Cookie") or []
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), []


def login(port: int) -> str:
    status, _, cookies = http_json(port, "POST", "/api/login/", body=json.dumps(
        {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).encode())
    if status != 200:
        raise SystemExit(f"login failed: {status}")
    return "; ".join(c.split(";", 1)[0] for c in cookies)


def upload(port: int, cookie: str, clip: Path) -> int:
    boundary = uuid.uuid4().hex
    head = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                   for k, v in {"title": clip.stem, "category": "Load"}.items())
    body = (head + f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{clip.name}"\r\n'
            "Content-Type: video/mp4\r\n\r\n").encode() + clip.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    status, detail, _ = http_json(port, "POST", "/api/video/", cookie, body,
                                  f"multipart/form-data; boundary={boundary}")
    if status != 201:
        raise SystemExit(f"upload failed: {status} {detail}")
    return detail["id"]


def status_of(port: int, cookie: str, video_id: int) -> str:
    return http_json(port, "GET", f"/api/video/{video_id}/", cookie)[1]["status"]


def wait_ready(port: int, cookie: str, video_id: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while (state := status_of(port, cookie, video_id)) != "ready":
        if state == "failed" or time.monotonic() > deadline:
            raise SystemExit(f"video {video_id} is {state}")
        time.sleep(0.5)


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else 0.0


async def keep_transcoding(port: int, cookie: str, clip: Path, stop_at: float) -> int:
    """Keep one upload transcoding until stop_at; returns how many finished."""
    loop = asyncio.get_running_loop()
    finished = 0
    video_id = await loop.run_in_executor(None, upload, port, cookie, clip)
    while loop.time() < stop_at:
        state = await loop.run_in_executor(None, status_of, port, cookie, video_id)
        if state in ("ready", "failed"):
            finished += 1
            video_id = await loop.run_in_executor(None, upload, port, cookie, clip)
        await asyncio.sleep(0.5)
    return finished


async def measure(port: int, pid: int, cookie: str, video_id: int, players: int, seconds: float,
                  busy_clip: Path) -> dict:
    loop = asyncio.get_running_loop()
    stats = Stats()
    start = loop.time()
    stop_at = start + seconds
    busy = asyncio.create_task(keep_transcoding(port, cookie, busy_clip, stop_at))
    await asyncio.sleep(1.0)  # the busy upload is in and its transcode has started
    cpu_before, wall_before = proc_cpu_seconds(pid), time.monotonic()
    peak_rss = proc_rss_mb(pid)
    tasks = []
    for number in range(players):
        tasks.append(asyncio.create_task(player(port, cookie, video_id, stop_at, stats, seed=number)))
        await asyncio.sleep(2.0 / players)
    while not all(task.done() for task in tasks):
        peak_rss = max(peak_rss, proc_rss_mb(pid))
        await asyncio.wait(tasks, timeout=0.5)
    cpu = 100 * (proc_cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
    transcoded = await busy
    latencies = sorted(stats.segment_ms) or [0.0]

    def percentile(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    return {"players": players, "seconds": seconds, "requests": stats.requests, "errors": len(stats.errors),
            "error_samples": stats.errors[:5], "segments": len(stats.segment_ms), "switches": stats.switches,
            "p50_ms": round(percentile(0.50), 1), "p99_ms": round(percentile(0.99), 1),
            "max_ms": round(latencies[-1], 1), "server_cpu_percent": round(cpu, 1),
            "server_peak_rss_mb": round(peak_rss, 1), "transcodes_finished": transcoded}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--players", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--media", type=Path, default=MEDIA)
    args = parser.parse_args()
    with devserver.running_dev(ADMIN_EMAIL, ADMIN_PASSWORD, "videoflix-load-") as (port, server):
        cookie = login(port)
        video_id = upload(port, cookie, args.media / READY_CLIP)
        wait_ready(port, cookie, video_id)
        report = asyncio.run(measure(port, server.pid, cookie, video_id, args.players, args.seconds,
                                     args.media / BUSY_CLIP))
    print("LOAD " + json.dumps(report))
    print(f"{report['players']} players, {report['seconds']:.0f} s: {report['requests']} requests, "
          f"{report['errors']} errors, segment p50 {report['p50_ms']} ms p99 {report['p99_ms']} ms "
          f"max {report['max_ms']} ms; server CPU {report['server_cpu_percent']} % of a core, "
          f"peak RSS {report['server_peak_rss_mb']} MB; {report['switches']} quality switches; "
          f"{report['transcodes_finished']} transcodes finished during the run")
    return 0 if report["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
