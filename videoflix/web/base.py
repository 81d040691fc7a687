"""BaseHandler, APIError, access decorators, JSON errors and CORS for every route."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import tornado.http1connection
import tornado.httputil
import tornado.web

from videoflix.accounts import sessions, tokens
from videoflix.delivery.answer import NOSNIFF
from videoflix.platform import outage
from videoflix.platform.config import Config
from videoflix.platform.log import request_summary
from videoflix.platform.services import Services
from videoflix.web import requestrules
from videoflix.web.observe import ObservedMixin

log = logging.getLogger(__name__)

HTTP_METHODS = ("get", "head", "post", "put", "patch", "delete")
CORS_ALLOW_HEADERS = "content-type, x-csrftoken, authorization, range, x-request-id"
CORS_ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_EXPOSE_HEADERS = "Content-Range, Content-Length, Accept-Ranges, Retry-After, X-Request-ID"
# Browsers may cache a preflight answer this long (seconds).
CORS_MAX_AGE = "600"
NOT_AUTHENTICATED = "Authentication credentials were not provided."
INVALID_TOKEN = "Invalid or expired token."
STATUS_DETAILS = {
    400: "Bad request.",
    401: NOT_AUTHENTICATED,
    403: "You do not have permission to perform this action.",
    404: "Not found.",
    405: "Method not allowed.",
    411: "Length required.",
    413: "Request body too large.",
    415: requestrules.EXPECTED_JSON,
    416: "Requested range not satisfiable.",
    429: "Too many requests.",
    503: "Service unavailable.",
}


class APIError(tornado.web.HTTPError):
    """Answer with `status` and `{"detail": detail}` (or a field-error body).

    An HTTPError, so Tornado's public error path (send_error -> write_error)
    answers it, logging nothing: these are expected answers, not faults."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body if body is not None else {"detail": detail or STATUS_DETAILS.get(status, "Error.")}
        self.headers = headers or {}


