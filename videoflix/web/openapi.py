"""The OpenAPI 3.1 document (API.md §4), assembled from the route table.

`openapi_document(routes, config)` is pure. It describes nothing itself: each route
whose handler methods carry a declaration (web/operation.py) becomes one path, each
method one operation, and what the code says already is derived here:
- the path from the route's pattern, a group becoming `{name}` of the declared
  parameter and its pattern that parameter's schema (a trailing `/?` is noted);
- the security from the access mark (@public: none, @authenticated and @admin: the
  access token as cookie or Bearer), unless the declaration names other credentials;
- the shared error answers: 401 for @authenticated and @admin, 403 for @admin; on an
  unsafe method 403 cross-site (API.md §5), and where it takes a JSON body
  (`takes_json`; web/gate.py refuses a body on GET, HEAD and DELETE) 413 and 415,
  and 400 when it reads a declared one; every error's body is the Error schema;
- HEAD as its GET without bodies (RFC 9110 §9.3.2), unless declared itself.
Routes whose handlers declare nothing (the web app's pages and files) are not API.
tests/test_openapi.py checks both ways that every route and method is here, and a
bounded schemathesis run holds the live server to the document.
"""

from __future__ import annotations

import http
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import tornado.web

from videoflix.platform import outage
from videoflix.platform.config import Config
from videoflix.web import gate, requestrules, schemas
from videoflix.web.base import HTTP_METHODS, INVALID_TOKEN, NOT_AUTHENTICATED, STATUS_DETAILS, BaseHandler
from videoflix.web.operation import (
    JSON,
    MULTIPART,
    Operation,
    Param,
    Response,
    ResponseValue,
    Schema,
    Shape,
    declaration_of,
    text,
)

# (pattern, handler class[, route kwargs]), as app.collect_routes gives them.
Route = Sequence[Any]

# A route's capturing group (route patterns nest none), as web/observe.py reads them.
_GROUP = re.compile(r"\((?:[^()\\]|\\.)*\)")
_REGEX_SYNTAX = re.compile(r"[.^$*+?{}\[\]|()]")
# Segment routes take their name with or without a trailing slash (API.md §3).
_OPTIONAL_SLASH = "/?"


class _Schemas:
    """The named schemas met while assembling: components/schemas, each `$ref`'d."""

    def __init__(self) -> None:
        self.named: dict[str, Schema] = {}
        self.bodies: dict[str, Any] = {}

    def resolve(self, shape: Any) -> Any:
        """`shape` as JSON: every Schema inside it a `$ref`, registered once."""
        if isinstance(shape, Schema):
            known = self.named.setdefault(shape.name, shape)
            if known != shape:
                raise ValueError(f"two schemas are named {shape.name}")
            if shape.name not in self.bodies:
                self.bodies[shape.name] = self.resolve(shape.body)
            return {"$ref": f"#/components/schemas/{shape.name}"}
        if isinstance(shape, Mapping):
            return {key: self.resolve(value) for key, value in shape.items()}
        if isinstance(shape, (list, tuple)):
            return [self.resolve(value) for value in shape]
        return shape


def path_template(pattern: str, params: Sequence[Param]) -> tuple[str, list[dict[str, Any]], bool]:
    """The OpenAPI path of a route pattern, its path parameters (named by `params`, in
    the order of the groups, each of its group's pattern), and whether a trailing slash
    is taken too. ValueError for a count that differs or a pattern that is not a path."""
    optional_slash = pattern.endswith(_OPTIONAL_SLASH)
    pattern = pattern.removesuffix(_OPTIONAL_SLASH) if optional_slash else pattern
    groups = _GROUP.findall(pattern)
    if len(groups) != len(params):
        raise ValueError(f"{pattern}: {len(groups)} group(s), {len(params)} parameter(s) declared")
    pieces = _GROUP.split(pattern)
    if any(_REGEX_SYNTAX.search(re.sub(r"\\.", "", piece)) for piece in pieces):
        raise ValueError(f"{pattern}: not a plain path with groups")
    literal = [re.sub(r"\\(.)", r"\1", piece) for piece in pieces]
    template = literal[0] + "".join(f"{{{param.name}}}{rest}" for param, rest in zip(params, literal[1:], strict=True))
    parameters = [
        {
            "name": param.name,
            "in": "path",
            "required": True,
            "description": param.description,
            "schema": {"type": "string", "pattern": f"^{group[1:-1]}$"},
        }
        for param, group in zip(params, groups, strict=True)
    ]
    return template, parameters, optional_slash


