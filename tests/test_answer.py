"""The one answer to a GET or HEAD of something served whole (videoflix/delivery/answer.py): pure, no HTTP.

The handlers, the segment lane, the X-Accel-Redirect path and the page handlers only
carry these answers out; tests/test_hls.py, test_lane.py and test_pages.py check the
carrying out over real sockets.
"""
from __future__ import annotations

import gzip
import os

import pytest

from videoflix.delivery import answer
from videoflix.delivery.answer import Accel, FileRange, GzippedFile, Policy, Rendered, RequestFacts

SEGMENT = answer.media_policy("vsegment", "seg_00000.ts", building=False)
PLAYLIST = answer.media_policy("playlist", "index.m3u8", building=False)
MTIME = 1_767_694_530  # Tue, 06 Jan 2026 10:15:30 GMT
DATE = "Tue, 06 Jan 2026 10:15:30 GMT"


def stat(size: int = 1000) -> os.stat_result:
    # st_mode, st_ino, st_dev, st_nlink, st_uid, st_gid, st_size, st_atime, st_mtime, st_ctime
    # (the float and _ns fields follow the ten integers).
    return os.stat_result((0o100644, 77, 1, 1, 0, 0, size, MTIME, MTIME, MTIME, float(MTIME), float(MTIME),
                           float(MTIME), MTIME * 10**9, MTIME * 10**9 + 5, MTIME * 10**9))


def get(**headers: str) -> RequestFacts:
    return RequestFacts.of("GET", headers)


ETAG = f'"3e8-{(MTIME * 10**9 + 5):x}-4d"'


def test_a_plain_get_of_a_file_is_the_whole_file_with_its_validators():
    result = answer.answer_file(get(), SEGMENT, stat())
    assert (result.status, result.body, result.with_body) == (200, FileRange(0, 1000), True)
    assert result.headers == [("Accept-Ranges", "bytes"), ("Etag", ETAG), ("Last-Modified", DATE),
                              ("Content-Type", "video/MP2T"),
                              ("X-Content-Type-Options", "nosniff"),
                              ("Cache-Control", "private, max-age=31536000, immutable"), ("Content-Length", "1000")]


def test_head_is_the_get_without_its_body():
    head = answer.answer_file(RequestFacts.of("HEAD", {"Range": "bytes=0-9"}), SEGMENT, stat())
    ranged = answer.answer_file(get(Range="bytes=0-9"), SEGMENT, stat())
    assert (head.status, head.headers, head.body) == (ranged.status, ranged.headers, ranged.body)
    assert head.with_body is False and ranged.with_body is True


@pytest.mark.parametrize("header, status, span", [
    ("bytes=10-19", 206, (10, 20)),
    ("bytes=-100", 206, (900, 1000)),
    ("bytes=990-5000", 206, (990, 1000)),
    ("bytes=0-", 200, (0, 1000)),  # the whole file is a plain 200
    ("bytes=0-999", 200, (0, 1000)),
    ("bytes=0-9,20-29", 200, (0, 1000)),  # several ranges: ignored
    ("bytes=9-2", 200, (0, 1000)),
    ("lines=1-2", 200, (0, 1000)),
])
def test_ranges(header, status, span):
    result = answer.answer_file(get(Range=header), SEGMENT, stat())
    assert (result.status, result.body) == (status, FileRange(*span))
    headers = dict(result.headers)
    assert headers["Content-Length"] == str(span[1] - span[0])
    assert headers.get("Content-Range") == (f"bytes {span[0]}-{span[1] - 1}/1000" if status == 206 else None)


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_an_unsatisfiable_range_is_416_with_the_size(header):
    result = answer.answer_file(get(Range=header), SEGMENT, stat())
    assert (result.status, result.error, result.headers, result.body) == (
        416, True, [("Content-Range", "bytes */1000")], None)


def test_if_range_honours_the_range_only_while_the_file_is_the_same():
    assert answer.answer_file(get(Range="bytes=0-9", **{"If-Range": ETAG}), SEGMENT, stat()).status == 206
    assert answer.answer_file(get(Range="bytes=0-9", **{"If-Range": DATE}), SEGMENT, stat()).status == 206
    for stale in ('"stale"', f"W/{ETAG}", "Tue, 06 Jan 2026 10:15:31 GMT", "garbage"):
        result = answer.answer_file(get(Range="bytes=0-9", **{"If-Range": stale}), SEGMENT, stat())
        assert (result.status, result.body) == (200, FileRange(0, 1000)), stale