def _mark(access: str) -> Callable[..., Any]:
    def decorator(method: Callable[..., Any]) -> Callable[..., Any]:
        if access == "public":
            method.access = access  # type: ignore[attr-defined]
            return method

        @functools.wraps(method)
        async def wrapper(self: BaseHandler, *args: Any, **kwargs: Any) -> Any:
            await self.authenticate(admin=access == "admin")
            result = method(self, *args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result

        wrapper.access = access  # type: ignore[attr-defined]
        return wrapper

    return decorator


public = _mark("public")
authenticated = _mark("authenticated")
admin = _mark("admin")


def check_access_marks(handler_class: type) -> list[str]:
    """Names of HTTP methods the class defines without @public/@authenticated/@admin."""
    missing = []
    for name in HTTP_METHODS:
        method = getattr(handler_class, name, None)
        default = getattr(tornado.web.RequestHandler, name, None)
        if method is None or method is default:
            continue
        if getattr(method, "access", None) is None:
            missing.append(f"{handler_class.__name__}.{name}")
    return missing


def cors_headers(origin: str | None, cors_origins: Any) -> tuple[tuple[str, str], ...]:
    """What an answer to `origin` carries besides `Vary: Origin` (always added)."""
    if origin and origin.rstrip("/") in cors_origins:
        return (
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Credentials", "true"),
            ("Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS),
        )
    return ()


def http1(request: tornado.httputil.HTTPServerRequest) -> tornado.http1connection.HTTP1Connection:
    """The request's connection: always HTTP/1 here (its body limits and callbacks live on it)."""
    connection = request.connection
    assert isinstance(connection, tornado.http1connection.HTTP1Connection)
    return connection


def access_token_of(request: Any) -> str:
    """The access JWT a request carries: `Authorization: Bearer` (any other scheme:
    none), else the access_token cookie; "" when there is none."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""
    morsel = request.cookies.get("access_token")  # (an unparsable Cookie header: none)
    return morsel.value if morsel is not None else ""


class CorsMixin:
    """CORS for API.md's conventions; mixed into JSON and file handlers alike."""

    def set_cors_headers(self: Any) -> None:
        self.add_header("Vary", "Origin")
        for name, value in cors_headers(self.request.headers.get("Origin"), self.settings["config"].cors_origins):
            self.set_header(name, value)

    def cors_allow_headers(self) -> str:
        """The request headers a preflight allows (media_handlers: the media token's header too)."""
        return CORS_ALLOW_HEADERS

    @public
    def options(self: Any, *args: Any, **kwargs: Any) -> None:
        # Preflight: answered without authentication (API.md conventions).
        self.set_header("Access-Control-Allow-Headers", self.cors_allow_headers())
        self.set_header("Access-Control-Allow-Methods", CORS_ALLOW_METHODS)
        self.set_header("Access-Control-Max-Age", CORS_MAX_AGE)
        self.set_status(204)
        self.finish()


class AuthMixin:
    """Who is calling: the access JWT from the cookie or an Authorization header."""

    _auth_problem: str | None = None

    def get_current_user(self: Any) -> tokens.SessionClaims | None:
        token = access_token_of(self.request)
        if not token:
            self._auth_problem = NOT_AUTHENTICATED
            return None
        try:
            claims: tokens.SessionClaims = self.read_access_token(token, int(time.time()))
            return claims
        except tokens.TokenError:
            self._auth_problem = INVALID_TOKEN
            return None

    def read_access_token(self: Any, token: str, now: int) -> tokens.SessionClaims:
        """The claims of a valid access JWT, else TokenError (a hook: media_handlers.py caches it)."""
        return tokens.read_session_token(self.settings["config"].secret_key, token, kind="access", now=now)

    async def authenticate(self: Any, admin: bool = False) -> tokens.SessionClaims:
        """require_user, and the session is still live: not logged out, no password
        change since (sessions.py; cached, so cheap on every HLS segment)."""
        user = self.require_user()
        try:
            live = await sessions.is_live(self.settings["services"], user.user_id, user.token_version, user.session_id)
        except sessions.Unavailable:
            raise APIError(503) from None
        if not live:
            raise APIError(401, INVALID_TOKEN)
        if admin and not user.is_admin:
            raise APIError(403)
        return cast(tokens.SessionClaims, user)

    def require_user(self: Any, admin: bool = False) -> tokens.SessionClaims:
        user = self.current_user
        if user is None:
            raise APIError(401, self._auth_problem or NOT_AUTHENTICATED)
        if admin and not user.is_admin:
            raise APIError(403)
        return cast(tokens.SessionClaims, user)


class JSONErrorsMixin:
    """JSON bodies out and JSON errors (API.md conventions) for any RequestHandler,
    BaseHandler and the HLS file handlers (a StaticFileHandler subclass) alike."""

    def write_json(self: Any, data: Any, status: int = 200) -> None:
        self.set_status(status)
        # Also set by BaseHandler.set_default_headers; file handlers default to other types.
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(data, separators=(",", ":"), ensure_ascii=False))

    def log_exception(self: Any, typ: Any, value: Any, tb: Any) -> None:
        # Tornado's own writes the whole request line and every header (cookies
        # included): ours writes a bounded, escaped summary and no headers.
        summary = request_summary(self.request)
        if outage.is_outage(value):  # expected during an outage: one line, no traceback
            log.warning("%s answered 503: %s", summary, outage.describe(value))
        elif isinstance(value, tornado.web.HTTPError):
            message = value.get_message()
            if message:
                log.warning("%d %s: %s", value.status_code, summary, message)
        else:
            log.error("Uncaught exception %s", summary, exc_info=(typ, value, tb))

    def write_error(self: Any, status_code: int, **kwargs: Any) -> None:
        # Called by Tornado's send_error, with the headers already cleared.
        self.set_header("Cache-Control", "no-store")  # errors are never cached
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, APIError):
            for name, value in error.headers.items():
                self.set_header(name, value)
            self.write_json(error.body, error.status)
            return
        if outage.is_outage(error):
            # PostgreSQL or Redis is down: a retryable 503, never a 500.
            self.set_status(503)
            self.set_header("Retry-After", str(outage.RETRY_AFTER_SECONDS))
            self.write_json({"detail": outage.detail(error)}, 503)
            return
        # Anything else: a tornado HTTPError or a crash (its traceback is in the log).
        detail = STATUS_DETAILS.get(status_code, "Internal server error.")
        if status_code >= 500 and status_code != 503:
            detail = "Internal server error."
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps({"detail": detail}))


class ServicesMixin:
    """Typed access to what make_app put into Application.settings."""

    @property
    def config(self: Any) -> Config:
        return cast(Config, self.settings["config"])

    @property
    def services(self: Any) -> Services:
        return cast(Services, self.settings["services"])


