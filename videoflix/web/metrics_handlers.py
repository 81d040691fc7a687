"""GET /metrics (API.md §6): Prometheus text format behind a bearer token, or on
a separate listen address.

On the main port: without VIDEOFLIX_METRICS_TOKEN the route answers 404 like an
unknown path; with it, a request without `Authorization: Bearer <token>` gets 401.
With VIDEOFLIX_METRICS_LISTEN, `serve` and `worker` also answer GET /metrics
there, without a token (bind it to a private address), and nothing else.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hmac
import logging
import math
import time

import tornado.httpserver
import tornado.web

from videoflix.console import job_admin
from videoflix.platform import metrics
from videoflix.platform.config import Config
from videoflix.platform.services import Services
from videoflix.transcode import queue
from videoflix.web import schemas
from videoflix.web.base import APIError, BaseHandler, NotFoundHandler, public
from videoflix.web.observe import labelled_routes, request_finished
from videoflix.web.operation import Response, operation

log = logging.getLogger(__name__)


# Scrapes answered per process in any SCRAPE_WINDOW_SECONDS (two Prometheus replicas at a
# 1 s interval fit); past that a scrape is 429. A scrape also costs a Redis round trip
# and an executor render, so a token holder (or a leaked token) cannot spin it (CWE-770).
SCRAPES_PER_WINDOW = 20
SCRAPE_WINDOW_SECONDS = 10.0


class ScrapeThrottle:
    """The recent scrapes of one process (`services.state`)."""

    def __init__(self) -> None:
        self.answered: collections.deque[float] = collections.deque(maxlen=SCRAPES_PER_WINDOW)

    def admit(self, now: float) -> float | None:
        """None when a scrape may be answered now (and counts it), else seconds to wait."""
        if len(self.answered) == SCRAPES_PER_WINDOW and now - self.answered[0] < SCRAPE_WINDOW_SECONDS:
            return SCRAPE_WINDOW_SECONDS - (now - self.answered[0])
        self.answered.append(now)
        return None


class MetricsHandler(BaseHandler):
    requires_token = True

    @operation(
        "Prometheus metrics",
        security=schemas.METRICS_TOKEN,
        responses={
            200: Response("The text exposition format", media_types=(metrics.CONTENT_TYPE_LATEST.split(";")[0],)),
            401: "Missing or wrong token",
            404: "No VIDEOFLIX_METRICS_TOKEN is set",
            429: f"Over {SCRAPES_PER_WINDOW} scrapes in {SCRAPE_WINDOW_SECONDS:g} s (Retry-After)",
        },
    )
    @public
    async def get(self) -> None:
        if self.requires_token:
            self.check_token(self.config.metrics_token)
        wait = self.services.state(ScrapeThrottle).admit(time.monotonic())
        if wait is not None:
            raise APIError(429, headers={"Retry-After": str(max(1, math.ceil(wait)))})
        registry = metrics.of(self.services)
        await registry.refresh(functools.partial(queue.stats, self.services.redis))
        await registry.refresh_failed(functools.partial(job_admin.count_failed, self.services))
        # Rendering is a few hundred lines of text: off the loop.
        body = await asyncio.get_running_loop().run_in_executor(self.services.file_executor, registry.render)
        self.set_header("Content-Type", metrics.CONTENT_TYPE_LATEST)
        self.finish(body)

    def check_token(self, token: str) -> None:
        if not token:
            raise APIError(404)
        scheme, _, given = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise APIError(401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})


class AdminMetricsHandler(MetricsHandler):
    """On the separate listen address: whoever reaches it may read the metrics."""

    requires_token = False


ROUTES = [(r"/metrics", MetricsHandler)]


def listen_admin(config: Config, services: Services) -> tornado.httpserver.HTTPServer | None:
    """The VIDEOFLIX_METRICS_LISTEN server (GET /metrics only), or None when unset."""
    if not config.metrics_listen:
        return None
    host, _, port = config.metrics_listen.rpartition(":")
    app = tornado.web.Application(
        labelled_routes([(r"/metrics", AdminMetricsHandler)]),
        config=config,
        services=services,
        default_handler_class=NotFoundHandler,
        log_function=request_finished,
        compress_response=False,
    )
    server = tornado.httpserver.HTTPServer(app, idle_connection_timeout=60)
    server.listen(int(port), host)
    log.info("metrics on http://%s/metrics", config.metrics_listen)
    return server
