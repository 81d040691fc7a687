"""Real services for the tests: PostgreSQL, Redis and an SMTP server, all started here.

PostgreSQL and Redis run once per session (embedded, like `videoflix dev`);
each test gets a clean database and Redis, its own loop (pytest-tornado),
its own aiopg pool and the real application from make_app.
"""
from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
import tornado.httpserver
from aiosmtpd.controller import Controller

from videoflix.app import http_delegate, make_app
from videoflix.platform.config import Config
from videoflix.platform.db import create_pool, cursor
from videoflix.platform.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from videoflix.platform.embedded_s3 import EmbeddedS3
from videoflix.platform.migrate import apply_migrations
from videoflix.platform.services import create_services

from helpers import PASSWORD, TEST_BCRYPT_ROUNDS, TEST_X264_PRESET, Client, MailSink, login, register_user
from store_helpers import S3_TEST_BUCKET, STORAGE_BACKENDS  # noqa: F401 (STORAGE_BACKENDS: for modules)


def pytest_collection_modifyitems(config, items):
    # Whatever its module, a test that drives Chromium (the `browser` fixture of
    # test_browser.py, imported by the other browser modules) is a browser test:
    # `-m "not browser"` (make test-fast) leaves it out.
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
    _longest_files_first(config, items)


# --- the order of files: longest first ------------------------------------------------
# `make test` hands whole files to its pytest processes (--dist loadfile) in the order
# collected (--no-loadscope-reorder); the run ends when the last file of the busiest
# process does. Longest first (the LPT rule) leaves only short files for the end, so
# the processes finish together. A file's length is the sum of its tests' durations
# in the last run that ran them (pytest's cache, .pytest_cache/); a test never timed
# counts by its markers (tests/faults/conftest.py's hook, registered later, runs before
# this one). Nothing else changes: the same tests, each file still whole.
DURATIONS_KEY = "videoflix/test-seconds"
UNTIMED_SECONDS = {"load": 30.0, "faults": 10.0, "browser": 10.0, "slow": 5.0}
UNTIMED_OTHER_SECONDS = 0.1


def _untimed_seconds(item) -> float:
    return max((UNTIMED_SECONDS[mark.name] for mark in item.iter_markers() if mark.name in UNTIMED_SECONDS),
               default=UNTIMED_OTHER_SECONDS)


def _longest_files_first(config, items) -> None:
    cache = getattr(config, "cache", None)
    known: dict = (cache.get(DURATIONS_KEY, {}) if cache is not None else {}) or {}
    files: dict[str, float] = {}
    for item in items:
        seconds = known.get(item.nodeid)
        files[item.nodeid.split("::")[0]] = files.get(item.nodeid.split("::")[0], 0.0) + (
            seconds if isinstance(seconds, (int, float)) else _untimed_seconds(item))
    # sorted() is stable: within a file the collection order stays. (Every xdist process
    # sorts the same items by the same cache, so they all hand in the same order.)
    items[:] = sorted(items, key=lambda item: (-files[item.nodeid.split("::")[0]], item.nodeid.split("::")[0]))


_durations: dict[str, float] = {}


def pytest_runtest_logreport(report):
    # Runs where the tests ran (one process) and again in xdist's controller with each
    # report a worker sends: only the controller, or a lone process, writes the cache.
    _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session):
    cache = getattr(session.config, "cache", None)
    if cache is None or hasattr(session.config, "workerinput") or not _durations:
        return
    known = cache.get(DURATIONS_KEY, {}) or {}
    known.update({nodeid: round(seconds, 3) for nodeid, seconds in _durations.items()})
    cache.set(DURATIONS_KEY, known)


@pytest.fixture(scope="session")
def state_dir():
    # Mode 0700 (mkdtemp's): PostgreSQL, run as another account when the suite runs
    # as root, needs no search permission above its data directory (embedded.py).
    path = Path(tempfile.mkdtemp(prefix="videoflix-test-"))
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
def http_port(_unused_port):
    """pytest-tornado's port, its socket closed after the test even when no server took it."""
    yield _unused_port[1]
    _unused_port[0].close()


@pytest.fixture(scope="session")
def s3_server(state_dir):
    """One SeaweedFS per test process (its S3 gateway), started on first use; each test
    that uses it gets a bucket prefix of its own (the `config` fixture)."""
    server = EmbeddedS3(state_dir / "seaweedfs")
    server.start()
    server.ensure_bucket(S3_TEST_BUCKET)
    yield server
    server.stop(graceful=False)




@pytest.fixture
def storage_backend() -> str:
    """Where the test's media objects live: "local" (MEDIA_DIR) unless a module
    overrides this fixture with params=STORAGE_BACKENDS to run against both."""
    return "local"




def _storage_settings(request, storage_backend: str) -> dict:
    if storage_backend == "local":
        return {}
    server = request.getfixturevalue("s3_server")
    return {
        "storage": f"s3://{S3_TEST_BUCKET}/{uuid.uuid4().hex}/",
        "s3_endpoint": server.endpoint,
        "s3_access_key": server.access_key,
        "s3_secret_key": server.secret_key,
    }


