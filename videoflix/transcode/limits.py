"""Media bombs: caps on what a source may claim, and OS limits on every ffprobe/ffmpeg run.

Two lines of defence (issue 8, item 9; CWE-400, CWE-770):

- `MediaCaps`: what ffprobe reports (picture size, pixel count, frame rate, duration,
  stream count) must stay within configurable caps, checked at upload (400, nothing kept)
  and again in the transcode child. Defaults are generous for real video: 8K in either
  orientation, 120 fps, 12 hours, 16 streams.
- `ResourceLimits`: every ffprobe and ffmpeg on user data runs under RLIMIT_AS (address
  space) and RLIMIT_CPU (CPU time of all its threads), set in the child between fork and
  exec, so a file that lies in its headers (a resolution change mid-stream, a decoder
  bug, a frame rate the headers hide) still cannot take the host's memory or CPUs.
  A run that hits a limit ends as an error with a reason, never a hung or dead host.

Measured on the shared clips (ffmpeg 5.1, 2 CPUs, veryfast; `ulimit -v` bisection):
the one-decode 1080p ladder needs 1229 MiB of address space (678 MiB with 1 CPU: x264
frame threads and glibc's per-thread malloc arenas grow with the CPU count), a 4K
source 1150 MiB, an 8K source 1387 MiB; posters 662-898 MiB; ffprobe 268 MiB whatever
the size. CPU time: 1.1-3.4 CPU-seconds per second of video for the ladder.
"""

from __future__ import annotations

import os
import resource
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from videoflix.platform.config import Config

MIB = 1024 * 1024
PIXELS_1080P = 1920 * 1080

# ffprobe reads headers and decodes a frame or two per stream (single-threaded):
# 268 MiB measured for every clip up to 8192x8192; four times that, rounded up.
PROBE_MEMORY_BYTES = 1024 * MIB
# Its wall-clock timeout is 60 s (probe.PROBE_TIMEOUT_SECONDS); reading headers takes
# well under a CPU-second.
PROBE_CPU_SECONDS = 30

# ffmpeg's address-space limit when none is configured: a base, a share per CPU (x264
# and the decoder start threads per CPU, each with its stack and malloc arena) and a
# share per source pixel (decoded frames in flight). About twice what the shared clips
# measured: 2.7 GiB for the 1080p ladder on 2 CPUs (needs 1.2), 4.5 GiB for 8K (1.4).
FFMPEG_MEMORY_BASE_BYTES = 1024 * MIB
FFMPEG_MEMORY_PER_CPU_BYTES = 768 * MIB
FFMPEG_MEMORY_PER_PIXEL_BYTES = 64

# CPU-time limit of one ffmpeg run: cpu_factor CPU-seconds per second of video at 1080p
# (scaled up for larger sources), never below this floor. The default factor of 30 is
# about ten times what the veryfast ladder measured, room for slower presets.
MIN_CPU_SECONDS = 300
# The kernel sends SIGXCPU at the soft limit (ffmpeg then stops and exits), SIGKILL
# this much later if the process is still running.
CPU_HARD_GRACE_SECONDS = 10

# Picture-size, rate, duration and stream caps (see MediaCaps).
DEFAULT_MAX_SIDE = 7680  # 8K UHD, landscape or portrait
DEFAULT_MAX_PIXELS = 7680 * 4320
DEFAULT_MAX_FPS = 120.0
DEFAULT_MAX_SECONDS = 12 * 3600
DEFAULT_MAX_STREAMS = 16