# A JSON body (64 KiB at most) arrives in well under this; a client that stalls
# mid-body is cut off instead of holding a connection (CWE-400, slow POST).
JSON_BODY_TIMEOUT_SECONDS = 10.0


class IdleBodyMixin:
    """A streamed body (an upload) that sends nothing for upload_idle_seconds is cut off:
    a stalled or slow-loris body would hold a connection, an upload slot and maybe a
    .part file (CWE-400). Call `watch_idle()` once the body is accepted, `body_arrived()`
    on each chunk and `stop_watching_idle()` when done; `on_idle()` cleans up."""

    idle_timer: asyncio.TimerHandle | None = None
    last_data = 0.0

    def watch_idle(self: Any) -> None:
        loop = asyncio.get_running_loop()
        if self.idle_timer is None and not self.last_data:
            self.last_data = loop.time()
        deadline = self.last_data + self.config.upload_idle_seconds
        if loop.time() < deadline:
            self.idle_timer = loop.call_at(deadline, self.watch_idle)
            return
        self.idle_timer = None
        log.info(
            "upload from %s idle for %ss: connection closed", self.request.remote_ip, self.config.upload_idle_seconds
        )
        self.on_idle()
        self.request.connection.close()

    def body_arrived(self) -> None:
        self.last_data = asyncio.get_running_loop().time()

    def stop_watching_idle(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def on_idle(self) -> None:
        """What to release when the body is cut off (the connection closes next)."""


@functools.lru_cache(maxsize=8)
def _trusted_origins(public_url: str, cors_origins: tuple[str, ...]) -> frozenset[str]:
    return requestrules.trusted_origins(public_url, cors_origins)


@tornado.web.stream_request_body
class BaseHandler(ObservedMixin, ServicesMixin, JSONErrorsMixin, CorsMixin, AuthMixin, tornado.web.RequestHandler):
    """JSON API handler: typed services, JSON bodies in and out, JSON errors, and the
    request rules of API.md §5 for every unsafe method.

    The body is streamed in (and capped) here rather than by Tornado, so the rules
    answer in JSON before a byte of it is read: the origin (403), the content type
    (415) and a declared size over the limit (413). Handlers whose body is not JSON
    (the multipart upload) set `takes_json = False` and stream it themselves.
    """

    takes_json = True
    _body: bytearray | None = None
    _body_too_large = False

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header(*NOSNIFF)
        self.set_cors_headers()
        self.set_request_id_header()

    def prepare(self) -> Awaitable[None] | None:  # (a subclass may make it a coroutine)
        if self.request.method not in requestrules.UNSAFE_METHODS:
            return None
        config = self.config
        try:
            requestrules.check_origin(
                self.request.headers,
                _trusted_origins(config.public_url, tuple(config.cors_origins)),
                requestrules.origin_of(f"{self.request.protocol}://{self.request.host}"),
            )
            if self.takes_json:
                requestrules.check_json_request(self.request.headers)
        except requestrules.RuleViolation as exc:
            raise APIError(exc.status, body=exc.body) from None
        if self.takes_json:
            http1(self.request).set_body_timeout(JSON_BODY_TIMEOUT_SECONDS)
        return None

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:  # (a subclass may make it a coroutine)
        # A chunked body has no declared length: count what arrives.
        if self._body_too_large:
            return None
        if self._body is None:
            self._body = bytearray()
        if len(self._body) + len(chunk) > requestrules.MAX_JSON_BODY_BYTES:
            self._body_too_large = True
            self._body = None
            return None
        self._body += chunk
        return None

    def json_body(self, fields: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The JSON object sent, limited to `fields` when given (unknown keys are
        ignored), each checked for NULs, lone surrogates and nesting (API.md §5)."""
        try:
            if self._body_too_large:
                raise requestrules.RuleViolation(413, requestrules.TOO_LARGE)
            body = requestrules.parse_json_object(bytes(self._body or b""))
            return requestrules.clean_fields(body, fields)
        except requestrules.RuleViolation as exc:
            raise APIError(exc.status, body=exc.body) from None


class NotFoundHandler(BaseHandler):
    """Default handler: every unknown path gets a JSON 404."""

    def prepare(self) -> None:
        if self.request.method == "OPTIONS":
            return
        raise APIError(404)
