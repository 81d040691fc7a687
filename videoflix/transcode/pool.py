"""The transcode process pool: a forkserver ProcessPoolExecutor whose workers report
their pids and die with the server.

forkserver, not fork: forking a process that runs threads (the executors, the Redis
client) is unsafe (DESIGN.md, "The loop stays free"). What a worker runs is job.py's;
the runner (server side) owns the pool.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import multiprocessing.queues
import os
import select
import signal
import threading
import time
from pathlib import Path
from typing import Any


def _exit_with_server(server_pid: int) -> None:
    """Thread body in a pool worker: SIGKILL ourselves once the server is gone.

    The forkserver outlives a killed server while any worker holds its "alive"
    pipe, so the worker watches the server itself; its ffmpeg (spawned with a
    parent-death signal) goes with it: no orphan encode after a crash.
    """
    try:
        pidfd = os.pidfd_open(server_pid)
        select.select([pidfd], [], [])  # readable once the process has exited
    except OSError:
        while True:
            time.sleep(1)
            try:
                os.kill(server_pid, 0)
            except ProcessLookupError:
                break
    os.kill(os.getpid(), signal.SIGKILL)


def _child_init(server_pid: int, reports: multiprocessing.queues.SimpleQueue[Any]) -> None:
    reports.put((os.getpid(), os.getppid()))  # so the runner can kill us (TranscodePool.worker_pids)
    threading.Thread(target=_exit_with_server, args=(server_pid,), name="server-watch", daemon=True).start()


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


class TranscodePool(concurrent.futures.ProcessPoolExecutor):
    """The forkserver process pool, plus the pids of its workers as each worker's
    initializer reports them: stop() kills running encodes through them, with no
    private attribute of ProcessPoolExecutor."""

    def __init__(self, workers: int) -> None:
        # forkserver: forking a process that runs threads (executor, redis) is unsafe.
        context = multiprocessing.get_context("forkserver")
        self.worker_reports = context.SimpleQueue()
        self.known_workers: dict[int, int] = {}  # pid -> the forkserver's pid
        super().__init__(
            max_workers=workers,
            mp_context=context,
            initializer=_child_init,
            initargs=(os.getpid(), self.worker_reports),
        )

    def worker_pids(self) -> list[int]:
        """Pids of the workers still alive (a pid whose parent changed was reused)."""
        while not self.worker_reports.empty():
            pid, parent = self.worker_reports.get()
            self.known_workers[pid] = parent
        return [pid for pid, parent in self.known_workers.items() if _parent_of(pid) == parent]
