"""The transcode's one failure type, below every module that raises or catches it
(ffmpeg.py, subtracks.py), so neither has to import the other for it."""

from __future__ import annotations


class TranscodeError(Exception):
    """The job failed; str(error) is the reason recorded on the video."""