class ProbedMedia(Protocol):
    """What the caps look at (probe.Probe has these, read-only)."""

    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def fps(self) -> float: ...
    @property
    def duration(self) -> float: ...
    @property
    def stream_count(self) -> int: ...
    @property
    def video_sizes(self) -> tuple[tuple[int, int], ...]: ...
    @property
    def claimed_fps(self) -> float: ...
    @property
    def claimed_duration(self) -> float: ...


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return "%d:%02d:%02d" % (seconds // 3600, seconds % 3600 // 60, seconds % 60)


@dataclass(frozen=True)
class MediaCaps:
    """Upper bounds on what an accepted source may be (picklable, for the child)."""

    max_width: int = DEFAULT_MAX_SIDE
    max_height: int = DEFAULT_MAX_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_fps: float = DEFAULT_MAX_FPS
    max_seconds: float = DEFAULT_MAX_SECONDS
    max_streams: int = DEFAULT_MAX_STREAMS

    def violation(self, media: ProbedMedia) -> str | None:
        """A message fit for the uploader when `media` exceeds a cap, else None.

        The picture caps apply to the displayed size of the chosen video stream and to
        the coded size of every video stream (ffprobe and the demuxer decode them all);
        the rate and duration caps to the largest value the file claims anywhere.
        """
        sizes = [(media.width, media.height), *media.video_sizes]
        for width, height in sizes:
            if width > self.max_width or height > self.max_height or width * height > self.max_pixels:
                return (
                    "The picture is too large (%dx%d): at most %d pixels wide, %d high and "
                    "%d pixels in all are accepted." % (width, height, self.max_width, self.max_height, self.max_pixels)
                )
        fps = max(media.fps, media.claimed_fps)
        if fps > self.max_fps:
            return "The frame rate is too high (%.4g fps): at most %.4g fps is accepted." % (fps, self.max_fps)
        duration = max(media.duration, media.claimed_duration)
        if duration > self.max_seconds:
            return "The video is too long (%s): at most %s is accepted." % (_clock(duration), _clock(self.max_seconds))
        if media.stream_count > self.max_streams:
            return "The file has too many streams (%d): at most %d are accepted." % (
                media.stream_count,
                self.max_streams,
            )
        return None


@dataclass(frozen=True)
class ResourceLimits:
    """OS limits for one child process; None leaves that limit as inherited."""

    memory_bytes: int | None = None
    cpu_seconds: int | None = None

    def preexec(self, then: Callable[[], None] | None = None) -> Callable[[], None]:
        """A preexec_fn applying the limits in the child (between fork and exec).

        Nothing but system calls happens there (setrlimit, prctl): no locks are taken.
        Core dumps are off, so a SIGXCPU or a crash leaves no core file of user data.
        """
        memory, cpu = self.memory_bytes, self.cpu_seconds

        def apply() -> None:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if memory is not None:
                resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            if cpu is not None:
                resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + CPU_HARD_GRACE_SECONDS))
            if then is not None:
                then()

        return apply

    def failure(self, returncode: int, cpu_used: float | None, stderr: str) -> str | None:
        """Why a run that ended with `returncode` failed, when a limit explains it."""
        if returncode == 0:
            return None
        if self.cpu_seconds is not None and (
            returncode == -signal.SIGXCPU or (cpu_used is not None and cpu_used >= self.cpu_seconds - 0.5)
        ):
            # ffmpeg catches SIGXCPU and exits 255; the kernel's SIGKILL follows later.
            return "exceeded its CPU-time limit of %d s" % self.cpu_seconds
        if self.memory_bytes is not None and _out_of_memory(returncode, stderr):
            return "ran out of memory (the limit is %d MiB)" % (self.memory_bytes // MIB)
        return None


# How ffmpeg, x264 and the dynamic loader say that an allocation failed. An encoder that
# cannot open is one too: x264 and libavcodec return ENOMEM from their open call without
# a log line at -v error, and the parameters we pass are fixed and tested (an encoder
# open under the memory limit of 350 MiB fails just so for a 640x360 ladder).
_ENOMEM_MARKERS = (
    "Cannot allocate memory",
    "malloc of size",
    "failed to map segment",
    "Out of memory",
    "out of memory",
    "std::bad_alloc",
    "Error while opening encoder",
)


def _out_of_memory(returncode: int, stderr: str) -> bool:
    if any(marker in stderr for marker in _ENOMEM_MARKERS):
        return True
    # Code that does not check malloc's result crashes on the NULL instead.
    return returncode in (-signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS)


PROBE_LIMITS = ResourceLimits(memory_bytes=PROBE_MEMORY_BYTES, cpu_seconds=PROBE_CPU_SECONDS)


def cpu_count() -> int:
    """CPUs this process may run on (what ffmpeg and x264 size their thread pools by)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def ffmpeg_limits(
    pixels: int, duration: float, *, memory_mb: int = 0, cpu_factor: float = 30.0, cpus: int | None = None
) -> ResourceLimits:
    """Limits for one ffmpeg run on a source of `pixels` per frame lasting `duration` s.

    `memory_mb` > 0 fixes the address-space limit; 0 sizes it from the CPU count and the
    frame size. The CPU-time limit grows with the duration and, above 1080p, the size.
    """
    if memory_mb > 0:
        memory = memory_mb * MIB
    else:
        memory = (
            FFMPEG_MEMORY_BASE_BYTES
            + FFMPEG_MEMORY_PER_CPU_BYTES * (cpus or cpu_count())
            + FFMPEG_MEMORY_PER_PIXEL_BYTES * max(0, pixels)
        )
    scale = max(1.0, pixels / PIXELS_1080P)
    cpu = max(MIN_CPU_SECONDS, int(cpu_factor * max(0.0, duration) * scale) + 1)
    return ResourceLimits(memory_bytes=memory, cpu_seconds=cpu)


def limit_file_size(max_bytes: int) -> None:
    """RLIMIT_FSIZE for this process (the pool worker) and so for the ffmpeg it starts
    (limits are inherited across fork and exec): a write past it kills ffmpeg (SIGXFSZ),
    so a full disk or a runaway output fails the job instead of the server. 0: unchanged."""
    if max_bytes <= 0:
        return
    _soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    limit = max_bytes if hard == resource.RLIM_INFINITY else min(max_bytes, hard)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))


def caps_from_config(config: Config) -> MediaCaps:
    return MediaCaps(
        max_width=config.max_video_width,
        max_height=config.max_video_height,
        max_pixels=config.max_video_pixels,
        max_fps=config.max_video_fps,
        max_seconds=config.max_video_seconds,
        max_streams=config.max_video_streams,
    )
