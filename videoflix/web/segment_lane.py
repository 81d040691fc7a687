"""The segment lane: a plain segment GET answered without a RequestHandler.

Segment GETs are nearly all of a streaming server's requests, and for them most
of the time Tornado spends goes to RequestHandler's machinery (creating the
handler, its header bookkeeping, the decorated coroutine, finish), not to the
decisions. `SegmentLane` sits between the HTTPServer and the Application
(app.http_delegate) and answers one shape of request itself:

  a GET of a segment route (kind segment or vsegment, /api/video/..., or vsegment
  under a media token, /api/media/<token>/... or /api/media/<id>/... with the token
  in a query parameter or header) over a plain connection where
  sendfile works (zerocopy.usable), with no If-Range, If-None-Match,
  If-Modified-Since or body, whose every decision is already in a warm cache: the
  access token or media token (the verified-token caches), the session's
  liveness (sessions.cached_liveness), the video row and the file the caller may
  have (playback.cached_watchable_file: a finished version only) and the open file
  (openfiles.py; with object storage, the open hot copy of the segment: hotcache.py). Behind nginx (VIDEOFLIX_ACCEL_REDIRECT) the answer names the
  file for nginx instead, which answers ranges and revalidation itself: there
  only a body sends a request on.

The answer is delivery/answer.py's, the very function the handlers carry out
(answer_file, answer_accel), so the two cannot disagree; the lane takes it only
when it is a file range (200 or 206) or an X-Accel-Redirect, and leaves anything
else (a 416), every refusal and every cache miss to the Application exactly as if
the lane were not there. So errors, 304s, 416s, the version being built and the
first GET of a file stay the handlers' alone, and the next GET finds the caches
warm. The route is the Application's own: the first rule of its router that
matches the path (remembered per path: the routes never change), and only when
that rule is one of LANE_HANDLERS for a kind
answer.KINDS keeps open.
Besides the answer's headers the lane writes those every handler's answer
starts with (Server, Date, Vary: Origin and CORS, X-Request-ID).

The body goes by zerocopy.Sender after Tornado's public HTTP1Connection.write_headers;
the access log line and the metrics come from the lane's AccessRecord, through
observe.record_answered as every handler's.
"""

from __future__ import annotations

import asyncio
import http
import logging
import time
from typing import Any, cast

import cachetools
import tornado
import tornado.httputil
import tornado.iostream
import tornado.web

from videoflix.accounts import sessions, tokens
from videoflix.delivery import accel, answer, mediafiles, openfiles, playback, zerocopy
from videoflix.platform import media, requestid
from videoflix.platform.config import Config
from videoflix.platform.log import AccessRecord, request_summary
from videoflix.platform.services import Services
from videoflix.web import hls_files, media_handlers
from videoflix.web.base import access_token_of, cors_headers, http1
from videoflix.web.observe import record_answered, route_of

log = logging.getLogger(__name__)

# A request carrying any of these is the handlers' (a body; If-Range and revalidation,
# except behind nginx, which answers those itself from the file: accel.py).
BODY_HEADERS = ("Content-Length", "Transfer-Encoding")
HANDLER_HEADERS = ("If-Range", "If-None-Match", "If-Modified-Since", *BODY_HEADERS)
# Paths whose first matching route is remembered (the routes never change).
ROUTE_MEMORY = 4096
# Longer paths are matched afresh each time: the memory holds at most
# ROUTE_MEMORY x this many characters of request text (a real segment path is < 100).
ROUTE_MEMORY_PATH_LIMIT = 256
# The cookie's segment routes and the media token's (a version's folder: API.md §7).
LANE_PREFIXES = ("/api/video/", playback.MEDIA_TOKEN_PREFIX)
# Whose segments the lane may answer, and how their caller is known.
LANE_HANDLERS = (
    media_handlers.VideoFileHandler,
    media_handlers.MediaTokenFileHandler,
    media_handlers.CarriedTokenFileHandler,
)
SERVER_HEADER = f"TornadoServer/{tornado.version}"  # as RequestHandler.clear sets it
START_LINES = {
    status: tornado.httputil.ResponseStartLine("", status, http.HTTPStatus(status).phrase) for status in (200, 206)
}

# Answered here since start (tests: the lane was taken).
answered = 0


