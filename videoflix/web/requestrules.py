"""API.md §5, the request rules of every unsafe method, as pure functions.

- Origin: a cross-site page must not be able to act with a victim's cookies (login
  CSRF, upload, logout): a present `Origin` (else the origin of `Referer`) must be the
  server's own or in the CORS allow-list (OWASP CSRF cheat sheet, "Verifying origin
  with standard headers"; CWE-352).
- Content type: a JSON endpoint takes only `application/json` (or `+json`) bodies; a
  form or text/plain body, which a cross-site <form> can send without a preflight, is
  refused with 415.
- JSON: at most 64 KiB, an object, no NaN/Infinity, and inside each field no NUL
  characters (PostgreSQL refuses them in text), no lone surrogates (not encodable as
  UTF-8) and no absurd nesting: field errors (400), never a 500.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# JSON bodies of this API are a few hundred bytes; 64 KiB leaves room for long
# descriptions and refuses memory games (API.md §5).
MAX_JSON_BODY_BYTES = 64 * 1024
# Nesting allowed inside one field's value; no field of the API nests at all.
MAX_FIELD_DEPTH = 8

CROSS_SITE = "Cross-site request refused."
EXPECTED_JSON = "Expected application/json."
EXPECTED_MULTIPART = "Expected multipart/form-data."
INVALID_JSON = "Invalid JSON body."
TOO_LARGE = f"Request body too large: JSON bodies are limited to {MAX_JSON_BODY_BYTES} bytes."
NUL_CHARACTER = "Null characters are not allowed."
BAD_UNICODE = "Invalid Unicode text."
TOO_DEEP = "Nested too deeply."

_DEFAULT_PORTS = {"http": 80, "https": 443}


class RuleViolation(Exception):
    """A request rule was broken: answer `status` with `body`."""

    def __init__(self, status: int, detail: str | None = None, *, body: dict[str, Any] | None = None) -> None:
        super().__init__(status, detail)
        self.status = status
        self.body = body if body is not None else {"detail": detail}


def origin_of(url: str) -> str | None:
    """'HTTP://Example.com:80/x?y' -> 'http://example.com'; 'null' stays 'null'; None if unusable."""
    url = url.strip()
    if url == "null":  # sandboxed frames, opaque origins: never trusted
        return "null"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def trusted_origins(public_url: str, cors_origins: Iterable[str]) -> frozenset[str]:
    """The server's own public origin plus the CORS allow-list, normalised."""
    origins = {origin_of(public_url), *(origin_of(origin) for origin in cors_origins)}
    return frozenset(origin for origin in origins if origin and origin != "null")


def check_origin(headers: Mapping[str, str], trusted: frozenset[str], own_origin: str | None = None) -> None:
    """Refuse a request whose Origin (or Referer's origin) is not trusted.

    `own_origin` is the origin the request was addressed to (scheme and Host): a page
    that we served at http://localhost:8000 posting back to it is same-origin even when
    the configured public URL says 127.0.0.1. A browser never lets a page set Host, and
    cookies are bound to the host, so this admits no cross-site request with a
    victim's credentials.
    Requests with neither header (curl, players, server to server) pass: they are
    judged by their credentials alone (API.md §5).
    """
    origin = headers.get("Origin")
    if origin is None:
        referer = headers.get("Referer")
        if referer is None:
            return
        origin = referer
    normalised = origin_of(origin)
    if normalised not in trusted and (normalised is None or normalised != own_origin):
        raise RuleViolation(403, CROSS_SITE)


def is_json_type(content_type: str | None) -> bool:
    """application/json, or any application/*+json, parameters ignored (RFC 8259 §11)."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


def check_multipart_request(headers: Mapping[str, str]) -> None:
    """Multipart endpoints take only multipart/form-data (API.md §5): 415 otherwise."""
    media_type = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if media_type != "multipart/form-data":
        raise RuleViolation(415, EXPECTED_MULTIPART)


def has_body(headers: Mapping[str, str]) -> bool:
    length = headers.get("Content-Length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "chunked" in headers.get("Transfer-Encoding", "").lower()


def check_json_request(headers: Mapping[str, str]) -> None:
    """Before the body is read: 415 for a non-JSON body, 413 for a declared oversize one."""
    if has_body(headers) and not is_json_type(headers.get("Content-Type")):
        raise RuleViolation(415, EXPECTED_JSON)
    length = headers.get("Content-Length", "").strip()
    if length and (not length.isdigit() or int(length) > MAX_JSON_BODY_BYTES):
        raise RuleViolation(413, TOO_LARGE)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity, -Infinity (RFC 8259 §6)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or RuleViolation(400, INVALID_JSON)."""
    if len(body) > MAX_JSON_BODY_BYTES:
        raise RuleViolation(413, TOO_LARGE)
    try:
        value = json.loads(body or b"", parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: thousands of nested brackets exhaust the decoder's stack.
        raise RuleViolation(400, INVALID_JSON) from None
    if not isinstance(value, dict):
        raise RuleViolation(400, INVALID_JSON)
    return value


def _problem(value: Any, depth: int = 0) -> str | None:
    """The first reason `value` is unfit for storage, else None."""
    if isinstance(value, str):
        if "\x00" in value:
            return NUL_CHARACTER
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate such as "\ud800"
            return BAD_UNICODE
        return None
    if isinstance(value, (list, dict)):
        if depth >= MAX_FIELD_DEPTH:
            return TOO_DEEP
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            problem = _problem(key, depth + 1) if isinstance(key, str) else None
            problem = problem or _problem(item, depth + 1)
            if problem:
                return problem
    return None


def clean_fields(body: dict[str, Any], fields: Iterable[str] | None = None) -> dict[str, Any]:
    """`body` limited to `fields` (unknown keys are ignored, API.md conventions), or
    RuleViolation(400) with field errors for NULs, lone surrogates and deep nesting."""
    if fields is not None:
        wanted = set(fields)
        body = {key: value for key, value in body.items() if key in wanted}
    errors = {}
    for key, value in body.items():
        problem = _problem(key) or _problem(value)
        if problem:
            errors[key if not _problem(key) else "non_field_errors"] = [problem]
    if errors:
        raise RuleViolation(400, body=errors)
    return body


CSRF_FAILED = "CSRF token missing or incorrect."


def check_csrf(headers: Mapping[str, str], cookies: Mapping[str, str]) -> None:
    """The CSRF header of API.md §5, where a route asks for it (the admin console's
    changes): a request whose credentials are the access_token cookie must echo the
    csrftoken cookie in `X-CSRFToken` (OWASP's double-submit cookie; a cross-site
    page can make the browser send the cookies, but can neither read them nor set a
    custom header without a preflight the CORS allow-list refuses) → else 403.
    A request with an `Authorization` header is not riding on cookies: not checked."""
    if headers.get("Authorization") or not cookies.get("access_token"):
        return
    expected = cookies.get("csrftoken", "")
    given = headers.get("X-CSRFToken", "")
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        raise RuleViolation(403, CSRF_FAILED)
