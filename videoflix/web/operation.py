"""What a handler method says of itself in the OpenAPI document: `@operation(...)`.

A declaration holds only what the code cannot tell: a summary, the path parameters'
names (the route's groups, in order), the request body, and the answers of the
method's own making. web/openapi.py derives the rest when it assembles the document:
the path and each parameter's pattern from the route, the security from the access
mark (@public/@authenticated/@admin), and the shared error answers of API.md §5 from
the method and the handler's flags (takes_json).

    @operation("Detail of a video the caller may see", params=(schemas.VIDEO_ID,),
               responses={200: schemas.VIDEO_DETAIL, 404: "Unknown video, or one the caller may not see"})
    @authenticated
    async def get(self, video_id: str) -> None: ...

A text may be a function of the Config where it states a limit the server's
settings own (`lambda config: f"... {config.max_upload_bytes} ..."`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from videoflix.delivery import answer
from videoflix.platform.config import Config

JSON = "application/json"
MULTIPART = "multipart/form-data"

Text = str | Callable[[Config], str]
Security = Sequence[Mapping[str, Sequence[str]]]


@dataclass(frozen=True)
class Schema:
    """A named JSON Schema: one entry of components/schemas, referred to by `$ref`
    wherever it stands inside another schema or a declaration."""

    name: str
    body: Mapping[str, Any]


# A JSON Schema, named (a component) or inline (plain data, which may hold Schemas).
Shape = Schema | Mapping[str, Any]


@dataclass(frozen=True)
class Param:
    """A path parameter: its name in the document and what it is. Its pattern is
    the route group's (web/openapi.py)."""

    name: str
    description: str


@dataclass(frozen=True)
class Response:
    """One answer: its description and body, JSON of `shape`, or bytes of `media_types`
    (text types as strings). Without either: none for a success, the JSON error body
    for a status >= 400 (every error of the API is JSON)."""

    description: Text
    shape: Shape | None = None
    media_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class QueryParam:
    """An optional query-string parameter: its name, what it is and its JSON Schema."""

    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})


# A value of `responses`: a Response, a JSON Shape (described by the status's phrase),
# or a Text alone.
ResponseValue = Response | Shape | Text


@dataclass(frozen=True)
class Operation:
    """One handler method's declaration (or, in `kinds`, the part one route kind adds)."""

    summary: Text = ""
    description: Text = ""
    params: tuple[Param, ...] = ()  # the route's groups, in order; one method of a handler may say them
    json: Shape | None = None  # the JSON body it reads
    form: Shape | None = None  # the multipart/form-data body it reads
    responses: Mapping[int, ResponseValue] = field(default_factory=dict)
    security: Security | None = None  # None: as the access mark says
    query: tuple[QueryParam, ...] = ()  # the optional query-string parameters it reads
    # For a handler serving several route kinds (the route's {"kind": ...}): what each adds.
    kinds: Mapping[str, Operation] = field(default_factory=dict)

    def of_kind(self, kind: str | None) -> Operation:
        """This declaration with the part of route kind `kind` added (itself without kinds)."""
        if not self.kinds:
            return self
        if kind is None or kind not in self.kinds:
            raise ValueError(f"no declaration for route kind {kind!r}")
        part = self.kinds[kind]
        return dataclasses.replace(
            self,
            summary=_joined(part.summary, self.summary, " "),
            description=_joined(part.description, self.description, "\n\n"),
            params=self.params + part.params,
            json=part.json or self.json,
            form=part.form or self.form,
            responses={**part.responses, **self.responses},
            query=self.query + part.query,
            kinds={},
        )


def _joined(first: Text, second: Text, separator: str) -> Text:
    if not first or not second:
        return first or second
    if isinstance(first, str) and isinstance(second, str):
        return f"{first}{separator}{second}"
    return lambda config: f"{text(first, config)}{separator}{text(second, config)}"


def text(value: Text, config: Config) -> str:
    return value(config) if callable(value) else value


Method = TypeVar("Method", bound=Callable[..., Any])


def operation(
    summary: Text = "",
    description: Text = "",
    *,
    params: tuple[Param, ...] = (),
    json: Shape | None = None,
    form: Shape | None = None,
    responses: Mapping[int, ResponseValue] | None = None,
    security: Security | None = None,
    kinds: Mapping[str, Operation] | None = None,
    query: tuple[QueryParam, ...] = (),
) -> Callable[[Method], Method]:
    """Declare a handler method for the OpenAPI document (the fields of Operation)."""
    declaration = Operation(
        summary, description, params, json, form, responses or {}, security, query=query, kinds=kinds or {}
    )

    def mark(method: Method) -> Method:
        method.operation = declaration  # type: ignore[attr-defined]
        return method

    return mark


def declaration_of(method: Any) -> Operation | None:
    return getattr(method, "operation", None)


def media_file(
    kind: str, summary: str, params: tuple[Param, ...], description: str = "", also: tuple[str, ...] = ()
) -> Operation:
    """A file of route kind `kind`, answered as delivery/answer.py answers that kind
    (KINDS): its content type (and `also` others), 304 to a validator that matches,
    a byte range where it is a file on disk (not made per request), and 503 while the
    version being built has not written it yet where the kind waits for that."""
    policy = answer.KINDS[kind]
    types = (policy.content_type.split(";")[0], *also)
    responses: dict[int, ResponseValue] = {
        200: Response(summary, media_types=types),
        304: Response("Not modified: If-None-Match (or If-Modified-Since) matched"),
    }
    if not policy.rendered:
        responses[206] = Response("One byte range (RFC 9110 §14)", media_types=types)
        responses[416] = "Range not satisfiable (Content-Range: bytes */size)"
    if policy.waits:
        responses[503] = "Of the version being built and not written yet: retry after Retry-After seconds"
    return Operation(summary, description, params, responses=responses)
