"""Plain helpers the tests share: a browser-like client, sign-up and log-in through
the real endpoints, multipart uploads, polling for a video's state.

Fixtures stay in conftest.py; anything a test module imports comes from here
(pytest discourages importing from conftest, which it loads under its own rules).
"""
from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import tornado.httpclient

from videoflix.platform import media
from videoflix.platform.db import cursor
from videoflix.tables import videos as video_rows

# Kept low so the suite is fast; one test raises it to measure real bcrypt cost.
TEST_BCRYPT_ROUNDS = 4
# The config fixture's libx264 preset: x264's fastest (40-60 % of veryfast's CPU time on
# the shared clips), for tests that need a real ladder but do not measure what the
# encoder made (its output is Constrained Baseline, not High). A test that measures it
# (profile, level, bit rates, quality) sets the shipped default back:
# dataclasses.replace(config, x264_preset=Config.x264_preset). test_ffmpeg, test_hdr and
# test_trickplay build their TranscodeSettings themselves and keep its default, veryfast.
TEST_X264_PRESET = "ultrafast"
PASSWORD = "correct-horse-9"


class MailSink:
    """aiosmtpd handler keeping every received message."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[list[str]] = []  # each message's RCPT TO addresses
        self.lock = threading.Lock()
        self.refuse = 0  # answer this many deliveries with a temporary failure

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            if self.refuse > 0:
                self.refuse -= 1
                return "451 Try again later"
            self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
            self.envelopes.append(list(envelope.rcpt_tos))
        return "250 OK"

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()
            self.envelopes.clear()
            self.refuse = 0


class Response:
    def __init__(self, raw: tornado.httpclient.HTTPResponse) -> None:
        self.raw = raw
        self.status = raw.code
        self.headers = raw.headers
        self.body = raw.body or b""

    def json(self) -> Any:
        return json.loads(self.body)

    def cookies(self) -> dict[str, Any]:
        jar = SimpleCookie()
        for header in self.headers.get_list("Set-Cookie"):
            jar.load(header)
        return dict(jar)


class Client:
    """A browser-like client: keeps cookies, sends JSON with Content-Type."""

    def __init__(self, http_client, base_url: str, source_ip: str | None = None) -> None:
        self.http = http_client
        self.base_url = base_url
        self.cookies: dict[str, str] = {}
        # Another loopback address (127.0.0.2, ...): a client on another host.
        self.source_ip = source_ip

    async def fetch(self, method: str, path: str, body: Any = None, *, raw_body: bytes | None = None,
                    headers: dict[str, str] | None = None, cookies: bool = True) -> Response:
        all_headers = {"Content-Type": "application/json"}
        if cookies and self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        all_headers.update(headers or {})
        data = raw_body if raw_body is not None else (json.dumps(body).encode() if body is not None else None)
        if data is None and method in ("POST", "PUT", "PATCH"):
            data = b""
        raw = await self.http.fetch(self.base_url + path, method=method, body=data, headers=all_headers,
                                    raise_error=False, follow_redirects=False, request_timeout=60,
                                    allow_nonstandard_methods=True, network_interface=self.source_ip)
        response = Response(raw)
        for name, morsel in response.cookies().items():
            if morsel.value == "" or morsel["max-age"] == "0":  # a deleted cookie
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = morsel.value
        return response

    def get(self, path: str, **kwargs: Any):
        return self.fetch("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any):
        return self.fetch("POST", path, body, **kwargs)


def link_from_mail(message: email.message.EmailMessage) -> tuple[str, str]:
    """(uidb64, token) from the link in a message's plain-text part."""
    text = message.get_body(preferencelist=("plain",)).get_content()
    match = re.search(r"\?uid=([A-Za-z0-9_-]+)&token=([A-Za-z0-9_-]+)", text)
    assert match, text
    return match.group(1), match.group(2)


