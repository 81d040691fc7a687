"""Watch progress, Continue watching and editing a video (API.md §6), over real HTTP."""
from __future__ import annotations

import pytest

from videoflix.platform.db import cursor

from helpers import PASSWORD, admin_id, login, make_ready_video, register_user


@pytest.fixture
def admin_client(new_client, make_admin, io_loop):
    browser = new_client()
    io_loop.run_sync(lambda: make_admin(browser))
    return browser


# --- PUT /api/video/<id>/progress/ -------------------------------------------

@pytest.mark.gen_test
async def test_progress_put_returns_204_and_detail_shows_position(client, make_user, services):
    user = await make_user()
    video_id = await make_ready_video(services, user["id"])
    assert (await client.get(f"/api/video/{video_id}/")).json()["position"] is None
    response = await client.fetch("PUT", f"/api/video/{video_id}/progress/", {"position": 42.5})
    assert (response.status, response.body) == (204, b"")
    detail = (await client.get(f"/api/video/{video_id}/")).json()
    assert (detail["position"], detail["playable"]) == (42.5, True)


@pytest.mark.gen_test
async def test_progress_is_per_user(client, new_client, make_user, services, mailbox):
    owner = await make_user()
    video_id = await make_ready_video(services, owner["id"])
    await client.fetch("PUT", f"/api/video/{video_id}/progress/", {"position": 10})
    other = new_client()
    await register_user(other, services, mailbox, "other@example.com")
    await login(other, "other@example.com")
    assert (await other.get(f"/api/video/{video_id}/")).json()["position"] is None
    await other.fetch("PUT", f"/api/video/{video_id}/progress/", {"position": 70})
    assert (await client.get(f"/api/video/{video_id}/")).json()["position"] == 10
    assert (await other.get(f"/api/video/{video_id}/")).json()["position"] == 70


@pytest.mark.gen_test
async def test_progress_post_for_send_beacon_is_stored(client, make_user, services):
    user = await make_user()
    video_id = await make_ready_video(services, user["id"])
    response = await client.post(f"/api/video/{video_id}/progress/", {"position": 12})
    assert response.status == 204
    assert (await client.get(f"/api/video/{video_id}/")).json()["position"] == 12


@pytest.mark.gen_test
async def test_progress_past_the_end_is_stored_as_the_duration(client, make_user, services):
    user = await make_user()
    video_id = await make_ready_video(services, user["id"], duration=60.0)
    await client.fetch("PUT", f"/api/video/{video_id}/progress/", {"position": 60.4})
    assert (await client.get(f"/api/video/{video_id}/")).json()["position"] == 60.0


@pytest.mark.gen_test
@pytest.mark.parametrize("body, message", [
    ({}, "This field is required."),
    ({"position": "12"}, "A valid number is required."),
    ({"position": True}, "A valid number is required."),
    ({"position": None}, "A valid number is required."),
    ({"position": [1]}, "A valid number is required."),
    ({"position": -0.5}, "Ensure this value is greater than or equal to 0."),
    ({"position": 1e12}, "Ensure this value is less than or equal to 604800."),
])
async def test_progress_invalid_position_returns_400(client, make_user, services, body, message):
    user = await make_user()
    video_id = await make_ready_video(services, user["id"])
    response = await client.fetch("PUT", f"/api/video/{video_id}/progress/", body)
    assert (response.status, response.json()) == (400, {"position": [message]})


@pytest.mark.gen_test
@pytest.mark.parametrize("raw", [b'{"position": NaN}', b'{"position": Infinity}', b'{"position": -Infinity}'])
async def test_progress_non_finite_number_returns_400(client, make_user, services, raw):
    user = await make_user()
    video_id = await make_ready_video(services, user["id"])
    response = await client.fetch("PUT", f"/api/video/{video_id}/progress/", raw_body=raw)
    # API.md §5's JSON parsing refuses NaN/Infinity before the field is looked at.
    assert (response.status, response.json()) == (400, {"detail": "Invalid JSON body."})


@pytest.mark.gen_test
@pytest.mark.parametrize("raw", [b"{", b"[1]", b'"x"', b"\xff\xfe"])
async def test_progress_malformed_json_returns_400(client, make_user, services, raw):
    user = await make_user()
    video_id = await make_ready_video(services, user["id"])
    response = await client.fetch("PUT", f"/api/video/{video_id}/progress/", raw_body=raw)
    assert (response.status, response.json()) == (400, {"detail": "Invalid JSON body."})


