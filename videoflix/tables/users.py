"""Every SQL statement touching the users table. Functions take the cursor first."""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.errorcodes

COLUMNS = "id, email, password_hash, is_active, is_admin, token_version, created_at"


class EmailTaken(Exception):
    """The email address is already registered."""


async def insert_user(
    cur: Any, email: str, password_hash: str, *, is_active: bool = False, is_admin: bool = False
) -> int:
    try:
        await cur.execute(
            "INSERT INTO users (email, password_hash, is_active, is_admin, activated_at)"
            " VALUES (%s, %s, %s, %s, CASE WHEN %s THEN now() END) RETURNING id",
            (email, password_hash, is_active, is_admin, is_active),
        )
    except psycopg2.IntegrityError as exc:
        if exc.pgcode == psycopg2.errorcodes.UNIQUE_VIOLATION:
            raise EmailTaken(email) from None
        raise
    return int((await cur.fetchone())["id"])


async def get_user_by_email(cur: Any, email: str) -> dict[str, Any] | None:
    await cur.execute(f"SELECT {COLUMNS} FROM users WHERE email = %s", (email,))
    row: dict[str, Any] | None = await cur.fetchone()
    return row


async def get_user(cur: Any, user_id: int) -> dict[str, Any] | None:
    await cur.execute(f"SELECT {COLUMNS} FROM users WHERE id = %s", (user_id,))
    row: dict[str, Any] | None = await cur.fetchone()
    return row


async def activate_user(cur: Any, user_id: int) -> bool:
    """Mark active; False when it already was, or was once and has been deactivated
    since (by an admin: an old activation link must not undo that)."""
    await cur.execute(
        "UPDATE users SET is_active = true, activated_at = now()"
        " WHERE id = %s AND NOT is_active AND activated_at IS NULL RETURNING id",
        (user_id,),
    )
    return await cur.fetchone() is not None


async def replace_password(cur: Any, user_id: int, old_hash: str, new_hash: str) -> int | None:
    """Compare-and-set the password; bumps token_version and returns the new one.
    None if the password changed meanwhile."""
    await cur.execute(
        "UPDATE users SET password_hash = %s, token_version = token_version + 1"
        " WHERE id = %s AND password_hash = %s RETURNING token_version",
        (new_hash, user_id, old_hash),
    )
    row = await cur.fetchone()
    return None if row is None else row["token_version"]


async def get_session_state(cur: Any, user_id: int) -> dict[str, Any] | None:
    """What decides whether the user's tokens are live (videoflix/sessions.py)."""
    await cur.execute("SELECT token_version, is_active FROM users WHERE id = %s", (user_id,))
    row: dict[str, Any] | None = await cur.fetchone()
    return row


async def set_admin_password(cur: Any, email: str, password_hash: str) -> int:
    """Create or update an active admin account; returns its id."""
    await cur.execute(
        "INSERT INTO users (email, password_hash, is_active, is_admin, activated_at)"
        " VALUES (%s, %s, true, true, now())"
        " ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash,"
        " is_active = true, is_admin = true, token_version = users.token_version + 1"
        " RETURNING id",
        (email, password_hash),
    )
    return int((await cur.fetchone())["id"])


async def record_login(cur: Any, user_id: int) -> None:
    await cur.execute("UPDATE users SET last_login_at = now() WHERE id = %s", (user_id,))


async def lock_user(cur: Any, user_id: int) -> None:
    """Hold the user's row until the transaction ends (serialises their quota checks)."""
    await cur.execute("SELECT id FROM users WHERE id = %s FOR UPDATE", (user_id,))


