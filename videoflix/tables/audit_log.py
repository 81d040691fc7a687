"""Every SQL statement touching the audit_log table (sql/008). Functions take the cursor first.

Insert and read only: the table is append-only (its trigger refuses UPDATE, DELETE
and TRUNCATE), so there is no statement here that changes or removes an entry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg2.extras import Json

COLUMNS = "id, created_at, actor_id, actor, address, action, target_type, target_id, target_label, details"


async def insert_entry(
    cur: Any,
    *,
    actor_id: int | None,
    actor: str,
    address: str,
    action: str,
    target_type: str,
    target_id: str,
    target_label: str,
    details: dict[str, Any],
) -> int:
    await cur.execute(
        "INSERT INTO audit_log (actor_id, actor, address, action, target_type, target_id, target_label, details)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (actor_id, actor, address, action, target_type, target_id, target_label, Json(details)),
    )
    return int((await cur.fetchone())["id"])


async def list_entries(
    cur: Any,
    *,
    limit: int,
    before_id: int | None = None,
    action: str | None = None,
    actor_id: int | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """Newest first; `before_id` pages backwards (keyset: stable while entries are added)."""
    conditions = []
    args: list[Any] = []
    for column, value in (
        ("id <", before_id),
        ("action =", action),
        ("actor_id =", actor_id),
        ("target_type =", target_type),
        ("target_id =", target_id),
        ("created_at >=", since),
    ):
        if value is not None:
            conditions.append(f"{column} %s")
            args.append(value)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    await cur.execute(f"SELECT {COLUMNS} FROM audit_log{where} ORDER BY id DESC LIMIT %s", (*args, limit))
    rows: list[dict[str, Any]] = await cur.fetchall()
    return rows
