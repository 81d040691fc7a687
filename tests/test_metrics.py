"""GET /metrics (Prometheus), X-Request-ID and the access log (issue 13 item 4).

Scrapes are parsed with prometheus_client's own text parser; requests, logins and
a real transcode go through the real application first.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import redis.asyncio
import tornado.httputil
import tornado.web
from prometheus_client.parser import text_string_to_metric_families

from videoflix.platform import metrics
from videoflix.platform.config import Config, ConfigError
from videoflix.platform.embedded import free_port
from videoflix.platform.log import RequestIdFilter
from videoflix.transcode import queue

from helpers import cli_env, multipart, stop_process, wait_for_health, wait_for_status, wait_until

TOKEN = "metrics-token-for-the-tests-0123456789"
GENERATED_ID = re.compile(r"[0-9a-f]{16}")


@pytest.fixture
def config(config):
    return dataclasses.replace(config, metrics_token=TOKEN)


@pytest.fixture
def admin_client(new_client, make_admin, io_loop):
    browser = new_client()
    io_loop.run_sync(lambda: make_admin(browser))
    return browser


async def scrape(client) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one authorised scrape."""
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, cookies=False)
    assert response.status == 200, response.body
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# --- access to /metrics --------------------------------------------------------------

@pytest.mark.gen_test
@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer ", "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x",
    f"Bearer {TOKEN[:-1]}", f"bearer{TOKEN}", "Bearer \u00e9\u00e9",
])
async def test_metrics_without_the_right_bearer_token_is_401_json(client, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.get("/metrics", headers=headers)
    assert response.status == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert b"videoflix_" not in response.body


@pytest.mark.gen_test
async def test_metrics_bearer_scheme_is_case_insensitive(client):
    response = await client.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"})
    assert response.status == 200


@pytest.mark.gen_test
async def test_metrics_is_404_json_when_no_token_is_configured(client, app):
    app.settings["config"] = dataclasses.replace(app.settings["config"], metrics_token="")
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": f"Bearer {TOKEN}"}):
        response = await client.get("/metrics", headers=headers)
        assert response.status == 404
        assert response.json() == {"detail": "Not found."}


# --- what is counted ---------------------------------------------------------------

@pytest.mark.gen_test
async def test_scrape_counts_requests_by_route_pattern_status_latency_and_bytes(client, services):
    health = await client.get("/api/health/")
    assert health.status == 200
    for path in ("/api/video/7/", "/api/video/8/"):
        assert (await client.get(path)).status == 401
    assert (await client.get("/no/such/path")).status == 404
    samples = await scrape(client)
    assert value(samples, "videoflix_http_requests_total", route="/api/health/", method="GET", status="200") == 1
    # Two paths, one route pattern: labels stay bounded whatever the ids.
    assert value(samples, "videoflix_http_requests_total", route="/api/video/{}/", method="GET",
                 status="401") == 2
    assert value(samples, "videoflix_http_requests_total", route=metrics.UNMATCHED_ROUTE, method="GET",
                 status="404") == 1
    assert not any("/api/video/7/" in str(labels) for _, labels in samples)
    assert value(samples, "videoflix_http_request_duration_seconds_count", route="/api/health/") == 1
    assert value(samples, "videoflix_http_request_duration_seconds_bucket", route="/api/health/", le="+Inf") == 1
    assert value(samples, "videoflix_http_response_bytes_total", route="/api/health/") == len(health.body)
    for name in ("videoflix_transcode_queue_length", "videoflix_transcode_queue_pending",
                 "videoflix_transcode_dead_letters", "videoflix_transcode_busy_workers"):
        assert (name, ()) in samples and samples[(name, ())] == 0


@pytest.mark.gen_test
async def test_scrape_counts_login_failures_and_throttles(client, make_user, new_client):
    await make_user("someone@example.com", log_in=False)
    stranger = new_client()
    statuses = []
    for _ in range(15):
        response = await stranger.post("/api/login/", {"email": "someone@example.com", "password": "wrong-pass-1"})
        statuses.append(response.status)
    assert statuses.count(400) >= 1 and statuses.count(429) >= 1, statuses
    samples = await scrape(client)
    assert value(samples, "videoflix_login_failures_total") == statuses.count(400)
    assert value(samples, "videoflix_throttled_requests_total", route="/api/login/") == statuses.count(429)


@pytest.mark.gen_test
async def test_queue_sizes_are_unknown_not_stale_when_redis_is_down(client, services):
    await queue.enqueue(services.redis, 12345)
    samples = await scrape(client)
    assert samples[("videoflix_transcode_queue_length", ())] == 1
    # Redis gone (nothing listens on that port): the scrape still answers.
    broken = redis.asyncio.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    original, services.redis = services.redis, broken
    try:
        samples = await scrape(client)
    finally:
        services.redis = original
        await broken.aclose()
    assert math.isnan(samples[("videoflix_transcode_queue_length", ())])
    assert math.isnan(samples[("videoflix_transcode_queue_pending", ())])
    assert value(samples, "videoflix_http_requests_total", route="/metrics", method="GET", status="200") == 1


@pytest.mark.gen_test
async def test_registries_are_per_application_not_global(services, client):
    from prometheus_client import REGISTRY

    assert metrics.of(services).registry is not REGISTRY
    assert REGISTRY.get_sample_value("videoflix_http_requests_total",
                                     {"route": "/api/health/", "method": "GET", "status": "200"}) is None


# --- request text never becomes a label or a long log line (issue 18 item 1) --------

def http_series(samples: dict) -> set:
    return {key for key in samples if key[0].startswith("videoflix_http_")}


@pytest.mark.gen_test
@pytest.mark.parametrize("method", ["BREW", "PROPFIND", "get", "X" * 5000, "M-SEARCH", "TRACE", "CONNECT"])
async def test_unrouted_methods_are_counted_as_other(client, method):
    response = await client.fetch(method, "/api/health/")
    assert response.status in (400, 405)
    samples = await scrape(client)
    methods = {dict(labels).get("method") for name, labels in samples if name == "videoflix_http_requests_total"}
    assert methods == {"other"}  # (the scrape is counted once it has answered)


@pytest.mark.gen_test
async def test_thousands_of_distinct_methods_paths_and_headers_add_no_series(client):
    for n in range(30):  # every route and status these requests reach, once
        await client.fetch(f"M{n}", f"/api/video/{n}/")
        await client.get(f"/nowhere/{n}")
        await client.get(f"/api/video/{n}/720p/seg_{n:05d}.ts")
    await scrape(client)
    before = http_series(await scrape(client))
    for n in range(1000):
        await client.fetch(f"METHOD-{n}-{'Z' * (n % 97)}", f"/api/video/{n}/")
        await client.get(f"/nowhere/{n}/{'p' * (n % 300)}", headers={"X-Request-ID": f"id-{n}", "Origin": f"http://{n}.x"})
        await client.get(f"/api/video/{n}/720p/seg_{n:05d}.ts", headers={"X-Forwarded-For": f"10.0.{n % 250}.1"})
    after = http_series(await scrape(client))
    assert after == before


@pytest.mark.parametrize("status, label", [(200, "200"), (404, "404"), (418, "418"), (299, "2xx"), (599, "5xx"),
                                           (999, "5xx"), (0, "1xx")])
def test_status_labels_are_registered_codes_or_their_class(status, label):
    assert metrics.status_label(status) == label


@pytest.mark.gen_test
@pytest.mark.parametrize("method, path", [
    ("A" * 30_000, "/api/health/"),
    ("GET", "/nowhere/" + "p" * 30_000),
    ("GET", "/api/video/1/720p/" + "s" * 30_000),
    ("GET", "/api/health/?token=secret&" + "q" * 30_000),
])
async def test_access_lines_hold_a_bounded_slice_of_each_request_field(client, caplog, method, path):
    caplog.set_level(logging.DEBUG, logger="videoflix.access")
    await client.fetch(method, path)
    [record] = [r for r in caplog.records if r.name == "videoflix.access"]
    message = record.getMessage()
    assert len(message) < 1500
    assert len(record.path) < 1100 and len(record.method) < 40
    assert "...(+" in message
    assert "secret" not in message


@pytest.mark.gen_test
@pytest.mark.parametrize("path, shown", [
    ("/nowhere/%0Afake%20line", "/nowhere/%0Afake%20line"),  # percent-encoded stays as sent
    ("/nowhere/\u00e9t\u00e9", "/nowhere/\\xc3\\xa9t\\xc3\\xa9"),  # raw UTF-8 bytes
    ("/nowhere/a\\x0a", "/nowhere/a\\x5cx0a"),  # a literal backslash cannot forge an escape
])
async def test_access_lines_escape_what_could_split_or_forge_a_line(client, caplog, path, shown):
    caplog.set_level(logging.DEBUG, logger="videoflix.access")
    await client.fetch("GET", path)
    [record] = [r for r in caplog.records if r.name == "videoflix.access"]
    assert record.path == shown
    assert all(0x21 <= ord(c) < 0x7f for c in record.path)


def test_clip_escapes_controls_spaces_backslashes_and_non_ascii():
    from videoflix.platform.log import clip

    assert clip("GET", 16) == "GET"
    assert clip("a b\tc\r\n\x1b[31m\\\u00e9\u2603\U0001f600", 100) == (
        "a\\x20b\\x09c\\x0d\\x0a\\x1b[31m\\x5c\\xe9\\u2603\\U0001f600")
    assert clip("x" * 50, 10) == "x" * 10 + "...(+40)"


def test_long_log_messages_are_cut_whoever_writes_them():
    from videoflix.platform.log import MESSAGE_LIMIT, BoundedMessageFilter

    record = logging.LogRecord("tornado.general", logging.INFO, __file__, 1, "Malformed HTTP message from %s: %s",
                               ("127.0.0.1", "Invalid header value %r" % ("v" * 60_000)), None)
    BoundedMessageFilter().filter(record)
    assert len(record.getMessage()) < MESSAGE_LIMIT + 20
    assert record.getMessage().startswith("Malformed HTTP message from 127.0.0.1: Invalid header value")


@pytest.mark.parametrize("error", [RuntimeError("boom"), tornado.web.HTTPError(400, "bad %s", "x" * 9000)])
def test_handler_errors_log_a_bounded_summary_and_no_headers(caplog, error):
    from videoflix.web.base import JSONErrorsMixin

    class Handler(JSONErrorsMixin):  # what every handler's log_exception sees
        request = tornado.httputil.HTTPServerRequest(
            start_line=tornado.httputil.RequestStartLine("GET", "/api/health/?" + "q" * 20_000, "HTTP/1.1"),
            headers=tornado.httputil.HTTPHeaders({"Host": "127.0.0.1", "Cookie": "access_token=secret-cookie-value",
                                               "X-Long": "h" * 9}))

    caplog.set_level(logging.INFO)
    try:
        raise error
    except Exception as exc:
        Handler().log_exception(type(exc), exc, exc.__traceback__)
    [record] = caplog.records
    message = record.getMessage()
    assert "/api/health/?qqq" in message and "...(+" in message
    assert "secret-cookie-value" not in message and "X-Long" not in message
    assert len(message) < 1200 + (9100 if isinstance(error, tornado.web.HTTPError) else 0)
    assert (record.exc_info is not None) == isinstance(error, RuntimeError)


# --- /metrics throttled (issue 18 item 11) ------------------------------------------

@pytest.mark.gen_test(timeout=60)
async def test_scrapes_past_the_budget_are_429(client):
    from videoflix.web.metrics_handlers import SCRAPE_WINDOW_SECONDS, SCRAPES_PER_WINDOW

    headers = {"Authorization": f"Bearer {TOKEN}"}
    answers = [await client.get("/metrics", headers=headers, cookies=False) for _ in range(SCRAPES_PER_WINDOW + 5)]
    statuses = [answer.status for answer in answers]
    assert statuses == [200] * SCRAPES_PER_WINDOW + [429] * 5
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= SCRAPE_WINDOW_SECONDS
    assert answers[-1].json() == {"detail": "Too many requests."}


@pytest.mark.gen_test(timeout=60)
async def test_refused_tokens_do_not_spend_the_scrape_budget(client):
    from videoflix.web.metrics_handlers import SCRAPES_PER_WINDOW

    for _ in range(SCRAPES_PER_WINDOW * 2):
        assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"}, cookies=False)).status == 401
    assert (await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, cookies=False)).status == 200


