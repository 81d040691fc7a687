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
# transcode/queue.py: the owners with jobs waiting their turn, and each one's waiting jobs.
TRANSCODE_BACKLOG_OWNERS = key("transcode", "backlog-owners")


def transcode_backlog(owner: str) -> str:
    """transcode/queue.py: one owner's jobs waiting their turn (a list, oldest first)."""
    return key("transcode", "backlog", owner)


# transcode/runner.py: held by the one process reconciling rows and stream right now.
TRANSCODE_RECONCILE_LOCK = key("transcode", "reconcile")


def progress(video_id: int) -> str:
    """transcode/progress.py: a running job's percentage."""
    return key("progress", int(video_id))


def playable(video_id: int) -> str:
    """transcode/progress.py: the version being built whose every rendition lists a
    segment (set by the transcode child; the detail's `playable`)."""
    return key("playable", int(video_id))


def cancel(video_id: int) -> str:
    """transcode/progress.py: set when a video is deleted while its job runs."""
    return key("cancel", int(video_id))


# transcode/notify.py: the pub/sub channel of video changes (events.py listens).
VIDEO_EVENTS_CHANNEL = key("events", "video")


def catalog_version(scope: str) -> str:
    """catalog.py: the version counter of one visibility scope."""
    return key("catalog", "version", scope)


def catalog_items(scope: str, version: object) -> str:
    """catalog.py: one scope's cached listing at one version."""
    return key("catalog", scope, version)


def login_attempts_by_pair(unit: str, email: str) -> str:
    """accounts.py: login attempts for one email from one client unit
    (clientaddr.limit_key; throttle.py counts)."""
    return key("throttle", "login", "pair", unit, email)


def login_attempts_by_address(unit: str) -> str:
    """accounts.py: login attempts from one client unit, across all emails."""
    return key("throttle", "login", "addr", unit)


def login_attempts_by_email(email: str) -> str:
    """accounts.py: login attempts for one email, from anywhere."""
    return key("throttle", "login", "email", email)


def known_login_addresses(email: str) -> str:
    """accounts/flows.py: a set of keyed digests of the client units that logged in to
    one email successfully (the owner's own addresses pass the per-email ceiling)."""
    return key("login", "known", email)


def subtitle_uploads(user_id: int) -> str:
    """library/subtitle_tracks.py: one user's subtitle uploads this hour."""
    return key("throttle", "subtitles", int(user_id))


def mails_to(recipient: str) -> str:
    """accounts.py: activation and reset mails to one recipient."""
    return key("throttle", "mail", "to", recipient)


def mails_from(unit: str) -> str:
    """accounts.py: activation and reset mails asked for by one client unit."""
    return key("throttle", "mail", "from", unit)


def denied_jti(jti: str) -> str:
    """accounts.py: a spent or logged-out refresh token (value: when it was first
    spent), until it expires."""
    return key("denylist", "jti", jti)


def revoked_session(session_id: str) -> str:
    """sessions.py: a logged-out (or stolen-token) session, until its last token expires."""
    return key("session", "revoked", session_id)


def admin_actions(user_id: int) -> str:
    """console/guard.py: one admin's console actions (changes) this minute."""
    return key("throttle", "admin", int(user_id))


def upload_lock(upload_id: str) -> str:
    """library/resumable.py: the one request appending to a resumable upload (a lease
    renewed while its body arrives; value: that request's random token)."""
    return key("upload", "lock", upload_id)
