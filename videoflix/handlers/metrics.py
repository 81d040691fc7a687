"""GET /metrics (API.md §6): Prometheus text format behind a bearer token.

Without VIDEOFLIX_METRICS_TOKEN the route answers 404 like an unknown path; with
it, a request without `Authorization: Bearer <token>` gets 401.
"""
from __future__ import annotations

import asyncio
import hmac

from videoflix import metrics
from videoflix.handlers.base import APIError, BaseHandler, public


class MetricsHandler(BaseHandler):
    @public
    async def get(self) -> None:
        token = self.config.metrics_token
        if not token:
            raise APIError(404)
        scheme, _, given = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise APIError(401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        registry = metrics.of(self.services)
        await registry.refresh(self.services.redis)
        # Rendering is a few hundred lines of text: off the loop.
        body = await asyncio.get_running_loop().run_in_executor(self.services.file_executor, registry.render)
        self.set_header("Content-Type", metrics.CONTENT_TYPE_LATEST)
        self.finish(body)


ROUTES = [(r"/metrics", MetricsHandler)]