# --- the admin console (console/user_admin.py) ---------------------------------
# A user with their usage: how many videos they own and the bytes of their sources.
USAGE_COLUMNS = (
    "u.id, u.email, u.is_active, u.is_admin, u.created_at, u.activated_at, u.last_login_at,"
    " (SELECT count(*) FROM videos v WHERE v.owner_id = u.id) AS video_count,"
    " (SELECT COALESCE(sum(v.source_size), 0) FROM videos v WHERE v.owner_id = u.id) AS bytes_stored"
)
# The orders a listing may take (the only text interpolated into it).
LIST_ORDERS = {
    "joined": "u.created_at ASC, u.id ASC",
    "-joined": "u.created_at DESC, u.id DESC",
    "email": "u.email ASC, u.id ASC",
    "-email": "u.email DESC, u.id DESC",
    "last_login": "u.last_login_at ASC NULLS FIRST, u.id ASC",
    "-last_login": "u.last_login_at DESC NULLS LAST, u.id DESC",
    "videos": "video_count ASC, u.id ASC",
    "-videos": "video_count DESC, u.id DESC",
    "bytes": "bytes_stored ASC, u.id ASC",
    "-bytes": "bytes_stored DESC, u.id DESC",
}


async def list_with_usage(
    cur: Any,
    *,
    email_like: str | None,
    is_active: bool | None,
    is_admin: bool | None,
    order: str,
    limit: int,
    offset: int,
) -> tuple[int, list[dict[str, Any]]]:
    """(how many match, one page of them with their usage)."""
    conditions = []
    args: list[Any] = []
    if email_like is not None:
        conditions.append("u.email LIKE %s")
        args.append(email_like)
    if is_active is not None:
        conditions.append("u.is_active = %s")
        args.append(is_active)
    if is_admin is not None:
        conditions.append("u.is_admin = %s")
        args.append(is_admin)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    await cur.execute(f"SELECT count(*) AS n FROM users u{where}", args)
    total = int((await cur.fetchone())["n"])
    await cur.execute(
        f"SELECT {USAGE_COLUMNS} FROM users u{where} ORDER BY {LIST_ORDERS[order]} LIMIT %s OFFSET %s",
        (*args, limit, offset),
    )
    rows: list[dict[str, Any]] = await cur.fetchall()
    return total, rows


async def get_with_usage(cur: Any, user_id: int, *, lock: bool = False) -> dict[str, Any] | None:
    """One user with their usage; `lock`: hold the user's row until the transaction ends."""
    await cur.execute(
        f"SELECT {USAGE_COLUMNS}, u.token_version FROM users u WHERE u.id = %s{' FOR UPDATE OF u' if lock else ''}",
        (user_id,),
    )
    row: dict[str, Any] | None = await cur.fetchone()
    return row


async def lock_active_admins(cur: Any) -> list[int]:
    """The ids of the active admins, their rows held until the transaction ends: two
    admins demoting each other at once are serialised, so one admin always remains."""
    await cur.execute("SELECT id FROM users WHERE is_admin AND is_active ORDER BY id FOR UPDATE")
    return [row["id"] for row in await cur.fetchall()]


async def set_flags(cur: Any, user_id: int, *, is_active: bool, is_admin: bool, end_sessions: bool) -> int | None:
    """Set is_active and is_admin; `end_sessions` bumps token_version (every token of the
    user stops working). An account never activated gets activated_at either way: by
    an admin's decision, its own activation link no longer works (activate_user).
    The token_version after, or None if the user is gone."""
    await cur.execute(
        "UPDATE users SET is_active = %s, is_admin = %s, activated_at = COALESCE(activated_at, now()),"
        " token_version = token_version + CASE WHEN %s THEN 1 ELSE 0 END"
        " WHERE id = %s RETURNING token_version",
        (is_active, is_admin, end_sessions, user_id),
    )
    row = await cur.fetchone()
    return None if row is None else int(row["token_version"])


async def delete_user(cur: Any, user_id: int) -> bool:
    """The row and, by the foreign keys' ON DELETE CASCADE, its videos' rows (their
    subtitles' and watch positions' with them): the files are the caller's to remove."""
    await cur.execute("DELETE FROM users WHERE id = %s RETURNING id", (user_id,))
    return await cur.fetchone() is not None
