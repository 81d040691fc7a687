"""The admin console's API (issue 24): /api/admin/ users, jobs, videos and the audit
log, with their permissions and failure cases, on the real server, PostgreSQL, Redis,
SMTP and media directory; the `videoflix users|jobs` commands in a subprocess."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest

from videoflix.console import guard
from videoflix.platform import media
from videoflix.platform.db import cursor
from videoflix.tables import videos as video_rows
from videoflix.transcode import queue

from helpers import PASSWORD, cli_env, link_from_mail, login, make_ready_video, publish_ladder

ADMIN_EMAIL = "admin@example.com"
CSRF_FAILED = {"detail": "CSRF token missing or incorrect."}
LAST_ADMIN = {"detail": "This is the last active admin: make another admin first."}


@pytest.fixture
def admin_client(new_client, make_admin, io_loop):
    browser = new_client()
    browser.user_id = io_loop.run_sync(lambda: make_admin(browser, ADMIN_EMAIL))
    return browser


async def act(browser, method: str, path: str, body=None, **kwargs):
    """A change as the web app makes it: the csrftoken cookie echoed in X-CSRFToken."""
    headers = {"X-CSRFToken": browser.cookies.get("csrftoken", ""), **kwargs.pop("headers", {})}
    return await browser.fetch(method, path, body, headers=headers, **kwargs)


async def audit_rows(services) -> list[dict]:
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT * FROM audit_log ORDER BY id")
        return await cur.fetchall()


def media_files(config, video_id: int) -> list[Path]:
    folder = media.video_dir(config.media_dir, video_id)
    found = [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []
    source = media.source_path(config.media_dir, video_id)
    return found + ([source] if source.exists() else [])


# --- who may: every route, every method ---------------------------------------------

ROUTES = [
    ("GET", "/api/admin/users/"), ("GET", "/api/admin/users/1/"), ("PATCH", "/api/admin/users/1/"),
    ("DELETE", "/api/admin/users/1/"), ("POST", "/api/admin/users/1/activation/"),
    ("POST", "/api/admin/users/1/password_reset/"), ("GET", "/api/admin/jobs/"),
    ("DELETE", "/api/admin/jobs/1-0/"), ("POST", "/api/admin/jobs/1/retry/"), ("POST", "/api/admin/jobs/1/cancel/"),
    ("GET", "/api/admin/videos/"), ("POST", "/api/admin/videos/bulk/"), ("GET", "/api/admin/audit/"),
]


@pytest.mark.gen_test
async def test_every_admin_route_is_401_anonymous_and_403_for_users(client, new_client, make_user, services):
    anonymous = new_client()
    for method, path in ROUTES:
        body = {"is_active": False} if method == "PATCH" else None
        response = await act(anonymous, method, path, body)
        assert response.status == 401, (method, path, response.body)
        assert response.json() == {"detail": "Authentication credentials were not provided."}
    await make_user()
    for method, path in ROUTES:
        body = {"is_active": False} if method == "PATCH" else ({"action": "delete", "ids": [1]}
                                                              if path.endswith("bulk/") else None)
        response = await act(client, method, path, body)
        assert (response.status, response.json()) == (403, {"detail": "You do not have permission to perform "
                                                                       "this action."}), (method, path)
    assert await audit_rows(services) == []


@pytest.mark.gen_test
async def test_changes_need_the_csrf_header_with_cookies_but_not_with_a_bearer_token(admin_client, client,
                                                                                     make_user):
    user = await make_user()
    path = f"/api/admin/users/{user['id']}/"
    # Cookies, no header; cookies, a wrong header: refused before anything changes.
    response = await admin_client.fetch("PATCH", path, {"is_active": False})
    assert (response.status, response.json()) == (403, CSRF_FAILED)
    response = await admin_client.fetch("PATCH", path, {"is_active": False}, headers={"X-CSRFToken": "forged"})
    assert (response.status, response.json()) == (403, CSRF_FAILED)
    assert (await admin_client.get(path)).json()["is_active"] is True
    # A Bearer token rides on no cookie: a cross-site page cannot send it.
    bearer = admin_client.cookies["access_token"]
    response = await admin_client.fetch("PATCH", path, {"is_active": False}, cookies=False,
                                        headers={"Authorization": f"Bearer {bearer}"})
    assert (response.status, response.json()["is_active"]) == (200, False)


@pytest.mark.gen_test
async def test_changes_follow_the_origin_and_json_rules(admin_client, make_user):
    user = await make_user()
    path = f"/api/admin/users/{user['id']}/"
    response = await act(admin_client, "PATCH", path, {"is_active": False}, headers={"Origin": "https://evil.test"})
    assert (response.status, response.json()) == (403, {"detail": "Cross-site request refused."})
    response = await act(admin_client, "PATCH", path, raw_body=b"is_active=false",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (response.status, response.json()) == (415, {"detail": "Expected application/json."})
    response = await act(admin_client, "PATCH", path, raw_body=b"{not json")
    assert (response.status, response.json()) == (400, {"detail": "Invalid JSON body."})
    assert (await admin_client.get(path)).json()["is_active"] is True


@pytest.mark.gen_test
async def test_admin_changes_are_throttled_per_admin(admin_client, make_user, services):
    user = await make_user()
    path = f"/api/admin/users/{user['id']}/"
    for number in range(guard.ACTIONS_PER_WINDOW):
        response = await act(admin_client, "PATCH", path, {"is_active": number % 2 == 1})  # ends True
        assert response.status == 200, response.body
    response = await act(admin_client, "PATCH", path, {"is_active": False})
    assert response.status == 429
    assert 1 <= int(response.headers["Retry-After"]) <= guard.WINDOW_SECONDS
    assert response.json() == {"detail": "Too many admin actions: try again in a minute."}
    # Reads are not counted, and the refused change did not happen.
    assert (await admin_client.get(path)).json()["is_active"] is True
    # Every change route spends the same budget.
    for method, route in ROUTES:
        if method != "GET":
            body = {"is_active": False} if method == "PATCH" else ({"action": "delete", "ids": [user["id"]]}
                                                                  if route.endswith("bulk/") else None)
            assert (await act(admin_client, method, route, body)).status == 429, route
    assert len(await audit_rows(services)) == guard.ACTIONS_PER_WINDOW


# --- users ------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_user_list_shows_usage_and_takes_search_filters_order_and_pages(admin_client, client, make_user,
                                                                              services, new_client):
    alice = await make_user("alice@example.com")
    await make_user("bob@example.com", log_in=False)
    await make_user("carol@example.com", log_in=False, activate=False)
    await make_ready_video(services, alice["id"])
    async with cursor(services.pool) as cur:
        await cur.execute("UPDATE videos SET source_size = 1234 WHERE owner_id = %s", (alice["id"],))
    page = (await admin_client.get("/api/admin/users/?order=email")).json()
    assert page["count"] == 4 and [u["email"] for u in page["results"]] == [
        ADMIN_EMAIL, "alice@example.com", "bob@example.com", "carol@example.com"]
    alice_item = page["results"][1]
    assert alice_item["video_count"] == 1 and alice_item["bytes_stored"] == 1234
    assert alice_item["last_login"] is not None and alice_item["joined"] and alice_item["is_active"] is True
    assert page["results"][3]["is_active"] is False and page["results"][3]["last_login"] is None
    search = (await admin_client.get("/api/admin/users/?search=BOB")).json()
    assert [u["email"] for u in search["results"]] == ["bob@example.com"]
    # LIKE's own wildcards are taken literally.
    assert (await admin_client.get("/api/admin/users/?search=%25")).json()["count"] == 0
    inactive = (await admin_client.get("/api/admin/users/?active=false")).json()
    assert [u["email"] for u in inactive["results"]] == ["carol@example.com"]
    admins = (await admin_client.get("/api/admin/users/?admin=true")).json()
    assert [u["email"] for u in admins["results"]] == [ADMIN_EMAIL]
    second = (await admin_client.get("/api/admin/users/?order=email&limit=2&offset=2")).json()
    assert (second["count"], [u["email"] for u in second["results"]]) == (4, ["bob@example.com",
                                                                              "carol@example.com"])
    one = (await admin_client.get(f"/api/admin/users/{alice['id']}/")).json()
    assert one == alice_item


@pytest.mark.gen_test
@pytest.mark.parametrize("query, field", [
    ("limit=0", "limit"), ("limit=101", "limit"), ("limit=ten", "limit"), ("offset=-1", "offset"),
    ("active=maybe", "active"), ("admin=2", "admin"), ("order=password_hash", "order"),
    ("search=" + "x" * 201, "search"), ("search=%00", "search"), ("limit=%C2%B2", "limit"),
])
async def test_user_list_bad_filters_are_field_errors(admin_client, query, field):
    response = await admin_client.get(f"/api/admin/users/?{query}")
    assert response.status == 400 and list(response.json()) == [field], response.body


@pytest.mark.gen_test
async def test_unknown_users_are_404(admin_client):
    for method, path, body in (("GET", "/api/admin/users/999/", None), ("PATCH", "/api/admin/users/999/",
                                                                        {"is_admin": True}),
                               ("DELETE", "/api/admin/users/999/", None),
                               ("POST", "/api/admin/users/999/activation/", None),
                               ("POST", "/api/admin/users/999/password_reset/", None),
                               ("GET", "/api/admin/users/abc/", None), ("GET", "/api/admin/users/0/", None)):
        response = await act(admin_client, method, path, body)
        assert (response.status, response.json()) == (404, {"detail": "Not found."}), (method, path)


@pytest.mark.gen_test
@pytest.mark.parametrize("body, expected", [
    ({}, {"detail": "Nothing to change: send is_active or is_admin."}),
    ({"email": "x@example.com"}, {"detail": "Nothing to change: send is_active or is_admin."}),
    ({"is_active": "false"}, {"is_active": ["Must be true or false."]}),
    ({"is_admin": 1}, {"is_admin": ["Must be true or false."]}),
    ({"is_active": None}, {"is_active": ["Must be true or false."]}),
    ({"is_active": "\u0000"}, {"is_active": ["Null characters are not allowed."]}),
])
async def test_user_changes_that_are_not_booleans_are_400(admin_client, make_user, body, expected):
    user = await make_user()
    response = await act(admin_client, "PATCH", f"/api/admin/users/{user['id']}/", body)
    assert (response.status, response.json()) == (400, expected)


@pytest.mark.gen_test(timeout=60)
async def test_deactivation_ends_the_users_sessions_streams_and_tokens_at_once(admin_client, client, make_user,
                                                                              services, new_client):
    from test_events import EventStream, ends

    from videoflix.web.event_handlers import HEARTBEAT_SECONDS

    user = await make_user()
    video_id = await make_ready_video(services, user["id"], visibility="private")
    stream_url = (await client.get(f"/api/video/{video_id}/stream/")).json()["url"]
    stream = await EventStream.open(client)
    await stream.snapshot()
    response = await act(admin_client, "PATCH", f"/api/admin/users/{user['id']}/", {"is_active": False})
    assert (response.status, response.json()["is_active"]) == (200, False)
    await ends(stream, within=HEARTBEAT_SECONDS / 4)  # at once, not at the next check
    assert (await client.get("/api/video/")).status == 401  # the access token
    refresh = await client.post("/api/token/refresh/")
    assert refresh.status == 401, refresh.body  # the refresh token
    player = new_client()
    assert (await player.get(stream_url.replace(admin_client.base_url, ""), cookies=False)).status in (401, 403, 404)
    login_again = await new_client().post("/api/login/", {"email": "user@example.com", "password": PASSWORD})
    assert login_again.status in (400, 401, 403) and login_again.status != 200
    [entry] = await audit_rows(services)
    assert (entry["actor_id"], entry["actor"], entry["address"], entry["action"], entry["target_type"],
            entry["target_id"], entry["target_label"], entry["details"]) == (
        admin_client.user_id, ADMIN_EMAIL, "127.0.0.1", "user.deactivate", "user", str(user["id"]),
        "user@example.com", {"is_active": False})


@pytest.mark.gen_test
async def test_reactivation_lets_the_user_in_again_and_an_old_activation_link_does_not(admin_client, client,
                                                                                     services, mailbox):
    from helpers import register_user

    user = await register_user(client, services, mailbox, "late@example.com", activate=False)
    uid, token = link_from_mail(mailbox.messages[-1])
    assert (await client.get(f"/api/activate/{uid}/{token}/")).status == 200
    path = f"/api/admin/users/{user['id']}/"
    assert (await act(admin_client, "PATCH", path, {"is_active": False})).status == 200
    # The user's own activation link (valid for 3 days) must not undo the admin's deactivation.
    assert (await client.get(f"/api/activate/{uid}/{token}/")).status == 200
    assert (await admin_client.get(path)).json()["is_active"] is False
    assert (await client.post("/api/login/", {"email": "late@example.com", "password": PASSWORD})).status != 200
    assert (await act(admin_client, "PATCH", path, {"is_active": True})).json()["is_active"] is True
    await login(client, "late@example.com")
    assert [row["action"] for row in await audit_rows(services)] == ["user.deactivate", "user.activate"]


@pytest.mark.gen_test
async def test_deactivating_an_account_never_activated_kills_its_activation_link(admin_client, client, services,
                                                                                 mailbox):
    from helpers import register_user

    user = await register_user(client, services, mailbox, "spam@example.com", activate=False)
    uid, token = link_from_mail(mailbox.messages[-1])
    path = f"/api/admin/users/{user['id']}/"
    response = await act(admin_client, "PATCH", path, {"is_active": False})
    assert (response.status, response.json()["is_active"]) == (200, False)
    assert (await client.get(f"/api/activate/{uid}/{token}/")).status == 200  # (says "already activated")
    assert (await admin_client.get(path)).json()["is_active"] is False
    assert (await client.post("/api/login/", {"email": "spam@example.com", "password": PASSWORD})).status != 200
    # Nor can an admin mail it a new link: it is decided. Reactivating is the way back.
    response = await act(admin_client, "POST", f"/api/admin/users/{user['id']}/activation/")
    assert response.status == 409
    assert [row["action"] for row in await audit_rows(services)] == ["user.deactivate"]


@pytest.mark.gen_test
async def test_promotion_and_demotion(admin_client, client, make_user, services, new_client):
    user = await make_user()
    path = f"/api/admin/users/{user['id']}/"
    response = await act(admin_client, "PATCH", path, {"is_admin": True})
    assert (response.status, response.json()["is_admin"]) == (200, True)
    # Takes effect with the next token: a refresh reads the row.
    assert (await client.post("/api/token/refresh/")).status == 200
    assert (await client.get("/api/admin/users/")).status == 200
    # Sending what already is changes nothing and writes no entry.
    assert (await act(admin_client, "PATCH", path, {"is_admin": True, "is_active": True})).status == 200
    # Demotion ends the sessions: the admin mark in the old tokens must not outlive it.
    response = await act(admin_client, "PATCH", path, {"is_admin": False})
    assert (response.status, response.json()["is_admin"]) == (200, False)
    assert (await client.get("/api/admin/users/")).status == 401
    await login(client, "user@example.com")
    assert (await client.get("/api/admin/users/")).status == 403
    assert [row["action"] for row in await audit_rows(services)] == ["user.promote", "user.demote"]


@pytest.mark.gen_test
async def test_the_last_admin_is_never_demoted_deactivated_or_deleted(admin_client, client, make_user, services):
    me = f"/api/admin/users/{admin_client.user_id}/"
    for method, body in (("PATCH", {"is_admin": False}), ("PATCH", {"is_active": False}), ("DELETE", None)):
        response = await act(admin_client, method, me, body)
        assert (response.status, response.json()) == (409, LAST_ADMIN), (method, body)
    # With a second admin, the first may step down (and the second is then the last).
    user = await make_user()
    assert (await act(admin_client, "PATCH", f"/api/admin/users/{user['id']}/", {"is_admin": True})).status == 200
    assert (await act(admin_client, "PATCH", me, {"is_admin": False})).status == 200
    await login(client, "user@example.com")  # (a new token: the admin mark)
    response = await act(client, "PATCH", f"/api/admin/users/{user['id']}/", {"is_admin": False})
    assert (response.status, response.json()) == (409, LAST_ADMIN)
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT count(*) AS n FROM users WHERE is_admin AND is_active")
        assert (await cur.fetchone())["n"] == 1


@pytest.mark.gen_test(timeout=60)
async def test_deleting_a_user_removes_every_video_file_row_and_queue_entry(admin_client, client, make_user,
                                                                           services, config, small_ladder):
    folder, result = small_ladder
    user = await make_user()
    other = await make_user("other@example.com", log_in=False)
    published = await publish_ladder(services, config, user["id"], folder, result, title="Mine")
    queued = await make_ready_video(services, user["id"], title="Waiting")
    kept = await publish_ladder(services, config, other["id"], folder, result, title="Theirs")
    async with cursor(services.pool) as cur:
        await cur.execute("UPDATE videos SET status = 'queued' WHERE id = %s", (queued,))
        await cur.execute("INSERT INTO watch_progress (user_id, video_id, position) VALUES (%s, %s, 3)",
                          (other["id"], published))
    await queue.enqueue(services.redis, queued, user["id"])
    source = media.source_path(config.media_dir, published)
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(b"source bytes")
    subtitles = media.subtitle_path(config.media_dir, published, "en")
    subtitles.parent.mkdir(parents=True, exist_ok=True)
    subtitles.write_text("WEBVTT\n")
    expected_files = len(media_files(config, published))
    assert expected_files > 5

    response = await act(admin_client, "DELETE", f"/api/admin/users/{user['id']}/")
    assert response.status == 200, response.body
    body = response.json()
    assert body["user"]["email"] == "user@example.com"
    assert body["removed"]["videos"] == [{"id": published, "title": "Mine"}, {"id": queued, "title": "Waiting"}]
    assert body["removed"]["files"] == expected_files
    # Nothing of the user's is left: files, rows, queue entries; the other user's video is untouched.
    assert media_files(config, published) == [] and media_files(config, queued) == []
    assert not media.video_dir(config.media_dir, published).exists()
    assert media_files(config, kept)
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT id FROM videos ORDER BY id")
        assert [row["id"] for row in await cur.fetchall()] == [kept]
        await cur.execute("SELECT count(*) AS n FROM watch_progress")
        assert (await cur.fetchone())["n"] == 0
        await cur.execute("SELECT count(*) AS n FROM users WHERE id = %s", (user["id"],))
        assert (await cur.fetchone())["n"] == 0
    assert await queue.pending_video_ids(services.redis) == set()
    assert (await client.get("/api/video/")).status == 401  # the deleted user's session is over
    assert (await admin_client.get(f"/api/admin/users/{user['id']}/")).status == 404
    [entry] = await audit_rows(services)
    assert (entry["action"], entry["target_id"], entry["target_label"]) == ("user.delete", str(user["id"]),
                                                                            "user@example.com")
    assert entry["details"]["videos"] == body["removed"]["videos"]


@pytest.mark.gen_test
async def test_activation_and_reset_mails_sent_by_an_admin(admin_client, client, make_user, services, mailbox):
    from helpers import register_user

    pending = await register_user(client, services, mailbox, "pending@example.com", activate=False)
    active = await make_user("active@example.com", log_in=False)
    mailbox.clear()
    response = await act(admin_client, "POST", f"/api/admin/users/{pending['id']}/activation/")
    assert (response.status, response.json()) == (202, {"detail": "Email sent."})
    await services.mailer.drain()
    uid, token = link_from_mail(mailbox.messages[-1])
    assert mailbox.envelopes[-1] == ["pending@example.com"]
    assert (await client.get(f"/api/activate/{uid}/{token}/")).status == 200
    # Active now: nothing to activate.
    response = await act(admin_client, "POST", f"/api/admin/users/{pending['id']}/activation/")
    assert response.status == 409
    response = await act(admin_client, "POST", f"/api/admin/users/{active['id']}/password_reset/")
    assert response.status == 202
    await services.mailer.drain()
    uid, token = link_from_mail(mailbox.messages[-1])
    assert mailbox.envelopes[-1] == ["active@example.com"]
    confirm = await client.post(f"/api/password_confirm/{uid}/{token}/",
                                {"new_password": "another-long-pass-1", "confirm_password": "another-long-pass-1"})
    assert confirm.status == 200, confirm.body
    # The recipient's mail budget (3 an hour, with the activation mail of sign-up) is the user's protection too.
    statuses = [(await act(admin_client, "POST", f"/api/admin/users/{active['id']}/password_reset/")).status
                for _ in range(3)]
    assert statuses[-1] == 429 and statuses.count(202) == statuses.index(429)
    assert [row["action"] for row in await audit_rows(services)] == [
        "user.resend_activation", "user.password_reset", *["user.password_reset"] * statuses.count(202)]


# --- the audit log ------------------------------------------------------------------


@pytest.mark.gen_test
async def test_the_audit_log_is_append_only_in_the_database_and_the_api(admin_client, make_user, services):
    user = await make_user()
    await act(admin_client, "PATCH", f"/api/admin/users/{user['id']}/", {"is_active": False})
    async with cursor(services.pool) as cur:
        for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log",
                          "TRUNCATE audit_log"):
            with pytest.raises(psycopg2.Error, match="append-only"):
                await cur.execute(statement)
    assert [row["actor"] for row in await audit_rows(services)] == [ADMIN_EMAIL]
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = await act(admin_client, method, "/api/admin/audit/", {} if method != "DELETE" else None)
        assert response.status == 405, method
    assert len(await audit_rows(services)) == 1


@pytest.mark.gen_test
async def test_a_change_and_its_entry_commit_together(admin_client, make_user, services):
    """An entry that cannot be written (a constraint added for the test refuses it)
    rolls the change back with it: no change without its entry."""
    user = await make_user()
    async with cursor(services.pool) as cur:
        await cur.execute("ALTER TABLE audit_log ADD CONSTRAINT audit_log_test_refuse CHECK (action <> "
                          "'user.deactivate')")
    try:
        response = await act(admin_client, "PATCH", f"/api/admin/users/{user['id']}/", {"is_active": False})
        assert response.status == 500
    finally:
        async with cursor(services.pool) as cur:
            await cur.execute("ALTER TABLE audit_log DROP CONSTRAINT audit_log_test_refuse")
    assert (await admin_client.get(f"/api/admin/users/{user['id']}/")).json()["is_active"] is True
    assert await audit_rows(services) == []


@pytest.mark.gen_test
async def test_the_audit_log_lists_newest_first_with_filters_and_pages(admin_client, make_user, services):
    first = await make_user("one@example.com", log_in=False)
    second = await make_user("two@example.com", log_in=False)
    for user in (first, second):
        await act(admin_client, "PATCH", f"/api/admin/users/{user['id']}/", {"is_active": False})
    await act(admin_client, "PATCH", f"/api/admin/users/{first['id']}/", {"is_admin": True})
    page = (await admin_client.get("/api/admin/audit/?limit=2")).json()
    assert [e["action"] for e in page["results"]] == ["user.promote", "user.deactivate"]
    assert page["results"][0]["target_label"] == "one@example.com" and page["results"][0]["address"] == "127.0.0.1"
    older = (await admin_client.get(f"/api/admin/audit/?limit=2&before={page['next_before']}")).json()
    assert [e["target_label"] for e in older["results"]] == ["one@example.com"] and older["next_before"] is None
    only = (await admin_client.get("/api/admin/audit/?action=user.deactivate")).json()["results"]
    assert [e["target_label"] for e in only] == ["two@example.com", "one@example.com"]
    mine = (await admin_client.get(f"/api/admin/audit/?target_type=user&target_id={first['id']}")).json()
    assert [e["action"] for e in mine["results"]] == ["user.promote", "user.deactivate"]
    by_actor = (await admin_client.get(f"/api/admin/audit/?actor={admin_client.user_id}")).json()["results"]
    assert len(by_actor) == 3
    for query in ("action=user.explode", "limit=201", "before=x", "target_type=planet", "actor=-1"):
        response = await admin_client.get(f"/api/admin/audit/?{query}")
        assert response.status == 400, query


# --- the command line -----------------------------------------------------------------


def run_cli(config, tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = cli_env(DATABASE_URL=config.database_url, REDIS_URL=config.redis_url, SECRET_KEY=config.secret_key,
                  VIDEOFLIX_MEDIA_DIR=config.media_dir, VIDEOFLIX_VAR_DIR=str(tmp_path / "var"))
    return subprocess.run([sys.executable, "-m", "videoflix", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.gen_test(timeout=120)
async def test_the_users_commands_use_the_same_functions_and_write_the_audit_log(admin_client, client, make_user,
                                                                               services, config, tmp_path):
    user = await make_user()
    await make_ready_video(services, user["id"])
    listing = run_cli(config, tmp_path, "users", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    assert {u["email"]: u["video_count"] for u in json.loads(listing.stdout)["results"]} == {
        ADMIN_EMAIL: 0, "user@example.com": 1}
    table = run_cli(config, tmp_path, "users", "list", "--admin", "false")
    assert "user@example.com" in table.stdout and ADMIN_EMAIL not in table.stdout and "1 user(s)" in table.stdout
    shown = run_cli(config, tmp_path, "users", "show", "user@example.com")
    assert json.loads(shown.stdout)["id"] == user["id"]
    deactivated = run_cli(config, tmp_path, "users", "deactivate", str(user["id"]))
    assert json.loads(deactivated.stdout)["is_active"] is False
    assert (await client.get("/api/video/")).status == 401  # (another process: within the session cache's 5 s)
    promoted = run_cli(config, tmp_path, "users", "promote", "user@example.com")
    assert json.loads(promoted.stdout)["is_admin"] is True
    # The user is an admin now but inactive: the admin is still the last active one.
    last = run_cli(config, tmp_path, "users", "demote", ADMIN_EMAIL)
    assert (last.returncode, last.stderr.strip()) == (
        1, "videoflix: that is the last active admin: make another admin first")
    refused = run_cli(config, tmp_path, "users", "delete", "user@example.com")
    assert refused.returncode == 1 and "--yes" in refused.stderr
    missing = run_cli(config, tmp_path, "users", "show", "nobody@example.com")
    assert (missing.returncode, missing.stderr.strip()) == (1, "videoflix: no such user: nobody@example.com")
    deleted = run_cli(config, tmp_path, "users", "delete", "user@example.com", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert len(json.loads(deleted.stdout)["removed"]["videos"]) == 1
    entries = await audit_rows(services)
    assert [e["action"] for e in entries] == ["user.deactivate", "user.promote", "user.delete"]
    assert all(e["actor_id"] is None and e["actor"].startswith("cli:") and e["address"] == "cli" for e in entries)


@pytest.mark.gen_test(timeout=120)
async def test_the_jobs_commands_list_cancel_retry_and_discard(admin_client, client, make_user, services, config,
                                                              tmp_path, small_clip):
    await make_user()
    video_id = await uploaded(client, small_clip)
    listed = json.loads(run_cli(config, tmp_path, "jobs", "list").stdout)
    assert listed["counts"] == {"queued": 1, "running": 0, "failed": 0, "dead_letters": 0}
    assert listed == (await admin_client.get("/api/admin/jobs/")).json()
    cancelled = run_cli(config, tmp_path, "jobs", "cancel", str(video_id))
    assert json.loads(cancelled.stdout) == {"video_id": video_id, "status": "failed",
                                            "error": "Cancelled by an administrator."}
    again = run_cli(config, tmp_path, "jobs", "cancel", str(video_id))
    assert (again.returncode, again.stderr.strip()) == (1, "videoflix: The video is failed: no job to cancel.")
    retried = run_cli(config, tmp_path, "jobs", "retry", str(video_id))
    assert json.loads(retried.stdout) == {"video_id": video_id, "status": "queued"}
    assert await queue.pending_video_ids(services.redis) == {video_id}
    job = await queue.claim(services.redis, "elsewhere-1", 0)
    dead_id = await queue.dead_letter(services.redis, job, "gone")
    discarded = run_cli(config, tmp_path, "jobs", "discard", dead_id)
    assert json.loads(discarded.stdout) == {"discarded": dead_id}
    for bad in ("abc", "1-2-3", "99-0"):
        refused = run_cli(config, tmp_path, "jobs", "discard", bad)
        assert refused.returncode == 1 and refused.stderr.startswith("videoflix: "), (bad, refused.stderr)
    assert [(e["action"], e["actor"].startswith("cli:")) for e in await audit_rows(services)] == [
        ("job.cancel", True), ("job.retry", True), ("job.discard", True)]


# --- the queue ----------------------------------------------------------------------


@pytest.fixture
def host_runner(io_loop, config, services):
    """The real transcode consumer, named as `serve` names it: <hostname>-<pid>."""
    from videoflix.app import make_runner

    consumer = make_runner(config, services)
    io_loop.run_sync(consumer.start)
    yield consumer
    io_loop.run_sync(consumer.stop)


def outcome_of(runner, video_id: int):
    """A future for the next outcome of `video_id`'s job in `runner` (its own event)."""
    import asyncio

    future = asyncio.get_running_loop().create_future()

    def listen(outcome) -> None:
        if outcome.video_id == video_id and not future.done():
            future.set_result(outcome)

    runner.on_outcome.append(listen)
    return future


