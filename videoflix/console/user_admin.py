"""Users, for admins: list with search, filters and usage; show; activate or
deactivate; promote or demote (never the last admin); delete with every video;
mail an activation or a password-reset link. Each change writes its audit entry
in its own transaction (console/audit.py).

Deactivating or demoting a user bumps their token_version in the same transaction:
every access, refresh and stream token they hold stops working, at once in this
process (sessions.version_changed, which also ends their event streams) and within
sessions.CHECK_SECONDS in any other. A promotion takes effect at the user's next
token refresh or login (the access token carries the admin mark).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from videoflix.accounts import flows, sessions
from videoflix.console import audit, queries
from videoflix.console.audit import Actor
from videoflix.library import lifecycle
from videoflix.platform.config import Config
from videoflix.platform.db import cursor, transaction
from videoflix.platform.services import Services
from videoflix.tables import users
from videoflix.tables import videos as video_rows

log = logging.getLogger(__name__)

# A page of the user list: at most this many (and this many by default).
MAX_PAGE = 100
DEFAULT_PAGE = 25
# What PATCH /api/admin/users/<id>/ reads.
CHANGE_FIELDS = ("is_active", "is_admin")
ORDERS = tuple(users.LIST_ORDERS)


class UserNotFound(Exception):
    pass


class LastAdmin(Exception):
    """The change would leave no active admin (409)."""


class NothingToChange(Exception):
    """A PATCH with neither field."""


class NotActivatable(Exception):
    """An activation mail for an account that is active, or was and has been deactivated (409)."""


@dataclass(frozen=True)
class UserQuery:
    search: str | None = None
    is_active: bool | None = None
    is_admin: bool | None = None
    order: str = "-joined"
    limit: int = DEFAULT_PAGE
    offset: int = 0


def parse_query(args: Mapping[str, str]) -> UserQuery:
    """The list's query string: `search` (part of the email), `active`, `admin`
    (true/false), `order` (ORDERS), `limit`, `offset`. QueryError when one is bad."""
    return UserQuery(
        search=queries.text(args, "search"),
        is_active=queries.boolean(args, "active"),
        is_admin=queries.boolean(args, "admin"),
        order=queries.choice(args, "order", ORDERS, "-joined") or "-joined",
        limit=queries.integer(args, "limit", DEFAULT_PAGE, 1, MAX_PAGE) or DEFAULT_PAGE,
        offset=queries.integer(args, "offset", 0, 0, 10**9) or 0,
    )


def _iso(value: Any) -> str | None:
    return None if value is None else str(value.isoformat())


def user_item(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "email": row["email"],
        "joined": _iso(row["created_at"]),
        "activated_at": _iso(row["activated_at"]),
        "last_login": _iso(row["last_login_at"]),
        "is_active": row["is_active"],
        "is_admin": row["is_admin"],
        "video_count": int(row["video_count"]),
        "bytes_stored": int(row["bytes_stored"]),
    }


async def list_users(services: Services, query: UserQuery) -> dict[str, Any]:
    pattern = queries.like_pattern(query.search.lower()) if query.search else None
    async with cursor(services.pool) as cur:
        total, rows = await users.list_with_usage(
            cur,
            email_like=pattern,
            is_active=query.is_active,
            is_admin=query.is_admin,
            order=query.order,
            limit=query.limit,
            offset=query.offset,
        )
    return {"count": total, "limit": query.limit, "offset": query.offset, "results": [user_item(r) for r in rows]}


async def get_user(services: Services, user_id: int) -> dict[str, Any]:
    async with cursor(services.pool) as cur:
        row = await users.get_with_usage(cur, user_id)
    if row is None:
        raise UserNotFound()
    return user_item(row)


def check_changes(body: Mapping[str, Any]) -> dict[str, bool]:
    """{field: value} of a PATCH body: booleans only; QueryError, NothingToChange."""
    changes = {}
    for field in CHANGE_FIELDS:
        value = queries.body_boolean(body, field)
        if value is not None:
            changes[field] = value
    if not changes:
        raise NothingToChange()
    return changes


def _leaves_no_admin(row: Mapping[str, Any], admins: list[int], still_admin: bool) -> bool:
    """Whether the user losing the active admin role (not `still_admin`) leaves none."""
    was_admin = row["is_active"] and row["is_admin"]
    return bool(was_admin and not still_admin and not (set(admins) - {row["id"]}))


async def update_user(services: Services, actor: Actor, user_id: int, changes: Mapping[str, bool]) -> dict[str, Any]:
    """Apply checked changes (check_changes); the user after. UserNotFound, LastAdmin."""
    async with transaction(services.pool) as cur:
        admins = await users.lock_active_admins(cur)  # first, in id order: no deadlock between two admins
        row = await users.get_with_usage(cur, user_id, lock=True)
        if row is None:
            raise UserNotFound()
        active = changes.get("is_active", row["is_active"])
        admin = changes.get("is_admin", row["is_admin"])
        if _leaves_no_admin(row, admins, active and admin):
            raise LastAdmin()
        end_sessions = (row["is_active"] and not active) or (row["is_admin"] and not admin)
        # Deactivating an account that never activated blocks it: its activation link dies.
        blocks_pending = changes.get("is_active") is False and row["activated_at"] is None
        version = row["token_version"]
        if (active, admin) != (row["is_active"], row["is_admin"]) or blocks_pending:
            version = await users.set_flags(cur, user_id, is_active=active, is_admin=admin, end_sessions=end_sessions)
            if active != row["is_active"] or blocks_pending:
                action = "user.activate" if active else "user.deactivate"
                await audit.record(cur, actor, action, "user", user_id, row["email"], {"is_active": active})
            if admin != row["is_admin"]:
                action = "user.promote" if admin else "user.demote"
                await audit.record(cur, actor, action, "user", user_id, row["email"], {"is_admin": admin})
        after = await users.get_with_usage(cur, user_id)
    assert after is not None  # (locked in this transaction)
    if end_sessions and version is not None:
        # Every token of the user is dead now: here at once (event streams end too),
        # elsewhere within sessions.CHECK_SECONDS.
        sessions.version_changed(services, user_id, version)
    log.info("user %s changed by %s (%s): %s", user_id, actor.email, actor.address, dict(changes))
    return user_item(after)


async def delete_user(config: Config, services: Services, actor: Actor, user_id: int) -> dict[str, Any]:
    """The account, its videos (rows, sources, versions, images, subtitles, queue
    entries, running jobs), watch positions; what was removed. UserNotFound, LastAdmin."""
    async with transaction(services.pool) as cur:
        admins = await users.lock_active_admins(cur)
        row = await users.get_with_usage(cur, user_id, lock=True)
        if row is None:
            raise UserNotFound()
        if _leaves_no_admin(row, admins, still_admin=False):
            raise LastAdmin()
        owned = await video_rows.owned_videos(cur, user_id)
        video_ids = [video_id for video_id, _title, _size in owned]
        # With a bucket: its objects, listed before anything is deleted (store down: 503).
        files = await lifecycle.count_files(config, services, video_ids)
        removed = {
            "videos": [{"id": video_id, "title": title} for video_id, title, _size in owned],
            "source_bytes": sum(size for _id, _title, size in owned),
            "files": files,
        }
        await users.delete_user(cur, user_id)
        await audit.record(cur, actor, "user.delete", "user", user_id, row["email"], removed)
    # Committed: every token of the account is dead (the row is gone); here at once.
    sessions.version_changed(services, user_id, row["token_version"] + 1)
    for video_id in video_ids:
        await lifecycle.remove_deleted(config, services, video_id, user_id)
    log.info("user %s deleted by %s (%s) with %d video(s)", user_id, actor.email, actor.address, len(video_ids))
    return {"user": user_item(row), "removed": removed}


async def mail_link(config: Config, services: Services, actor: Actor, user_id: int, purpose: str) -> None:
    """Mail the user an activation link ("activate": only to an account never
    activated) or a password-reset link ("reset"). UserNotFound, NotActivatable,
    flows.Throttled (the recipient's mail budget)."""
    async with cursor(services.pool) as cur:
        user = await users.get_user(cur, user_id)
        details = await users.get_with_usage(cur, user_id)
    if user is None or details is None:
        raise UserNotFound()
    if purpose == "activate" and (user["is_active"] or details["activated_at"] is not None):
        raise NotActivatable()
    action = "user.resend_activation" if purpose == "activate" else "user.password_reset"
    async with transaction(services.pool) as cur:
        await audit.record(cur, actor, action, "user", user_id, user["email"])
        # Sent (spooled) before the entry commits: a mail refused by the budget leaves none.
        await flows.mail_link_for_admin(config, services, user, purpose)
    log.info("%s for user %s by %s (%s)", action, user_id, actor.email, actor.address)


async def find_user_id(services: Services, id_or_email: str) -> int:
    """A user by id or email (the command line takes either). UserNotFound."""
    if id_or_email.isascii() and id_or_email.isdigit():
        return int(id_or_email)
    email = flows.normalize_email(id_or_email)
    if email is None:
        raise UserNotFound()
    async with cursor(services.pool) as cur:
        user = await users.get_user_by_email(cur, email)
    if user is None:
        raise UserNotFound()
    return int(user["id"])
