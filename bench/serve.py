"""Benchmark: HLS segment delivery against nginx (embedded, and behind nginx), and GET latency during logins.

    python bench/serve.py [--seconds 6] [--rounds 3] [--connections 16,64] [--nginx-workers 1]
                          [--bitrate 4000k] [--profile DIR [--py-spy PATH]]
    python bench/serve.py --s3 [--seconds 6] [--rounds 3] [--connections 16,64]
    python bench/serve.py --edge [--seconds 6] [--rounds 3] [--connections 16,64] [--viewers 500]
                          [--viewer-seconds 30]

--edge (issue 20 item 5) measures media tokens instead: private segments of 256 KB,
0.8 MB and 3 MB under a media token through the shipped nginx site (njs + the cached
auth_request to a second server of ours) against nginx alone serving the same files,
in the same rounds, at each --connections level; at 0.8 MB the embedded server's token
path too (the segment lane); then --viewers players through nginx, each with its own
session and token, one 0.8 MB segment every 2 s (playback pace): errors, p99, and
Videoflix's CPU per viewer-hour. Targets: token+ngx >= 0.9x nginx alone at every size,
embedded >= 0.7x at 0.8 MB, 0 errors among the players.

One run, everything on 127.0.0.1 and bounded in time (about 6 minutes):
1. Embedded PostgreSQL and Redis (videoflix.embedded, as tests/conftest.py does),
   one active user (real bcrypt cost 12) and one ready video whose 720p rendition
   is ten ~1 MB MPEG-TS segments made by ffmpeg (CBR 4 Mb/s, 2 s each).
2. Five servers of the same files, each in a child process:
   - "embedded": our server (create_services + make_app + HTTPServer over
     app.http_delegate, as app.serve does, without the transcode consumer), logging
     at WARNING: segment bodies by os.sendfile (zerocopy.py), warm segment GETs by
     the segment lane (web/segment_lane.py);
   - "nginx": nginx alone (Debian's), `sendfile on`, access log off, serving the
     media directory directly (no authorisation: the ceiling);
   - "accel": the shipped deploy/nginx.conf in front of a second server of ours
     with VIDEOFLIX_ACCEL_REDIRECT=/internal-media/: we authorise, nginx sends.
   - "floor" and "floor+ngx": the Tornado floor (run_floor: Tornado's HTTP/1
     connection with nothing above it, no routing, handler or authorisation),
     alone with sendfile, and behind the same nginx config answering only the
     X-Accel-Redirect header: the best any Tornado server could do here.
   Every nginx gets --nginx-workers workers.
3. wrk (2 threads, --seconds per run, after a short warm-up): authenticated GETs of
   the ten segments in turn (access_token cookie; nginx alone ignores it), at each
   --connections level, in --rounds rounds that cycle the five; then ranged GETs
   (`Range: bytes=262144-524287`, 256 KiB from the middle) at the last level.
   Requests/s, MB/s, CPU of each server, the per-round ratios embedded/nginx and
   accel/nginx, the floor's ratios to nginx and ours to the floor, and their medians.
4. p99 latency of a segment GET from 4 paced clients (each waits 20 ms between
   requests: a few players, not a saturation test), idle and then while bursts of
   20 concurrent logins (POST /api/login/, bcrypt cost 12) run back to back, in
   --rounds rounds; the median of the per-round ratios.
Targets (issue 13 item 5): embedded >= 0.5x nginx at every connection level; accel
>= 0.9x nginx alone; p99 during the login burst within 3x of idle p99. The exit
status is 0 when all are met.

Our server is one process with one event loop (plus its file-reading threads), so
nginx runs with one worker by default (--nginx-workers 1): one process against one.
`--nginx-workers auto` gives it every core. wrk, the servers, PostgreSQL and Redis
share the machine's CPUs, and so does anything else running there: the rounds and
medians are there because single runs swing by +-20% on a busy machine.

--s3 (issue 21 item 5) measures media in a bucket: the same 0.8 MB segments (random bytes)
on local disk and in a real SeaweedFS bucket (platform/embedded_s3.py), each served under a
media token by the embedded server (disk: sendfile; bucket: streamed once, then the hot
cache's copy by sendfile) and through the shipped nginx site (disk: its own files; bucket:
signed GETs to the S3 endpoint, 1 MiB slices in its proxy_cache), in the same rounds at each
--connections level after a warm-up; prints MB/s, the ratios bucket/disk and the load average.

--profile DIR samples our server with py-spy (non-blocking, 250 Hz, every thread)
during the first full-GET run and the first login-burst run, and prints where the
samples fall (self, then inclusive). Profiled runs are a little slower.
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import nginx_site  # noqa: E402  (the shipped site, runnable here: tests/nginx_site.py)
from videoflix.platform.config import Config  # noqa: E402

SEGMENTS = 10
SEGMENT_SECONDS = 2
# The seeded video's one version (its first transcode's): its files are in media/<id>/v1/.
VERSION = 1
# 4 Mb/s constant bit rate x 2 s = ~1 MB per segment, the size the target names.
VIDEO_BITRATE = "4000k"
PASSWORD = "bench-password-9"
EMAIL = "bench@example.com"
BCRYPT_ROUNDS = 12  # production cost: the burst must cost what real logins cost
LOGIN_BURST = 20
RANGE = "bytes=262144-524287"
PROBE_CLIENTS = 4
PROBE_PAUSE_MS = 20
WARMUP_SECONDS = 2
TARGET_EMBEDDED_RATIO = 0.5
TARGET_ACCEL_RATIO = 0.9
ACCEL_PREFIX = "/internal-media/"
ROOT = Path(__file__).resolve().parents[1]
TARGET_P99_FACTOR = 3.0
START_TIMEOUT_SECONDS = 30


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


# --- the server child ---------------------------------------------------------------

async def run_server() -> None:
    """Child process: our server as app.serve runs it, minus the transcode consumer."""
    import tornado.httpserver

    from videoflix.app import MAX_BODY_BYTES, http_delegate, make_app
    from videoflix.platform.log import setup_logging
    from videoflix.platform.services import create_services

    config = Config.from_env()
    setup_logging(config.log_level)
    services = await create_services(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    app = make_app(config, services)
    server = tornado.httpserver.HTTPServer(http_delegate(app), max_body_size=MAX_BODY_BYTES,
                                           idle_connection_timeout=120)
    server.listen(config.port, config.host)
    try:
        await stop.wait()
    finally:
        server.stop()
        await asyncio.wait_for(server.close_all_connections(), timeout=10)
        await services.close()


async def run_floor() -> None:
    """Child process: the floor, Tornado's HTTP/1 connection with nothing above it.

    No routing, no handler, no authorisation, no logging: /api/video/<rest> answers
    media/<rest> by the same zerocopy.Sender as ours, or (VIDEOFLIX_ACCEL_REDIRECT)
    with the X-Accel-Redirect header alone. What any Tornado server could do at best
    on this machine: ours/floor says how much of the gap to nginx is ours. (A bench
    toy: it trusts the path.)"""
    import tornado.httpserver
    import tornado.httputil
    import tornado.iostream

    from videoflix.delivery import zerocopy

    media_dir = os.environ["VIDEOFLIX_MEDIA_DIR"]
    accel_prefix = os.environ.get("VIDEOFLIX_ACCEL_REDIRECT", "")
    ok = tornado.httputil.ResponseStartLine("", 200, "OK")

    class Answer(tornado.httputil.HTTPMessageDelegate):
        def __init__(self, connection) -> None:
            self.connection = connection
            self.path = ""

        def headers_received(self, start_line, headers) -> None:
            self.path = start_line.path

        def finish(self) -> None:
            asyncio.ensure_future(self.respond())

        async def respond(self) -> None:
            relative = self.path.removeprefix("/api/video/")
            headers = tornado.httputil.HTTPHeaders({"Content-Type": "video/MP2T"})
            if accel_prefix:
                headers["X-Accel-Redirect"] = accel_prefix + relative
                headers["Content-Length"] = "0"
                self.connection.write_headers(ok, headers)
                self.connection.finish()
                return
            fd = os.open(os.path.join(media_dir, relative), os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                headers["Content-Length"] = str(size)
                await self.connection.write_headers(ok, headers)
                await zerocopy.Sender().send_after_headers(self.connection, fd, 0, size)
                self.connection.finish()
            except (zerocopy.ClientGone, tornado.iostream.StreamClosedError):
                pass
            finally:
                os.close(fd)

    class Floor(tornado.httputil.HTTPServerConnectionDelegate):
        def start_request(self, server_conn, request_conn):
            return Answer(request_conn)

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    server = tornado.httpserver.HTTPServer(Floor(), idle_connection_timeout=120)
    server.listen(int(os.environ["VIDEOFLIX_PORT"]), "127.0.0.1")
    try:
        await stop.wait()
    finally:
        server.stop()
        await asyncio.wait_for(server.close_all_connections(), timeout=10)


# --- setup ------------------------------------------------------------------------------

def make_segments(out: Path, bitrate: str = VIDEO_BITRATE) -> list[Path]:
    out.mkdir(parents=True)
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
         "-f", "lavfi", "-t", str(SEGMENTS * SEGMENT_SECONDS), "-i", "testsrc2=size=1280x720:rate=25",
         "-c:v", "libx264", "-preset", "ultrafast", "-b:v", bitrate, "-minrate", bitrate,
         "-maxrate", bitrate, "-bufsize", bitrate, "-x264-params", "nal-hrd=cbr",
         "-g", "50", "-keyint_min", "50", "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-an",
         "-f", "hls", "-hls_time", str(SEGMENT_SECONDS), "-hls_playlist_type", "vod",
         "-hls_segment_filename", "seg_%05d.ts", "index.m3u8"],
        cwd=out, check=True, capture_output=True, timeout=300)
    return sorted(out.glob("seg_*.ts"))


async def seed(config: Config) -> int:
    """Migrations, one active user, one ready public video; returns the video id."""
    from videoflix.accounts import passwords
    from videoflix.platform.db import create_pool, cursor
    from videoflix.platform.migrate import apply_migrations
    from videoflix.tables import users, videos

    pool = await create_pool(config.database_url)
    try:
        await apply_migrations(pool)
        with concurrent.futures.ThreadPoolExecutor(1) as executor:
            hashed = await passwords.hash_password(executor, PASSWORD, BCRYPT_ROUNDS)
        async with cursor(pool) as cur:
            user_id = await users.insert_user(cur, EMAIL, hashed, is_active=True)
            # The burst logs in LOGIN_BURST different users: concurrent attempts for
            # one account from one address are capped by the login throttle.
            for n in range(LOGIN_BURST):
                await users.insert_user(cur, burst_email(n), hashed, is_active=True)
            video_id = await videos.insert_video(cur, owner_id=user_id, title="bench", description="",
                                                 category="Bench", visibility="public", status="queued")
            assert (await videos.mark_processing(cur, video_id)).building_version == VERSION
            await videos.mark_ready(cur, video_id, version=VERSION, duration=float(SEGMENTS * SEGMENT_SECONDS),
                                    width=1280, height=720, fps=25.0, has_audio=False, resolutions=["720p"])
        return video_id
    finally:
        pool.close()
        await pool.wait_closed()


def burst_email(n: int) -> str:
    return f"bench-burst-{n}@example.com"


def login(port: int) -> str:
    """The access_token cookie of a real login."""
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


ALONE = """\
    sendfile on;
    tcp_nopush on;
    types {{ video/MP2T ts; application/vnd.apple.mpegurl m3u8; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}"""


def start_nginx(prefix: Path, root: Path, port: int, workers: str, upstream: int | None = None,
                media_key: str = "") -> subprocess.Popen:
    """nginx alone serving `root`; or, with `upstream`, the shipped deploy/nginx.conf
    (tests/nginx_site.py: njs loaded, `media_key` filled in) in front of our server on
    that port, its media locations aliasing `root`."""
    if upstream is None:
        prefix.mkdir()
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_site.MAIN.format(njs=nginx_site.NJS_MODULE, workers=workers, prefix=prefix,
                                               http=ALONE.format(port=port, root=root)))
        process = subprocess.Popen(["nginx", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    else:
        process = nginx_site.start(prefix, upstream_port=upstream, listen_port=port, media_dir=str(root),
                                   media_key=media_key or "0" * 64, workers=workers)
    wait_for_port(port, process, "nginx")
    return process


def stop_all(children: list[subprocess.Popen], redis, postgres, state: Path) -> None:
    """The end of a run: children (last started first), Redis, PostgreSQL, the state folder."""
    for child in reversed(children):
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    if redis is not None:
        redis.stop()
    if postgres is not None:
        postgres.stop()
    shutil.rmtree(state, ignore_errors=True)


# --- measuring ------------------------------------------------------------------------------

WRK_SCRIPT = """\
local paths = {{{paths}}}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
{delay}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    summary.bytes, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


@dataclass
class Profile:
    """py-spy sampling of the server during the measured runs (--profile DIR)."""
    tool: str
    directory: Path

    def output(self, label: str) -> Path:
        return self.directory / f"{label}.txt"

    def summary(self, label: str, top: int = 25) -> str:
        """Self and inclusive share of samples per function, from py-spy's raw
        (collapsed) stacks: `frame;frame;... count` per line."""
        own: dict[str, int] = {}
        inclusive: dict[str, int] = {}
        total = 0
        for line in self.output(label).read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            samples = int(count)
            frames = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].rstrip(")")
                      for f in stack.split(";")[1:]]  # [0] is the thread
            total += samples
            if frames:
                own[frames[-1]] = own.get(frames[-1], 0) + samples
            for frame in set(frames):
                inclusive[frame] = inclusive.get(frame, 0) + samples
        lines = [f"  profile {label}: {total} samples; self time, then inclusive"]
        for name, samples in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"    {100 * samples / total:5.1f}%  {name}")
        lines.append("    ---")
        for name, samples in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"    {100 * samples / total:5.1f}%  {name}")
        return "\n".join(lines)