def children_of(pids: list[int]) -> list[str]:
    """The command names of the live child processes of `pids` (the pool's workers)."""
    names = []
    for pid in pids:
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                names.append(Path(f"/proc/{child}/comm").read_text().strip())
            except OSError:
                pass
    return names


async def uploaded(client, clip: Path, title: str = "A clip") -> int:
    from helpers import upload

    response = await upload(client, clip, title=title)
    assert response.status == 201, response.body
    return response.json()["id"]


@pytest.mark.gen_test(timeout=120)
async def test_jobs_list_queued_running_failed_and_dead_letters_with_their_reasons(admin_client, client, make_user,
                                                                                   services, small_clip):
    from videoflix.tables import videos as rows

    await make_user()
    first, second, third = [await uploaded(client, small_clip, title) for title in ("One", "Two", "Three")]
    # No consumer yet: two in the stream (the owner's share), the third waits its turn.
    jobs = (await admin_client.get("/api/admin/jobs/")).json()
    assert [(j["video_id"], j["waiting_turn"]) for j in jobs["queued"]] == [(first, False), (second, False),
                                                                             (third, True)]
    assert jobs["queued"][0]["owner_email"] == "user@example.com" and jobs["queued"][0]["title"] == "One"
    assert jobs["counts"] == {"queued": 3, "running": 0, "failed": 0, "dead_letters": 0}
    # A worker on another host takes the first: running there, with its pid and lease.
    job = await queue.claim(services.redis, "encoder-7.example-4242", 0)
    assert job.video_id == first
    running = (await admin_client.get("/api/admin/jobs/")).json()["running"]
    assert [(r["video_id"], r["host"], r["worker_pid"], r["deliveries"]) for r in running] == [
        (first, "encoder-7.example", 4242, 1)]
    assert 0 <= running[0]["lease_age_seconds"] < 60
    # It dies there too often: dead-lettered, the video failed (what the runner does).
    async with cursor(services.pool) as cur:
        await rows.mark_failed(cur, first, "Transcoding was interrupted 3 times; giving up.")
    dead_id = await queue.dead_letter(services.redis, job, "interrupted 3 times")
    jobs = (await admin_client.get("/api/admin/jobs/")).json()
    assert [(d["id"], d["video_id"], d["reason"], d["deliveries"]) for d in jobs["dead_letters"]] == [
        (dead_id, first, "interrupted 3 times", 1)]
    assert [(f["id"], f["error"]) for f in jobs["failed"]] == [(str(first),
                                                               "Transcoding was interrupted 3 times; giving up.")]
    # The third moved up when the first left the stream.
    assert [(j["video_id"], j["waiting_turn"]) for j in jobs["queued"]] == [(second, False), (third, False)]
    assert jobs["counts"] == {"queued": 2, "running": 0, "failed": 1, "dead_letters": 1}


