"""The rendition ladder: which sizes, frame rate and bitrate caps a source gets (pure)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from videoflix.platform.media import RUNGS
from videoflix.transcode.probe import Probe

log = logging.getLogger(__name__)

# VBV buffer = 2x the cap: lets a scene change borrow bits without breaking the cap over
# a couple of seconds, which is what a player's bandwidth estimate averages over anyway.
BUFSIZE_FACTOR = 2

# Above this, the output runs at half the source rate: H.264 level 4.2 tops out at 1080p60
# and phones and TVs rarely play more smoothly than that.
MAX_FPS = 60.0

# A source whose average rate is within this ratio of its nominal rate (r_frame_rate) is
# treated as constant-rate with dropped frames (the phone clip: 28.79 avg of 29.97); the
# fps filter duplicates frames to fill the gaps.
NOMINAL_FPS_MIN_RATIO = 0.85
NOMINAL_FPS_MAX_RATIO = 1.02

# Broadcast and film rates, snapped to exactly so 29.97 stays 30000/1001 and does not
# drift into 29.969 or 30.
COMMON_FPS: tuple[float, ...] = (
    24000 / 1001,
    24.0,
    25.0,
    30000 / 1001,
    30.0,
    48.0,
    50.0,
    60000 / 1001,
    60.0,
)
# Relative distance within which a measured rate is taken for a common one: tighter than
# the 0.1% between 23.976 and 24, the nearest of the two wins.
COMMON_FPS_TOLERANCE = 0.003


@dataclass(frozen=True)
class Rendition:
    name: str  # a rung's name (media.RUNGS): the directory and the URL segment
    width: int
    height: int
    fps: float  # constant output rate
    max_kbps: int
    bufsize_kbps: int


def _even_floor(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def _even_nearest(value: float) -> int:
    return max(2, round(value / 2.0) * 2)


def output_fps(probe: Probe) -> float:
    """A constant output rate: the source rate up to MAX_FPS, VFR rounded to whole frames."""
    nominal = probe.nominal_fps
    if nominal is not None and NOMINAL_FPS_MIN_RATIO <= probe.fps / nominal <= NOMINAL_FPS_MAX_RATIO:
        fps = nominal
    else:
        # Truly variable (the VFR phone clip: r 90000/1, avg 10.5): the average rate,
        # in whole frames per second.
        fps = float(max(1, round(probe.fps)))
    while fps > MAX_FPS + 0.01:
        fps /= 2.0  # every other frame keeps motion regular; capping would judder
    nearest = min(COMMON_FPS, key=lambda common: abs(common - fps))
    if abs(nearest - fps) <= COMMON_FPS_TOLERANCE * nearest:
        return nearest
    return fps


def pick_renditions(probe: Probe) -> list[Rendition]:
    """The ladder for `probe`, highest first; never upscaled, aspect kept, even sizes."""
    fps = output_fps(probe)
    portrait = probe.height > probe.width
    short, long = sorted((probe.width, probe.height))
    renditions: list[Rendition] = []
    for rung in RUNGS:
        if short < rung.short_side:
            continue  # never upscale: a 600-line source gets 480p only
        scaled_long = min(_even_nearest(long * rung.short_side / short), _even_floor(long))
        width, height = (rung.short_side, scaled_long) if portrait else (scaled_long, rung.short_side)
        renditions.append(Rendition(rung.name, width, height, fps, rung.max_kbps, rung.max_kbps * BUFSIZE_FACTOR))
    if not renditions:
        # Smaller than the lowest rung (e.g. 768x432): one rendition at the source's own
        # size, named after the lowest rung so a client that blindly asks for 480p gets it
        # (API.md section 3: requests above the highest rendition are served from it).
        lowest = RUNGS[-1]
        renditions.append(
            Rendition(
                lowest.name,
                _even_floor(probe.width),
                _even_floor(probe.height),
                fps,
                lowest.max_kbps,
                lowest.max_kbps * BUFSIZE_FACTOR,
            )
        )
    return renditions
