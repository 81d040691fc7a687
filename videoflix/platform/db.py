"""aiopg pool and the two context managers every query goes through.

aiopg connections are in autocommit mode: a single statement commits by itself,
and multi-statement writes must go through `transaction()`, which issues an
explicit BEGIN/COMMIT (ROLLBACK on any exception) on one connection. A write
together with the reads it depends on or answers with (insert then read back,
check then delete, mark then read) is such a unit: library/lifecycle.py,
accounts/flows.register, the runner's _fail.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiopg
import psycopg2.extras


async def create_pool(dsn: str, minsize: int = 1, maxsize: int = 10) -> aiopg.Pool:
    # timeout bounds how long a query may wait for a connection or a result.
    return await aiopg.create_pool(dsn, minsize=minsize, maxsize=maxsize, timeout=30)


@contextlib.asynccontextmanager
async def _discard_dead_connections(pool: aiopg.Pool) -> AsyncIterator[None]:
    """After PostgreSQL restarted, every idle pooled connection is dead: once one
    fails, drop the idle ones too, so the pool recovers with the next request
    instead of failing once per stale connection."""
    try:
        yield
    except (psycopg2.OperationalError, psycopg2.InterfaceError):
        await pool.clear()
        raise


@contextlib.asynccontextmanager
async def cursor(pool: aiopg.Pool) -> AsyncIterator[aiopg.Cursor]:
    """A dict-row cursor on a pooled connection (autocommit)."""
    async with (
        _discard_dead_connections(pool),
        pool.acquire() as conn,
        conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur,
    ):
        yield cur


@contextlib.asynccontextmanager
async def transaction(pool: aiopg.Pool) -> AsyncIterator[aiopg.Cursor]:
    """A dict-row cursor inside BEGIN ... COMMIT; rolls back on any exception."""
    async with (
        _discard_dead_connections(pool),
        pool.acquire() as conn,
        conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur,
        cur.begin(),
    ):
        yield cur