@pytest.fixture
def metrics_config(config):
    import dataclasses

    return dataclasses.replace(config, metrics_token="t" * 40)


@pytest.mark.gen_test(timeout=60)
async def test_the_jobs_counts_are_in_metrics(admin_client, client, make_user, services, small_clip, app,
                                              metrics_config):
    from videoflix.tables import videos as rows

    app.settings["config"] = metrics_config
    await make_user()
    first, _second = [await uploaded(client, small_clip, title) for title in ("One", "Two")]
    job = await queue.claim(services.redis, "elsewhere-1", 0)
    await queue.dead_letter(services.redis, job, "gone")
    async with cursor(services.pool) as cur:
        await rows.mark_failed(cur, first, "gone")
    await queue.claim(services.redis, "elsewhere-1", 0)  # the second is running now
    await uploaded(client, small_clip, "Three")
    counts = (await admin_client.get("/api/admin/jobs/")).json()["counts"]
    assert counts == {"queued": 1, "running": 1, "failed": 1, "dead_letters": 1}
    scrape = await client.get("/metrics", headers={"Authorization": "Bearer " + "t" * 40}, cookies=False)
    samples = {line.split(" ")[0]: float(line.split(" ")[1]) for line in scrape.body.decode().splitlines()
               if line and not line.startswith("#")}
    assert samples["videoflix_transcode_queue_length"] == counts["queued"] + counts["running"]
    assert samples["videoflix_transcode_queue_pending"] == counts["running"]
    assert samples["videoflix_transcode_dead_letters"] == counts["dead_letters"]
    assert samples["videoflix_videos_failed"] == counts["failed"]


