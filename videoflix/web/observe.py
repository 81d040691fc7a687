"""What every request leaves behind: its request id, route label, body bytes, metrics.

- `labelled_routes` gives each route a matcher that also notes its pattern on the
  request (`request.route_label`, e.g. "/api/video/{}/{}/{}/?"), so metrics count
  by route pattern, not by path (bounded label values), at no extra matching cost.
- `ObservedMixin` (in BaseHandler and the HLS file handlers) sets X-Request-ID on
  every response, errors included (API.md §6), binds it for the logs of the
  handler's task (and a transcode job it enqueues), and counts body bytes.
- `request_finished` is the Application's log_function: access log, then metrics.
"""
from __future__ import annotations

import re
from typing import Any

import tornado.httputil
import tornado.routing
import tornado.web

from videoflix.platform import metrics, requestid
from videoflix.platform.log import log_request

_GROUP = re.compile(r"\((?:[^()\\]|\\.)*\)")


def route_label(pattern: str) -> str:
    """The route as a metric label: groups become {} and escapes are dropped."""
    label = _GROUP.sub("{}", pattern)
    return re.sub(r"\\(.)", r"\1", label).rstrip("$")


class RoutePattern(tornado.routing.PathMatches):
    """PathMatches that records the matched route's label on the request."""

    def __init__(self, pattern: str) -> None:
        super().__init__(pattern)
        self.label = route_label(pattern)

    def match(self, request: tornado.httputil.HTTPServerRequest) -> dict[str, Any] | None:
        found = super().match(request)
        if found is not None:
            request.route_label = self.label  # type: ignore[attr-defined]
        return found


def labelled_routes(routes: list) -> list:
    return [(RoutePattern(route[0]), *route[1:]) if isinstance(route[0], str) else route for route in routes]


class ObservedMixin:
    request_id: str | None = None
    body_bytes = 0

    def set_request_id_header(self: Any) -> None:
        """From set_default_headers: also after send_error's clear(), so on every answer."""
        request_id = self.request_id
        if request_id is None:
            request_id = self.request_id = requestid.from_header(self.request.headers.get(requestid.HEADER))
            # Copied into the handler's task, created after __init__ (where this runs).
            requestid.current.set(request_id)
        self.set_header(requestid.HEADER, request_id)

    def write(self: Any, chunk: str | bytes | dict) -> None:
        if isinstance(chunk, str):
            chunk = chunk.encode()
        if isinstance(chunk, bytes):
            self.body_bytes += len(chunk)
        super().write(chunk)  # type: ignore[misc]


def request_finished(handler: tornado.web.RequestHandler) -> None:
    log_request(handler)
    request = handler.request
    metrics.of(handler.settings["services"]).observe_request(
        getattr(request, "route_label", metrics.UNMATCHED_ROUTE), request.method or "",
        handler.get_status(), request.request_time(), getattr(handler, "body_bytes", 0))
