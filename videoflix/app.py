"""make_app(config, services) -> Application: routes, settings, access checks."""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.httputil
import tornado.web

from videoflix.accounts import passwords
from videoflix.delivery import openfiles, playback
from videoflix.library import ledger, lifecycle, posters, subtitle_tracks
from videoflix.library.changefeed import VideoFeed
from videoflix.library.events import EventHub
from videoflix.library.sweeper import Sweeper
from videoflix.library.version_zero import move_wave1_videos
from videoflix.platform import draining, metrics
from videoflix.platform.config import Config
from videoflix.platform.draining import Draining
from videoflix.platform.migrate import apply_migrations
from videoflix.platform.services import Services, create_services
from videoflix.transcode import notify
from videoflix.transcode.job import JobResult
from videoflix.transcode.runner import TranscodeRunner
from videoflix.web import (
    account_handlers,
    admin_handlers,
    docs_handlers,
    download_handlers,
    event_handlers,
    health_handlers,
    media_handlers,
    metrics_handlers,
    page_handlers,
    poster_handlers,
    progress_handlers,
    subtitle_handlers,
    upload_handlers,
    video_handlers,
)
from videoflix.web.assets import scan_assets
from videoflix.web.base import JSON_BODY_TIMEOUT_SECONDS, NotFoundHandler, check_access_marks
from videoflix.web.gate import RequestGate
from videoflix.web.observe import labelled_routes, request_finished
from videoflix.web.segment_lane import SegmentLane

log = logging.getLogger(__name__)

ROUTE_MODULES = (
    account_handlers,
    health_handlers,
    docs_handlers,
    progress_handlers,
    event_handlers,
    video_handlers,
    upload_handlers,
    download_handlers,
    poster_handlers,
    subtitle_handlers,
    admin_handlers,
    media_handlers,
    page_handlers,
    metrics_handlers,
)


def collect_routes() -> list[Any]:
    """Every module's routes, then the HLS segment routes, which take any name: every
    route naming a file or folder of its own is matched before them, whatever its
    module (media_handlers.SEGMENT_ROUTES)."""
    return [route for module in ROUTE_MODULES for route in module.ROUTES] + media_handlers.CATCH_ALL_ROUTES


def make_runner(config: Config, services: Services, consumer: str | None = None) -> TranscodeRunner:
    """The transcode consumer, wired to the library: the extracted subtitle tracks are
    imported and a chosen poster copied before a version goes live; each job's outcome goes to the lifecycle (a
    row the job changed), then to the metrics."""
    runner = TranscodeRunner(config, services, consumer=consumer)

    async def before_publish(video_id: int, version_dir: Path, result: JobResult) -> None:
        await subtitle_tracks.import_result_tracks(config, services, video_id, version_dir, result)
        await posters.apply_custom(config, services, video_id, version_dir)  # a chosen poster stays

    runner.before_publish = before_publish
    # The ledger first: the change announced next makes the studio read it.
    runner.on_outcome.append(functools.partial(ledger.record_run, config, services))
    runner.on_outcome.append(functools.partial(lifecycle.job_finished, services))
    metrics.of(services).watch_runner(runner)
    return runner


def make_feed(services: Services) -> VideoFeed:
    """The process's one subscription to video changes, the playback row cache
    connected: a change announced by any process drops the row here at once."""
    feed = VideoFeed(services)

    def forget(message: notify.VideoMessage) -> None:
        if message.owner_id is not None:  # a state change, not a progress tick
            playback.forget_video(services, message.video_id)

    feed.add_message_listener(forget)
    feed.add_resubscribed_listener(functools.partial(playback.forget_all, services))
    return feed


def make_app(config: Config, services: Services) -> tornado.web.Application:
    routes = collect_routes()
    missing = [name for route in routes for name in check_access_marks(route[1])]
    if missing:
        raise RuntimeError(f"handler methods without @public/@authenticated/@admin: {', '.join(missing)}")
    feed = make_feed(services)
    return tornado.web.Application(
        labelled_routes(routes),  # request.route_label: metrics by route pattern
        config=config,
        services=services,
        # The one Redis subscription to video changes (serve() starts it), the
        # studio's live events that follow it, and the web app's files (scanned
        # once: the allow-list and the asset version).
        video_feed=feed,
        events=EventHub(config, services, feed),
        assets=scan_assets(),
        open_files=openfiles.OpenFileCache(),  # segments' descriptors (closed at shutdown)
        default_handler_class=NotFoundHandler,
        log_function=request_finished,  # access log and metrics
        # Tornado's own XSRF scheme is off: the API uses SameSite=Lax cookies
        # and JSON bodies (API.md's csrftoken cookie is for the frontend).
        xsrf_cookies=False,
        compress_response=False,
    )