@pytest.mark.gen_test(timeout=60)
async def test_cancel_a_queued_job_and_the_failure_cases(admin_client, client, make_user, services, small_clip):
    await make_user()
    video_id = await uploaded(client, small_clip)
    response = await act(admin_client, "POST", f"/api/admin/jobs/{video_id}/cancel/")
    assert (response.status, response.json()) == (200, {"video_id": video_id, "status": "failed",
                                                        "error": "Cancelled by an administrator."})
    assert await queue.pending_video_ids(services.redis) == set()
    detail = (await client.get(f"/api/video/{video_id}/")).json()
    assert (detail["status"], detail["error"]) == ("failed", "Cancelled by an administrator.")
    response = await act(admin_client, "POST", f"/api/admin/jobs/{video_id}/cancel/")
    assert (response.status, response.json()) == (409, {"detail": "The video is failed: no job to cancel."})
    for path, status in ((f"/api/admin/jobs/{video_id + 1}/cancel/", 404), ("/api/admin/jobs/1-2-3/cancel/", 404),
                         ("/api/admin/jobs/1-0/cancel/", 409), (f"/api/admin/jobs/{video_id + 1}/retry/", 404),
                         ("/api/admin/jobs/99-0/retry/", 404), ("/api/admin/jobs/x/retry/", 404)):
        response = await act(admin_client, "POST", path)
        assert response.status == status, (path, response.body)
    [entry] = await audit_rows(services)
    assert (entry["action"], entry["target_type"], entry["target_id"], entry["details"]) == (
        "job.cancel", "job", str(video_id), {"status": "queued"})


