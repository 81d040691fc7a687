"""Every Redis key Videoflix uses, built here under one prefix (pure).

A shared Redis stays readable (`SCAN MATCH videoflix:*` lists all of ours), and a
new key is added here, next to the others, never spelled out by its user.
"""
from __future__ import annotations

PREFIX = "videoflix"


def key(*parts: object) -> str:
    """videoflix:<part>:<part>..."""
    return ":".join((PREFIX, *(str(part) for part in parts)))


# transcode/queue.py: the job stream and its dead letters.
TRANSCODE_STREAM = key("transcode")
TRANSCODE_DEAD_LETTER = key("transcode", "dead")


def progress(video_id: int) -> str:
    """transcode/progress.py: a running job's percentage."""
    return key("progress", int(video_id))


def cancel(video_id: int) -> str:
    """transcode/progress.py: set when a video is deleted while its job runs."""
    return key("cancel", int(video_id))


def catalog_version(scope: str) -> str:
    """catalog.py: the version counter of one visibility scope."""
    return key("catalog", "version", scope)


def catalog_items(scope: str, version: object) -> str:
    """catalog.py: one scope's cached listing at one version."""
    return key("catalog", scope, version)


def login_failures_by_email(email: str) -> str:
    """accounts.py: failed logins for one address (throttle.py counts)."""
    return key("throttle", "login", "email", email)


def login_failures_by_address(address: str) -> str:
    """accounts.py: failed logins from one client address."""
    return key("throttle", "login", "addr", address)


def denied_jti(jti: str) -> str:
    """accounts.py: a spent or logged-out refresh token, until it expires."""
    return key("denylist", "jti", jti)