class SegmentLane(tornado.httputil.HTTPServerConnectionDelegate):
    """The HTTPServer's delegate in front of `app` (see the module docstring)."""

    def __init__(self, app: tornado.web.Application) -> None:
        self.app = app
        self.settings = app.settings
        self._routes: cachetools.LRUCache[str, tuple[Any, dict[str, Any]] | None] = cachetools.LRUCache(ROUTE_MEMORY)

    @property
    def config(self) -> Config:  # read per request, as the handlers do (tests swap it)
        return cast(Config, self.settings["config"])

    @property
    def services(self) -> Services:
        return cast(Services, self.settings["services"])

    def start_request(self, server_conn: Any, request_conn: Any) -> tornado.httputil.HTTPMessageDelegate:
        return _Request(self, server_conn, request_conn)

    def on_close(self, server_conn: Any) -> None:
        self.app.on_close(server_conn)

    @property
    def open_files(self) -> openfiles.OpenFileCache:
        return cast(openfiles.OpenFileCache, self.settings["open_files"])

    def plan(self, request: tornado.httputil.HTTPServerRequest) -> _LaneAnswer | None:
        """The lane's answer to `request`, or None: the Application's."""
        headers = request.headers
        config = self.config
        behind_nginx = bool(config.accel_redirect) and self.services.storage.is_local  # (disk files only)
        if (
            request.method != "GET"
            or not request.path.startswith(LANE_PREFIXES)
            or any(name in headers for name in (BODY_HEADERS if behind_nginx else HANDLER_HEADERS))
            or not (behind_nginx or zerocopy.usable(request))
        ):
            return None
        route = self.route(request)
        if route is None:
            return None
        rule, found = route
        kind = rule.target_kwargs["kind"]
        args = tuple(hls_files.path_part(arg) for arg in found["path_args"])
        now = int(time.time())
        claims: tokens.SessionClaims | tokens.MediaClaims
        try:
            if rule.target in (media_handlers.MediaTokenFileHandler, media_handlers.CarriedTokenFileHandler):
                # /api/media/<token>/<id>/v<N>/..., or /api/media/<id>/v<N>/... with the token
                # in the query parameter or header VIDEOFLIX_MEDIA_TOKEN_FORM names
                if rule.target is media_handlers.MediaTokenFileHandler:
                    token, args = args[0], args[1:]
                else:
                    token = media_handlers.carried_token(config.media_token_form, request)
                target = playback.parse_hls_target(kind, args)
                if target.version is None:
                    return None
                claims = tokens.read_media_token_cached(
                    config.secret_key, token, video_id=target.video_id, version=target.version, now=now
                )
            else:
                target = playback.parse_hls_target(kind, args)
                claims = tokens.read_access_token_cached(config.secret_key, access_token_of(request), now)
        except (media.VideoNotFound, tokens.TokenError):  # refusals are the handler's to answer
            return None
        if sessions.cached_liveness(self.services, claims.user_id, claims.token_version, claims.session_id) is not True:
            return None
        served = playback.cached_watchable_file(self.services, target, claims)
        if served is None or served.building or served.rendered_master:
            return None
        kind_policy = answer.KINDS[kind]
        policy = answer.media_policy(kind, served.parts[-1], False)
        facts = answer.RequestFacts.of("GET", headers)
        if behind_nginx and kind_policy.accel:
            root = media.version_dir(config.media_dir, target.video_id, served.version)
            location = accel.location(config.accel_redirect, config.media_dir, root, served.parts)
            return _LaneAnswer(self, request, kind_policy, answer.answer_accel(facts, policy, location))
        entry = self.open_files.acquire((target.video_id, served.version, served.parts))
        if entry is None:
            return None
        planned = mediafiles.answer_open_file(facts, policy, entry.file)  # (a hot copy's: the store's validators)
        if not isinstance(planned.body, answer.FileRange):  # a 416: the handler's
            self.open_files.release(entry)
            return None
        return _LaneAnswer(self, request, kind_policy, planned, entry)

    def route(self, request: tornado.httputil.HTTPServerRequest) -> tuple[Any, dict[str, Any]] | None:
        """(the rule, its match) when the Application's first rule matching the path is
        a segment route of VideoFileHandler, else None; sets request.route_label."""
        path = request.path
        if path in self._routes:
            remembered = self._routes[path]
            if remembered is not None:
                request.route_label = remembered[0].matcher.label  # type: ignore[attr-defined]
            return remembered
        route = None
        for rule in self.app.wildcard_router.rules:
            found = rule.matcher.match(request)  # (a RoutePattern: sets route_label)
            if found is not None:
                kind = (rule.target_kwargs or {}).get("kind", "")
                if (
                    rule.target in LANE_HANDLERS
                    and answer.KINDS[kind].unchanging
                    and not found["path_kwargs"]
                    and hasattr(rule.matcher, "label")
                ):
                    route = rule, found
                break
        if len(path) <= ROUTE_MEMORY_PATH_LIMIT:  # request text: bounded in count and length
            self._routes[path] = route
        return route


