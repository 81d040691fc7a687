"""`videoflix dev` in a child process for the benchmarks (bench/load.py, bench/watchwhile.py).

A temporary ./var (embedded PostgreSQL and Redis, an admin account, bcrypt at 4 rounds,
logs at WARNING) on a free port; yields once /api/health/ answers 200, and stops the
whole process group on the way out.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator

START_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health/", timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def running_dev(admin_email: str, admin_password: str, prefix: str,
                extra_env: dict[str, str] | None = None) -> Iterator[tuple[int, subprocess.Popen]]:
    """(port, server process) of a fresh `videoflix dev`, up and healthy; `extra_env`
    (e.g. VIDEOFLIX_STORAGE) on top of this environment."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix=prefix) as var:
        os.chmod(var, 0o755)  # the embedded PostgreSQL may run as another user
        env = {**os.environ, "VIDEOFLIX_VAR_DIR": var, "VIDEOFLIX_PORT": str(port),
               "VIDEOFLIX_ADMIN_EMAIL": admin_email, "VIDEOFLIX_ADMIN_PASSWORD": admin_password,
               "VIDEOFLIX_LOG_LEVEL": "WARNING", "VIDEOFLIX_BCRYPT_ROUNDS": "4",
               "SECRET_KEY": secrets.token_urlsafe(48), **(extra_env or {})}
        server = subprocess.Popen([sys.executable, "-m", "videoflix", "dev"], cwd=var, env=env,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not _healthy(port):
                if server.poll() is not None:
                    raise SystemExit(f"videoflix dev exited with {server.returncode}")
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not come up")
                time.sleep(0.2)
            yield port, server
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