async def register_user(client: Client, services, mailbox: MailSink, email_address: str,
                        password: str = PASSWORD, activate: bool = True) -> dict:
    """Register through the real endpoint; activate through the emailed link."""
    response = await client.post("/api/register/", {"email": email_address, "password": password,
                                                     "confirmed_password": password})
    assert response.status == 201, response.body
    user = response.json()["user"]
    await services.mailer.drain()
    if activate:
        uid, token = link_from_mail(mailbox.messages[-1])
        activation = await client.get(f"/api/activate/{uid}/{token}/")
        assert activation.status == 200, activation.body
    return user


async def login(client: Client, email_address: str, password: str = PASSWORD) -> Response:
    response = await client.post("/api/login/", {"email": email_address, "password": password})
    assert response.status == 200, response.body
    return response


def multipart(fields: dict[str, str], filename: str | None, content: bytes | None) -> tuple[bytes, str]:
    """A multipart/form-data body (RFC 7578) and its Content-Type."""
    boundary = "----videoflix" + secrets.token_hex(8)
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                     + value.encode() + b"\r\n")
    if filename is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                      f"Content-Type: application/octet-stream\r\n\r\n".encode() + (content or b"") + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


async def upload(client: Client, source: Path | bytes, filename: str = "clip.mp4", **fields: str) -> Response:
    content = source.read_bytes() if isinstance(source, Path) else source
    fields = {"title": "A clip", "description": "Something to watch", "category": "Drama", **fields}
    body, content_type = multipart(fields, filename, content)
    return await client.fetch("POST", "/api/video/", raw_body=body, headers={"Content-Type": content_type})


async def wait_for_status(client: Client, video_id: int, wanted: str, timeout: float = 180) -> dict:
    """Poll the detail endpoint until the video reaches `wanted` (or a final state)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        response = await client.get(f"/api/video/{video_id}/")
        assert response.status == 200, response.body
        detail = response.json()
        if detail["status"] == wanted:
            return detail
        assert detail["status"] not in ({"ready", "failed"} - {wanted}), detail
        assert loop.time() < deadline, f"video {video_id} still {detail['status']} after {timeout}s"
        await asyncio.sleep(0.2)


async def wait_until(condition: Any, what: str, timeout: float = 30.0) -> None:
    """Poll `condition()` (sync or async) until it is true; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def threads_inside(name_prefix: str, source_file: str) -> int:
    """How many live threads named `name_prefix`* are running code of `source_file`
    right now (anywhere in their stack): e.g. bcrypt threads inside passwords.py."""
    frames = sys._current_frames()
    count = 0
    for thread in threading.enumerate():
        if not thread.name.startswith(name_prefix):
            continue
        frame = frames.get(thread.ident)
        while frame is not None:
            if frame.f_code.co_filename.endswith(source_file):
                count += 1
                break
            frame = frame.f_back
    return count


# --- the real CLI in a subprocess ------------------------------------------------------