@pytest.mark.gen_test(timeout=60)
async def test_discard_a_dead_letter(admin_client, client, make_user, services, small_clip):
    await make_user()
    video_id = await uploaded(client, small_clip)
    job = await queue.claim(services.redis, "elsewhere-1", 0)
    dead_id = await queue.dead_letter(services.redis, job, "gone")
    response = await act(admin_client, "DELETE", f"/api/admin/jobs/{video_id}/")
    assert (response.status, response.json()) == (409, {"detail": "Only a dead letter can be discarded: cancel "
                                                                   "a live job instead."})
    response = await act(admin_client, "DELETE", f"/api/admin/jobs/{dead_id}/")
    assert response.status == 204
    assert (await admin_client.get("/api/admin/jobs/")).json()["dead_letters"] == []
    assert (await act(admin_client, "DELETE", f"/api/admin/jobs/{dead_id}/")).status == 404
    [entry] = await audit_rows(services)
    assert (entry["action"], entry["target_id"], entry["details"]) == (
        "job.discard", dead_id, {"video_id": video_id, "reason": "gone", "deliveries": 1})


@pytest.mark.slow
@pytest.mark.gen_test(timeout=300)
async def test_cancel_a_running_job_stops_its_ffmpeg_publishes_nothing_and_retry_runs_it_again(
        admin_client, client, make_user, services, config, park_17s, host_runner):
    import os
    import socket

    from helpers import wait_for_status, wait_until

    await make_user()
    video_id = await uploaded(client, park_17s)
    ended = outcome_of(host_runner, video_id)

    async def running_with_progress():
        running = (await admin_client.get("/api/admin/jobs/")).json()["running"]
        return running and running[0]["progress"] and running[0]

    await wait_until(running_with_progress, "the job running with progress", timeout=120)
    job = await running_with_progress()
    assert (job["video_id"], job["host"], job["worker_pid"]) == (video_id, socket.gethostname(), os.getpid())
    assert "ffmpeg" in children_of(host_runner.pool.worker_pids())
    response = await act(admin_client, "POST", f"/api/admin/jobs/{video_id}/cancel/")
    assert response.status == 200, response.body
    outcome = await ended
    assert outcome.kind == "cancelled"
    assert "ffmpeg" not in children_of(host_runner.pool.worker_pids())
    async with cursor(services.pool) as cur:
        row = await video_rows.get_video(cur, video_id)
    assert (row.status, row.error, row.live_version, row.building_version) == (
        "failed", "Cancelled by an administrator.", None, None)
    # Nothing of the run is left to serve: only the source remains.
    assert media_files(config, video_id) == [media.source_path(config.media_dir, video_id)]
    assert (await client.get(f"/api/video/{video_id}/master.m3u8")).status == 404
    # Retry: the same video runs again, to the end.
    response = await act(admin_client, "POST", f"/api/admin/jobs/{video_id}/retry/")
    assert (response.status, response.json()) == (202, {"video_id": video_id, "status": "queued"})
    detail = await wait_for_status(client, video_id, "ready", timeout=240)
    assert detail["resolutions"]
    assert (await act(admin_client, "POST", f"/api/admin/jobs/{video_id}/retry/")).status == 409  # ready now
    assert [row["action"] for row in await audit_rows(services)] == ["job.cancel", "job.retry"]