@pytest.mark.gen_test
async def test_progress_without_auth_returns_401(client, services, make_user, new_client):
    user = await make_user()
    video_id = await make_ready_video(services, user["id"])
    response = await new_client().fetch("PUT", f"/api/video/{video_id}/progress/", {"position": 1})
    assert (response.status, response.json()) == (401, {"detail": "Authentication credentials were not provided."})


@pytest.mark.gen_test
async def test_progress_on_unknown_or_foreign_private_video_returns_404(client, make_user, services,
                                                                          admin_client):
    await make_user()
    private = await make_ready_video(services, await admin_id(services), visibility="private")
    for path in (f"/api/video/{private}/progress/", "/api/video/999999/progress/", "/api/video/0/progress/",
                 "/api/video/abc/progress/"):
        response = await client.fetch("PUT", path, {"position": 1})
        assert (response.status, response.json()) == (404, {"detail": "Not found."}), path
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT count(*) AS n FROM watch_progress")
        assert (await cur.fetchone())["n"] == 0


# --- GET /api/video/continue/ --------------------------------------------------

@pytest.mark.gen_test
async def test_continue_lists_unfinished_most_recent_first(client, make_user, services, config):
    user = await make_user()
    first = await make_ready_video(services, user["id"], title="first")
    second = await make_ready_video(services, user["id"], title="second")
    finished = await make_ready_video(services, user["id"], title="finished")
    untouched = await make_ready_video(services, user["id"], title="untouched")
    at_zero = await make_ready_video(services, user["id"], title="at zero")
    await client.fetch("PUT", f"/api/video/{first}/progress/", {"position": 30})
    await client.fetch("PUT", f"/api/video/{second}/progress/", {"position": 94.9})
    await client.fetch("PUT", f"/api/video/{finished}/progress/", {"position": 95})
    await client.fetch("PUT", f"/api/video/{at_zero}/progress/", {"position": 0})
    items = (await client.get("/api/video/continue/")).json()
    assert [item["id"] for item in items] == [second, first]
    assert untouched not in [item["id"] for item in items]
    assert list(items[0]) == ["id", "created_at", "title", "description", "thumbnail_url", "category",
                              "position", "duration"]
    assert (items[1]["position"], items[1]["duration"]) == (30, 100.0)
    assert items[1]["thumbnail_url"] == f"{config.public_url}/media/thumbnail/{first}.jpg"
    # Watching the older one again moves it to the front.
    await client.fetch("PUT", f"/api/video/{first}/progress/", {"position": 31})
    assert [item["id"] for item in (await client.get("/api/video/continue/")).json()] == [first, second]


@pytest.mark.gen_test
async def test_continue_drops_videos_the_caller_may_no_longer_watch(client, make_user, services, admin_client):
    await make_user()
    video_id = await make_ready_video(services, await admin_id(services))
    await client.fetch("PUT", f"/api/video/{video_id}/progress/", {"position": 5})
    assert len((await client.get("/api/video/continue/")).json()) == 1
    response = await admin_client.fetch("PATCH", f"/api/video/{video_id}/", {"visibility": "private"})
    assert response.status == 200
    assert (await client.get("/api/video/continue/")).json() == []
    await admin_client.fetch("DELETE", f"/api/video/{video_id}/")
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT count(*) AS n FROM watch_progress")
        assert (await cur.fetchone())["n"] == 0  # gone with the video


@pytest.mark.gen_test
async def test_continue_without_auth_returns_401(new_client):
    response = await new_client().get("/api/video/continue/")
    assert (response.status, response.json()) == (401, {"detail": "Authentication credentials were not provided."})


@pytest.mark.gen_test
async def test_continue_with_forged_token_returns_401(new_client):
    response = await new_client().get("/api/video/continue/", headers={"Authorization": "Bearer abc.def.ghi"})
    assert (response.status, response.json()) == (401, {"detail": "Invalid or expired token."})


# --- PATCH /api/video/<id>/ ---------------------------------------------------

@pytest.mark.gen_test
async def test_patch_by_owner_changes_fields_and_catalog(client, make_user, services, config):
    user = await make_user()
    video_id = await make_ready_video(services, user["id"], visibility="private")
    assert (await client.get("/api/video/")).json()[0]["title"] == "A film"  # cache warm
    response = await client.fetch("PATCH", f"/api/video/{video_id}/",
                                  {"title": "  New title ", "description": "New words", "category": "Nature",
                                   "ignored": 1})
    assert response.status == 200, response.body
    detail = response.json()
    assert (detail["title"], detail["description"], detail["category"], detail["visibility"]) == (
        "New title", "New words", "Nature", "private")
    assert detail["status"] == "ready" and "position" in detail
    listed = (await client.get("/api/video/")).json()
    assert (listed[0]["title"], listed[0]["category"]) == ("New title", "Nature")


