"""Redis stopped and PostgreSQL restarted under a running server: JSON 503s at once,
nothing hangs, and everything recovers without restarting the server (issue 11, item 2).
On MEDIA_DIR only: what stops here is Redis or PostgreSQL, not the media store; an object
store that stops is test_many_hosts_store.py's (jobs) and test_s3_serving.py's (serving)."""
from __future__ import annotations

import time

import requests

from faultkit import Api, as_json, make_user, wait_for


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_redis_outage_answers_503_within_a_second_and_everything_recovers_without_a_restart(
        servers, db, fault_redis, short_clip):
    server = servers(TRANSCODE_LEASE_SECONDS="3")
    api = Api(server.base)
    make_user(api, db)

    fault_redis.stop()
    try:
        health, took = timed(lambda: requests.get(server.base + "/api/health/", timeout=10))
        assert health.status_code == 503 and took <= 1.0, (health.status_code, took)
        assert as_json(health)["redis"] == "error"
        for attempt in range(3):  # a login needs Redis (throttling)
            login, took = timed(lambda: api.login("owner@example.com"))
            assert login.status_code == 503 and took <= 1.0, (login.status_code, took, login.text)
            assert as_json(login)["detail"]
            assert login.headers["Retry-After"]
    finally:
        fault_redis.start()

    wait_for(lambda: requests.get(server.base + "/api/health/", timeout=5).status_code == 200,
             "health to recover", timeout=30)
    assert api.login("owner@example.com").status_code == 200
    # The consumer recovered too: a new upload is transcoded.
    video_id = api.upload(short_clip).json()["id"]
    wait_for(lambda: api.detail(video_id)["status"] == "ready", "the upload to be transcoded", timeout=120,
             interval=0.3)
    # A row whose queue entry was lost (e.g. Redis's last second before a crash) is
    # re-enqueued by the periodic reconciliation, not only at start-up.
    db.query("UPDATE videos SET status = 'queued', updated_at = now() - interval '1 minute' WHERE id = %s",
             (video_id,))
    wait_for(lambda: db.video(video_id)["status"] == "ready" and db.video(video_id)["attempts"] == 2,
             "the reconciled row to be transcoded again", timeout=120, interval=0.3)
    assert f"video {video_id}: no queue entry for an unfinished row; enqueued again" in server.log()
    assert server.proc.poll() is None


def test_postgres_restart_answers_503_during_the_outage_and_the_pool_recovers_by_itself(
        servers, db, fault_postgres):
    server = servers()
    api = Api(server.base)
    make_user(api, db)
    assert api.call("GET", "/api/video/").status_code == 200

    fault_postgres.stop()
    try:
        health, took = timed(lambda: api.call("GET", "/api/health/", timeout=10))
        assert health.status_code == 503 and took <= 2.0, (health.status_code, took)
        assert as_json(health)["database"] == "error"
        login, took = timed(lambda: api.login("owner@example.com"))
        assert login.status_code == 503 and took <= 2.0, (login.status_code, took)
        assert as_json(login)["detail"]
    finally:
        fault_postgres.start()

    wait_for(lambda: requests.get(server.base + "/api/health/", timeout=5).status_code == 200,
             "health to recover", timeout=30)
    wait_for(lambda: api.login("owner@example.com").status_code == 200, "logins to work again", timeout=10)
    assert api.call("GET", "/api/video/").status_code == 200
    assert "Traceback" not in server.log()
