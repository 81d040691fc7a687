"""Logging set-up and an access log that never records secrets.

VIDEOFLIX_LOG_FORMAT=json writes one JSON object per line (python-json-logger):
time, level, logger, message, the request id of the request (or transcode job)
being served, and for access lines status, method, path, route, client,
duration_ms and bytes. Segment GETs are logged at DEBUG, other answers at INFO
(WARNING for 4xx, ERROR for 5xx). An access line is written from an AccessRecord,
which whatever answered the request makes (web/observe.py for the handlers, the
segment lane for its own answers).
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass

import tornado.httputil
from pythonjsonlogger.json import JsonFormatter

from videoflix.platform import clientaddr, requestid

access_log = logging.getLogger("videoflix.access")

# Path parts that carry secrets: email-link tokens, signed stream tokens and media
# tokens (whatever stands where one would: a near miss of a real token is most of it).
_SECRET_PATHS = (
    (re.compile(r"^(/api/(?:activate|password_confirm)/[^/]+/)[^/]+"), r"\1***"),
    (re.compile(r"^(/api/stream/)[^/]+"), r"\1***"),
    (re.compile(r"^(/api/media/)(?![0-9]*(?:/|$))[^/]+"), r"\1***"),
)
_SECRET_QUERY = re.compile(r"((?:^|&)(?:token|access|refresh)=)[^&]*")
# Under /api/media/ the query carries nothing but the media token, under the name
# VIDEOFLIX_MEDIA_TOKEN_FORM gives it: every value is hidden, whatever its name.
MEDIA_PREFIX = "/api/media/"
_ANY_QUERY_VALUE = re.compile(r"((?:^|&)[^&=]*=)[^&]*|(?:^|(?<=&))[^&=]+(?=&|$)")

# The most of each request field an access line writes (characters, before escaping):
# enough for every real method, path and address, never a client's 64 KiB (CWE-400, CWE-779).
METHOD_LIMIT = 16
URI_LIMIT = 1024
CLIENT_LIMIT = 128
# Any one log record's message, whoever logs it (Tornado's own "Invalid header value %r").
MESSAGE_LIMIT = 4096
# Written as is; anything else (controls, spaces, backslash, non-ASCII) as \xNN or \uNNNN,
# so request text can neither split a line nor forge a field (CWE-117).
_PLAIN = re.compile(r"[\x21-\x5b\x5d-\x7e]*")
_NOT_PLAIN = re.compile(r"[^\x21-\x5b\x5d-\x7e]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def clip(text: str, limit: int) -> str:
    """At most `limit` characters of `text`, escaped, with how many were left out."""
    if len(text) <= limit and _PLAIN.fullmatch(text):
        return text
    shown = _NOT_PLAIN.sub(_escape, text[:limit])
    return shown if len(text) <= limit else f"{shown}...(+{len(text) - limit})"


def scrub_uri(uri: str) -> str:
    path, sep, query = uri.partition("?")
    for pattern, replacement in _SECRET_PATHS:
        path = pattern.sub(replacement, path)
    if path.startswith(MEDIA_PREFIX):
        return path + sep + _ANY_QUERY_VALUE.sub(lambda m: f"{m[1]}***" if m[1] else "***", query)
    return path + sep + _SECRET_QUERY.sub(r"\1***", query)


def client_of(request: tornado.httputil.HTTPServerRequest, trusted_proxies: tuple[clientaddr.IPNetwork, ...]) -> str:
    """The client as the login and mail limits see it (clientaddr.py); behind a
    trusted proxy `<client> via <proxy>`; each address bounded and escaped."""
    peer = clip(request.remote_ip or "", CLIENT_LIMIT)
    if not trusted_proxies:
        return peer
    client = clip(clientaddr.client_address(peer, request.headers, trusted_proxies), CLIENT_LIMIT)
    peer_address = clientaddr.parse_address(peer)
    return client if peer_address is None or client == str(peer_address) else f"{client} via {peer}"


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """One answered request, as the access log and the metrics take it."""

    request: tornado.httputil.HTTPServerRequest
    status: int
    route: str | None = None  # the matched route's pattern (web/observe.py), None when none matched
    request_id: str | None = None
    body_bytes: int = 0
    bulk: bool = False  # the bulk of all requests (segments): a success is logged at DEBUG
    retry_expected: bool = False  # a 503 that means "not transcoded yet, retry shortly": INFO
    seconds: float | None = None  # how long it took; None: the request's own request_time()

    def duration(self) -> float:
        return self.request.request_time() if self.seconds is None else self.seconds


def log_request(record: AccessRecord, trusted_proxies: tuple[clientaddr.IPNetwork, ...] = ()) -> None:
    status = record.status
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    if level == logging.INFO and record.bulk:
        level = logging.DEBUG  # segments, the bulk of all requests: only when asked for
    elif status == 503 and record.retry_expected:
        level = logging.INFO  # an expected "retry shortly" (web/media_handlers.py)
    if not access_log.isEnabledFor(level):
        return
    request = record.request
    uri = clip(scrub_uri(request.uri or ""), URI_LIMIT)
    method = clip(request.method or "", METHOD_LIMIT)
    client = client_of(request, trusted_proxies)
    milliseconds = 1000.0 * record.duration()
    access_log.log(
        level,
        "%d %s %s %s %.1fms",
        status,
        method,
        uri,
        client,
        milliseconds,
        extra={
            "request_id": record.request_id,
            "status": status,
            "method": method,
            "path": uri,
            "route": record.route,
            "client": client,
            "duration_ms": round(milliseconds, 2),
            "bytes": record.body_bytes,
        },
    )


def request_summary(request: object) -> str:
    """`METHOD uri (peer)` for an error line, bounded and escaped like the access log
    (Tornado's own summary writes the whole request line)."""
    return "%s %s (%s)" % (
        clip(getattr(request, "method", None) or "", METHOD_LIMIT),
        clip(scrub_uri(getattr(request, "uri", None) or ""), URI_LIMIT),
        clip(getattr(request, "remote_ip", None) or "", CLIENT_LIMIT),
    )


class BoundedMessageFilter(logging.Filter):
    """Caps every record's message at MESSAGE_LIMIT characters: a logger that quotes
    request text (Tornado's "Malformed HTTP message ... Invalid header value %r")
    cannot write a client's 64 KiB per request. Tracebacks (exc_info) are untouched."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if len(message) > MESSAGE_LIMIT:
            record.msg = "%s...(+%d)"
            record.args = (message[:MESSAGE_LIMIT], len(message) - MESSAGE_LIMIT)
        return True


class RequestIdFilter(logging.Filter):
    """Gives each record the request id of the request or job it was logged under."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            request_id = requestid.current.get()
            if request_id is not None:
                record.request_id = request_id
        return True


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        timestamp="time",
        rename_fields={"levelname": "level", "name": "logger"},
    )


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(json_formatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RequestIdFilter())
    handler.addFilter(BoundedMessageFilter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