@pytest.mark.gen_test
async def test_patch_only_sent_fields_change(client, make_user, services):
    user = await make_user()
    video_id = await make_ready_video(services, user["id"], visibility="private")
    detail = (await client.fetch("PATCH", f"/api/video/{video_id}/", {"category": ""})).json()
    assert (detail["title"], detail["description"], detail["category"]) == ("A film", "About it", "")


@pytest.mark.gen_test
async def test_patch_by_admin_publishes_a_users_video(client, make_user, services, admin_client, new_client,
                                                      mailbox):
    user = await make_user()
    video_id = await make_ready_video(services, user["id"], visibility="private")
    response = await admin_client.fetch("PATCH", f"/api/video/{video_id}/", {"visibility": "PUBLIC"})
    assert (response.status, response.json()["visibility"]) == (200, "public")
    viewer = new_client()
    await register_user(viewer, services, mailbox, "viewer@example.com")
    await login(viewer, "viewer@example.com")
    assert [v["id"] for v in (await viewer.get("/api/video/")).json()] == [video_id]


@pytest.mark.gen_test
async def test_patch_by_another_user_returns_404(client, make_user, services, new_client, mailbox):
    owner = await make_user()
    video_id = await make_ready_video(services, owner["id"], visibility="public")
    other = new_client()
    await register_user(other, services, mailbox, "other@example.com")
    await login(other, "other@example.com", PASSWORD)
    response = await other.fetch("PATCH", f"/api/video/{video_id}/", {"title": "Mine now"})
    assert (response.status, response.json()) == (404, {"detail": "Not found."})
    assert (await client.get(f"/api/video/{video_id}/")).json()["title"] == "A film"


@pytest.mark.gen_test
@pytest.mark.parametrize("body, errors", [
    ({"title": ""}, {"title": ["This field is required."]}),
    ({"title": "   "}, {"title": ["This field is required."]}),
    ({"title": "x" * 201}, {"title": ["Ensure this field has no more than 200 characters."]}),
    ({"title": 5}, {"title": ["Not a valid string."]}),
    ({"description": None}, {"description": ["Not a valid string."]}),
    ({"category": ["Drama"]}, {"category": ["Not a valid string."]}),
    ({"visibility": "friends"}, {"visibility": ['Must be "public" or "private".']}),
    ({"visibility": ""}, {"visibility": ['Must be "public" or "private".']}),
    ({"visibility": "public"}, {"visibility": ["Only admins can publish videos to everyone on this server."]}),
    ({}, {"detail": "Nothing to change: send title, description, category or visibility."}),
])
async def test_patch_invalid_fields_return_400(client, make_user, services, body, errors):
    user = await make_user()
    video_id = await make_ready_video(services, user["id"], visibility="private")
    response = await client.fetch("PATCH", f"/api/video/{video_id}/", body)
    assert (response.status, response.json()) == (400, errors)
    assert (await client.get(f"/api/video/{video_id}/")).json()["title"] == "A film"


@pytest.mark.gen_test
async def test_patch_malformed_json_returns_400(client, make_user, services):
    user = await make_user()
    video_id = await make_ready_video(services, user["id"])
    response = await client.fetch("PATCH", f"/api/video/{video_id}/", raw_body=b'{"title": ')
    assert (response.status, response.json()) == (400, {"detail": "Invalid JSON body."})


@pytest.mark.gen_test
async def test_patch_without_auth_returns_401_and_unknown_video_404(client, make_user, new_client):
    response = await new_client().fetch("PATCH", "/api/video/1/", {"title": "x"})
    assert (response.status, response.json()) == (401, {"detail": "Authentication credentials were not provided."})
    await make_user()
    response = await client.fetch("PATCH", "/api/video/424242/", {"title": "x"})
    assert (response.status, response.json()) == (404, {"detail": "Not found."})


@pytest.mark.gen_test
async def test_preflight_allows_patch_and_put(client):
    response = await client.fetch("OPTIONS", "/api/video/1/", headers={"Origin": "http://127.0.0.1:5500"})
    methods = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert response.status == 204 and {"PATCH", "PUT"} <= methods