# --- request ids ---------------------------------------------------------------------

@pytest.mark.gen_test
@pytest.mark.parametrize("given", ["abc-123", "0f8e2c1d-9a3b-4c6d-8e7f-0a1b2c3d4e5f", "trace.1:span_2", "x" * 64])
async def test_valid_request_id_is_echoed(client, given):
    response = await client.get("/api/health/", headers={"X-Request-ID": given})
    assert response.headers["X-Request-ID"] == given


@pytest.mark.gen_test
@pytest.mark.parametrize("given", ["x" * 65, "has space", "semi;colon", "quote\"d", "ünïcode", "<script>",
                                   "a/b", "${jndi:ldap://x}"])
async def test_unsafe_request_id_is_replaced_by_a_new_one(client, given):
    response = await client.get("/api/health/", headers={"X-Request-ID": given})
    assert GENERATED_ID.fullmatch(response.headers["X-Request-ID"])


@pytest.mark.gen_test
@pytest.mark.parametrize("method, path, expected", [
    ("GET", "/api/health/", 200), ("GET", "/nowhere", 404), ("GET", "/api/video/", 401),
    ("OPTIONS", "/api/login/", 204), ("POST", "/api/login/", 400), ("GET", "/api/video/1/master.m3u8", 401),
    ("GET", "/api/stream/bad-token/1/master.m3u8", 401), ("GET", "/media/thumbnail/1.jpg", 404),
    ("GET", "/metrics", 401),
])
async def test_every_response_carries_a_request_id(client, method, path, expected):
    body = {"email": "a@b.c", "password": "x"} if method == "POST" else None
    response = await client.fetch(method, path, body)
    assert response.status == expected
    assert GENERATED_ID.fullmatch(response.headers["X-Request-ID"])
    again = await client.fetch(method, path, body, headers={"X-Request-ID": "mine-1"})
    assert again.headers["X-Request-ID"] == "mine-1"


