"""The transcode's one failure type and its public message, below every module that
raises or catches it (ffmpeg.py, subtracks.py, job.py, runner.py)."""

from __future__ import annotations

import re

# An absolute path (optionally behind ffmpeg's "file:" prefix) in a message.
_PATH_IN_TEXT = re.compile(r"(?<![\w.:/])(?:file:)?/[^\s'\"|,;:]*")


class TranscodeError(Exception):
    """The job failed; str(error) is the reason recorded on the video."""


def public_reason(message: str) -> str:
    """`message` without server paths, fit for the video's `error` (CWE-209).

    ffmpeg and the OS name the files they fail on; each absolute path is replaced by
    its last component, so "file:/srv/media/.work/7-1/720p/index.m3u8: No space"
    becomes "index.m3u8: No space".
    """

    def last_part(match: re.Match[str]) -> str:
        name = match.group(0).rstrip("/").rsplit("/", 1)[-1]
        return name or "<path>"

    return _PATH_IN_TEXT.sub(last_part, message)