@dataclass
class Result:
    requests: int
    seconds: float
    bytes: int
    errors: int
    bad_status: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_percent: float | None = None  # of one core: user + system
    sys_percent: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def mbps(self) -> float:
        return self.bytes / self.seconds / 1e6


def cpu_times(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU seconds of processes (all their threads), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for pid in pids:
        try:  # (nginx's cache loader exits a minute after start)
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        user += int(fields[11]) / tick
        system += int(fields[12]) / tick
    return user, system


def child_pids(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def wrk(work: Path, port: int, paths: list[str], *, seconds: float, connections: int,
              threads: int = 2, headers: dict[str, str] | None = None, pause_ms: int = 0,
              pids: list[int] | None = None, profile: "Profile | None" = None, label: str = "") -> Result:
    script = work / f"wrk-{port}-{connections}-{pause_ms}.lua"
    script.write_text(WRK_SCRIPT.format(
        paths=", ".join(json.dumps(p) for p in paths),
        delay=f"delay = function() return {pause_ms} end" if pause_ms else ""))
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{round(seconds)}s", "--timeout", "10s",
               "-s", str(script)]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command.append(f"http://127.0.0.1:{port}{paths[0]}")
    cpu_before = cpu_times(pids) if pids else (0.0, 0.0)
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    profiler = None
    if pids and profile is not None:
        profiler = await asyncio.create_subprocess_exec(
            profile.tool, "record", "--pid", str(pids[0]), "--duration", str(max(1, round(seconds) - 1)),
            "--rate", "250", "--threads", "--nonblocking", "--format", "raw", "--output", str(profile.output(label)),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    out, err = await asyncio.wait_for(process.communicate(), seconds + 30)
    if profiler is not None:
        await asyncio.wait_for(profiler.wait(), 30)
    match = re.search(rb"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    if process.returncode != 0 or match is None:
        raise SystemExit(f"wrk failed: {out.decode()} {err.decode()}")
    requests, micros, size, errors, bad, p50, p99, worst = (int(x) for x in match.groups())
    result = Result(requests, micros / 1e6, size, errors, bad, p50 / 1e3, p99 / 1e3, worst / 1e3)
    if pids:
        user, system = cpu_times(pids)
        result.cpu_percent = 100 * (user + system - sum(cpu_before)) / result.seconds
        result.sys_percent = 100 * (system - cpu_before[1]) / result.seconds
    return result


async def login_bursts(port: int, stop: asyncio.Event) -> tuple[int, float]:
    """Bursts of LOGIN_BURST concurrent real logins, back to back, until `stop`."""
    import tornado.httpclient

    client = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=LOGIN_BURST)
    bodies = [json.dumps({"email": burst_email(n), "password": PASSWORD}) for n in range(LOGIN_BURST)]
    done, bursts, started = 0, 0, time.monotonic()
    try:
        while not stop.is_set():
            responses = await asyncio.gather(*(
                client.fetch(f"http://127.0.0.1:{port}/api/login/", method="POST", body=body,
                             headers={"Content-Type": "application/json"}, request_timeout=60,
                             raise_error=False) for body in bodies))
            assert all(r.code == 200 for r in responses), [r.code for r in responses]
            done += len(responses)
            bursts += 1
    finally:
        client.close()
    elapsed = time.monotonic() - started
    return done, elapsed / max(bursts, 1)


def row(name: str, result: Result) -> str:
    cpu = f"{result.cpu_percent:4.0f}% (sys {result.sys_percent:.0f}%)"
    return (f"  {name:<26} {result.rps:9.1f} req/s {result.mbps:9.1f} MB/s   p50 {result.p50_ms:7.2f} ms"
            f"   p99 {result.p99_ms:7.2f} ms   errors {result.errors + result.bad_status}   cpu {cpu}")


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


@dataclass
class Servers:
    ours: int  # embedded: our server sends the files (sendfile)
    nginx: int  # nginx alone
    accel: int  # the shipped nginx config in front of our second server (X-Accel-Redirect)
    our_pid: int
    nginx_pids: list[int]
    accel_pids: list[int]  # front nginx and our second server
    floor: int  # the floor (run_floor) sending the files
    floor_pids: list[int]
    floor_accel: int  # the shipped nginx config in front of the floor answering X-Accel-Redirect
    floor_accel_pids: list[int]


async def measure(args: argparse.Namespace, work: Path, servers: Servers, video_id: int, cookie: str) -> bool:
    names = [f"720p/seg_{n:05d}.ts" for n in range(SEGMENTS)]
    our_paths = [f"/api/video/{video_id}/{name}" for name in names]
    # nginx alone and the floor trust the path: they are given the file's own (v<N>/ in it).
    nginx_paths = [f"/{video_id}/v{VERSION}/{name}" for name in names]
    floor_paths = [f"/api/video/{video_id}/v{VERSION}/{name}" for name in names]
    auth = {"Cookie": f"access_token={cookie}"}
    ranged = {**auth, "Range": RANGE}
    seconds = args.seconds
    ours = servers.ours
    profile = Profile(args.py_spy, args.profile) if args.profile else None
    ok = True
    targets = (("embedded", servers.ours, our_paths, [servers.our_pid]),
               ("nginx", servers.nginx, nginx_paths, servers.nginx_pids),
               ("accel", servers.accel, our_paths, servers.accel_pids),
               ("floor", servers.floor, floor_paths, servers.floor_pids),
               ("floor+ngx", servers.floor_accel, floor_paths, servers.floor_accel_pids))

    # Rounds cycle the servers so that load from elsewhere on the machine hits all
    # alike; the verdicts use the median of the per-round ratios.
    print(f"\n{SEGMENTS} segments; wrk 2 threads, {seconds:g} s per run, {args.rounds} rounds"
          f" cycling embedded, nginx alone, accel, and the Tornado floor alone and behind nginx"
          f" ({args.nginx_workers} nginx worker(s) each)")
    verdicts = []
    for n in args.connections:
        print(f"\n full GETs, {n} connections")
        for _, port, paths, _ in targets:
            await wrk(work, port, paths, seconds=WARMUP_SECONDS, connections=n, headers=auth)
        embedded_ratios, accel_ratios, floor_ratios = [], [], []
        for round_no in range(1, args.rounds + 1):
            results = {}
            for name, port, paths, pids in targets:
                results[name] = await wrk(work, port, paths, seconds=seconds, connections=n, headers=auth,
                                          pids=pids, profile=profile if (round_no, name, n) == (
                                              1, "embedded", args.connections[0]) else None, label="full")
            print(f" round {round_no}")
            for name, result in results.items():
                print(row(f"{name:<9} full GET", result))
                ok &= result.errors == 0 and result.bad_status == 0
            mbps = {name: result.mbps for name, result in results.items()}
            embedded_ratios.append(mbps["embedded"] / mbps["nginx"])
            accel_ratios.append(mbps["accel"] / mbps["nginx"])
            floor_ratios.append((mbps["floor"] / mbps["nginx"], mbps["floor+ngx"] / mbps["nginx"],
                                 mbps["embedded"] / mbps["floor"], mbps["accel"] / mbps["floor+ngx"]))
            efficiency = {name: r.mbps / max(r.cpu_percent or 0.0, 1e-9) for name, r in results.items()}
            print(f"  embedded/nginx {embedded_ratios[-1]:.2f}x, accel/nginx {accel_ratios[-1]:.2f}x (MB/s);"
                  f" per CPU-second of the serving processes: embedded/nginx"
                  f" {efficiency['embedded'] / efficiency['nginx']:.2f}x,"
                  f" accel/nginx {efficiency['accel'] / efficiency['nginx']:.2f}x")
            print("  floor/nginx {:.2f}x, floor+ngx/nginx {:.2f}x; embedded/floor {:.2f}x,"
                  " accel/floor+ngx {:.2f}x".format(*floor_ratios[-1]))
        embedded, accelerated = median(embedded_ratios), median(accel_ratios)
        floors = [median([r[i] for r in floor_ratios]) for i in range(4)]
        verdicts.append((n, embedded, accelerated, floors))
        ok &= embedded >= TARGET_EMBEDDED_RATIO and accelerated >= TARGET_ACCEL_RATIO
    n = args.connections[-1]
    print(f"\n ranged GETs (256 KiB), {n} connections")
    part_ratios = []
    for round_no in range(1, args.rounds + 1):
        part_ours = await wrk(work, ours, our_paths, seconds=seconds, connections=n, headers=ranged,
                              pids=[servers.our_pid])
        part_nginx = await wrk(work, servers.nginx, nginx_paths, seconds=seconds, connections=n, headers=ranged,
                               pids=servers.nginx_pids)
        print(f" round {round_no}")
        print(row("embedded ranged GET", part_ours))
        print(row("nginx    ranged GET", part_nginx))
        part_ratios.append(part_ours.rps / part_nginx.rps)
        ok &= part_ours.errors + part_ours.bad_status + part_nginx.errors + part_nginx.bad_status == 0
    print("\n medians of the per-round ratios (full GETs, MB/s):")
    for n, embedded, accelerated, floors in verdicts:
        print(f"  {n:>3} connections: embedded/nginx {embedded:.2f}x (target >= {TARGET_EMBEDDED_RATIO:g}x:"
              f" {'met' if embedded >= TARGET_EMBEDDED_RATIO else 'MISSED'}),"
              f" accel/nginx {accelerated:.2f}x (target >= {TARGET_ACCEL_RATIO:g}x:"
              f" {'met' if accelerated >= TARGET_ACCEL_RATIO else 'MISSED'})")
        print("       the Tornado floor: floor/nginx {:.2f}x, floor+ngx/nginx {:.2f}x;"
              " ours against it: embedded/floor {:.2f}x, accel/floor+ngx {:.2f}x".format(*floors))
    print(f"  ranged GETs at {args.connections[-1]} connections: embedded/nginx {median(part_ratios):.2f}x (req/s)")

    print(f"\nSegment GET latency, {PROBE_CLIENTS} clients pausing {PROBE_PAUSE_MS} ms between GETs,"
          f" {seconds:g} s per run, {args.rounds} rounds of idle then during {LOGIN_BURST}-login bursts")
    factors = []
    for round_no in range(1, args.rounds + 1):
        idle = await wrk(work, ours, our_paths, seconds=seconds, connections=PROBE_CLIENTS, threads=1,
                         headers=auth, pause_ms=PROBE_PAUSE_MS, pids=[servers.our_pid])
        stop = asyncio.Event()
        bursts = asyncio.create_task(login_bursts(ours, stop))
        await asyncio.sleep(0.5)  # the first burst is under way before the probe starts
        busy = await wrk(work, ours, our_paths, seconds=seconds, connections=PROBE_CLIENTS, threads=1,
                         headers=auth, pause_ms=PROBE_PAUSE_MS, pids=[servers.our_pid],
                         profile=profile if round_no == 1 else None, label="burst")
        stop.set()
        logins, per_burst = await bursts
        factors.append(busy.p99_ms / idle.p99_ms)
        print(f" round {round_no}")
        print(row("idle", idle))
        print(row("during login bursts", busy))
        print(f"  {logins} logins, {per_burst:.2f} s per burst of {LOGIN_BURST}; p99 {factors[-1]:.2f}x idle")
        ok &= idle.errors + idle.bad_status + busy.errors + busy.bad_status == 0
    factor = median(factors)
    print(f" median p99 during bursts / idle p99: {factor:.2f}x"
          f"  (target <= {TARGET_P99_FACTOR:g}x: {'met' if factor <= TARGET_P99_FACTOR else 'MISSED'})")
    ok &= factor <= TARGET_P99_FACTOR
    if profile is not None:
        print()
        print(profile.summary("full"))
        print(profile.summary("burst"))
    return ok


# --- --edge: media tokens at the edge (issue 20 item 5) ------------------------------------

# Segment sizes of the edge runs: a low rung, the embedded target's ~0.8 MB, a 1080p rung.
EDGE_SIZES = (("256 KB", 256 * 1024), ("0.8 MB", 800 * 1000), ("3 MB", 3 * 1000 * 1000))
EDGE_EMBEDDED_SIZE = "0.8 MB"
TARGET_EDGE_RATIO = 0.9  # private segments through nginx / nginx alone, at every size
TARGET_EDGE_EMBEDDED_RATIO = 0.7  # the embedded server's tokened segments / nginx alone, ~0.8 MB
VIEWERS = 500
VIEWER_PACE_MS = SEGMENT_SECONDS * 1000  # one segment per segment duration: playback pace
VIEWER_SECONDS = 30
CROWD = "crowd"  # the crowd's video: EDGE_EMBEDDED_SIZE segments


async def seed_edge(config: Config, viewers: int) -> tuple[dict[str, int], list[int]]:
    """Migrations; one private video per edge size (owner: the first viewer), live version 1;
    `viewers` active users (each a player with its own session). (video ids, user ids)"""
    from videoflix.platform.db import create_pool, cursor
    from videoflix.platform.migrate import apply_migrations
    from videoflix.tables import users, videos

    pool = await create_pool(config.database_url)
    try:
        await apply_migrations(pool)
        ids = []
        async with cursor(pool) as cur:
            for n in range(viewers):  # (no one logs in with these: the sessions are minted)
                ids.append(await users.insert_user(cur, f"viewer-{n}@example.com", "!", is_active=True))
            made = {}
            # Private, of the first viewer (who watches them); the crowd's, public (one video,
            # watched by every player, each under a token of its own session).
            for label, visibility in [*((label, "private") for label, _ in EDGE_SIZES), (CROWD, "public")]:
                video_id = await videos.insert_video(cur, owner_id=ids[0], title=label, description="",
                                                     category="Bench", visibility=visibility, status="queued")
                assert (await videos.mark_processing(cur, video_id)).building_version == VERSION
                await videos.mark_ready(cur, video_id, version=VERSION, duration=float(SEGMENTS * SEGMENT_SECONDS),
                                        width=1280, height=720, fps=25.0, has_audio=False, resolutions=["720p"])
                made[label] = video_id
        return made, ids
    finally:
        pool.close()
        await pool.wait_closed()


def media_folder(secret: str, user_id: int, video_id: int) -> str:
    """The folder a master hands this user's (fresh) session: the server's own function."""
    from videoflix.accounts import tokens
    from videoflix.delivery.playback import media_folder as server_media_folder

    claims = tokens.SessionClaims(user_id=user_id, kind="access", jti="bench", expires_at=0, is_admin=False,
                                  token_version=0, session_id=tokens.new_session_id())
    config = Config(secret_key=secret, media_token_ttl=3600)
    return server_media_folder(config, claims, video_id, VERSION, int(time.time())).url  # (the path form)


async def measure_edge(args: argparse.Namespace, work: Path, ports: dict[str, int], pids: dict[str, list[int]],
                       videos: dict[str, int], folders: dict[str, str], viewer_folders: list[str]) -> bool:
    names = [f"720p/seg_{n:05d}.ts" for n in range(SEGMENTS)]
    ok = True
    summary = []
    profile = Profile(args.py_spy, args.profile) if args.profile else None
    print(f"\nPrivate segments under media tokens: wrk 2 threads, {args.seconds:g} s per run, {args.rounds} rounds"
          f" cycling nginx alone, the token path through the shipped nginx site (njs + cached auth_request)"
          f" and, at {EDGE_EMBEDDED_SIZE}, the embedded server's token path ({args.nginx_workers} nginx worker(s))")
    for label, _ in EDGE_SIZES:
        video_id = videos[label]
        alone = [f"/{video_id}/v{VERSION}/{name}" for name in names]
        tokened = [folders[label] + name for name in names]
        targets = [("nginx", ports["nginx"], alone, pids["nginx"]),
                   ("token+ngx", ports["front"], tokened, pids["front"])]
        if label == EDGE_EMBEDDED_SIZE:
            targets.append(("embedded", ports["ours"], tokened, pids["ours"]))
        for n in args.connections:
            print(f"\n {label} segments, {n} connections")
            for _, port, paths, _ in targets:
                await wrk(work, port, paths, seconds=WARMUP_SECONDS, connections=n)
            ratios: dict[str, list[float]] = {name: [] for name, *_ in targets[1:]}
            for round_no in range(1, args.rounds + 1):
                results = {name: await wrk(work, port, paths, seconds=args.seconds, connections=n, pids=procs,
                                           profile=profile if (round_no, name) == (1, "embedded") else None,
                                           label=f"embedded-{n}")
                           for name, port, paths, procs in targets}
                print(f" round {round_no}")
                for name, result in results.items():
                    print(row(f"{name:<10} {label}", result))
                    ok &= result.errors == 0 and result.bad_status == 0
                for name in ratios:
                    ratios[name].append(results[name].mbps / results["nginx"].mbps)
                print("  " + ", ".join(f"{name}/nginx {values[-1]:.2f}x" for name, values in ratios.items()))
            for name, values in ratios.items():
                target = TARGET_EDGE_RATIO if name == "token+ngx" else TARGET_EDGE_EMBEDDED_RATIO
                met = median(values) >= target
                ok &= met
                summary.append(f"  {label:>6}, {n:>3} connections: {name}/nginx {median(values):.2f}x"
                               f" (target >= {target:g}x: {'met' if met else 'MISSED'})")

    # Many viewers: each wrk connection a player at playback pace, every player its own session.
    paths = [folder + name for folder in viewer_folders for name in names[:3]]
    print(f"\n {len(viewer_folders)} players through nginx, each with its own session and token, one"
          f" {EDGE_EMBEDDED_SIZE} segment every {VIEWER_PACE_MS} ms, {args.viewer_seconds:g} s")
    # Players already watching: every token checked once before the measured run.
    await wrk(work, ports["front"], paths, seconds=VIEWER_PACE_MS * 3 / 1000 + WARMUP_SECONDS,
              connections=len(viewer_folders), pause_ms=VIEWER_PACE_MS)
    before = cpu_times(pids["behind"])
    crowd = await wrk(work, ports["front"], paths, seconds=args.viewer_seconds, connections=len(viewer_folders),
                      pause_ms=VIEWER_PACE_MS, pids=pids["front"])
    user, system = cpu_times(pids["behind"])
    videoflix_cpu = user + system - sum(before)
    viewer_hours = len(viewer_folders) * crowd.seconds / 3600
    print(row("players", crowd))
    errors = crowd.errors + crowd.bad_status
    print(f"  errors {errors}; p99 {crowd.p99_ms:.1f} ms; Videoflix CPU {videoflix_cpu:.2f} s in"
          f" {crowd.seconds:.0f} s = {videoflix_cpu / viewer_hours:.2f} CPU-s per viewer-hour")
    ok &= errors == 0
    summary.append(f"  {len(viewer_folders)} players: {errors} errors (target 0: {'met' if errors == 0 else 'MISSED'}),"
                   f" p99 {crowd.p99_ms:.1f} ms, Videoflix {videoflix_cpu / viewer_hours:.2f} CPU-s per viewer-hour")
    print("\n medians of the per-round ratios (MB/s):")
    print("\n".join(summary))
    if profile is not None:
        for n in args.connections:
            print(profile.summary(f"embedded-{n}"))
    return ok


def edge_main(args: argparse.Namespace) -> int:
    from videoflix.accounts import tokens
    from videoflix.platform.embedded import EmbeddedPostgres, EmbeddedRedis

    state = Path(tempfile.mkdtemp(prefix="videoflix-bench-edge-"))
    state.chmod(0o755)  # PostgreSQL (as root: another user) and nginx workers read below it
    children: list[subprocess.Popen] = []
    postgres = redis = None
    try:
        postgres = EmbeddedPostgres(state / "postgres", free_port(), durable=False)
        dsn = postgres.start()
        redis = EmbeddedRedis(state / "redis", free_port(), appendonly=False)
        redis.start()
        secret = "bench-" + "k" * 40
        media_dir = state / "media"
        config = Config(database_url=dsn, redis_url=redis.url, secret_key=secret, var_dir=str(state / "var"),
                        media_dir=str(media_dir), log_level="WARNING")
        videos, viewers = asyncio.run(seed_edge(config, args.viewers))
        for label, size in [*EDGE_SIZES, (CROWD, dict(EDGE_SIZES)[EDGE_EMBEDDED_SIZE])]:
            folder = media_dir / str(videos[label]) / f"v{VERSION}" / "720p"
            folder.mkdir(parents=True)
            for n in range(SEGMENTS):
                (folder / f"seg_{n:05d}.ts").write_bytes(os.urandom(size))
        for path in [media_dir, *media_dir.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        print(f"segments: {', '.join(label for label, _ in EDGE_SIZES)}, {SEGMENTS} of each (random bytes: no one"
              f" parses them); {args.viewers} viewers")
        ports = {name: free_port() for name in ("ours", "behind", "nginx", "front")}
        env = {**os.environ, "DATABASE_URL": dsn, "REDIS_URL": redis.url, "SECRET_KEY": secret,
               "VIDEOFLIX_HOST": "127.0.0.1", "VIDEOFLIX_VAR_DIR": config.var_dir,
               "VIDEOFLIX_MEDIA_DIR": config.media_dir, "VIDEOFLIX_LOG_LEVEL": "WARNING"}
        ours = subprocess.Popen([sys.executable, __file__, "--server"], env={**env, "VIDEOFLIX_PORT": str(ports["ours"])})
        children.append(ours)
        behind = subprocess.Popen([sys.executable, __file__, "--server"],
                                  env={**env, "VIDEOFLIX_PORT": str(ports["behind"])})
        children.append(behind)
        wait_for_port(ports["ours"], ours, "videoflix")
        wait_for_port(ports["behind"], behind, "videoflix behind nginx")
        nginx = start_nginx(state / "nginx", media_dir, ports["nginx"], args.nginx_workers)
        children.append(nginx)
        front = start_nginx(state / "front", media_dir, ports["front"], args.nginx_workers,
                            upstream=ports["behind"], media_key=tokens.media_key(secret))
        children.append(front)
        pids = {"ours": [ours.pid], "behind": [behind.pid], "nginx": [nginx.pid, *child_pids(nginx.pid)],
                "front": [front.pid, *child_pids(front.pid), behind.pid]}
        folders = {label: media_folder(secret, viewers[0], videos[label]) for label, _ in EDGE_SIZES}
        viewer_folders = [media_folder(secret, user_id, videos[CROWD]) for user_id in viewers]
        for label, folder in folders.items():  # the path works before anything is measured
            probe = urllib.request.urlopen(f"http://127.0.0.1:{ports['front']}{folder}720p/seg_00000.ts", timeout=10)
            assert probe.status == 200, (label, probe.status)
        print(f"load average before the runs: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
              f" on {os.cpu_count()} CPUs (wrk, nginx and our servers share them)")
        ok = asyncio.run(measure_edge(args, state, ports, pids, videos, folders, viewer_folders))
        print(f"load average after the runs: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print("\nall targets met" if ok else "\nsome target missed (see above)")
        return 0 if ok else 1
    finally:
        stop_all(children, redis, postgres, state)


S3_SIZE = 800 * 1000  # the size of the edge run's embedded comparison
S3_BUCKET = "videoflix-bench"


async def measure_s3(args: argparse.Namespace, work: Path, ports: dict[str, int], pids: dict[str, list[int]],
                     folders: dict[str, str]) -> None:
    names = [f"720p/seg_{n:05d}.ts" for n in range(SEGMENTS)]
    targets = [(name, ports[name], [folders[name] + n for n in names], pids[name])
               for name in ("ours-disk", "ours-s3", "ngx-disk", "ngx-s3")]
    print(f"\nTokened 0.8 MB segments, disk against bucket: wrk 2 threads, {args.seconds:g} s per run,"
          f" {args.rounds} rounds cycling the four ({args.nginx_workers} nginx worker(s))")
    summary = []
    for n in args.connections:
        print(f"\n {n} connections")
        for _, port, paths, _ in targets:  # warm: hot cache and nginx's slices filled
            await wrk(work, port, paths, seconds=WARMUP_SECONDS, connections=n)
        ratios: dict[str, list[float]] = {"ours": [], "ngx": []}
        for round_no in range(1, args.rounds + 1):
            results = {name: await wrk(work, port, paths, seconds=args.seconds, connections=n, pids=procs)
                       for name, port, paths, procs in targets}
            print(f" round {round_no}")
            for name, result in results.items():
                print(row(f"{name:<10}", result))
            for side in ratios:
                ratios[side].append(results[f"{side}-s3"].mbps / results[f"{side}-disk"].mbps)
            print("  " + ", ".join(f"{side} s3/disk {values[-1]:.2f}x" for side, values in ratios.items()))
        for side, values in ratios.items():
            summary.append(f"  {n:>3} connections: {'embedded' if side == 'ours' else 'nginx'} bucket/disk"
                           f" {median(values):.2f}x")
    print("\n medians of the per-round ratios (MB/s):")
    print("\n".join(summary))


def s3_main(args: argparse.Namespace) -> int:
    import botocore.session

    from videoflix.accounts import tokens
    from videoflix.platform.embedded import EmbeddedPostgres, EmbeddedRedis
    from videoflix.platform.embedded_s3 import EmbeddedS3

    state = Path(tempfile.mkdtemp(prefix="videoflix-bench-s3-"))
    state.chmod(0o755)
    children: list[subprocess.Popen] = []
    postgres = redis = store = None
    try:
        postgres = EmbeddedPostgres(state / "postgres", free_port(), durable=False)
        dsn = postgres.start()
        redis = EmbeddedRedis(state / "redis", free_port(), appendonly=False)
        redis.start()
        store = EmbeddedS3(state / "seaweedfs")
        store.start()
        store.ensure_bucket(S3_BUCKET, 60)
        client = botocore.session.get_session().create_client("s3", **store.settings(S3_BUCKET).client_kwargs())
        secret = "bench-" + "k" * 40
        media_dir = state / "media"
        config = Config(database_url=dsn, redis_url=redis.url, secret_key=secret, var_dir=str(state / "var"),
                        media_dir=str(media_dir), log_level="WARNING")
        videos, viewers = asyncio.run(seed_edge(config, 1))
        video_id = videos[EDGE_EMBEDDED_SIZE]
        folder = media_dir / str(video_id) / f"v{VERSION}" / "720p"
        folder.mkdir(parents=True)
        for n in range(SEGMENTS):
            data = os.urandom(S3_SIZE)
            (folder / f"seg_{n:05d}.ts").write_bytes(data)
            client.put_object(Bucket=S3_BUCKET, Key=f"{video_id}/v{VERSION}/720p/seg_{n:05d}.ts", Body=data,
                              ContentType="video/mp2t")
        client.close()
        for path in [media_dir, *media_dir.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        print(f"segments: {SEGMENTS} of {S3_SIZE / 1e6:.1f} MB (random bytes), on disk and in SeaweedFS")
        ports = {name: free_port() for name in ("ours-disk", "ours-s3", "ngx-disk", "ngx-s3")}
        env = {**os.environ, "DATABASE_URL": dsn, "REDIS_URL": redis.url, "SECRET_KEY": secret,
               "VIDEOFLIX_HOST": "127.0.0.1", "VIDEOFLIX_VAR_DIR": config.var_dir,
               "VIDEOFLIX_MEDIA_DIR": config.media_dir, "VIDEOFLIX_LOG_LEVEL": "WARNING"}
        s3_env = {**env, "VIDEOFLIX_STORAGE": f"s3://{S3_BUCKET}", "VIDEOFLIX_S3_ENDPOINT": store.endpoint,
                  "AWS_ACCESS_KEY_ID": store.access_key, "AWS_SECRET_ACCESS_KEY": store.secret_key,
                  "VIDEOFLIX_MEDIA_DIR": str(state / "scratch")}
        disk = subprocess.Popen([sys.executable, __file__, "--server"], env={**env, "VIDEOFLIX_PORT": str(ports["ours-disk"])})
        children.append(disk)
        bucket = subprocess.Popen([sys.executable, __file__, "--server"],
                                  env={**s3_env, "VIDEOFLIX_PORT": str(ports["ours-s3"])})
        children.append(bucket)
        wait_for_port(ports["ours-disk"], disk, "videoflix (disk)")
        wait_for_port(ports["ours-s3"], bucket, "videoflix (bucket)")
        front_disk = start_nginx(state / "front-disk", media_dir, ports["ngx-disk"], args.nginx_workers,
                                 upstream=ports["ours-disk"], media_key=tokens.media_key(secret))
        children.append(front_disk)
        front_s3 = nginx_site.start(state / "front-s3", upstream_port=ports["ours-s3"], listen_port=ports["ngx-s3"],
                                    media_dir=str(media_dir), media_key=tokens.media_key(secret),
                                    workers=args.nginx_workers,
                                    s3={"storage": f"s3://{S3_BUCKET}", "endpoint": store.endpoint,
                                        "access_key": store.access_key, "secret_key": store.secret_key})
        wait_for_port(ports["ngx-s3"], front_s3, "nginx (bucket)")
        children.append(front_s3)
        pids = {"ours-disk": [disk.pid], "ours-s3": [bucket.pid],
                "ngx-disk": [front_disk.pid, *child_pids(front_disk.pid), disk.pid],
                "ngx-s3": [front_s3.pid, *child_pids(front_s3.pid), bucket.pid]}
        folders = {name: media_folder(secret, viewers[0], video_id) for name in ports}
        for name, port in ports.items():  # every path works before anything is measured
            probe = urllib.request.urlopen(f"http://127.0.0.1:{port}{folders[name]}720p/seg_00000.ts", timeout=10)
            assert probe.status == 200 and len(probe.read()) == S3_SIZE, (name, probe.status)
        print(f"load average before the runs: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
              f" on {os.cpu_count()} CPUs (wrk, nginx, SeaweedFS and our servers share them)")
        asyncio.run(measure_s3(args, state, ports, pids, folders))
        print(f"load average after the runs: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return 0
    finally:
        if store is not None:
            store.stop()
        stop_all(children, redis, postgres, state)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=lambda v: [int(x) for x in v.split(",")], default=[16, 64],
                        help="comma-separated wrk connection counts (default 16,64)")
    parser.add_argument("--nginx-workers", default="1")
    parser.add_argument("--bitrate", default=VIDEO_BITRATE,
                        help="CBR of the 2 s test segments (default 4000k: ~1 MB; 13600k: ~3.4 MB, a 1080p rung)")
    parser.add_argument("--profile", type=Path, help="sample the server with py-spy into this directory")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy", help="the py-spy binary")
    parser.add_argument("--edge", action="store_true",
                        help="media tokens: private segments through the shipped nginx site against nginx alone"
                             " (256 KB, 0.8 MB, 3 MB), the embedded token path, and many players (issue 20)")
    parser.add_argument("--s3", action="store_true",
                        help="tokened segments from a SeaweedFS bucket against the same on disk (issue 21)")
    parser.add_argument("--viewers", type=int, default=VIEWERS, help="players in the --edge crowd run")
    parser.add_argument("--viewer-seconds", type=float, default=VIEWER_SECONDS)
    parser.add_argument("--server", action="store_true", help=argparse.SUPPRESS)  # the child
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)  # the floor child
    args = parser.parse_args()
    if args.server:
        asyncio.run(run_server())
        return 0
    if args.floor:
        asyncio.run(run_floor())
        return 0
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    for tool in ("wrk", "nginx", "ffmpeg"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            raise SystemExit(f"{tool} not found (apt-get install -y {tool})")
    if args.edge:
        return edge_main(args)
    if args.s3:
        return s3_main(args)

    from videoflix.platform.embedded import EmbeddedPostgres, EmbeddedRedis

    state = Path(tempfile.mkdtemp(prefix="videoflix-bench-"))
    state.chmod(0o755)  # PostgreSQL (as root: another user) and nginx workers read below it
    children: list[subprocess.Popen] = []
    postgres = redis = None
    try:
        postgres = EmbeddedPostgres(state / "postgres", free_port(), durable=False)
        dsn = postgres.start()
        redis = EmbeddedRedis(state / "redis", free_port(), appendonly=False)
        redis.start()
        our_port, nginx_port = free_port(), free_port()
        config = Config(database_url=dsn, redis_url=redis.url, secret_key="bench-" + "k" * 40,
                        port=our_port, bcrypt_rounds=BCRYPT_ROUNDS, var_dir=str(state / "var"),
                        media_dir=str(state / "media"), log_level="WARNING")
        video_id = asyncio.run(seed(config))
        segments = make_segments(Path(config.media_dir) / str(video_id) / f"v{VERSION}" / "720p", args.bitrate)
        sizes = [p.stat().st_size for p in segments]
        print(f"segments: {len(sizes)}, {min(sizes) / 1e6:.2f}-{max(sizes) / 1e6:.2f} MB")

        env = {**os.environ, "DATABASE_URL": dsn, "REDIS_URL": redis.url, "SECRET_KEY": config.secret_key,
               "VIDEOFLIX_HOST": "127.0.0.1", "VIDEOFLIX_PORT": str(our_port),
               "VIDEOFLIX_VAR_DIR": config.var_dir, "VIDEOFLIX_MEDIA_DIR": config.media_dir,
               "VIDEOFLIX_BCRYPT_ROUNDS": str(BCRYPT_ROUNDS), "VIDEOFLIX_LOG_LEVEL": "WARNING"}
        server = subprocess.Popen([sys.executable, __file__, "--server"], env=env)
        children.append(server)
        behind_port, accel_port = free_port(), free_port()
        behind = subprocess.Popen([sys.executable, __file__, "--server"],
                                  env={**env, "VIDEOFLIX_PORT": str(behind_port),
                                       "VIDEOFLIX_ACCEL_REDIRECT": ACCEL_PREFIX})
        children.append(behind)
        floor_port, floor_behind_port, floor_accel_port = free_port(), free_port(), free_port()
        floor = subprocess.Popen([sys.executable, __file__, "--floor"], env={**env, "VIDEOFLIX_PORT": str(floor_port)})
        children.append(floor)
        floor_behind = subprocess.Popen([sys.executable, __file__, "--floor"],
                                        env={**env, "VIDEOFLIX_PORT": str(floor_behind_port),
                                             "VIDEOFLIX_ACCEL_REDIRECT": ACCEL_PREFIX})
        children.append(floor_behind)
        wait_for_port(our_port, server, "videoflix")
        wait_for_port(behind_port, behind, "videoflix behind nginx")
        wait_for_port(floor_port, floor, "the floor")
        wait_for_port(floor_behind_port, floor_behind, "the floor behind nginx")
        nginx = start_nginx(state / "nginx", Path(config.media_dir), nginx_port, args.nginx_workers)
        children.append(nginx)
        front = start_nginx(state / "front", Path(config.media_dir), accel_port, args.nginx_workers,
                            upstream=behind_port)
        children.append(front)
        floor_front = start_nginx(state / "floor-front", Path(config.media_dir), floor_accel_port, args.nginx_workers,
                                  upstream=floor_behind_port)
        children.append(floor_front)
        cookie = login(our_port)
        print(f"load average before the runs: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
              f" on {os.cpu_count()} CPUs (wrk, both nginx and our servers share them)")
        servers = Servers(ours=our_port, nginx=nginx_port, accel=accel_port, our_pid=server.pid,
                          nginx_pids=[nginx.pid, *child_pids(nginx.pid)],
                          accel_pids=[front.pid, *child_pids(front.pid), behind.pid],
                          floor=floor_port, floor_pids=[floor.pid], floor_accel=floor_accel_port,
                          floor_accel_pids=[floor_front.pid, *child_pids(floor_front.pid), floor_behind.pid])
        ok = asyncio.run(measure(args, state, servers, video_id, cookie))
        print(f"load average after the runs: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print("\nall targets met" if ok else "\nsome target missed (see above)")
        return 0 if ok else 1
    finally:
        stop_all(children, redis, postgres, state)


if __name__ == "__main__":
    sys.exit(main())