@pytest.mark.parametrize("headers, status", [
    ({"If-None-Match": ETAG}, 304),
    ({"If-None-Match": f'"nope", {ETAG}'}, 304),
    ({"If-None-Match": f"W/{ETAG}"}, 304),  # If-None-Match compares weakly
    ({"If-None-Match": "*"}, 304),
    ({"If-None-Match": '"nope"'}, 200),
    ({"If-Modified-Since": DATE}, 304),
    ({"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}, 304),
    ({"If-Modified-Since": "Tue, 06 Jan 2026 10:15:29 GMT"}, 200),
    ({"If-Modified-Since": "not a date"}, 200),
    ({"If-None-Match": '"nope"', "If-Modified-Since": DATE}, 200),  # If-None-Match wins
    ({"If-None-Match": "", "If-Modified-Since": DATE}, 304),  # an empty one is none
])
def test_conditional_gets(headers, status):
    result = answer.answer_file(get(**headers), SEGMENT, stat())
    assert result.status == status
    if status == 304:
        assert result.body is None and result.with_body is False
        # Validators and caching as the 200's, no representation metadata (RFC 9110 §15.4.5).
        assert [name for name, _ in result.headers] == ["Accept-Ranges", "Etag", "Last-Modified",
                                                        "X-Content-Type-Options", "Cache-Control"]


def test_text_is_gzipped_when_accepted_as_another_representation():
    plain = answer.answer_file(get(Range="bytes=0-6"), PLAYLIST, stat())
    zipped = answer.answer_file(get(Range="bytes=0-6", **{"Accept-Encoding": "gzip"}), PLAYLIST, stat())
    assert plain.status == 206 and ("Vary", "Accept-Encoding") in plain.headers
    assert (zipped.status, zipped.body) == (200, GzippedFile())  # a gzipped answer ignores Range
    headers = dict(zipped.headers)
    assert headers["Etag"] == ETAG[:-1] + '-gz"' != dict(plain.headers)["Etag"]
    assert (headers["Accept-Ranges"], headers["Content-Encoding"], headers["Vary"]) == ("none", "gzip",
                                                                                         "Accept-Encoding")
    assert "Content-Length" not in headers
    done = answer.with_gzipped(zipped, b"12345")
    assert (done.body, dict(done.headers)["Content-Length"]) == (Rendered(b"12345"), "5")
    # Revalidated by its own tag; too big to hold in memory: sent as it is.
    again = answer.answer_file(get(**{"Accept-Encoding": "gzip", "If-None-Match": headers["Etag"]}), PLAYLIST, stat())
    assert again.status == 304
    big = answer.answer_file(get(**{"Accept-Encoding": "gzip"}), PLAYLIST, stat(answer.MAX_GZIP_BYTES + 1))
    assert big.body == FileRange(0, answer.MAX_GZIP_BYTES + 1) and ("Vary", "Accept-Encoding") in big.headers


@pytest.mark.parametrize("accept, gzipped", [
    ("gzip", True), ("x-gzip", True), ("*", True), ("deflate, gzip;q=0.1", True),
    ("gzip;q=0", False), ("gzip;q=0.000", False), ("*, gzip;q=0", False), ("gzip;q=0, *", False),
    ("identity", False), ("", False), ("br, *;q=0", False), ("gzip;q=nope", False),
])
def test_gzip_only_for_a_non_zero_q(accept, gzipped):
    rendered = answer.answer_rendered(get(**{"Accept-Encoding": accept}), PLAYLIST, b"#EXTM3U\n" * 50)
    assert (("Content-Encoding", "gzip") in rendered.headers) is gzipped


def test_bytes_made_in_memory_have_a_content_tag_and_revalidate():
    data = b"#EXTM3U\n" + b"#EXTINF:4.0,\nseg_00000.ts\n" * 20
    policy = answer.media_policy("master", "master.m3u8", building=False)
    plain = answer.answer_rendered(get(), policy, data)
    assert (plain.status, plain.body) == (200, Rendered(data))
    assert plain.headers == [("Content-Type", "application/vnd.apple.mpegurl"), ("X-Content-Type-Options", "nosniff"),
                             ("Cache-Control", "private, no-cache"),
                             ("Etag", answer.content_etag(data)), ("Vary", "Accept-Encoding"),
                             ("Content-Length", str(len(data)))]
    zipped = answer.answer_rendered(get(**{"Accept-Encoding": "gzip"}), policy, data)
    assert gzip.decompress(zipped.body.data) == data
    assert dict(zipped.headers)["Etag"] == answer.content_etag(data)[:-1] + '-gz"'
    for tag, accept, status in ((answer.content_etag(data), "", 304), (dict(zipped.headers)["Etag"], "gzip", 304),
                                (answer.content_etag(data), "gzip", 200)):
        again = answer.answer_rendered(get(**{"If-None-Match": tag, "Accept-Encoding": accept}), policy, data)
        assert again.status == status
    # Given bytes (a page's, made once) are used as they are; without a gzip coding, no Vary.
    page = Policy("text/html; charset=UTF-8", "no-cache", compressible=True, extra=(("X-Frame-Options", "DENY"),))
    given = answer.answer_rendered(get(**{"Accept-Encoding": "gzip"}), page, data, '"tag"', b"made before")
    assert given.body == Rendered(b"made before") and ("Etag", '"tag-gz"') in given.headers
    assert ("X-Frame-Options", "DENY") in given.headers
    image = Policy("image/png", "public", compressible=False)
    assert "Vary" not in dict(answer.answer_rendered(get(**{"Accept-Encoding": "gzip"}), image, data).headers)
    assert answer.answer_rendered(RequestFacts.of("HEAD", {}), policy, data).with_body is False


def test_behind_nginx_the_answer_names_the_file():
    location = "/internal-media/7/v1/720p/index.m3u8"
    result = answer.answer_accel(get(Range="bytes=0-9"), PLAYLIST, location)
    assert (result.status, result.body) == (200, Accel(location))
    assert result.headers == [("Content-Type", "application/vnd.apple.mpegurl"),
                              ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "private, max-age=5"),
                              ("Vary", "Accept-Encoding"),
                              ("X-Accel-Redirect", location), ("Content-Length", "0")]


def test_kind_policies():
    assert answer.media_policy("thumbs", "thumbnails.vtt", building=False) == Policy(
        answer.VTT_TYPE, answer.IMMUTABLE_CACHE_CONTROL, compressible=True)
    assert answer.media_policy("thumbs", "sprite_000.jpg", building=True) == Policy(
        answer.IMAGE_TYPE, answer.REVALIDATE_CACHE_CONTROL)
    assert answer.media_policy("vplaylist", "index.m3u8", building=True).cache_control == "private, no-cache"
    assert answer.media_policy("segment", "seg_00000.ts", building=True).cache_control == "private, max-age=60"
    # Shared, not made per request.
    assert answer.media_policy("vsegment", "a", False) is answer.media_policy("vsegment", "b", False)


# --- objects of a bucket (VIDEOFLIX_STORAGE=s3://...) ------------------------------------

STORED = answer.ObjectFacts(1000, '"9b2cf535f27731c974343645a3985328"', MTIME)


def test_an_object_of_the_store_is_answered_as_a_file_with_the_stores_validators():
    as_file = answer.answer_file(get(Range="bytes=10-19"), SEGMENT, stat())
    stored = answer.answer_object(get(Range="bytes=10-19"), SEGMENT, STORED)
    assert stored.status == as_file.status == 206
    assert stored.body == answer.StoreRange(10, 20)  # streamed from the store
    assert stored.headers == [(k, STORED.etag if k == "Etag" else v) for k, v in as_file.headers]
    # Its hot copy on local disk: the same answer, the bytes from the copy.
    copy = answer.answer_copy(get(Range="bytes=10-19"), SEGMENT, STORED)
    assert (copy.headers, copy.body) == (stored.headers, FileRange(10, 20))
    assert answer.answer_object(get(**{"If-None-Match": STORED.etag}), SEGMENT, STORED).status == 304
    assert answer.answer_object(get(Range="bytes=1000-"), SEGMENT, STORED).headers == [
        ("Content-Range", "bytes */1000")]


def test_an_object_without_a_date_has_no_last_modified_and_if_range_needs_its_etag():
    undated = answer.ObjectFacts(1000, '"abc"', None)
    result = answer.answer_object(get(), SEGMENT, undated)
    assert "Last-Modified" not in dict(result.headers)
    assert answer.answer_object(get(**{"If-Modified-Since": DATE}), SEGMENT, undated).status == 200
    assert answer.answer_object(get(Range="bytes=0-9", **{"If-Range": DATE}), SEGMENT, undated).status == 200
    assert answer.answer_object(get(Range="bytes=0-9", **{"If-Range": '"abc"'}), SEGMENT, undated).status == 206
    gzipped = answer.answer_object(get(**{"Accept-Encoding": "gzip"}), PLAYLIST, undated)
    assert isinstance(gzipped.body, GzippedFile) and dict(gzipped.headers)["Etag"] == '"abc-gz"'