class _LaneAnswer:
    """One answer.py answer carried out by the lane."""

    sender: zerocopy.Sender | None = None

    def __init__(
        self,
        lane: SegmentLane,
        request: tornado.httputil.HTTPServerRequest,
        policy: answer.KindPolicy,
        planned: answer.Answer,
        entry: openfiles.Entry | None = None,
    ) -> None:
        self.lane = lane
        self.settings = lane.settings
        self.request = request
        self.policy = policy
        self.planned = planned
        self.entry = entry  # the open file of a FileRange body, lent by the open-file cache
        self.request_id = requestid.from_header(request.headers.get(requestid.HEADER))
        self.started = time.monotonic()  # (the request's own clock is Tornado's private state)

    def headers(self) -> tornado.httputil.HTTPHeaders:
        """Those every handler's answer starts with (RequestHandler.clear, CorsMixin,
        ObservedMixin), then the answer's own."""
        out = tornado.httputil.HTTPHeaders()
        out["Server"] = SERVER_HEADER
        out["Date"] = answer.http_date(int(time.time()))
        out.add("Vary", "Origin")
        for name, value in cors_headers(self.request.headers.get("Origin"), self.lane.config.cors_origins):
            out[name] = value
        out[requestid.HEADER] = self.request_id
        for name, value in self.planned.headers:
            if name == "Vary":
                out.add(name, value)
            else:
                out[name] = value
        return out

    async def respond(self) -> None:
        global answered
        connection = http1(self.request)
        connection.set_close_callback(self.abort)
        try:
            written = connection.write_headers(START_LINES[self.planned.status], self.headers())
            body = self.planned.body
            if isinstance(body, answer.FileRange):
                assert self.entry is not None
                await written
                self.sender = zerocopy.Sender()
                if not await self.sender.send_after_headers(connection, self.entry.file.fd, body.start, body.end):
                    raise RuntimeError("Tornado's body accounting changed under the lane")
            connection.finish()
            answered += 1
        except (zerocopy.ClientGone, tornado.iostream.StreamClosedError):
            pass  # the client left: as the handlers, quietly
        except Exception:
            log.exception("segment lane: %s", request_summary(self.request))
            connection.stream.close()
        finally:
            self.release()
            record_answered(
                self.settings,
                AccessRecord(
                    self.request,
                    self.planned.status,
                    route_of(self.request),
                    self.request_id,
                    self.sender.sent if self.sender is not None else 0,
                    bulk=self.policy.bulk,
                    seconds=time.monotonic() - self.started,
                ),
            )

    def abort(self) -> None:
        if self.sender is not None:
            self.sender.abort()

    def release(self) -> None:
        entry, self.entry = self.entry, None
        if entry is not None:
            self.lane.open_files.release(entry)


class _Request(tornado.httputil.HTTPMessageDelegate):
    """One request on a connection: the lane's answer, or the Application's delegate."""

    inner: tornado.httputil.HTTPMessageDelegate | None = None
    answer: _LaneAnswer | None = None
    task: asyncio.Future[Any] | None = None

    def __init__(self, lane: SegmentLane, server_conn: Any, request_conn: Any) -> None:
        self.lane = lane
        self.server_conn = server_conn
        self.request_conn = request_conn

    def headers_received(self, start_line: Any, headers: tornado.httputil.HTTPHeaders) -> Any:
        if (
            isinstance(start_line, tornado.httputil.RequestStartLine)
            and start_line.method == "GET"
            and start_line.path.startswith(LANE_PREFIXES)
        ):
            request = tornado.httputil.HTTPServerRequest(
                connection=self.request_conn, server_connection=self.server_conn, start_line=start_line, headers=headers
            )
            self.answer = self.lane.plan(request)
        if self.answer is None:
            self.inner = self.lane.app.start_request(self.server_conn, self.request_conn)
            return self.inner.headers_received(start_line, headers)
        return None

    def data_received(self, chunk: bytes) -> Any:
        if self.inner is not None:
            return self.inner.data_received(chunk)
        return None  # (the lane takes no request with a body)

    def finish(self) -> None:
        if self.inner is not None:
            self.inner.finish()
        elif self.answer is not None:
            self.task = asyncio.ensure_future(self.answer.respond())

    def on_connection_close(self) -> None:
        if self.inner is not None:
            self.inner.on_connection_close()
        elif self.answer is not None and self.task is None:
            self.answer.release()  # closed before the answer started
