"""Running ffmpeg: spawned at a lower CPU priority under OS limits, watched, reaped.

`run_ffmpeg` reads ffmpeg's `-progress` output (`parse_progress`, pure) and is the
watchdog: a run whose output time stops advancing for the stall limit, or that
exceeds its time limit, is killed. ffmpeg dies with the pool worker that started it
(a parent-death signal), and runs under the job's memory and CPU-time limits
(limits.py); a run that hits one, or the worker's file-size limit, fails with a
TranscodeError saying which. The command lines are command.py's (and subtracks.py's).
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import IO

from videoflix.platform.proc import die_with_parent
from videoflix.transcode.errors import TranscodeError
from videoflix.transcode.limits import ResourceLimits

ProgressCallback = Callable[[float], None]

# How often the watchdog wakes when ffmpeg is silent.
WATCHDOG_POLL_SECONDS = 0.25
# How often an exiting ffmpeg is polled for its exit status and CPU time.
REAP_POLL_SECONDS = 0.02
# Lines of ffmpeg's stderr kept for the error message of a failed run.
STDERR_TAIL_LINES = 8


def parse_progress(lines: Sequence[str]) -> float | None:
    """Latest out_time in seconds from `-progress` key=value lines (pure)."""
    latest: float | None = None
    for line in lines:
        key, _, value = line.strip().partition("=")
        if key == "out_time_us":
            try:
                latest = int(value) / 1_000_000
            except ValueError:
                continue  # "N/A" before the first packet
    return latest


def _drain(stream: IO[bytes], tail: deque[str]) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            tail.append(line)


def _spawn(command: Sequence[str], nice: int, limits: ResourceLimits | None = None) -> subprocess.Popen[bytes]:
    argv = list(command)
    nice_binary = shutil.which("nice") if nice else None
    if nice_binary:
        # nice(1) execs ffmpeg, so every thread ffmpeg starts inherits the priority.
        argv = [nice_binary, "-n", str(nice), *argv]
    # ffmpeg dies with the pool worker that runs it (even by SIGKILL): a killed
    # worker or a crashed server leaves no orphan encode behind. `limits` caps its
    # memory and CPU time (nice(1) execs ffmpeg, which keeps them).
    preexec = die_with_parent(signal.SIGKILL)
    if limits is not None:
        preexec = limits.preexec(then=preexec)
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec
    )
    if nice and not nice_binary:
        os.setpriority(os.PRIO_PROCESS, proc.pid, os.getpriority(os.PRIO_PROCESS, 0) + nice)
    return proc


def _reap(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    """Wait for `proc` to exit; its return code and the CPU time it used (wait4)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() >= deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        time.sleep(REAP_POLL_SECONDS)


def run_ffmpeg(
    command: Sequence[str],
    *,
    duration: float,
    stall_seconds: float,
    time_limit: float,
    nice: int = 0,
    on_progress: ProgressCallback | None = None,
    limits: ResourceLimits | None = None,
) -> float:
    """Run ffmpeg (with `-progress pipe:1`) under a watchdog; return the final out_time.

    ffmpeg is killed, and TranscodeError raised, when its out_time does not advance for
    `stall_seconds` (a hung read, a wedged filter) or the run exceeds `time_limit`.
    It runs under `limits` (address space, CPU time); hitting one is a TranscodeError
    that says which. `on_progress` receives a percentage 0-100 of `duration`.
    """
    proc = _spawn(command, nice, limits)
    assert proc.stdout is not None and proc.stderr is not None
    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    drain = threading.Thread(target=_drain, args=(proc.stderr, tail), daemon=True)
    drain.start()
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    started = last_advance = time.monotonic()
    out_time = 0.0
    pending = b""
    try:
        while True:
            now = time.monotonic()
            if now - started > time_limit:
                raise TranscodeError(f"ffmpeg exceeded the time limit of {time_limit:g} s.")
            if now - last_advance > stall_seconds:
                raise TranscodeError(f"ffmpeg stalled: no progress for {stall_seconds:g} s.")
            if not selector.select(WATCHDOG_POLL_SECONDS):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break  # ffmpeg closed stdout: it is exiting
            pending += chunk
            *complete, partial = pending.split(b"\n")
            pending = partial
            latest = parse_progress([line.decode("ascii", "replace") for line in complete])
            if latest is not None and latest > out_time:
                out_time = latest
                last_advance = now
                if on_progress is not None and duration > 0:
                    on_progress(min(100.0, 100.0 * out_time / duration))
        remaining = max(1.0, time_limit - (time.monotonic() - started))
        try:
            returncode, cpu_used = _reap(proc, remaining)
        except subprocess.TimeoutExpired:
            raise TranscodeError(f"ffmpeg exceeded the time limit of {time_limit:g} s.") from None
    finally:
        selector.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        drain.join(timeout=5)
        proc.stdout.close()
        proc.stderr.close()
    if returncode == -signal.SIGXFSZ:
        # RLIMIT_FSIZE (limits.limit_file_size): the stand-in for a full media disk.
        raise TranscodeError("Not enough space for the renditions: an output file reached the file-size limit.")
    if returncode != 0:
        detail = " | ".join(tail) or "no error output"
        hit = limits.failure(returncode, cpu_used, detail) if limits is not None else None
        if hit is not None:
            raise TranscodeError(f"ffmpeg {hit}.")
        raise TranscodeError(f"ffmpeg failed (exit {returncode}): {detail}")
    return out_time


def run_quiet(command: Sequence[str], timeout: float, nice: int, limits: ResourceLimits | None) -> None:
    """A short ffmpeg run (posters, subtitle tracks) under a plain timeout."""
    run_ffmpeg(command, duration=0.0, stall_seconds=timeout, time_limit=timeout, nice=nice, limits=limits)
