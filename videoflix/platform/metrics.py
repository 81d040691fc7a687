"""Prometheus metrics, one registry per Services (tests make many apps in one process).

`of(services)` is the Metrics of that process's services: the HTTP layer feeds it
from the access-log hook (`observe_request`), the transcode runner through its
outcome event (`watch_runner`), and GET /metrics reads the queue sizes from Redis
when it is scraped. Nothing is registered in prometheus_client's global registry.

Hot path: a finished request costs two dictionary look-ups of cached label
children and three increments (no label validation, no lock on the lookup).
"""

from __future__ import annotations

import asyncio
import http
import logging
import math
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import tornado.web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from videoflix.platform.services import Services

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "of"]

log = logging.getLogger(__name__)

# A scrape must answer even when Redis hangs.
REFRESH_TIMEOUT_SECONDS = 2.0
# Seconds; segment GETs are ~1 ms, uploads and logins (bcrypt) far longer.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TRANSCODE_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
SPEED_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)
# Requests that matched no route: one label value, whatever the path (bounded cardinality).
UNMATCHED_ROUTE = "(unmatched)"
# Every label value comes from a closed set, never from request text (CWE-400: each
# new value is a series kept for the life of the process). Methods: those a Videoflix
# route can answer (Tornado's SUPPORTED_METHODS); any other name counts as OTHER_METHOD.
ROUTED_METHODS = frozenset(tornado.web.RequestHandler.SUPPORTED_METHODS)
OTHER_METHOD = "other"
# Statuses: the registered codes (http.HTTPStatus), anything else by its class ("5xx").
_KNOWN_STATUSES = frozenset(int(status) for status in http.HTTPStatus)
LOGIN_ROUTE = "/api/login/"


class FinishedJob(Protocol):
    """What the metrics read of a transcode job's outcome (transcode/runner.JobOutcome,
    described here: platform/ imports nothing above it)."""

    @property
    def kind(self) -> str: ...
    @property
    def wall_seconds(self) -> float | None: ...
    @property
    def media_seconds(self) -> float: ...