@pytest.mark.slow
@pytest.mark.gen_test(timeout=240)
async def test_retry_a_dead_letter_runs_its_video_again(admin_client, client, make_user, services, small_clip,
                                                          io_loop, config):
    from helpers import wait_for_status

    from videoflix.app import make_runner
    from videoflix.tables import videos as rows

    await make_user()
    video_id = await uploaded(client, small_clip)
    job = await queue.claim(services.redis, "lost-host-1", 0)
    async with cursor(services.pool) as cur:
        await rows.mark_failed(cur, video_id, "Transcoding was interrupted 3 times; giving up.")
    dead_id = await queue.dead_letter(services.redis, job, "interrupted 3 times")
    runner = make_runner(config, services)
    await runner.start()
    try:
        response = await act(admin_client, "POST", f"/api/admin/jobs/{dead_id}/retry/")
        assert (response.status, response.json()) == (202, {"video_id": video_id, "status": "queued"})
        await wait_for_status(client, video_id, "ready", timeout=200)
    finally:
        await runner.stop()
    jobs = (await admin_client.get("/api/admin/jobs/")).json()
    assert jobs["dead_letters"] == [] and jobs["failed"] == []
    [entry] = await audit_rows(services)
    assert (entry["action"], entry["target_id"], entry["details"]) == (
        "job.retry", str(video_id), {"dead_letter": dead_id, "error": "Transcoding was interrupted 3 times; "
                                                                      "giving up."})


