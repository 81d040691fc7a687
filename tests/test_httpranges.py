"""The pure RFC 7233/7232 and RFC 9110 §12.5.3 parsing of videoflix/delivery/httpranges.py (no HTTP)."""
from __future__ import annotations

from email.utils import parsedate_to_datetime

import pytest

from videoflix.delivery.httpranges import RangeNotSatisfiable, accepts_gzip, parse_byte_range, range_is_current


@pytest.mark.parametrize("header, expected", [
    ("bytes=0-99", (0, 100)),
    ("bytes=100-199", (100, 200)),
    ("bytes=-100", (900, 1000)),
    ("bytes=-5000", (0, 1000)),
    ("bytes=900-", (900, 1000)),
    ("bytes=0-", (0, 1000)),
    ("bytes=990-5000", (990, 1000)),
    ("BYTES = 1 - 2", (1, 3)),
    ("bytes=5-1", None),
    ("bytes=abc", None),
    ("bytes=", None),
    ("bytes=-", None),
    ("items=0-1", None),
    ("bytes=0-1,5-9", None),
    ("bytes=0x10-", None),
    ("bytes=1e3-", None),
    ("bytes=+1-2", None),
])
def test_parse_byte_range(header, expected):
    assert parse_byte_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_parse_byte_range_unsatisfiable(header):
    with pytest.raises(RangeNotSatisfiable):
        parse_byte_range(header, 1000)


def test_range_on_empty_file_is_unsatisfiable():
    with pytest.raises(RangeNotSatisfiable):
        parse_byte_range("bytes=-10", 0)


def test_if_range_matches_strong_etag_or_exact_date_only():
    modified = parsedate_to_datetime("Tue, 06 Jan 2026 10:15:30 GMT")
    assert range_is_current(None, '"a"', modified)
    assert range_is_current('"a"', '"a"', modified)
    assert not range_is_current('"b"', '"a"', modified)
    assert not range_is_current('W/"a"', '"a"', modified)
    assert range_is_current("Tue, 06 Jan 2026 10:15:30 GMT", '"a"', modified)
    assert not range_is_current("Tue, 06 Jan 2026 10:15:31 GMT", '"a"', modified)
    assert not range_is_current("garbage", '"a"', modified)


@pytest.mark.parametrize("header, expected", [
    ("gzip", True), ("gzip, deflate, br", True), ("deflate;q=1, gzip;q=0.5", True),
    ("gzip;q=0", False), ("identity", False), ("", False), ("*", True), ("br, *;q=0", False),
    # RFC 9110 §12.5.3: gzip's own entry decides, whatever `*` says; x-gzip is gzip.
    ("*, gzip;q=0", False), ("gzip;q=0, *;q=1", False), ("*;q=0, gzip", True), ("x-gzip", True),
    ("GZIP;Q=0.5", True), ("gzip;q=abc", False),
])
def test_accepts_gzip(header, expected):
    assert accepts_gzip(header) is expected
