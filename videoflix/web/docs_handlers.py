"""GET /api/openapi.json: the OpenAPI 3.1 description (API.md §4) of the application
that serves it, assembled from its own route table (web/openapi.py)."""
from __future__ import annotations

import json
import weakref

import tornado.routing
import tornado.web

from videoflix.web.base import BaseHandler, public
from videoflix.web.openapi import Route, openapi_document
from videoflix.web.operation import Response, operation

# One text per application, made at its first request (the routes and settings it
# describes do not change while it runs).
_TEXTS: weakref.WeakKeyDictionary[tornado.web.Application, str] = weakref.WeakKeyDictionary()


def served_routes(application: tornado.web.Application) -> list[Route]:
    """The application's route table as app.collect_routes gave it: (pattern, handler, kwargs)."""
    return [(rule.matcher.regex.pattern.removesuffix("$"), rule.target, rule.target_kwargs)
            for rule in application.wildcard_router.rules if isinstance(rule.matcher, tornado.routing.PathMatches)]


def document_text(application: tornado.web.Application) -> str:
    text = _TEXTS.get(application)
    if text is None:
        document = openapi_document(served_routes(application), application.settings["config"])
        text = _TEXTS[application] = json.dumps(document, separators=(",", ":"))
    return text


class OpenAPIHandler(BaseHandler):
    @operation("This document", responses={200: Response("OpenAPI 3.1", {"type": "object"})})
    @public
    def get(self) -> None:
        self.set_header("Cache-Control", "no-cache")
        self.finish(document_text(self.application))


ROUTES = [(r"/api/openapi\.json", OpenAPIHandler)]
