"""What every request leaves behind: its request id, route label, body bytes, metrics.

- `labelled_routes` gives each route a matcher that also notes its pattern on the
  request (`request.route_label`, e.g. "/api/video/{}/{}/{}/?"), so metrics count
  by route pattern, not by path (bounded label values), at no extra matching cost.
- `ObservedMixin` (in BaseHandler and the HLS file handlers) sets X-Request-ID on
  every response, errors included (API.md §6), binds it for the logs of the
  handler's task (and a transcode job it enqueues), counts body bytes, and says
  what its answer leaves behind (`access_record`).
- `request_finished` is the Application's log_function: the handler's AccessRecord
  to `record_answered` (access log, then metrics), where the segment lane hands its
  own answers' records too.
"""

from __future__ import annotations

import re
from typing import Any

import tornado.httputil
import tornado.routing
import tornado.web

from videoflix.platform import metrics, requestid
from videoflix.platform.log import AccessRecord, log_request

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


def labelled_routes(routes: list[Any]) -> list[Any]:
    return [(RoutePattern(route[0]), *route[1:]) if isinstance(route[0], str) else route for route in routes]


def route_of(request: tornado.httputil.HTTPServerRequest) -> str | None:
    """The pattern label RoutePattern noted on the request, None when no route matched."""
    return getattr(request, "route_label", None)


class ObservedMixin:
    request_id: str | None = None
    body_bytes = 0

    def access_record(self: Any) -> AccessRecord:
        """What this answer leaves in the access log and the metrics."""
        return AccessRecord(self.request, self.get_status(), route_of(self.request), self.request_id, self.body_bytes)

    def set_request_id_header(self: Any) -> None:
        """From set_default_headers: also after send_error's clear(), so on every answer."""
        request_id = self.request_id
        if request_id is None:
            request_id = self.request_id = requestid.from_header(self.request.headers.get(requestid.HEADER))
            # Copied into the handler's task, created after __init__ (where this runs).
            requestid.current.set(request_id)
        self.set_header(requestid.HEADER, request_id)

    def write(self: Any, chunk: str | bytes | dict[str, Any]) -> None:
        if isinstance(chunk, str):
            chunk = chunk.encode()
        if isinstance(chunk, bytes):
            self.body_bytes += len(chunk)
        super().write(chunk)  # type: ignore[misc]


def request_finished(handler: tornado.web.RequestHandler) -> None:
    if isinstance(handler, ObservedMixin):
        record = handler.access_record()
    else:  # Tornado's own and the page handlers: no request id, no body count
        record = AccessRecord(handler.request, handler.get_status(), route_of(handler.request))
    record_answered(handler.settings, record)


def record_answered(settings: dict[str, Any], record: AccessRecord) -> None:
    """The access log line, then the metrics, of one answered request."""
    config = settings.get("config")
    log_request(record, config.trusted_proxies if config is not None else ())
    request = record.request
    metrics.of(settings["services"]).observe_request(
        record.route or metrics.UNMATCHED_ROUTE,
        request.method or "",
        record.status,
        record.duration(),
        record.body_bytes,
    )
