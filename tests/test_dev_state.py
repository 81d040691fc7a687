"""`videoflix dev` as root (issue 8, item 10; CWE-732, CWE-377).

Secret files (the secret key, the admin, PostgreSQL and Redis passwords, redis.conf)
are mode 0600 from their first byte, whatever the umask, and initdb's password never
touches the disk. No mode outside ./var changes: PostgreSQL, run as an unprivileged
account, reaches a data directory below a 0700 directory it cannot search.

"From the first byte" is shown without watching a race: under umask 000 a file that
was created with a looser mode could only end up 0600 through a chmod, and every chmod
(os.chmod/fchmod/lchmod raise audit events) is recorded.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg2
import pytest

from videoflix.platform.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from videoflix.platform.secretfile import read_or_create_secret, write_secret

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the unprivileged-account path runs only as root")

CHMOD_EVENTS = ("os.chmod", "os.fchmod", "os.lchmod")
# sys.addaudithook cannot be undone: one hook stays installed and records only while a
# test has set the list.
_RECORDING: list[tuple[str, tuple]] | None = None


def _audit(event: str, args: tuple) -> None:
    if _RECORDING is not None and event in CHMOD_EVENTS:
        _RECORDING.append((event, args))


sys.addaudithook(_audit)


@pytest.fixture
def chmods():
    """Every chmod this process makes during the test."""
    global _RECORDING
    _RECORDING = []
    try:
        yield _RECORDING
    finally:
        _RECORDING = None


@pytest.fixture
def umask_000():
    old = os.umask(0)
    yield
    os.umask(old)


@pytest.fixture
def private_base():
    """A directory of mode 0700 owned by root: the postgres account cannot search it."""
    base = Path(tempfile.mkdtemp(prefix="videoflix-dev-"))
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
    yield base
    shutil.rmtree(base, ignore_errors=True)


def modes_above(path: Path) -> dict[str, int]:
    return {str(parent): parent.stat().st_mode for parent in path.resolve().parents}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def postgres_account() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise AssertionError("no unprivileged account")


# --- the helper --------------------------------------------------------------------------

def test_new_secret_is_0600_under_umask_000_without_any_chmod(tmp_path, umask_000, chmods):
    value, created = read_or_create_secret(tmp_path / "secret-key", lambda: "s3cret")
    assert (value, created) == ("s3cret", True)
    write_secret(tmp_path / "redis.conf", "requirepass s3cret\n")
    assert mode(tmp_path / "secret-key") == mode(tmp_path / "redis.conf") == 0o600
    assert chmods == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["redis.conf", "secret-key"]  # no temp left


def test_rewriting_a_secret_replaces_a_planted_symlink_not_its_target(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("not yours\n")
    victim.chmod(0o644)
    (tmp_path / "redis.conf").symlink_to(victim)
    write_secret(tmp_path / "redis.conf", "requirepass s3cret\n")
    assert not (tmp_path / "redis.conf").is_symlink()
    assert mode(tmp_path / "redis.conf") == 0o600
    assert (victim.read_text(), mode(victim)) == ("not yours\n", 0o644)


def test_a_symlinked_secret_is_refused_not_read_or_chmodded(tmp_path, chmods):
    victim = tmp_path / "victim"
    victim.write_text("not a key\n")
    victim.chmod(0o644)
    (tmp_path / "secret-key").symlink_to(victim)
    chmods.clear()  # the setup's own chmod
    with pytest.raises(OSError):
        read_or_create_secret(tmp_path / "secret-key", lambda: "unused")
    assert mode(victim) == 0o644 and chmods == []


def test_an_existing_world_readable_secret_is_restricted(tmp_path):
    path = tmp_path / "admin-password"
    path.write_text("hunter2\n")
    path.chmod(0o644)
    assert read_or_create_secret(path, lambda: "unused") == ("hunter2", False)
    assert mode(path) == 0o600


def test_a_failed_write_keeps_the_old_secret_and_leaves_no_temp(tmp_path):
    write_secret(tmp_path / "key", "old\n")
    with pytest.raises(UnicodeEncodeError):
        write_secret(tmp_path / "key", "half \udc80 written")
    assert (tmp_path / "key").read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


# --- the embedded servers, in this process -----------------------------------------------

@pytest.mark.slow
@as_root
def test_embedded_servers_keep_secrets_0600_and_change_no_mode_above_var(private_base, umask_000, chmods):
    var = private_base / "var"
    var.mkdir()
    above = modes_above(var)
    postgres = EmbeddedPostgres(var / "postgres", free_port(), durable=False)
    redis_server = EmbeddedRedis(var / "redis", free_port(), appendonly=False)
    try:
        dsn = postgres.start()
        redis_server.start()
        # PostgreSQL runs as the unprivileged account, below a directory it cannot search.
        assert uid_of(postgres.proc.pid) == postgres_account().pw_uid
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1); SELECT sum(x) FROM t")
            assert cur.fetchone() == (1,)
    finally:
        postgres.stop()
        redis_server.stop()
    assert modes_above(var) == above and mode(private_base) == 0o700
    for secret in (var / "postgres-password", var / "redis" / "password", var / "redis" / "redis.conf"):
        assert mode(secret) == 0o600, secret
    assert chmods == []
    # initdb read its password from a pipe: no password file beside the cluster.
    assert sorted(p.name for p in var.iterdir()) == ["postgres", "postgres-password", "postgres.log", "redis"]


@pytest.mark.slow
@as_root
def test_cluster_below_a_private_directory_restarts(private_base):
    var = private_base / "var"
    var.mkdir()
    first = EmbeddedPostgres(var / "postgres", free_port(), durable=False)
    first.start()
    first.stop()
    again = EmbeddedPostgres(var / "postgres", free_port(), durable=False)
    try:
        with psycopg2.connect(again.start()) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_database WHERE datname = 'videoflix'")
            assert cur.fetchone() == (1,)
    finally:
        again.stop()
    assert mode(private_base) == 0o700


# --- `videoflix dev` itself --------------------------------------------------------------

# Runs `videoflix dev` with an audit hook that reports every chmod on stderr.
DEV_WITH_CHMOD_REPORT = """
import json, sys
def hook(event, args):
    if event in %r:
        sys.stderr.write("CHMOD " + json.dumps([event, [str(a) for a in args]]) + "\\n")
