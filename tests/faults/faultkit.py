"""Real processes for the fault tests: `python -m videoflix serve|worker` as children
of the test, their own PostgreSQL, Redis and SMTP sink, and small sync helpers
(HTTP with requests, rows with psycopg2, Redis with the sync client, /proc walks).

Everything waits for a condition (`wait_for`), never a fixed time.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import botocore.session
import psycopg2
import psycopg2.extras
import redis
import requests

from stored_versions import missing_objects

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct-horse-9"


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll `condition()` until it returns something truthy; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Server:
    """One `python -m videoflix <command>` child with its own log file."""

    def __init__(self, env: dict[str, str], log_path: Path, command: str = "serve") -> None:
        self.env = env
        self.command = command
        self.log_path = log_path
        self.port = int(env["VIDEOFLIX_PORT"])
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> "Server":
        handle = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "videoflix", self.command], env=self.env,
                                     cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        handle.close()
        if wait:
            if self.command == "serve":
                wait_for(self._answers, f"{self.command} on port {self.port} to answer", timeout=60)
            else:
                wait_for(lambda: self._alive() and "transcode consumer" in self.log(), "the worker to start",
                         timeout=60)
        return self

    def _alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        return True

    def _answers(self) -> bool:
        self._alive()
        try:
            requests.get(self.base + "/api/health/", timeout=2)
            return True
        except requests.RequestException:
            return False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL and reap (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


class Api:
    """A logged-in browser-like session against one server."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()

    def call(self, method: str, path: str, timeout: float = 30, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.base + path, timeout=timeout, **kwargs)

    def register(self, email: str) -> requests.Response:
        return self.call("POST", "/api/register/", json={"email": email, "password": PASSWORD,
                                                          "confirmed_password": PASSWORD})

    def login(self, email: str) -> requests.Response:
        return self.call("POST", "/api/login/", json={"email": email, "password": PASSWORD})

    def upload(self, path: Path, **kwargs: Any) -> requests.Response:
        with open(path, "rb") as handle:
            return self.call("POST", "/api/video/", data={"title": path.stem, "category": "Faults"},
                             files={"file": (path.name, handle, "video/mp4")}, timeout=120, **kwargs)

    def detail(self, video_id: int) -> dict:
        response = self.call("GET", f"/api/video/{video_id}/")
        assert response.status_code == 200, response.text
        return response.json()


class Bucket:
    """A library's bucket as seen from outside every server (botocore, synchronous): the
    keys below `prefix` of `bucket` on an EmbeddedS3 `server`."""

    def __init__(self, server: Any, bucket: str, prefix: str = "") -> None:
        settings = server.settings(bucket, prefix)
        self.server = server
        self.bucket = bucket
        self.prefix = prefix
        self.s3 = botocore.session.get_session().create_client("s3", **settings.client_kwargs())

    def keys(self, folder: str = "") -> set[str]:
        """Every key below `folder` ("12/v1/"), relative to it."""
        found = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                      Prefix=self.prefix + folder):
            found.update(item["Key"][len(self.prefix + folder):] for item in page.get("Contents", ()))
        return found

    def read(self, key: str) -> bytes | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None

    def missing(self, video_id: int, version: int) -> list[str]:
        """What the published version lacks in the bucket (stored_versions.missing_objects)."""
        folder = f"{video_id}/v{version}/"
        return missing_objects(self.keys(folder), lambda name: self.read(folder + name))

    def close(self) -> None:
        self.s3.close()


class Database:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def query(self, sql: str, args: tuple = ()) -> list[dict]:
        conn = psycopg2.connect(self.dsn)
        try:
            conn.autocommit = True
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(sql, args)
                return [dict(row) for row in cur.fetchall()] if cur.description else []
        finally:
            conn.close()

    def reset(self) -> None:
        tables = [row["tablename"] for row in self.query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")]
        if tables:
            # Triggers off: audit_log (sql/008) refuses TRUNCATE, except to the suite's superuser here.
            self.query(f"SET session_replication_role = replica; TRUNCATE {', '.join(tables)} RESTART IDENTITY"
                       " CASCADE; SET session_replication_role = DEFAULT")

    def video(self, video_id: int) -> dict | None:
        rows = self.query("SELECT * FROM videos WHERE id = %s", (video_id,))
        return rows[0] if rows else None


def make_user(api: Api, db: Database, email: str = "owner@example.com") -> None:
    assert api.register(email).status_code == 201
    db.query("UPDATE users SET is_active = true WHERE email = %s", (email,))
    assert api.login(email).status_code == 200


def files_under(path: Path) -> list[str]:
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (walks /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return os.path.basename(handle.read().split(b"\0", 1)[0].decode(errors="replace"))
    except OSError:
        return ""


def ffmpeg_pids(server_pid: int) -> list[int]:
    return [pid for pid in descendants(server_pid) if process_name(pid) == "ffmpeg"]


def process_state(pid: int) -> str | None:
    """The /proc state letter (R, S, T, Z...), None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def gone(pid: int) -> bool:
    return process_state(pid) in (None, "Z", "X")


def make_clip(path: Path, seconds: int, size: str = "640x360", rate: int = 25, noise: bool = False) -> Path:
    if path.exists():
        return path
    video = f"testsrc2=size={size}:rate={rate}"
    quality = []
    if noise:
        # Noise keeps the encoder busy (a run that lasts); CRF 35 keeps the file a third
        # of the size x264 makes of it by default (60 s at 854x480: 116 MB, not 361 MB),
        # which every upload, store and fetch of it would carry.
        video += ",noise=alls=60:allf=t"
        quality = ["-crf", "35"]
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", video, "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=44100", "-t", str(seconds), "-c:v", "libx264",
                    "-preset", "ultrafast", *quality, "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)],
                   check=True)
    return path


def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)


def unique_email() -> str:
    return f"u{uuid.uuid4().hex[:12]}@example.com"


def as_json(response: requests.Response) -> Any:
    assert response.headers.get("Content-Type", "").startswith("application/json"), response.headers
    return json.loads(response.content)
