"""Which exceptions mean "a service we depend on is down right now" (pure).

PostgreSQL or Redis refusing, dropping or timing out a connection is an outage,
not a bug: the request is answered with a JSON 503 and one log line
(web/base.py), and the next request simply tries again (the aiopg pool
and the redis client reconnect by themselves, db.py and services.py).
"""

from __future__ import annotations

import psycopg2
import redis.exceptions

from videoflix.platform.storage import StorageError

# redis: ConnectionError covers refused/reset connections and BusyLoadingError
# (a restarted Redis still loading its data); TimeoutError, a hung server.
# psycopg2: OperationalError covers a refused connection, a server shutting down
# and a connection it dropped; InterfaceError, a connection already closed.
# TimeoutError: aiopg's pool gave up waiting for a connection.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    TimeoutError,
    # The media store (platform/storage.py): a bucket unreachable, refusing or timing out.
    StorageError,
)
DETAIL = "Service temporarily unavailable, please try again shortly."
STORAGE_DETAIL = "The media store is unreachable right now, please try again shortly."
# Seconds a client should wait before trying again (the Retry-After header).
RETRY_AFTER_SECONDS = 2


def is_outage(error: BaseException | None) -> bool:
    return isinstance(error, OUTAGE_ERRORS)


def detail(error: BaseException) -> str:
    """The 503's `detail`: which kind of service is down (never its address or keys)."""
    return STORAGE_DETAIL if isinstance(error, StorageError) else DETAIL


def describe(error: BaseException) -> str:
    """One line for the log: which service and what it said."""
    service = (
        "redis"
        if isinstance(error, redis.exceptions.RedisError)
        else (
            "postgresql"
            if isinstance(error, psycopg2.Error)
            else ("the media store" if isinstance(error, StorageError) else "a backing service")
        )
    )
    text = str(error).strip().splitlines()
    return f"{service} unavailable: {type(error).__name__}: {text[0] if text else ''}"
