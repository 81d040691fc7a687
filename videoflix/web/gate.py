"""The gate in front of everything: requests we never serve are refused before any
handler, without reading their bodies.

- Only our own Host. A page on evil.example whose name an attacker re-points at this
  server (DNS rebinding) makes the victim's browser send `Host: evil.example[:port]`
  with requests it considers same-origin: without this check our own-origin rule
  (requestrules.py) would take evil.example for ourselves. So the server answers only
  requests whose Host names the public URL's host, a name in VIDEOFLIX_ALLOWED_HOSTS,
  or a loopback name (127.0.0.1, localhost, [::1]: a page can only make a browser send
  those from a loopback origin, which is the server's own; health checks use them).
- No body where none is taken. GET, HEAD, DELETE and OPTIONS take no body anywhere in
  the API (pages, segments, health included): one announced with a Content-Length
  over 0 or a Transfer-Encoding is refused (400), never read or buffered (CWE-400).

Both are JSON 400s answered by `RequestGate` in front of the segment lane and the
Application; the connection closes after the answer.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import tornado.httputil

from videoflix.platform import metrics, requestid
from videoflix.platform.config import Config
from videoflix.platform.log import METHOD_LIMIT, URI_LIMIT, access_log, clip

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
INVALID_HOST = "Invalid Host header."
NO_BODY = "This request takes no body."
# Methods no Videoflix route takes a body with.
BODILESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
_BAD_REQUEST = tornado.httputil.ResponseStartLine("HTTP/1.1", 400, "Bad Request")


@functools.lru_cache(maxsize=8)
def allowed_hosts(public_url: str, extra: tuple[str, ...]) -> frozenset[str]:
    """The host names a request may name (lower-case, without port)."""
    public = (urlsplit(public_url).hostname or "").lower()
    bracketed = f"[{public}]" if ":" in public else public  # urlsplit drops an IPv6 literal's brackets
    return frozenset({public, bracketed, *LOOPBACK_HOSTS, *extra})


def host_allowed(host_header: str | None, config: Config) -> bool:
    """Whether a Host header names us. None (no Host: HTTP/1.0) is Tornado's to judge."""
    if host_header is None:
        return True
    value = host_header.strip().lower()
    if not value or "," in value:  # several Host headers arrive joined with commas
        return False
    try:
        name, _port = tornado.httputil.split_host_and_port(value)
    except ValueError:
        return False
    return name.rstrip(".") in allowed_hosts(config.public_url, config.allowed_hosts)


def announces_body(headers: tornado.httputil.HTTPHeaders) -> bool:
    """Whether a request says a body follows (RFC 9112 §6.3): a Transfer-Encoding, or a
    Content-Length other than 0 (a malformed one too: Tornado would refuse it anyway)."""
    if "Transfer-Encoding" in headers:
        return True
    length = headers.get("Content-Length")
    return length is not None and length.strip() != "0"


class RequestGate(tornado.httputil.HTTPServerConnectionDelegate):
    """The HTTPServer's delegate: `inner` (the segment lane and the Application) gets
    only requests with an allowed Host and no body where none is taken; the others get
    a JSON 400 here."""

    def __init__(self, inner: tornado.httputil.HTTPServerConnectionDelegate, settings: dict[str, Any]) -> None:
        self.inner = inner
        self.settings = settings

    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        return _Guarded(self, server_conn, request_conn)

    def on_close(self, server_conn: object) -> None:
        self.inner.on_close(server_conn)


class _Guarded(tornado.httputil.HTTPMessageDelegate):
    def __init__(self, guard: RequestGate, server_conn: object, request_conn: tornado.httputil.HTTPConnection) -> None:
        self.guard = guard
        self.server_conn = server_conn
        self.request_conn = request_conn
        self.inner: tornado.httputil.HTTPMessageDelegate | None = None

    def headers_received(
        self,
        start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
        headers: tornado.httputil.HTTPHeaders,
    ) -> Any:
        assert isinstance(start_line, tornado.httputil.RequestStartLine)
        if not host_allowed(headers.get("Host"), self.guard.settings["config"]):
            self._refuse(start_line, headers, INVALID_HOST, f"host {clip(headers.get('Host', ''), 128)}")
        elif start_line.method in BODILESS_METHODS and announces_body(headers):
            self._refuse(start_line, headers, NO_BODY, "a body")
        else:
            self.inner = self.guard.inner.start_request(self.server_conn, self.request_conn)
            return self.inner.headers_received(start_line, headers)
        return None

    def _refuse(
        self,
        start_line: tornado.httputil.RequestStartLine,
        headers: tornado.httputil.HTTPHeaders,
        detail: str,
        what: str,
    ) -> None:
        body = json.dumps({"detail": detail}).encode()
        out = tornado.httputil.HTTPHeaders(
            {
                "Content-Type": "application/json; charset=UTF-8",
                "Content-Length": str(len(body)),
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
                "Connection": "close",
                requestid.HEADER: requestid.from_header(headers.get(requestid.HEADER)),
            }
        )
        # The body is never read: finishing first makes Tornado close the connection after the answer.
        self.request_conn.write_headers(_BAD_REQUEST, out, None if start_line.method == "HEAD" else body)
        self.request_conn.finish()
        context = getattr(self.request_conn, "context", None)  # (HTTP1Connection's _HTTPRequestContext)
        access_log.warning(
            "400 %s %s %s: %s refused",
            clip(start_line.method, METHOD_LIMIT),
            clip(start_line.path, URI_LIMIT),
            clip(getattr(context, "remote_ip", "") or "", 128),
            what,
        )
        services = self.guard.settings.get("services")
        if services is not None:
            metrics.of(services).observe_request(metrics.UNMATCHED_ROUTE, start_line.method, 400, 0.0, len(body))

    def data_received(self, chunk: bytes) -> Any:
        if self.inner is not None:
            return self.inner.data_received(chunk)
        return None

    def finish(self) -> None:
        if self.inner is not None:
            self.inner.finish()

    def on_connection_close(self) -> None:
        if self.inner is not None:
            self.inner.on_connection_close()