def cli_env(**settings: str) -> dict[str, str]:
    """A clean environment for `python -m videoflix`: nothing from the developer's
    shell leaks in (run it in a directory without a .env)."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
    env.update(settings)
    return env


def wait_for_health(port: int, proc: subprocess.Popen, deadline_seconds: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health/", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become healthy")


def stop_process(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


# --- rows for tests that need no real transcode (watching, events) ------------

async def make_ready_video(services, owner_id: int, *, title: str = "A film", visibility: str = "public",
                           duration: float = 100.0, category: str = "Drama") -> int:
    """A row as the runner leaves it after a successful first transcode, live version 1
    (media/<id>/v1/; no files: not needed here)."""
    async with cursor(services.pool) as cur:
        video_id = await video_rows.insert_video(cur, owner_id=owner_id, title=title, description="About it",
                                                 category=category, visibility=visibility, status="queued")
        version = (await video_rows.mark_processing(cur, video_id)).building_version
        assert await video_rows.mark_ready(cur, video_id, version=version, duration=duration, width=1280,
                                           height=720, fps=25.0, has_audio=True, resolutions=["720p", "480p"])
    return video_id


async def make_ready_version(services, owner_id: int, *, visibility: str = "private") -> tuple[int, int]:
    """A video whose first transcode published version N (media/<id>/v<N>/):
    (video id, N); 720p only, no files."""
    async with cursor(services.pool) as cur:
        video_id = await video_rows.insert_video(cur, owner_id=owner_id, title="v", description="",
                                                 category="Test", visibility=visibility, status="queued")
        version = (await video_rows.mark_processing(cur, video_id)).building_version
        assert await video_rows.mark_ready(cur, video_id, version=version, duration=8.0, width=1280,
                                           height=720, fps=25.0, has_audio=True, resolutions=["720p"])
    return video_id, version


async def publish_ladder(services, config, owner_id: int, ladder: Path, result, *, title: str = "A clip",
                        visibility: str = "private") -> int:
    """A video whose first run published `ladder` (a finished version folder and its
    TranscodeResult, e.g. the small_ladder fixture): its row as the runner leaves it,
    a copy of the files in media/<id>/v<N>/. Returns the video id."""
    async with cursor(services.pool) as cur:
        video_id = await video_rows.insert_video(cur, owner_id=owner_id, title=title, description="",
                                                 category="Test", visibility=visibility, status="queued")
    await publish_version(services, config, video_id, ladder, result)
    return video_id


async def publish_version(services, config, video_id: int, ladder: Path, result) -> int:
    """A run of a queued video as the runner leaves it (the row's next version, its files
    under media/<id>/v<N>/, then the row switch), without telling anyone: as a worker on
    another host publishes before its message arrives. Returns the version."""
    async with cursor(services.pool) as cur:
        version = (await video_rows.mark_processing(cur, video_id)).building_version
    await put_folder(services, config, ladder, media.version_dir(config.media_dir, video_id, version))
    async with cursor(services.pool) as cur:
        assert await video_rows.mark_ready(cur, video_id, version=version, duration=result.duration,
                                           width=result.width, height=result.height, fps=result.fps,
                                           has_audio=result.has_audio, resolutions=result.resolutions)
    return version


async def put_folder(services, config, local: Path, target: Path) -> None:
    """A finished folder's files as `target` (a media.py folder): copied into MEDIA_DIR,
    or, with object storage, put into the bucket object by object (real S3: the tests'
    SeaweedFS) and nothing written under MEDIA_DIR, so a server reading its scratch
    instead of the bucket fails. ladder.json goes last, as a run publishes."""
    if services.storage.is_local:
        shutil.copytree(local, target, dirs_exist_ok=True)
        return
    files = sorted((p for p in local.rglob("*") if p.is_file()), key=lambda p: p.name == media.LADDER_NAME)
    await asyncio.gather(*(services.storage.put_file(target / p.relative_to(local), p)
                           for p in files if p.name != media.LADDER_NAME))
    for p in files:
        if p.name == media.LADDER_NAME:
            await services.storage.put_file(target / p.relative_to(local), p)


def open_fds_to(path: Path) -> int:
    """How many of this process's descriptors are open on `path`."""
    count = 0
    for entry in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{entry}") == str(path):
                count += 1
        except OSError:
            pass
    return count


async def admin_id(services) -> int:
    """The id of the (one) admin account."""
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT id FROM users WHERE is_admin")
        return (await cur.fetchone())["id"]


MEDIA_FOLDER = re.compile(r"/api/media/[^/\s\"]+/[0-9]+/")


def untokened(master: str) -> str:
    """A master playlist with its media-token folders (/api/media/<token>/<id>/) cut off,
    its URIs as they were before them: "v<N>/<rendition>/index.m3u8" (test_media_tokens.py
    checks the tokens themselves)."""
    return MEDIA_FOLDER.sub("", master)
