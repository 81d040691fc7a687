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
    """Mark active; False when it already was."""
    await cur.execute(
        "UPDATE users SET is_active = true, activated_at = now() WHERE id = %s AND NOT is_active RETURNING id",
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
