"""Throttling the console's actions: every change an admin makes through the API
(PATCH, POST, DELETE under /api/admin/) spends one of a per-admin budget, reserved
in Redis before the work (accounts/throttle.py), so a stolen admin session or a
runaway script cannot delete or mail at machine speed (CWE-799). Reads are not
counted; the command line is not throttled (it runs with the server's own
configuration)."""

from __future__ import annotations

from videoflix.accounts import throttle
from videoflix.platform import rediskeys
from videoflix.platform.services import Services

# Changes one admin may make per window: a person clicking through the console
# stays far below it; a bulk action counts once (and is capped at
# video_admin.MAX_BULK_IDS videos).
ACTIONS_PER_WINDOW = 30
WINDOW_SECONDS = 60


async def reserve_action(services: Services, admin_id: int) -> int | None:
    """Count one action of `admin_id`: None when it may go ahead, else seconds to wait."""
    limit = throttle.Limit(rediskeys.admin_actions(admin_id), ACTIONS_PER_WINDOW, WINDOW_SECONDS)
    return await throttle.reserve(services.redis, [limit])
