"""Query-string and body values of the console, checked (pure): a bad one is a
`QueryError` naming the field, which the API answers 400 and the CLI prints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Text filters (an email or title search) longer than this are refused, not searched.
MAX_SEARCH_CHARS = 200


class QueryError(Exception):
    """{field: [message]}: the value of `field` is unusable."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def _fail(field: str, message: str) -> QueryError:
    return QueryError({field: [message]})


def integer(args: Mapping[str, str], field: str, default: int | None, low: int, high: int) -> int | None:
    raw = args.get(field)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise _fail(field, "Must be a whole number.")
    value = int(raw)
    if not low <= value <= high:
        raise _fail(field, f"Must be between {low} and {high}.")
    return value


def boolean(args: Mapping[str, str], field: str) -> bool | None:
    raw = args.get(field)
    if raw is None or raw == "":
        return None
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise _fail(field, 'Must be "true" or "false".')


def choice(args: Mapping[str, str], field: str, allowed: Sequence[str], default: str | None = None) -> str | None:
    raw = args.get(field)
    if raw is None or raw == "":
        return default
    if raw not in allowed:
        raise _fail(field, f"Must be one of: {', '.join(allowed)}.")
    return raw


def text(args: Mapping[str, str], field: str) -> str | None:
    raw = args.get(field)
    if raw is None:
        return None
    raw = raw.strip()
    if not raw:
        return None
    if len(raw) > MAX_SEARCH_CHARS:
        raise _fail(field, f"Ensure this field has no more than {MAX_SEARCH_CHARS} characters.")
    if "\x00" in raw:
        raise _fail(field, "Null characters are not allowed.")
    return raw


def body_boolean(body: Mapping[str, Any], field: str) -> bool | None:
    """A JSON body's boolean field: None when absent; true/false only (no "yes", no 1)."""
    if field not in body:
        return None
    value = body[field]
    if not isinstance(value, bool):
        raise _fail(field, "Must be true or false.")
    return value


def like_pattern(term: str) -> str:
    """`term` as a LIKE pattern matching it anywhere, its own % _ and \\ taken literally."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