def http_delegate(app: tornado.web.Application) -> tornado.httputil.HTTPServerConnectionDelegate:
    """What the HTTPServer talks to: the request gate (web/gate.py), then the segment
    lane (web/segment_lane.py) in front of `app`."""
    return RequestGate(SegmentLane(app), app.settings)


# Any body, unless its handler raises the limit (the uploads do): JSON bodies are far
# smaller (requestrules.MAX_JSON_BODY_BYTES, checked by the handlers).
MAX_BODY_BYTES = 1024 * 1024
# Every body must arrive within this, whatever the route (the JSON handlers say the
# same; the uploads set their own, with an idle cut-off): a slow body holds no
# connection for long (CWE-400, slow POST). Bodies where none is taken are refused
# by the gate before any byte is read (web/gate.py).
BODY_TIMEOUT_SECONDS = JSON_BODY_TIMEOUT_SECONDS
# Headers must arrive, and an idle keep-alive connection is closed, within this.
IDLE_CONNECTION_SECONDS = 60


async def serve(
    config: Config, stop: asyncio.Event, ready: asyncio.Event | None = None, with_http: bool = True
) -> None:
    """Start-up and shutdown order for one process; returns once `stop` is set.

    Services, migrations, undelivered mail, the wave-1 videos moved into version
    folders (library/version_zero.py), the sweep of crashed runs' files, the
    transcode consumer, then HTTP. On `stop` (SIGTERM): no new connections, running
    jobs handed back to the queue at once, requests in flight get
    shutdown_grace_seconds to finish, then connections, consumer and pools close.
    `with_http=False` is `videoflix worker`: the consumer alone.
    """
    services = await create_services(config)
    # Made now, so the first login for an unknown address is not the slow one.
    await passwords.dummy_hash(services.cpu_executor, config.bcrypt_rounds)
    runner = None
    cleaner = None
    admin = None
    feed = None
    try:
        await apply_migrations(services.pool)
        await services.mailer.resume()
        await move_wave1_videos(config, services)  # before anything serves or sweeps media/
        runner = make_runner(config, services)
        cleaner = Sweeper(config, services, runner.active_work)
        await cleaner.start()
        await runner.start()
        admin = metrics_handlers.listen_admin(config, services)  # VIDEOFLIX_METRICS_LISTEN
        if not with_http:
            if ready is not None:
                ready.set()
            await stop.wait()
            log.info("shutting down: handing running jobs back")
            return
        app = make_app(config, services)
        feed = app.settings["video_feed"]
        feed.start()
        requests = Draining(http_delegate(app))
        metrics.of(services).watch_requests(requests)
        server = draining.Server(
            requests,
            max_body_size=MAX_BODY_BYTES,
            body_timeout=BODY_TIMEOUT_SECONDS,
            idle_connection_timeout=IDLE_CONNECTION_SECONDS,
        )
        server.listen(config.port, config.host)
        log.info("serving on http://%s:%s (public URL %s)", config.host, config.port, config.public_url)
        if ready is not None:
            ready.set()
        await stop.wait()
        server.stop()
        log.info(
            "shutting down: no new connections; %d request(s) in flight get up to %ss",
            requests.in_flight,
            config.shutdown_grace_seconds,
        )
        handing_back = asyncio.create_task(runner.stop())
        await app.settings["events"].close()  # event streams never end by themselves: end them now
        if not await requests.wait_idle(config.shutdown_grace_seconds):
            log.warning(
                "shutting down: %d request(s) still in flight after %ss; closing them",
                requests.in_flight,
                config.shutdown_grace_seconds,
            )
        await asyncio.wait_for(server.close_all_connections(), timeout=10)
        await handing_back
        runner = None
    finally:
        if feed is not None:
            await feed.close()
            app.settings["open_files"].close()
        if admin is not None:
            admin.stop()
        if cleaner is not None:
            await cleaner.stop()
        if runner is not None:
            await runner.stop()
        await services.close()
        log.info("stopped")
