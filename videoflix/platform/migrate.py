"""Forward-only schema migrations from sql/NNN_name.sql.

Each file runs in its own transaction and is recorded in schema_migrations in
that same transaction. A session-level advisory lock serialises concurrent
migrators (two servers starting together): the second waits, then finds the
work done.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import aiopg

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
# Arbitrary constant naming "videoflix schema migration" among advisory locks.
ADVISORY_LOCK_KEY = 0x56464C58
MIGRATION_NAME = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def list_migrations(sql_dir: Path = SQL_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(sql_dir.iterdir()):
        match = MIGRATION_NAME.match(path.name)
        if match:
            migrations.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in migrations]
    if len(versions) != len(set(versions)):
        raise RuntimeError(f"duplicate migration numbers in {sql_dir}")
    return sorted(migrations, key=lambda m: m.version)


async def apply_migrations(pool: aiopg.Pool, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply pending migrations; returns the file names applied."""
    migrations = list_migrations(sql_dir)
    applied_now: list[str] = []
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        try:
            await cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY,"
                " name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await cur.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in await cur.fetchall()}
            for migration in migrations:
                if migration.version in done:
                    continue
                sql = migration.path.read_text(encoding="utf-8")
                async with cur.begin():
                    await cur.execute(sql)
                    await cur.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                log.info("applied migration %s", migration.path.name)
                applied_now.append(migration.path.name)
        finally:
            await cur.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    return applied_now