# --- the library ----------------------------------------------------------------------


@pytest.mark.gen_test
async def test_every_users_videos_in_one_list_with_filters(admin_client, make_user, services):
    alice = await make_user("alice@example.com", log_in=False)
    bob = await make_user("bob@example.com", log_in=False)
    ready = await make_ready_video(services, alice["id"], title="Alps", visibility="public")
    private = await make_ready_video(services, bob["id"], title="Beach", visibility="private")
    async with cursor(services.pool) as cur:
        failed = await video_rows.insert_video(cur, owner_id=bob["id"], title="Broken 100%", description="",
                                               category="", visibility="private", status="failed",
                                               source_size=5000)
        await cur.execute("UPDATE videos SET error = 'not a video' WHERE id = %s", (failed,))
    page = (await admin_client.get("/api/admin/videos/")).json()
    assert page["count"] == 3 and [v["id"] for v in page["results"]] == [failed, private, ready]
    item = page["results"][0]
    assert {k: item[k] for k in ("title", "owner_id", "owner_email", "status", "visibility", "size", "error",
                                 "listed")} == {
        "title": "Broken 100%", "owner_id": bob["id"], "owner_email": "bob@example.com", "status": "failed",
        "visibility": "private", "size": 5000, "error": "not a video", "listed": False}
    for query, expected in (("status=failed", [failed]), ("visibility=public", [ready]),
                            (f"owner={bob['id']}", [failed, private]), ("search=ALP", [ready]),
                            ("search=100%25", [failed]), ("search=_", []), ("order=-size&limit=1", [failed]),
                            ("order=title", [ready, private, failed]), ("limit=1&offset=1", [private])):
        response = await admin_client.get(f"/api/admin/videos/?{query}")
        assert [v["id"] for v in response.json()["results"]] == expected, query
    for query in ("status=deleted", "visibility=secret", "owner=abc", "owner=0", "order=owner_id", "limit=500"):
        response = await admin_client.get(f"/api/admin/videos/?{query}")
        assert response.status == 400, query


