"""HTTP range and content-coding rules (pure): RFC 7233 Range and If-Range,
RFC 7232 validators as If-Range uses them, RFC 9110 §12.5.3 Accept-Encoding.

No IO and no Tornado: answer.py feeds headers in and maps the results
(RangeNotSatisfiable is its 416).
"""

from __future__ import annotations

import datetime
import email.utils
import re

# RFC 7233 §2.1: one byte-range-spec; several ranges are ignored (§3.1 allows it;
# players only ever ask for one). Units are case-insensitive (RFC 9110 §14.1).
_BYTE_RANGE_RE = re.compile(
    r"bytes[ \t]*=[ \t]*([0-9]{0,19})[ \t]*-[ \t]*([0-9]{0,19})[ \t]*", re.ASCII | re.IGNORECASE
)


class RangeNotSatisfiable(Exception):
    """No byte of the requested range exists: 416 (RFC 7233 §4.4)."""


def parse_byte_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end) with `end` exclusive for a Range header on `size` bytes.

    None means "ignore the header and send everything" (malformed, another unit,
    several ranges, last < first: RFC 7233 §2.1, §3.1). RangeNotSatisfiable when
    the first byte is past the end or the suffix is empty (§2.1, §4.4). A last
    byte past the end is clipped (§2.1).
    """
    match = _BYTE_RANGE_RE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix-byte-range-spec: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable()
        return max(0, size - suffix), size
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable()
    return start, size if not last else min(int(last) + 1, size)


def range_is_current(if_range: str | None, etag: str | None, modified: datetime.datetime | None) -> bool:
    """RFC 7233 §3.2 If-Range: honour Range only while the validator still matches
    (a strong ETag comparison, or exactly the Last-Modified date; none: no match)."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith('"') or value.startswith("W/"):
        return etag is not None and value == etag  # weak tags never match (§3.2)
    try:
        date = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False
    if date.tzinfo is None:
        date = date.replace(tzinfo=datetime.UTC)
    return date == modified


def accepts_gzip(accept_encoding: str) -> bool:
    """True when Accept-Encoding gives gzip a non-zero q (RFC 9110 §12.5.3): the q of its
    own entry (or x-gzip's, the same coding: §8.4.1.3) when it has one, else that of `*`;
    `gzip;q=0` refuses it whatever `*` says. A q that is not a number counts as 0."""
    own: float | None = None
    anything: float | None = None
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        if coding in ("gzip", "x-gzip"):
            own = max(own or 0.0, _quality(params))
        elif coding == "*":
            anything = _quality(params)
    q = own if own is not None else anything
    return q is not None and q > 0


def _quality(params: str) -> float:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 0.0
    return 1.0
