"""Real services for the tests: PostgreSQL, Redis and an SMTP server, all started here.

PostgreSQL and Redis run once per session (embedded, like `videoflix dev`);
each test gets a clean database and Redis, its own loop (pytest-tornado),
its own aiopg pool and the real application from make_app.
"""
from __future__ import annotations

import asyncio
import email
import email.policy
import json
import shutil
import tempfile
import threading
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
from aiosmtpd.controller import Controller

from videoflix.app import make_app
from videoflix.config import Config
from videoflix.db import create_pool, cursor
from videoflix.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from videoflix.migrate import apply_migrations
from videoflix.services import create_services

# Kept low so the suite is fast; one test raises it to measure real bcrypt cost.
TEST_BCRYPT_ROUNDS = 4
PASSWORD = "correct-horse-9"


@pytest.fixture(scope="session")
def state_dir():
    # Not pytest's tmp_path: its root is mode 0700, and PostgreSQL runs as
    # another user when the suite runs as root.
    path = Path(tempfile.mkdtemp(prefix="videoflix-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(state_dir):
    server = EmbeddedPostgres(state_dir / "postgres", free_port(), durable=False)
    dsn = server.start()

    async def migrate() -> None:
        pool = await create_pool(dsn)
        try:
            await apply_migrations(pool)
        finally:
            pool.close()
            await pool.wait_closed()

    # A private loop: asyncio.run() would reset the thread's current loop,
    # and pytest-tornado's IOLoop (made current already) would be orphaned.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(migrate())
    finally:
        loop.close()
    yield dsn
    server.stop()


@pytest.fixture(scope="session")
def redis_server(state_dir):
    server = EmbeddedRedis(state_dir / "redis", free_port(), appendonly=False)
    server.start()
    yield server
    server.stop()


class MailSink:
    """aiosmtpd handler keeping every received message."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.lock = threading.Lock()
        self.refuse = 0  # answer this many deliveries with a temporary failure

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            if self.refuse > 0:
                self.refuse -= 1
                return "451 Try again later"
            self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()
            self.refuse = 0


@pytest.fixture(scope="session")
def smtp_server():
    sink = MailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller
    controller.stop()


@pytest.fixture
def mailbox(smtp_server):
    sink: MailSink = smtp_server.handler
    sink.clear()
    return sink


@pytest.fixture
def config(database_url, redis_server, smtp_server, tmp_path, http_port):
    return Config(
        database_url=database_url,
        redis_url=redis_server.url,
        secret_key="test-secret-key-that-is-long-enough-for-hs256",
        port=http_port,
        public_url=f"http://127.0.0.1:{http_port}",
        bcrypt_rounds=TEST_BCRYPT_ROUNDS,
        var_dir=str(tmp_path / "var"),
        smtp_host="127.0.0.1",
        smtp_port=smtp_server.port,
    )


async def _reset_state(services) -> None:
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                          " AND tablename <> 'schema_migrations'")
        tables = [row["tablename"] for row in await cur.fetchall()]
        if tables:
            await cur.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    await services.redis.flushdb()


@pytest.fixture
def services(io_loop, config):
    made = io_loop.run_sync(lambda: create_services(config))
    io_loop.run_sync(lambda: _reset_state(made))
    yield made
    io_loop.run_sync(made.close)


@pytest.fixture
def app(config, services):
    return make_app(config, services)


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

    def __init__(self, http_client, base_url: str) -> None:
        self.http = http_client
        self.base_url = base_url
        self.cookies: dict[str, str] = {}

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
                                    allow_nonstandard_methods=True)
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


@pytest.fixture
def client(http_client, base_url):
    return Client(http_client, base_url.replace("localhost", "127.0.0.1"))


@pytest.fixture
def new_client(http_client, base_url):
    """Factory for more independent browsers."""
    return lambda: Client(http_client, base_url.replace("localhost", "127.0.0.1"))


def link_from_mail(message: email.message.EmailMessage) -> tuple[str, str]:
    """(uidb64, token) from the link in a message's plain-text part."""
    import re

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


@pytest.fixture
def make_user(client, services, mailbox):
    async def make(email_address: str = "user@example.com", password: str = PASSWORD, *,
                   log_in: bool = True, activate: bool = True) -> dict:
        user = await register_user(client, services, mailbox, email_address, password, activate)
        if log_in:
            await login(client, email_address, password)
        return user
    return make


@pytest.fixture
def make_admin(services, config):
    """An admin account (created as `videoflix dev` does), logged in on a new client."""
    from videoflix import accounts

    async def make(browser: Client, email_address: str = "admin@example.com") -> int:
        user_id = await accounts.ensure_admin(config, services, email_address, PASSWORD)
        await login(browser, email_address)
        return user_id
    return make


def multipart(fields: dict[str, str], filename: str | None, content: bytes | None) -> tuple[bytes, str]:
    """A multipart/form-data body (RFC 7578) and its Content-Type."""
    import secrets

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


@pytest.fixture(scope="session")
def small_clip(state_dir) -> Path:
    """A real 6 s 640x360 H.264/AAC file made by ffmpeg: transcodes in about a second."""
    import subprocess

    path = state_dir / "small.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "6",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    "-shortest", str(path)], check=True)
    return path


@pytest.fixture
def runner(io_loop, config, services):
    """The real transcode consumer on the test's loop (process pool included)."""
    from videoflix.transcode.runner import TranscodeRunner

    consumer = TranscodeRunner(config, services, consumer="test-runner")
    io_loop.run_sync(consumer.start)
    yield consumer
    io_loop.run_sync(consumer.stop)