sys.addaudithook(hook)
from videoflix.cli import main
sys.exit(main(["dev"]))
""" % (CHMOD_EVENTS,)


@pytest.mark.slow
@as_root
def test_videoflix_dev_as_root_under_umask_000_keeps_secrets_private(private_base):
    port = free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "VIDEOFLIX_PORT": str(port),
           "VIDEOFLIX_BCRYPT_ROUNDS": "4", "VIDEOFLIX_LOG_LEVEL": "WARNING",
           "VIDEOFLIX_ADMIN_EMAIL": "admin@example.com"}
    above = modes_above(private_base / "var")
    proc = subprocess.Popen([sys.executable, "-c", DEV_WITH_CHMOD_REPORT], cwd=private_base, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=lambda: os.umask(0))
    try:
        wait_until_healthy(proc, port)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    report = stderr.decode(errors="replace")
    assert proc.returncode == 0, report[-2000:]
    var = private_base / "var"
    for secret in ("secret-key", "admin-password", "postgres-password", "redis/password", "redis/redis.conf"):
        assert mode(var / secret) == 0o600, secret
    assert [json.loads(line[6:]) for line in report.splitlines() if line.startswith("CHMOD ")] == []
    assert not list(var.rglob("*pwfile*")) and not list(var.rglob(".*.tmp"))
    assert modes_above(var) == above and mode(private_base) == 0o700


def wait_until_healthy(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode(errors="replace")[-2000:])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health/", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise AssertionError("videoflix dev did not become healthy within 120 s")


# --- the outbox: activation and reset links are credentials ------------------------------

@pytest.mark.gen_test
async def test_outbox_mail_holding_a_reset_link_is_0600_under_umask_000(tmp_path, umask_000, chmods):
    import concurrent.futures

    from videoflix.platform.config import Config
    from videoflix.platform.mail import Mailer

    config = Config(var_dir=str(tmp_path / "var"))  # no SMTP_HOST: mail goes to the outbox
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        mailer = Mailer(config, executor)
        link = mailer.link("confirm_password.html", "MQ", "reset-token-123")
        await mailer.send("password_reset", "victim@example.com", {"link": link})
        await mailer.drain()
    [eml] = list(Path(config.outbox_dir).glob("*.eml"))
    assert "reset-token-123" in eml.read_text()
    assert mode(eml) == 0o600 and chmods == []
    assert [p.name for p in Path(config.outbox_dir).iterdir()] == [eml.name]  # no temp left