@pytest.mark.gen_test(timeout=60)
async def test_bulk_make_private_retranscode_and_delete_each_audited(admin_client, client, make_user, services,
                                                                      config, small_ladder):
    folder, result = small_ladder
    user = await make_user()
    public = await make_ready_video(services, user["id"], title="Public", visibility="public")
    private = await make_ready_video(services, user["id"], title="Private", visibility="private")
    published = await publish_ladder(services, config, user["id"], folder, result, title="On disk")
    response = await act(admin_client, "POST", "/api/admin/videos/bulk/",
                         {"action": "make_private", "ids": [public, private, 999]})
    assert response.json() == {"action": "make_private", "results": [
        {"id": public, "result": "private"}, {"id": private, "result": "unchanged"}, {"id": 999, "result": "not_found"}]}
    assert (await client.get(f"/api/video/{public}/")).json()["visibility"] == "private"
    response = await act(admin_client, "POST", "/api/admin/videos/bulk/",
                         {"action": "retranscode", "ids": [public, public]})
    assert response.json()["results"] == [{"id": public, "result": "queued"}]  # (repeats once)
    assert await queue.pending_video_ids(services.redis) == {public}
    response = await act(admin_client, "POST", "/api/admin/videos/bulk/", {"action": "retranscode", "ids": [public]})
    assert response.json()["results"] == [{"id": public, "result": "busy"}]
    assert media_files(config, published)
    response = await act(admin_client, "POST", "/api/admin/videos/bulk/",
                         {"action": "delete", "ids": [published, public]})
    assert response.json()["results"] == [{"id": published, "result": "deleted"}, {"id": public, "result": "deleted"}]
    assert media_files(config, published) == [] and await queue.pending_video_ids(services.redis) == set()
    assert (await client.get(f"/api/video/{published}/")).status == 404
    entries = [(e["action"], e["target_type"], e["target_id"]) for e in await audit_rows(services)]
    assert entries == [("video.make_private", "video", str(public)), ("video.retranscode", "video", str(public)),
                       ("video.delete", "video", str(published)), ("video.delete", "video", str(public))]


@pytest.mark.gen_test
@pytest.mark.parametrize("body, field", [
    ({"action": "explode", "ids": [1]}, "action"), ({"ids": [1]}, "action"),
    ({"action": "delete", "ids": []}, "ids"), ({"action": "delete", "ids": "1"}, "ids"),
    ({"action": "delete", "ids": [True]}, "ids"), ({"action": "delete", "ids": [1.5]}, "ids"),
    ({"action": "delete", "ids": [0]}, "ids"), ({"action": "delete", "ids": [2**63]}, "ids"),
    ({"action": "delete", "ids": list(range(1, 102))}, "ids"), ({"action": "delete"}, "ids"),
])
async def test_bulk_bad_input_is_a_field_error(admin_client, services, body, field):
    response = await act(admin_client, "POST", "/api/admin/videos/bulk/", body)
    assert response.status == 400 and field in response.json(), response.body
    assert await audit_rows(services) == []


# --- the OpenAPI document ---------------------------------------------------------------


def test_the_admin_routes_are_documented_admin_only_with_their_query_parameters():
    from videoflix.app import collect_routes
    from videoflix.platform.config import Config
    from videoflix.web.openapi import openapi_document

    paths = openapi_document(collect_routes(), Config(public_url="http://x"))["paths"]
    admin_paths = {path: item for path, item in paths.items() if path.startswith("/api/admin/")}
    assert len(admin_paths) == 11
    for path, item in admin_paths.items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert {"401", "403"} <= set(operation["responses"]), (path, method)
            if method in ("post", "patch", "delete"):
                assert "429" in operation["responses"] and "CSRF" in operation["responses"]["403"]["description"]
    users = admin_paths["/api/admin/users/"]["get"]["parameters"]
    assert [p["name"] for p in users] == ["search", "active", "admin", "order", "limit", "offset"]
    assert all(p["in"] == "query" and p["required"] is False for p in users)
    assert admin_paths["/api/admin/jobs/{id}/retry/"]["parameters"][0]["schema"]["pattern"] == "^[0-9][0-9-]{0,37}$"