@pytest.mark.gen_test
async def test_request_ids_differ_per_request(client):
    ids = {(await client.get("/api/health/")).headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5


# --- a transcode: metrics, the request id in its logs, log levels ---------------------

@pytest.mark.slow
@pytest.mark.gen_test(timeout=120)
async def test_transcode_is_measured_and_logs_carry_the_uploads_request_id(admin_client, runner, small_clip,
                                                                           caplog, client):
    caplog.handler.addFilter(RequestIdFilter())
    caplog.set_level(logging.DEBUG)
    body, content_type = multipart({"title": "Measured", "description": "A clip", "category": "Drama"},
                                   "clip.mp4", small_clip.read_bytes())
    response = await admin_client.fetch("POST", "/api/video/", raw_body=body,
                                        headers={"Content-Type": content_type, "X-Request-ID": "upload-req-42"})
    assert response.status == 201, response.body
    assert response.headers["X-Request-ID"] == "upload-req-42"
    video_id = response.json()["id"]
    await wait_for_status(admin_client, video_id, "ready")
    registry = metrics.of(runner.services).registry
    await wait_until(lambda: registry.get_sample_value("videoflix_transcode_jobs_total", {"outcome": "ready"}) == 1,
                     "the job counted as ready")

    job_records = [r for r in caplog.records if r.name.startswith("videoflix.transcode")
                   and f"video {video_id}" in r.getMessage()]
    assert any("transcoding" in r.getMessage() for r in job_records)
    assert any("ready" in r.getMessage() for r in job_records)
    assert [r.getMessage() for r in job_records if getattr(r, "request_id", None) != "upload-req-42"] == []

    caplog.clear()
    master = await admin_client.get(f"/api/video/{video_id}/master.m3u8")
    segment = await admin_client.get(f"/api/video/{video_id}/480p/seg_00000.ts")
    missing = await admin_client.get(f"/api/video/{video_id}/480p/seg_09999.ts")
    versioned = await admin_client.get(f"/api/video/{video_id}/v1/480p/seg_00000.ts")  # what the master names
    assert (master.status, segment.status, missing.status, versioned.status) == (200, 200, 404, 200)
    access = {r.path: r for r in caplog.records if r.name == "videoflix.access"}
    assert access[f"/api/video/{video_id}/v1/480p/seg_00000.ts"].levelno == logging.DEBUG
    assert access[f"/api/video/{video_id}/master.m3u8"].levelno == logging.INFO
    assert access[f"/api/video/{video_id}/480p/seg_00000.ts"].levelno == logging.DEBUG
    assert access[f"/api/video/{video_id}/480p/seg_09999.ts"].levelno == logging.WARNING
    assert access[f"/api/video/{video_id}/480p/seg_00000.ts"].bytes == len(segment.body)

    samples = await scrape(client)
    assert value(samples, "videoflix_transcode_jobs_total", outcome="ready") == 1
    assert value(samples, "videoflix_transcode_duration_seconds_count") == 1
    assert value(samples, "videoflix_transcode_speed_ratio_count") == 1
    assert 5.5 <= value(samples, "videoflix_transcode_media_seconds_total") <= 6.5  # the clip is 6 s
    speed = value(samples, "videoflix_transcode_media_seconds_total") / value(
        samples, "videoflix_transcode_duration_seconds_sum")
    assert speed > 0
    assert samples[("videoflix_transcode_busy_workers", ())] == 0
    assert samples[("videoflix_transcode_pool_workers", ())] == 1
    assert samples[("videoflix_transcode_queue_length", ())] == 0
    segment_route = "/api/video/{}/{}/{}/?"
    assert value(samples, "videoflix_http_requests_total", route=segment_route, method="GET", status="200") == 1
    assert value(samples, "videoflix_http_response_bytes_total", route=segment_route) == len(segment.body) + len(
        missing.body)  # the 404 is JSON


# --- JSON logs from the real server --------------------------------------------------

def test_serve_with_json_log_format_writes_one_json_object_per_line(database_url, redis_server, tmp_path):
    port = free_port()
    env = cli_env(DATABASE_URL=database_url, REDIS_URL=redis_server.url, SECRET_KEY="k" * 32,
                  VIDEOFLIX_PORT=str(port), VIDEOFLIX_VAR_DIR=str(tmp_path / "var"), VIDEOFLIX_LOG_FORMAT="json",
                  VIDEOFLIX_METRICS_TOKEN=TOKEN)
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log_file, subprocess.Popen(
            [sys.executable, "-m", "videoflix", "serve"], cwd=tmp_path, env=env,
            stdout=log_file, stderr=subprocess.STDOUT) as proc:
        try:
            wait_for_health(port, proc)
            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/health/",
                                             headers={"X-Request-ID": "json-log-1"})
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.headers["X-Request-ID"] == "json-log-1"
            request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                             headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(request, timeout=10) as answer:
                families = {f.name for f in text_string_to_metric_families(answer.read().decode())}
            assert {"videoflix_http_requests", "videoflix_transcode_jobs", "videoflix_login_failures"} <= families
        finally:
            assert stop_process(proc) == 0, log_path.read_text()
    lines = log_path.read_text().splitlines()
    assert lines
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(record) for record in records)
    (access,) = [r for r in records if r["logger"] == "videoflix.access" and r.get("request_id") == "json-log-1"]
    assert access["level"] == "INFO" and access["status"] == 200 and access["method"] == "GET"
    assert access["path"] == "/api/health/" and access["route"] == "/api/health/"
    assert access["bytes"] > 0 and access["duration_ms"] >= 0


