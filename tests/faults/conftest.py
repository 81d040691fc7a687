"""Fixtures of the fault tests: their own PostgreSQL, Redis and SMTP sink (the tests
stop and restart them), a clean state per test, and a factory of server processes."""
from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from videoflix.platform.embedded import EmbeddedPostgres, EmbeddedRedis, free_port

from faultkit import Bucket, Database, Server, make_clip
from helpers import TEST_X264_PRESET, MailSink
from store_helpers import S3_TEST_BUCKET

SECRET = "fault-test-secret-key-that-is-long-enough-for-hs256"
HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    # Every test in this folder drives real server processes: `-m "not faults"` (make
    # test-fast) leaves them out. The hook sees the whole session's items: mark ours only.
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="session")
def fault_dir():
    path = Path(tempfile.mkdtemp(prefix="videoflix-faults-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def fault_postgres(fault_dir):
    server = EmbeddedPostgres(fault_dir / "postgres", free_port(), durable=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fault_redis(fault_dir):
    server = EmbeddedRedis(fault_dir / "redis", free_port(), appendonly=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fault_smtp():
    controller = Controller(MailSink(), hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller
    controller.stop()


@pytest.fixture
def db(fault_postgres, fault_redis):
    if fault_postgres.proc is None:  # a test stopped it and failed before restarting it
        fault_postgres.start()
    if fault_redis.proc is None:
        fault_redis.start()
    database = Database(fault_postgres.dsn)
    database.reset()
    client = fault_redis.url
    import redis
    with redis.Redis.from_url(client) as r:
        r.flushdb()
    return database


@pytest.fixture
def mails(fault_smtp) -> MailSink:
    sink: MailSink = fault_smtp.handler
    sink.clear()
    return sink


@pytest.fixture
def var_dir(tmp_path) -> Path:
    path = tmp_path / "var"
    path.mkdir()
    return path


@pytest.fixture
def bucket(request, storage_backend):
    """Where the servers keep media: None for MEDIA_DIR (the default `storage_backend`),
    or, in a test parametrized with storage_backend="s3", a view of the tests' SeaweedFS
    bucket (conftest.s3_server) under a prefix of this test's own, which the `servers`
    fixture hands every server."""
    if storage_backend == "local":
        yield None
        return
    store = request.getfixturevalue("s3_server")
    view = Bucket(store, S3_TEST_BUCKET, f"faults-{uuid.uuid4().hex[:12]}/")
    yield view
    view.close()


def storage_env(bucket: Bucket | None) -> dict[str, str]:
    if bucket is None:
        return {}
    store = bucket.server
    return {"VIDEOFLIX_STORAGE": f"s3://{bucket.bucket}/{bucket.prefix}", "VIDEOFLIX_S3_ENDPOINT": store.endpoint,
            "AWS_ACCESS_KEY_ID": store.access_key, "AWS_SECRET_ACCESS_KEY": store.secret_key}


@pytest.fixture
def servers(db, fault_postgres, fault_redis, fault_smtp, var_dir, tmp_path, bucket):
    """make(command="serve", **env) -> a started Server; all are killed at the end. Its
    media go to `bucket` when the test runs on the object store (MEDIA_DIR is then only
    its scratch)."""
    started: list[Server] = []
    store = storage_env(bucket)

    def make(command: str = "serve", start: bool = True, **overrides: str) -> Server:
        env = {
            "PATH": __import__("os").environ["PATH"],
            "HOME": str(tmp_path),
            "DATABASE_URL": fault_postgres.dsn,
            "REDIS_URL": fault_redis.url,
            "SECRET_KEY": SECRET,
            "VIDEOFLIX_PORT": str(free_port()),
            "VIDEOFLIX_VAR_DIR": str(var_dir),
            "VIDEOFLIX_BCRYPT_ROUNDS": "4",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(fault_smtp.port),
            "TRANSCODE_LEASE_SECONDS": "4",
            "VIDEOFLIX_UPLOAD_IDLE_SECONDS": "2",
            "TRANSCODE_STALL_SECONDS": "30",
            "VIDEOFLIX_SHUTDOWN_GRACE_SECONDS": "20",
            "VIDEOFLIX_LOG_LEVEL": "INFO",
            # As in the other tests' config: no fault test measures the encoder. A test whose
            # fault must land while a run still goes asks for the shipped veryfast instead.
            "VIDEOFLIX_X264_PRESET": TEST_X264_PRESET,
            **store,
        }
        env.update({key: str(value) for key, value in overrides.items()})
        server = Server(env, tmp_path / f"server-{len(started)}-{command}.log", command)
        started.append(server)
        return server.start() if start else server

    yield make
    for server in started:
        server.kill()


@pytest.fixture(scope="session")
def short_clip(fault_dir) -> Path:
    """6 s, 640x360, H.264/AAC: transcodes in a second or two."""
    return make_clip(fault_dir / "short.mp4", 6)


@pytest.fixture(scope="session")
def long_clip(fault_dir) -> Path:
    """60 s, 854x480 with noise: a transcode that lasts several seconds (mid-run faults)."""
    return make_clip(fault_dir / "long.mp4", 60, size="854x480", noise=True)


@pytest.fixture
def media_dir(var_dir) -> Path:
    return var_dir / "media"
