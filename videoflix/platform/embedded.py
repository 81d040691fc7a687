"""Private PostgreSQL and Redis servers run as child processes.

Used by `videoflix dev` (under ./var) and by the test suite (under a temporary
directory). PostgreSQL refuses to run as root, so when we are root its
programs run as an unprivileged account (`postgres` when the Debian package
created it, else `nobody`) that owns the data directory.

That account may not be able to search the directories above ./var (a home
directory of mode 0700, a mkdtemp directory): no mode outside ./var is ever
changed. Root opens the data directory and the server programs inherit the
descriptor; they reach the directory as /proc/self/fd/N, which needs no search
permission on its ancestors. Secret files (passwords, redis.conf) are 0600
from their first byte (videoflix.secretfile); initdb reads its password from
a pipe, never from a file.
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg2

from videoflix.platform.proc import die_with_parent
from videoflix.platform.secretfile import read_or_create_secret, write_secret

log = logging.getLogger(__name__)

# How long a freshly started server gets to accept connections.
START_TIMEOUT_SECONDS = 60
# How long a server gets to shut down cleanly before it is killed.
STOP_TIMEOUT_SECONDS = 30
DATABASE_NAME = "videoflix"
DATABASE_USER = "videoflix"


class EmbeddedError(RuntimeError):
    """An embedded server could not be set up or started."""


def find_postgres_bindir() -> Path:
    """Directory holding initdb and postgres (Debian keeps them off PATH)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    for directory in candidates:
        if Path(directory, "initdb").exists():
            return Path(directory)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    raise EmbeddedError("PostgreSQL server binaries not found: install the 'postgresql' package")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unprivileged_account() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise EmbeddedError("running as root and no unprivileged account (postgres/nobody) exists")


@contextmanager
def _reachable(directory: Path, account: pwd.struct_passwd | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """The path under which a child run as `account` finds `directory`, and Popen kwargs.

    For ourselves, the directory's own path. For another account, /proc/self/fd/N of a
    descriptor root opened and the child inherits (pass_fds): opening it walks no
    ancestor, so their modes stay as they are. The child starts in "/", because
    PostgreSQL 15 changes back to its starting directory by path (find_my_exec).
    Valid while the context is open; a started server keeps its own copy.
    """
    if account is None:
        yield str(directory), {}
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}", {"pass_fds": (fd,), "cwd": "/"}
    finally:
        os.close(fd)


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
            raise EmbeddedError(f"{what} exited with code {proc.returncode}:\n{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise EmbeddedError(f"{what} did not accept connections on port {port} within {START_TIMEOUT_SECONDS}s")


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster in `data_dir`, listening on 127.0.0.1:`port` only."""

    data_dir: Path
    port: int
    # Tests trade durability for speed; dev keeps PostgreSQL's defaults.
    durable: bool = True
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def password_file(self) -> Path:
        return self.data_dir.parent / (self.data_dir.name + "-password")

    @property
    def dsn(self) -> str:
        password = quote(self.password_file.read_text().strip(), safe="")
        return f"postgresql://{DATABASE_USER}:{password}@127.0.0.1:{self.port}/{DATABASE_NAME}"

    def _run_kwargs(self) -> dict[str, Any]:
        account = _unprivileged_account()
        if account is None:
            return {}
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def _initdb(self, bindir: Path) -> None:
        account = _unprivileged_account()
        self.data_dir.mkdir(parents=True, mode=0o700)
        password, _ = read_or_create_secret(self.password_file, lambda: secrets.token_urlsafe(24))
        if account is not None:
            os.chown(self.data_dir, account.pw_uid, account.pw_gid)
        # initdb reads the password from a pipe (as /proc/self/fd/N): no file holds it.
        read_end, write_end = os.pipe()
        try:
            if account is not None:
                os.fchown(read_end, account.pw_uid, account.pw_gid)  # so it may reopen it
            os.write(write_end, (password + "\n").encode())
            os.close(write_end)
            write_end = -1
            with _reachable(self.data_dir, account) as (data_path, reach):
                reach = {**reach, "pass_fds": (*reach.get("pass_fds", ()), read_end)}
                result = subprocess.run(
                    [
                        str(bindir / "initdb"),
                        "-D",
                        data_path,
                        "-U",
                        DATABASE_USER,
                        "--auth=scram-sha-256",
                        f"--pwfile=/proc/self/fd/{read_end}",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                    ],
                    capture_output=True,
                    text=True,
                    **reach,
                    **self._run_kwargs(),
                )
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
        if result.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise EmbeddedError(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> str:
        bindir = find_postgres_bindir()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bindir)
        account = _unprivileged_account()
        log_path = self.data_dir.parent / (self.data_dir.name + ".log")
        with open(log_path, "ab") as log_file, _reachable(self.data_dir, account) as (data_path, reach):
            args = [
                str(bindir / "postgres"),
                "-D",
                data_path,
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={data_path}",
                "-c",
                "max_connections=200",
            ]
            if not self.durable:
                args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
            if account is not None:
                os.chown(log_path, account.pw_uid, account.pw_gid)
            self.proc = subprocess.Popen(
                args,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # SIGINT = fast shutdown, should we die without stopping it.
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGINT),
                **reach,
                **self._run_kwargs(),
            )
        wait_for_port(self.port, self.proc, "postgres", log_path)
        self._create_database()
        log.info("embedded PostgreSQL on 127.0.0.1:%s (%s)", self.port, self.data_dir)
        return self.dsn

    def _create_database(self) -> None:
        admin_dsn = self.dsn.rsplit("/", 1)[0] + "/postgres"
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                conn = psycopg2.connect(admin_dsn, connect_timeout=5)
                break
            except psycopg2.OperationalError:
                # The port opens a moment before the server accepts logins.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,))
                if cur.fetchone() is None:
                    cur.execute(f"CREATE DATABASE {DATABASE_NAME}")
        finally:
            conn.close()

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast shutdown": roll back sessions, checkpoint, exit.
        stop_process(self.proc, signal.SIGINT)
        self.proc = None


@dataclass
class EmbeddedRedis:
    """A redis-server in `data_dir` on 127.0.0.1:`port`, password protected."""

    data_dir: Path
    port: int
    appendonly: bool = True
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def password_file(self) -> Path:
        return self.data_dir / "password"

    @property
    def url(self) -> str:
        password = quote(self.password_file.read_text().strip(), safe="")
        return f"redis://:{password}@127.0.0.1:{self.port}/0"

    def start(self) -> str:
        server = shutil.which("redis-server")
        if server is None:
            raise EmbeddedError("redis-server not found: install the 'redis-server' package")
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        password, _ = read_or_create_secret(self.password_file, lambda: secrets.token_urlsafe(24))
        config = "\n".join(
            [
                f"port {self.port}",
                "bind 127.0.0.1",
                f"dir {self.data_dir}",
                f"appendonly {'yes' if self.appendonly else 'no'}",
                "appendfsync everysec",
                'save ""',
                "daemonize no",
                f"requirepass {password}",
                "",
            ]
        )
        config_path = self.data_dir / "redis.conf"
        write_secret(config_path, config)
        log_path = self.data_dir / "redis.log"
        with open(log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                [server, str(config_path)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        wait_for_port(self.port, self.proc, "redis-server", log_path)
        log.info("embedded Redis on 127.0.0.1:%s (%s)", self.port, self.data_dir)
        return self.url

    def stop(self) -> None:
        # SIGTERM: redis-server flushes the append-only file and exits.
        stop_process(self.proc, signal.SIGTERM)
        self.proc = None