# --- the separate metrics listener -------------------------------------------------------

@pytest.mark.parametrize("value", ["9100", "host:", "host:port", "127.0.0.1:70000", "127.0.0.1:0", ":-1"])
def test_metrics_listen_must_be_host_and_port(value):
    with pytest.raises(ConfigError, match="VIDEOFLIX_METRICS_LISTEN"):
        Config.from_env({"VIDEOFLIX_METRICS_LISTEN": value})


def test_worker_serves_metrics_without_token_on_the_separate_listen_address(database_url, redis_server, tmp_path):
    admin_port = free_port()
    env = cli_env(DATABASE_URL=database_url, REDIS_URL=redis_server.url, SECRET_KEY="k" * 32,
                  VIDEOFLIX_VAR_DIR=str(tmp_path / "var"), VIDEOFLIX_METRICS_LISTEN=f"127.0.0.1:{admin_port}",
                  TRANSCODE_WORKERS="2")
    with open(tmp_path / "worker.log", "wb") as log_file, subprocess.Popen(
            [sys.executable, "-m", "videoflix", "worker"], cwd=tmp_path, env=env,
            stdout=log_file, stderr=subprocess.STDOUT) as proc:
        try:
            text = _get_when_up(f"http://127.0.0.1:{admin_port}/metrics", proc)
            samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
            assert samples["videoflix_transcode_pool_workers"] == 2
            assert samples["videoflix_transcode_busy_workers"] == 0
            # Only /metrics lives there: not the API.
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/api/health/", timeout=5)
            refused.value.close()
            assert refused.value.code == 404
        finally:
            assert stop_process(proc) == 0, (tmp_path / "worker.log").read_text()


def _get_when_up(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return answer.read().decode()
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.1)


@pytest.mark.gen_test
async def test_cross_origin_frontend_may_send_and_read_the_request_id(client):
    origin = {"Origin": "http://127.0.0.1:5500"}
    preflight = await client.fetch("OPTIONS", "/api/video/", headers={**origin,
                                   "Access-Control-Request-Headers": "x-request-id"})
    assert "x-request-id" in preflight.headers["Access-Control-Allow-Headers"].lower()
    response = await client.get("/api/health/", headers={**origin, "X-Request-ID": "from-the-spa"})
    assert "x-request-id" in response.headers["Access-Control-Expose-Headers"].lower()
    assert response.headers["X-Request-ID"] == "from-the-spa"