def _declared(handler: type, kind: str | None) -> dict[str, Operation]:
    """The declaration of each HTTP method `handler` defines (HEAD: its own, else its
    GET's), of route kind `kind`; empty when it declares none (not API)."""
    defined = [
        name
        for name in HTTP_METHODS
        if getattr(handler, name, None) is not getattr(tornado.web.RequestHandler, name, None)
    ]
    found = {name: declaration_of(getattr(handler, name)) for name in defined}
    if not any(found.values()):
        return {}
    if "head" in found and found["head"] is None:
        found["head"] = found.get("get")
    missing = [name for name, declared in found.items() if declared is None]
    if missing:
        raise ValueError(f"{handler.__name__}: no @operation on {', '.join(missing)}")
    return {name: declared.of_kind(kind) for name, declared in found.items() if declared is not None}


def _shared_errors(method: str, handler: type, declared: Operation, access: str) -> dict[int, tuple[str, list[str]]]:
    """What the access mark, the method and the handler's flags answer: status ->
    (description, the `detail`s it says)."""
    shared: dict[int, tuple[str, list[str]]] = {}

    def add(status: int, description: str, *details: str) -> None:
        before, examples = shared.get(status, ("", []))
        shared[status] = (". ".join(filter(None, (before, description))), [*examples, *details])

    if access in ("authenticated", "admin"):
        add(401, "Missing, invalid or expired credentials", NOT_AUTHENTICATED, INVALID_TOKEN)
    if access == "admin":
        add(403, "Not an admin", STATUS_DETAILS[403])
    verb = method.upper()
    if verb in requestrules.UNSAFE_METHODS and issubclass(handler, BaseHandler):
        add(403, "A cross-site request, refused (API.md §5)", requestrules.CROSS_SITE)
        if verb not in gate.BODILESS_METHODS and handler.takes_json:
            add(413, "The body is too large", requestrules.TOO_LARGE)
            add(415, "A body that is not JSON", requestrules.EXPECTED_JSON)
            if declared.json is not None:
                add(400, "A malformed JSON body", requestrules.INVALID_JSON)
    return shared


def _response(status: int, value: ResponseValue, config: Config, refs: _Schemas) -> dict[str, Any]:
    if not isinstance(value, Response):
        value = (
            Response(value)
            if isinstance(value, str) or callable(value)
            else Response(http.HTTPStatus(status).phrase, shape=value)
        )
    shaped: dict[str, Any] = {"description": text(value.description, config)}
    if value.shape is not None:
        shaped["content"] = {JSON: {"schema": refs.resolve(value.shape)}}
    elif value.media_types:
        shaped["content"] = {media_type: {} for media_type in value.media_types}
    elif status >= 400:
        shaped["content"] = {JSON: {"schema": refs.resolve(schemas.ERROR)}}
    return shaped