@pytest.fixture
def config(request, database_url, redis_server, smtp_server, tmp_path, http_port, storage_backend):
    return Config(
        **_storage_settings(request, storage_backend),
        database_url=database_url,
        redis_url=redis_server.url,
        secret_key="test-secret-key-that-is-long-enough-for-hs256",
        port=http_port,
        public_url=f"http://127.0.0.1:{http_port}",
        bcrypt_rounds=TEST_BCRYPT_ROUNDS,
        x264_preset=TEST_X264_PRESET,
        var_dir=str(tmp_path / "var"),
        smtp_host="127.0.0.1",
        smtp_port=smtp_server.port,
    )


@pytest.fixture(scope="session")
def reset_sql(database_url) -> str:
    """The statements that give each test an empty database: every table emptied
    (referencing tables first) and every sequence restarted, in one round trip.

    DELETE, not TRUNCATE: TRUNCATE gives each table, index and TOAST table a new file,
    ~50 ms a test here, where deleting the few rows a test left takes a millisecond."""
    import graphlib

    import psycopg2

    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                    " AND tablename <> 'schema_migrations'")
        order: dict[str, set[str]] = {row[0]: set() for row in cur.fetchall()}
        cur.execute("SELECT confrelid::regclass::text, conrelid::regclass::text FROM pg_constraint"
                    " WHERE contype = 'f' AND connamespace = 'public'::regnamespace")
        for referenced, referencing in cur.fetchall():
            if referenced != referencing:
                order[referenced].add(referencing)  # emptied after the tables pointing at it
        cur.execute("SELECT quote_ident(sequencename) FROM pg_sequences WHERE schemaname = 'public'")
        sequences = [row[0] for row in cur.fetchall()]
    conn.close()
    # Triggers off while emptying: audit_log (sql/008) refuses DELETE, as it should
    # everywhere but here (the suite's own superuser may, for a clean slate per test).
    statements = ["SET session_replication_role = replica"]
    statements += [f'DELETE FROM "{table}"' for table in graphlib.TopologicalSorter(order).static_order()]
    statements.append("SET session_replication_role = DEFAULT")
    if sequences:
        statements.append("SELECT " + ", ".join(f"setval('{name}', 1, false)" for name in sequences))
    return "; ".join(statements)


async def _reset_state(services, reset_sql: str) -> None:
    async with cursor(services.pool) as cur:
        await cur.execute(reset_sql)
    await services.redis.flushdb()


@pytest.fixture
def services(io_loop, config, reset_sql):
    made = io_loop.run_sync(lambda: create_services(config))
    io_loop.run_sync(lambda: _reset_state(made, reset_sql))
    yield made
    io_loop.run_sync(made.close)


@pytest.fixture
def app(io_loop, config, services):
    made = make_app(config, services)
    yield made
    io_loop.run_sync(made.settings["video_feed"].close)
    made.settings["open_files"].close()


@pytest.fixture
def http_server(request, io_loop, _unused_port, app):
    """pytest-tornado's server, with what `videoflix serve` puts in front of the
    Application (app.http_delegate: the segment lane)."""
    server = tornado.httpserver.HTTPServer(http_delegate(app))
    server.add_socket(_unused_port[0])
    yield server
    server.stop()
    io_loop.run_sync(server.close_all_connections, timeout=request.config.option.async_test_timeout)


@pytest.fixture
def client(http_client, base_url):
    return Client(http_client, base_url.replace("localhost", "127.0.0.1"))


@pytest.fixture
def new_client(http_client, base_url):
    """Factory for more independent browsers, optionally from another source address."""
    return lambda source_ip=None: Client(http_client, base_url.replace("localhost", "127.0.0.1"), source_ip)


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
    from videoflix.accounts import flows

    async def make(browser: Client, email_address: str = "admin@example.com") -> int:
        user_id = await flows.ensure_admin(config, services, email_address, PASSWORD)
        await login(browser, email_address)
        return user_id
    return make


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


@pytest.fixture(scope="session")
def small_ladder(small_clip, state_dir):
    """small_clip transcoded once per session by the real transcoder, as the runner
    transcodes it with the tests' config (one rendition, 480p, with trick play):
    (version folder, TranscodeResult). Publish a copy with helpers.publish_ladder
    where a test needs a ready video's files but not the run that made them."""
    from videoflix.transcode.command import TranscodeSettings
    from videoflix.transcode.job import transcode

    folder = state_dir / "small-ladder"
    return folder, transcode(small_clip, folder, TranscodeSettings(preset=TEST_X264_PRESET))


@pytest.fixture(scope="session")
def park_17s(state_dir) -> Path:
    """The 1080p park clip (with sound) three times in a row: 17 s, 3 renditions, 5 segments."""
    from media import PARK, looped

    return looped(PARK, 3, state_dir / "park_17s.mp4")


@pytest.fixture
def runner(io_loop, config, services):
    """The real transcode consumer on the test's loop (process pool included)."""
    from videoflix.app import make_runner

    consumer = make_runner(config, services, consumer="test-runner")
    io_loop.run_sync(consumer.start)
    yield consumer
    io_loop.run_sync(consumer.stop)
