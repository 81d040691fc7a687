"""GET /api/openapi.json: the OpenAPI 3.1 description (API.md §4)."""
from __future__ import annotations

import functools
import json

from videoflix.web.base import BaseHandler, public
from videoflix.web.openapi import openapi_document


@functools.lru_cache(maxsize=4)
def _document_text(public_url: str) -> str:
    return json.dumps(openapi_document(public_url), separators=(",", ":"))


class OpenAPIHandler(BaseHandler):
    @public
    def get(self) -> None:
        self.set_header("Cache-Control", "no-cache")
        self.finish(_document_text(self.config.public_url))


ROUTES = [(r"/api/openapi\.json", OpenAPIHandler)]