def status_label(status: int) -> str:
    """The code itself when it is a registered one, else its class ("5xx")."""
    if status in _KNOWN_STATUSES:
        return str(status)
    return f"{min(max(status // 100, 1), 5)}xx"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "videoflix_http_requests",
            "HTTP requests answered, by route pattern and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "videoflix_http_request_duration_seconds",
            "Time from request start to the end of the response",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.bytes_sent = Counter("videoflix_http_response_bytes", "Response body bytes written", ["route"], registry=r)
        self.login_failures = Counter(
            "videoflix_login_failures", "Logins refused (wrong email or password, inactive account)", registry=r
        )
        self.throttled = Counter(
            "videoflix_throttled_requests", "Requests refused with 429 Too Many Requests", ["route"], registry=r
        )
        self.queue_length = Gauge(
            "videoflix_transcode_queue_length", "Transcode jobs in the queue (waiting or running)", registry=r
        )
        self.queue_pending = Gauge(
            "videoflix_transcode_queue_pending", "Transcode jobs delivered to a worker and not yet finished", registry=r
        )
        self.dead_letters = Gauge(
            "videoflix_transcode_dead_letters",
            "Transcode jobs given up after repeated crashes (dead-letter stream)",
            registry=r,
        )
        self.failed_videos = Gauge(
            "videoflix_videos_failed",
            "Videos whose last transcode failed (refused, cancelled or dead-lettered): the console's failed jobs",
            registry=r,
        )
        self.jobs = Counter(
            "videoflix_transcode_jobs", "Transcode jobs ended in this process, by outcome", ["outcome"], registry=r
        )
        self.transcode_seconds = Histogram(
            "videoflix_transcode_duration_seconds",
            "Wall time of successful transcodes",
            buckets=TRANSCODE_BUCKETS,
            registry=r,
        )
        self.transcode_speed = Histogram(
            "videoflix_transcode_speed_ratio",
            "Media seconds transcoded per wall second, per job",
            buckets=SPEED_BUCKETS,
            registry=r,
        )
        self.media_seconds = Counter("videoflix_transcode_media_seconds", "Media seconds transcoded", registry=r)
        self.busy_workers = Gauge(
            "videoflix_transcode_busy_workers", "Transcode pool workers running a job now", registry=r
        )
        self.pool_workers = Gauge(
            "videoflix_transcode_pool_workers", "Transcode pool size (TRANSCODE_WORKERS)", registry=r
        )
        self.in_flight = Gauge(
            "videoflix_http_requests_in_flight", "Requests whose answer is not completely written yet", registry=r
        )
        self._draining: weakref.WeakSet[Any] = weakref.WeakSet()
        self.in_flight.set_function(lambda: sum(requests.in_flight for requests in self._draining))
        self._runners: weakref.WeakSet[Any] = weakref.WeakSet()
        self.busy_workers.set_function(lambda: sum(runner.busy for runner in self._runners))
        self.pool_workers.set_function(lambda: sum(runner.config.transcode_workers for runner in self._runners))
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._route_children: dict[str, tuple[Any, Any]] = {}

    # --- HTTP -------------------------------------------------------------------------

    def observe_request(self, route: str, method: str, status: int, seconds: float, body_bytes: int) -> None:
        """Count one answer. `route` must be a route label or UNMATCHED_ROUTE (never the
        path); the method and status are mapped onto closed sets here."""
        if method not in ROUTED_METHODS:
            method = OTHER_METHOD
        key = (route, method, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(route, method, status_label(status))
            if status == 429:
                self.throttled.labels(route)  # present (at 0) once seen
        counter.inc()
        children = self._route_children.get(route)
        if children is None:
            children = self._route_children[route] = (self.latency.labels(route), self.bytes_sent.labels(route))
        children[0].observe(seconds)
        if body_bytes:
            children[1].inc(body_bytes)
        if status >= 400:
            if status == 429:
                self.throttled.labels(route).inc()
            elif route == LOGIN_ROUTE and method == "POST" and status in (400, 401, 403):
                self.login_failures.inc()

    def watch_requests(self, requests: Any) -> None:
        """Report `requests.in_flight` (a draining.Draining) as a gauge."""
        self._draining.add(requests)

    # --- transcoding ------------------------------------------------------------------

    def watch_runner(self, runner: Any) -> None:
        """Count `runner`'s jobs, transcode times and busy workers."""
        self._runners.add(runner)
        runner.on_outcome.append(self._job_finished)

    def _job_finished(self, outcome: FinishedJob) -> None:
        wall_seconds = outcome.wall_seconds
        if wall_seconds is not None:  # the child finished its transcode (ready, or discarded after)
            self.transcode_seconds.observe(wall_seconds)
            self.media_seconds.inc(outcome.media_seconds)
            if wall_seconds > 0:
                self.transcode_speed.observe(outcome.media_seconds / wall_seconds)
        self.jobs.labels(outcome.kind).inc()

    # --- scraping ---------------------------------------------------------------------

    async def refresh(self, queue_stats: Callable[[], Awaitable[Any]]) -> None:
        """Read the shared queue's sizes (all workers' jobs, not only this process's:
        `queue_stats()` is transcode.queue.stats on the shared Redis); NaN (unknown)
        while Redis does not answer, and the rest is still served."""
        try:
            sizes = await asyncio.wait_for(queue_stats(), REFRESH_TIMEOUT_SECONDS)
        except Exception as exc:  # Redis down or slow: say "unknown", not a stale number
            log.warning("metrics: queue sizes unavailable: %s", exc)
            for gauge in (self.queue_length, self.queue_pending, self.dead_letters):
                gauge.set(math.nan)
            return
        self.queue_length.set(sizes.length)
        self.queue_pending.set(sizes.pending)
        self.dead_letters.set(sizes.dead_letters)

    async def refresh_failed(self, failed_count: Callable[[], Awaitable[int]]) -> None:
        """Read how many videos are failed (PostgreSQL); NaN while it does not answer."""
        try:
            self.failed_videos.set(await asyncio.wait_for(failed_count(), REFRESH_TIMEOUT_SECONDS))
        except Exception as exc:  # PostgreSQL down or slow: "unknown"
            log.warning("metrics: failed videos unavailable: %s", exc)
            self.failed_videos.set(math.nan)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def of(services: Services) -> Metrics:
    """The Metrics of `services` (made on first use; goes with them)."""
    return services.state(Metrics)
