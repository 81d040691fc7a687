"""GET /api/openapi.json: the OpenAPI 3.1 description (API.md §4) of the application
that serves it, assembled from its own route table (web/openapi.py)."""

from __future__ import annotations

import asyncio
import json

import tornado.routing
import tornado.web

from videoflix.web.base import BaseHandler, public
from videoflix.web.openapi import Route, openapi_document
from videoflix.web.operation import Response, operation

# Where the application keeps its document's text, made at its first request (the
# routes and settings it describes do not change while it runs).
DOCUMENT_SETTING = "openapi_text"


def served_routes(application: tornado.web.Application) -> list[Route]:
    """The application's route table as app.collect_routes gave it: (pattern, handler, kwargs)."""
    return [
        (rule.matcher.regex.pattern.removesuffix("$"), rule.target, rule.target_kwargs)
        for rule in application.wildcard_router.rules
        if isinstance(rule.matcher, tornado.routing.PathMatches)
    ]


def document_text(application: tornado.web.Application) -> str:
    """The document as JSON text (blocking CPU: assembling and serialising ~60 operations)."""
    return json.dumps(
        openapi_document(served_routes(application), application.settings["config"]), separators=(",", ":")
    )


class OpenAPIHandler(BaseHandler):
    @operation("This document", responses={200: Response("OpenAPI 3.1", {"type": "object"})})
    @public
    async def get(self) -> None:
        settings = self.application.settings
        text = settings.get(DOCUMENT_SETTING)
        if text is None:
            text = await asyncio.get_running_loop().run_in_executor(
                self.services.cpu_executor, document_text, self.application
            )
            settings[DOCUMENT_SETTING] = text
        self.set_header("Cache-Control", "no-cache")
        self.finish(text)


ROUTES = [(r"/api/openapi\.json", OpenAPIHandler)]
