"""The audit log: who did what, on what, when and from where (sql/008_audit_log.sql).

Every admin action writes its entry with `record`, on the cursor of the transaction
that makes the change, so the entry and the change commit (or roll back) together.
The table is append-only, in PostgreSQL too (a trigger refuses UPDATE, DELETE and
TRUNCATE); nothing here or in the API changes or removes an entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from videoflix.console import queries
from videoflix.platform.db import cursor
from videoflix.platform.services import Services
from videoflix.tables import audit_log, users

# The actions an entry may name (a closed set: the page filters by them).
ACTIONS = (
    "user.activate",
    "user.deactivate",
    "user.promote",
    "user.demote",
    "user.delete",
    "user.resend_activation",
    "user.password_reset",
    "job.retry",
    "job.cancel",
    "job.discard",
    "video.retranscode",
    "video.make_private",
    "video.delete",
)
TARGET_TYPES = ("user", "video", "job")
# What `videoflix users|jobs ...` writes as the actor and the address.
CLI_ACTOR = "cli"
CLI_ADDRESS = "cli"
# Entries one page lists, at most (and by default).
MAX_PAGE = 200
DEFAULT_PAGE = 50


@dataclass(frozen=True)
class Actor:
    """Who acts: an admin (id, email) from an address, or the command line (id None)."""

    user_id: int | None
    email: str
    address: str

    @classmethod
    def command_line(cls) -> Actor:
        return cls(None, CLI_ACTOR, CLI_ADDRESS)


async def actor_of(services: Services, user_id: int, address: str) -> Actor:
    """The admin `user_id` acting from `address`, with their email as it is now."""
    async with cursor(services.pool) as cur:
        user = await users.get_user(cur, user_id)
    return Actor(user_id, user["email"] if user is not None else f"user {user_id}", address)


async def record(
    cur: Any,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: int | str,
    target_label: str = "",
    details: dict[str, Any] | None = None,
) -> int:
    """Write one entry on `cur` (inside the change's transaction); its id."""
    assert action in ACTIONS and target_type in TARGET_TYPES, (action, target_type)
    return await audit_log.insert_entry(
        cur,
        actor_id=actor.user_id,
        actor=actor.email[:320],
        address=(actor.address or "unknown")[:64],
        action=action,
        target_type=target_type,
        target_id=str(target_id)[:64],
        target_label=target_label[:400],
        details=details or {},
    )


def entry_item(row: dict[str, Any]) -> dict[str, Any]:
    """An entry as the API shows it."""
    created: datetime = row["created_at"]
    return {
        "id": row["id"],
        "created_at": created.isoformat(),
        "actor_id": row["actor_id"],
        "actor": row["actor"],
        "address": row["address"],
        "action": row["action"],
        "target_type": row["target_type"],
        "target_id": row["target_id"],
        "target_label": row["target_label"],
        "details": row["details"],
    }


@dataclass(frozen=True)
class AuditQuery:
    """A checked query of the log (console/queries.py parses it from request text)."""

    limit: int = DEFAULT_PAGE
    before_id: int | None = None
    action: str | None = None
    actor_id: int | None = None
    target_type: str | None = None
    target_id: str | None = None


async def list_entries(services: Services, query: AuditQuery) -> dict[str, Any]:
    """{"results": newest first, "next_before": the `before` of the next page or None}."""
    async with cursor(services.pool) as cur:
        rows = await audit_log.list_entries(
            cur,
            limit=query.limit + 1,
            before_id=query.before_id,
            action=query.action,
            actor_id=query.actor_id,
            target_type=query.target_type,
            target_id=query.target_id,
        )
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return {
        "results": [entry_item(row) for row in rows],
        "next_before": rows[-1]["id"] if more and rows else None,
    }


def parse_query(args: Any) -> AuditQuery:
    """`action`, `target_type`, `target_id`, `actor` (a user id), `before` (an entry
    id), `limit`. QueryError when one is bad."""
    return AuditQuery(
        limit=queries.integer(args, "limit", DEFAULT_PAGE, 1, MAX_PAGE) or DEFAULT_PAGE,
        before_id=queries.integer(args, "before", None, 1, 2**63 - 1),
        action=queries.choice(args, "action", ACTIONS),
        actor_id=queries.integer(args, "actor", None, 1, 2**63 - 1),
        target_type=queries.choice(args, "target_type", TARGET_TYPES),
        target_id=queries.text(args, "target_id"),
    )