def _operation(
    method: str, handler: type, declared: Operation, config: Config, refs: _Schemas, optional_slash: bool
) -> dict[str, Any]:
    access = getattr(handler, method).access
    responses = {status: _response(status, value, config, refs) for status, value in declared.responses.items()}
    for status, (description, details) in _shared_errors(method, handler, declared, access).items():
        response = responses.setdefault(status, _response(status, "", config, refs))
        response["description"] = ". ".join(filter(None, (description, response["description"])))
        content = response.get("content", {}).get(JSON)
        if details and content is not None:
            content["examples"] = {
                f"{status}-{number}": {"value": {"detail": detail}} for number, detail in enumerate(details)
            }
    description = text(declared.description, config)
    if optional_slash:
        description = " ".join(filter(None, (description, "Also with a trailing slash.")))
    security = (
        declared.security
        if declared.security is not None
        else (schemas.ANYONE if access == "public" else schemas.ACCESS_TOKEN)
    )
    shaped: dict[str, Any] = {
        "tags": [handler.__module__.rsplit(".", 1)[-1].removesuffix("_handlers")],
        "summary": text(declared.summary, config),
        **({"description": description} if description else {}),
        "security": [dict(requirement) for requirement in security],
    }
    if declared.query:
        shaped["parameters"] = [
            {
                "name": param.name,
                "in": "query",
                "required": False,
                "description": param.description,
                "schema": dict(param.schema),
            }
            for param in declared.query
        ]
    body = _request_body(handler, declared, refs)
    if body is not None and method != "head":
        shaped["requestBody"] = body
    if method == "head":  # the GET's answers, without their bodies
        responses = {status: {"description": response["description"]} for status, response in responses.items()}
    shaped["responses"] = {str(status): responses[status] for status in sorted(responses)}
    return shaped


def _request_body(handler: type, declared: Operation, refs: _Schemas) -> dict[str, Any] | None:
    takes_json = getattr(handler, "takes_json", False)
    if declared.json is not None and not takes_json:
        raise ValueError(f"{handler.__name__} declares a JSON body but does not take JSON")
    if declared.form is not None and takes_json:
        raise ValueError(f"{handler.__name__} declares a form body but takes JSON")
    shape: Shape | None = declared.json if declared.json is not None else declared.form
    if shape is None:
        return None
    return {
        "required": True,
        "content": {JSON if declared.json is not None else MULTIPART: {"schema": refs.resolve(shape)}},
    }


def _path_params(handler: type, operations: Mapping[str, Operation]) -> tuple[Param, ...]:
    """The one list of path parameters the methods of a route declare (any may say it)."""
    declared = {operation.params for operation in operations.values() if operation.params}
    if len(declared) > 1:
        raise ValueError(f"{handler.__name__}: its methods declare different path parameters")
    return declared.pop() if declared else ()


def openapi_document(routes: Iterable[Route], config: Config) -> dict[str, Any]:
    refs = _Schemas()
    paths: dict[str, Any] = {}
    for route in routes:
        pattern, handler = route[0], route[1]
        kwargs = route[2] if len(route) > 2 else {}
        operations = _declared(handler, (kwargs or {}).get("kind"))
        if not operations:
            continue
        template, parameters, optional_slash = path_template(pattern, _path_params(handler, operations))
        if template in paths:
            raise ValueError(f"two routes are documented as {template}")
        item: dict[str, Any] = {"parameters": parameters} if parameters else {}
        for method, declared in operations.items():
            item[method] = _operation(method, handler, declared, config, refs, optional_slash)
        paths[template] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Videoflix",
            "version": "2",
            "description": "Self-hosted video streaming: accounts, catalog, upload, HLS delivery. The contract "
            "in prose is API.md. Besides each operation's answers: OPTIONS on any path is the "
            "CORS preflight (204, no credentials); any request may be answered 400 "
            f"({gate.INVALID_HOST!r}, {gate.NO_BODY!r}) for a Host that is not ours or a body "
            f"on {', '.join(sorted(gate.BODILESS_METHODS))}, and 503 "
            f"({outage.DETAIL!r}, with Retry-After) while PostgreSQL or Redis is down.",
        },
        "servers": [{"url": config.public_url}],
        "paths": paths,
        "components": {
            "schemas": {name: refs.bodies[name] for name in sorted(refs.bodies)},
            "securitySchemes": schemas.SECURITY_SCHEMES,
        },
    }
