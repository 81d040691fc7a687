"""API.md §1 against the real server, PostgreSQL, Redis and SMTP."""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
from pathlib import Path

import jwt
import pytest

from videoflix.accounts import passwords, tokens
from videoflix.platform import rediskeys
from videoflix.platform.db import cursor
from videoflix.platform.services import CPU_THREAD_WORKERS
from videoflix.tables import users

from helpers import PASSWORD, link_from_mail, login, register_user, threads_inside, wait_until

REGISTER = "/api/register/"
EMAIL = "new.user@example.com"


def registration(email=EMAIL, password=PASSWORD, confirmed=None, **extra):
    return {"email": email, "password": password,
            "confirmed_password": password if confirmed is None else confirmed, **extra}


# --- register -----------------------------------------------------------------

@pytest.mark.gen_test
async def test_register_returns_201_with_user_and_sends_activation_mail(client, services, mailbox, config):
    response = await client.post(REGISTER, registration(privacy_policy="on"))
    assert response.status == 201
    body = response.json()
    assert body == {"user": {"id": body["user"]["id"], "email": EMAIL}}
    assert "token" not in response.body.decode()
    await services.mailer.drain()
    (message,) = mailbox.messages
    assert message["To"] == EMAIL
    assert message.get_body(preferencelist=("html",)) is not None
    uid, token = link_from_mail(message)
    assert uid == base64.urlsafe_b64encode(str(body["user"]["id"]).encode()).decode().rstrip("=")
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert f"{config.frontend_url}/pages/auth/activate.html?uid={uid}&token={token}" in text


@pytest.mark.gen_test
async def test_register_creates_inactive_account(client, services):
    await client.post(REGISTER, registration())
    async with cursor(services.pool) as cur:
        user = await users.get_user_by_email(cur, EMAIL)
    assert user["is_active"] is False
    assert user["password_hash"].startswith("$2")


@pytest.mark.gen_test
async def test_register_lowercases_email(client):
    response = await client.post(REGISTER, registration(email="Mixed.Case@Example.COM"))
    assert response.json()["user"]["email"] == "mixed.case@example.com"


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "a b@c.de", "@example.com", "a@-x.com", 42, ""])
@pytest.mark.gen_test
async def test_register_invalid_email_returns_400(client, email):
    response = await client.post(REGISTER, registration(email=email))
    assert response.status == 400
    assert list(response.json()) == ["email"]


@pytest.mark.gen_test
async def test_register_existing_email_returns_400(client):
    await client.post(REGISTER, registration())
    response = await client.post(REGISTER, registration(email=EMAIL.upper()))
    assert response.status == 400
    assert response.json() == {"email": ["A user with this email already exists."]}


@pytest.mark.gen_test
async def test_register_password_mismatch_returns_400(client):
    response = await client.post(REGISTER, registration(confirmed="something-else-1"))
    assert response.status == 400
    assert response.json() == {"confirmed_password": ["Passwords do not match."]}


@pytest.mark.parametrize("password", ["short1", "1234567890", "ü" * 37, "x" * 73])
@pytest.mark.gen_test
async def test_register_weak_or_overlong_password_returns_400(client, password):
    response = await client.post(REGISTER, registration(password=password))
    assert response.status == 400
    assert list(response.json()) == ["password"]


@pytest.mark.gen_test
async def test_register_accepts_72_byte_password(client):
    response = await client.post(REGISTER, registration(password="p" * 72))
    assert response.status == 201


@pytest.mark.gen_test
async def test_register_missing_fields_returns_field_errors(client):
    response = await client.post(REGISTER, {})
    assert response.status == 400
    assert set(response.json()) == {"email", "password", "confirmed_password"}


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"', b"", b"\xff\xfe"])
@pytest.mark.gen_test
async def test_malformed_json_returns_400(client, raw):
    response = await client.post(REGISTER, raw_body=raw)
    assert response.status == 400
    assert response.json() == {"detail": "Invalid JSON body."}


@pytest.mark.gen_test
async def test_mail_delivery_is_retried_after_temporary_failure(client, services, mailbox):
    services.mailer._retry_delays = (0.01, 0.01)
    mailbox.refuse = 1
    response = await client.post(REGISTER, registration())
    assert response.status == 201
    await services.mailer.drain()
    assert len(mailbox.messages) == 1


@pytest.mark.gen_test
async def test_undeliverable_mail_keeps_registration_and_is_spooled(client, services, mailbox, config):
    services.mailer._retry_delays = (0.01,)
    mailbox.refuse = 5
    response = await client.post(REGISTER, registration())
    assert response.status == 201
    await services.mailer.drain()
    assert mailbox.messages == []
    spooled = list((Path(config.outbox_dir) / "undelivered").glob("*.eml"))
    assert len(spooled) == 1
    async with cursor(services.pool) as cur:
        assert await users.get_user_by_email(cur, EMAIL) is not None


# --- activate -----------------------------------------------------------------

@pytest.mark.gen_test
async def test_activate_then_again_reports_already_activated(client, services, mailbox):
    await register_user(client, services, mailbox, EMAIL, activate=False)
    uid, token = link_from_mail(mailbox.messages[-1])
    first = await client.get(f"/api/activate/{uid}/{token}/")
    assert (first.status, first.json()) == (200, {"message": "Account successfully activated."})
    second = await client.get(f"/api/activate/{uid}/{token}/")
    assert (second.status, second.json()) == (200, {"message": "Account already activated."})


@pytest.mark.parametrize("mangle", [
    lambda uid, token: (uid, token[:-2] + ("yy" if token.endswith("xx") else "xx")),
    lambda uid, token: ("OTk5", token),               # another user id
    lambda uid, token: ("!!", token),
    lambda uid, token: (uid, "garbage"),
    lambda uid, token: ("MA", token),                 # id 0
])
@pytest.mark.gen_test
async def test_activate_invalid_link_returns_400(client, services, mailbox, mangle):
    await register_user(client, services, mailbox, EMAIL, activate=False)
    uid, token = mangle(*link_from_mail(mailbox.messages[-1]))
    response = await client.get(f"/api/activate/{uid}/{token}/")
    assert (response.status, response.json()) == (400, {"detail": "Invalid or expired activation link."})


@pytest.mark.gen_test
async def test_activate_expired_link_returns_400(client, services, mailbox, config):
    user = await register_user(client, services, mailbox, EMAIL, activate=False)
    old = int(time.time()) - tokens.ACTIVATION_TTL_SECONDS - 5
    token = tokens.make_link_token(config.secret_key, "activate", f"{user['id']}:{EMAIL}", old)
    response = await client.get(f"/api/activate/{tokens.encode_uid(user['id'])}/{token}/")
    assert response.status == 400


@pytest.mark.gen_test
async def test_activation_token_is_not_a_reset_token(client, services, mailbox):
    await register_user(client, services, mailbox, EMAIL, activate=False)
    uid, token = link_from_mail(mailbox.messages[-1])
    response = await client.post(f"/api/password_confirm/{uid}/{token}/",
                                  {"new_password": "another-pass-1", "confirm_password": "another-pass-1"})
    assert (response.status, response.json()) == (400, {"detail": "Invalid or expired token."})


# --- login --------------------------------------------------------------------

@pytest.mark.gen_test
async def test_login_sets_http_only_cookies_and_readable_csrftoken(client, make_user):
    user = await make_user(EMAIL, log_in=False)
    response = await client.post("/api/login/", {"email": EMAIL, "password": PASSWORD})
    assert response.status == 200
    assert response.json() == {"detail": "Login successful", "user": {"id": user["id"], "username": EMAIL}}
    cookies = response.cookies()
    for name, lifetime in (("access_token", 30 * 60), ("refresh_token", 7 * 24 * 3600)):
        morsel = cookies[name]
        assert morsel["httponly"] is True
        assert morsel["samesite"] == "Lax"
        assert morsel["path"] == "/"
        assert morsel["domain"] == ""
        assert not morsel["secure"]
        assert int(morsel["max-age"]) == lifetime
    assert not cookies["csrftoken"]["httponly"]
    claims = jwt.decode(cookies["access_token"].value, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 30 * 60


@pytest.mark.gen_test
async def test_login_secure_cookies_when_configured(client, make_user, app, config):
    app.settings["config"] = dataclasses.replace(config, cookie_secure=True)
    await make_user(EMAIL, log_in=False)
    response = await client.post("/api/login/", {"email": EMAIL, "password": PASSWORD})
    assert all(response.cookies()[name]["secure"] for name in ("access_token", "refresh_token"))


@pytest.mark.gen_test
async def test_login_wrong_password_and_unknown_email_give_same_400(client, make_user):
    await make_user(EMAIL, log_in=False)
    wrong = await client.post("/api/login/", {"email": EMAIL, "password": "wrong-password-1"})
    unknown = await client.post("/api/login/", {"email": "nobody@example.com", "password": PASSWORD})
    assert wrong.status == unknown.status == 400
    assert wrong.body == unknown.body == b'{"detail":"Invalid email or password."}'
    assert "access_token" not in wrong.cookies()


@pytest.mark.gen_test
async def test_login_inactive_account_with_correct_password_asks_for_activation(client, make_user):
    await make_user(EMAIL, log_in=False, activate=False)
    response = await client.post("/api/login/", {"email": EMAIL, "password": PASSWORD})
    assert (response.status, response.json()) == (400, {"detail": "Please activate your account first."})
    wrong = await client.post("/api/login/", {"email": EMAIL, "password": "wrong-password-1"})
    assert wrong.json() == {"detail": "Invalid email or password."}


@pytest.mark.gen_test
async def test_login_overlong_password_is_400_not_500(client, make_user):
    await make_user(EMAIL, log_in=False)
    response = await client.post("/api/login/", {"email": EMAIL, "password": "x" * 5000})
    assert (response.status, response.json()) == (400, {"detail": "Invalid email or password."})


@pytest.mark.gen_test
async def test_login_missing_fields_returns_400(client):
    response = await client.post("/api/login/", {"email": EMAIL})
    assert response.status == 400
    assert response.json() == {"password": ["This field is required."]}


@pytest.mark.gen_test
async def test_login_throttled_after_ten_failures_for_one_email_from_one_address(client, make_user):
    await make_user(EMAIL, log_in=False)
    for _ in range(10):
        response = await client.post("/api/login/", {"email": EMAIL, "password": "wrong-password-1"})
        assert response.status == 400
    throttled = await client.post("/api/login/", {"email": EMAIL, "password": PASSWORD})
    assert throttled.status == 429
    assert "detail" in throttled.json()
    assert 0 < int(throttled.headers["Retry-After"]) <= 15 * 60
    other = await client.post("/api/login/", {"email": "other@example.com", "password": "wrong-password-1"})
    assert other.status == 400


@pytest.mark.gen_test
async def test_login_throttled_after_fifty_failures_from_one_address(client, services):
    await services.redis.set(rediskeys.login_attempts_by_address("127.0.0.1"), 50, ex=900)
    response = await client.post("/api/login/", {"email": "any@example.com", "password": "whatever-1"})
    assert response.status == 429
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.gen_test(timeout=60)
async def test_burst_of_slow_logins_does_not_stall_a_cheap_request(client, new_client, services):
    # Real bcrypt cost: each check takes a noticeable time on the executor.
    hashed = await passwords.hash_password(services.cpu_executor, PASSWORD, 12)
    async with cursor(services.pool) as cur:
        await users.insert_user(cur, EMAIL, hashed, is_active=True)
    finished: list[str] = []

    async def slow_login(i: int) -> None:
        response = await new_client().post("/api/login/", {"email": EMAIL, "password": PASSWORD})
        assert response.status == 200
        finished.append(f"login{i}")

    async def cheap() -> None:
        # Issued once every bcrypt thread is busy checking a login's password.
        await wait_until(lambda: threads_inside("videoflix-cpu", "videoflix/accounts/passwords.py") == CPU_THREAD_WORKERS,
                         "every bcrypt thread busy")
        response = await new_client().get("/api/health/")
        assert response.status == 200
        finished.append("health")

    await asyncio.gather(*[slow_login(i) for i in range(6)], cheap())
    assert finished[0] == "health", finished


# --- refresh and logout -------------------------------------------------------

async def _age_spent_mark(services, refresh_token: str, seconds: int) -> None:
    """Make a spent refresh token look spent `seconds` ago (its mark holds the time)."""
    jti = jwt.decode(refresh_token, options={"verify_signature": False})["jti"]
    key = rediskeys.denied_jti(jti)
    spent = int(await services.redis.get(key))
    await services.redis.set(key, spent - seconds, keepttl=True)


@pytest.mark.gen_test
async def test_refresh_rotates_tokens_and_rejects_the_old_refresh_token(client, make_user, services):
    await make_user(EMAIL)
    old_refresh = client.cookies["refresh_token"]
    response = await client.post("/api/token/refresh/")
    assert response.status == 200
    body = response.json()
    assert body["detail"] == "Token refreshed"
    assert body["access"] == client.cookies["access_token"]
    assert client.cookies["refresh_token"] != old_refresh
    again = await client.post("/api/token/refresh/")
    assert again.status == 200
    await _age_spent_mark(services, old_refresh, 60)
    reuse = await client.post("/api/token/refresh/", headers={"Cookie": f"refresh_token={old_refresh}"},
                              cookies=False)
    assert (reuse.status, reuse.json()) == (401, {"detail": "Invalid refresh token."})


@pytest.mark.gen_test
async def test_concurrent_refreshes_with_one_token_all_stay_in_one_session(client, make_user):
    """Two tabs (here five) refreshing at once all stay logged in, in the same session."""
    await make_user(EMAIL)
    cookie = {"Cookie": f"refresh_token={client.cookies['refresh_token']}"}
    responses = await asyncio.gather(*[client.post("/api/token/refresh/", headers=cookie, cookies=False)
                                       for _ in range(5)])
    assert [r.status for r in responses] == [200] * 5
    sids = {jwt.decode(r.json()["access"], options={"verify_signature": False})["sid"] for r in responses}
    assert len(sids) == 1
    for r in responses:
        assert (await client.get("/api/video/", headers={"Authorization": f"Bearer {r.json()['access']}"},
                                 cookies=False)).status == 200


@pytest.mark.gen_test
async def test_reuse_of_a_rotated_refresh_token_after_the_grace_window_ends_the_whole_session(
        client, new_client, make_user, services):
    """RFC 6819 §5.2.2.3: the thief's (or the victim's) late reuse revokes the family."""
    await make_user(EMAIL)
    stolen = client.cookies["refresh_token"]
    assert (await client.post("/api/token/refresh/")).status == 200  # the victim rotates
    victim_refresh, victim_access = client.cookies["refresh_token"], client.cookies["access_token"]
    assert (await client.get("/api/video/")).status == 200
    await _age_spent_mark(services, stolen, 30)
    thief = new_client()
    reuse = await thief.post("/api/token/refresh/", headers={"Cookie": f"refresh_token={stolen}"}, cookies=False)
    assert (reuse.status, reuse.json()) == (401, {"detail": "Invalid refresh token."})
    # Every token of that session is dead now: the victim's newer refresh and access tokens.
    later = await client.post("/api/token/refresh/", headers={"Cookie": f"refresh_token={victim_refresh}"},
                              cookies=False)
    assert (later.status, later.json()) == (401, {"detail": "Invalid refresh token."})
    listing = await client.get("/api/video/", headers={"Authorization": f"Bearer {victim_access}"}, cookies=False)
    assert (listing.status, listing.json()) == (401, {"detail": "Invalid or expired token."})
    # Other sessions of the same user are not affected.
    other = new_client()
    await login(other, EMAIL)
    assert (await other.get("/api/video/")).status == 200
    assert (await other.post("/api/token/refresh/")).status == 200


@pytest.mark.gen_test
async def test_refresh_token_reused_by_a_thief_within_the_grace_window_keeps_the_family_bounded(
        client, new_client, make_user, services):
    """Within the grace window a reuse is honoured, in the same session: a later
    logout by the victim still ends what the reuse obtained."""
    await make_user(EMAIL)
    stolen = client.cookies["refresh_token"]
    assert (await client.post("/api/token/refresh/")).status == 200
    thief = new_client()
    grabbed = await thief.post("/api/token/refresh/", headers={"Cookie": f"refresh_token={stolen}"},
                               cookies=False)
    assert grabbed.status == 200
    thief_access = grabbed.json()["access"]
    assert (await client.post("/api/logout/")).status == 200
    listing = await thief.get("/api/video/", headers={"Authorization": f"Bearer {thief_access}"}, cookies=False)
    assert listing.status == 401
    assert (await thief.post("/api/token/refresh/")).status == 401


@pytest.mark.gen_test
async def test_refresh_without_cookie_returns_400(client):
    response = await client.post("/api/token/refresh/")
    assert (response.status, response.json()) == (400, {"detail": "Refresh token missing."})


@pytest.mark.parametrize("token_kind", ["forged", "expired", "access"])
@pytest.mark.gen_test
async def test_refresh_invalid_token_returns_401(client, make_user, config, token_kind):
    user = await make_user(EMAIL)
    if token_kind == "forged":
        token, _ = tokens.make_session_token("another-secret-key-for-forgery-tests", user_id=user["id"],
                                             kind="refresh", now=int(time.time()), ttl_seconds=600,
                                             is_admin=False, token_version=0,
                                             session_id=tokens.new_session_id())
    elif token_kind == "expired":
        token, _ = tokens.make_session_token(config.secret_key, user_id=user["id"], kind="refresh",
                                             now=int(time.time()) - 700, ttl_seconds=600,
                                             is_admin=False, token_version=0,
                                             session_id=tokens.new_session_id())
    else:
        token = client.cookies["access_token"]
    response = await client.post("/api/token/refresh/", headers={"Cookie": f"refresh_token={token}"})
    assert (response.status, response.json()) == (401, {"detail": "Invalid refresh token."})


@pytest.mark.gen_test
async def test_logout_deletes_cookies_and_kills_the_refresh_token(client, make_user):
    await make_user(EMAIL)
    refresh = client.cookies["refresh_token"]
    response = await client.post("/api/logout/", headers={"X-CSRFToken": client.cookies["csrftoken"]})
    assert response.status == 200
    assert response.json() == {"detail": "Log-Out successfully! All Tokens will be deleted. "
                                         "Refresh token is now invalid."}
    cleared = response.cookies()
    for name in ("access_token", "refresh_token"):
        assert cleared[name].value == ""
        assert cleared[name]["path"] == "/"
    assert "refresh_token" not in client.cookies
    reuse = await client.post("/api/token/refresh/", headers={"Cookie": f"refresh_token={refresh}"})
    assert reuse.status == 401
    again = await client.post("/api/logout/", headers={"Cookie": f"refresh_token={refresh}"})
    assert (again.status, again.json()) == (400, {"detail": "Invalid refresh token."})


@pytest.mark.gen_test
async def test_logout_without_cookie_returns_400(client):
    response = await client.post("/api/logout/")
    assert (response.status, response.json()) == (400, {"detail": "Refresh token missing."})


@pytest.mark.gen_test
async def test_logout_with_garbage_token_returns_400(client):
    response = await client.post("/api/logout/", headers={"Cookie": "refresh_token=abc.def.ghi"})
    assert (response.status, response.json()) == (400, {"detail": "Invalid refresh token."})


@pytest.mark.gen_test
async def test_denylist_entry_expires_with_the_token(client, make_user, services):
    await make_user(EMAIL)
    refresh = client.cookies["refresh_token"]
    await client.post("/api/logout/")
    jti = jwt.decode(refresh, options={"verify_signature": False})["jti"]
    ttl = await services.redis.ttl(rediskeys.denied_jti(jti))
    assert 7 * 24 * 3600 - 60 < ttl <= 7 * 24 * 3600


# --- password reset -----------------------------------------------------------

@pytest.mark.gen_test
async def test_password_reset_same_answer_for_known_and_unknown_email(client, make_user, services, mailbox):
    await make_user(EMAIL, log_in=False)
    mailbox.clear()
    known = await client.post("/api/password_reset/", {"email": EMAIL})
    unknown = await client.post("/api/password_reset/", {"email": "ghost@example.com"})
    expected = {"detail": "An email has been sent to reset your password."}
    assert (known.status, known.json()) == (unknown.status, unknown.json()) == (200, expected)
    await services.mailer.drain()
    assert [m["To"] for m in mailbox.messages] == [EMAIL]


@pytest.mark.gen_test
async def test_password_reset_invalid_email_returns_400(client):
    response = await client.post("/api/password_reset/", {"email": "nope"})
    assert (response.status, response.json()) == (400, {"email": ["Enter a valid email address."]})


async def _reset_link(client, make_user, services, mailbox):
    await make_user(EMAIL, log_in=False)
    mailbox.clear()
    await client.post("/api/password_reset/", {"email": EMAIL})
    await services.mailer.drain()
    message = mailbox.messages[-1]
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "/pages/auth/confirm_password.html?uid=" in text
    return link_from_mail(message)


@pytest.mark.gen_test
async def test_password_confirm_changes_password_once(client, make_user, services, mailbox):
    uid, token = await _reset_link(client, make_user, services, mailbox)
    body = {"new_password": "brand-new-pass-7", "confirm_password": "brand-new-pass-7"}
    response = await client.post(f"/api/password_confirm/{uid}/{token}/", body)
    assert (response.status, response.json()) == (200, {"detail": "Your Password has been successfully reset."})
    old = await client.post("/api/login/", {"email": EMAIL, "password": PASSWORD})
    assert old.status == 400
    await login(client, EMAIL, "brand-new-pass-7")
    reuse = await client.post(f"/api/password_confirm/{uid}/{token}/", body)
    assert (reuse.status, reuse.json()) == (400, {"detail": "Invalid or expired token."})


@pytest.mark.gen_test
async def test_password_change_invalidates_existing_refresh_tokens(client, make_user, services, mailbox):
    uid, token = await _reset_link(client, make_user, services, mailbox)
    await login(client, EMAIL)
    body = {"new_password": "brand-new-pass-7", "confirm_password": "brand-new-pass-7"}
    await client.post(f"/api/password_confirm/{uid}/{token}/", body)
    response = await client.post("/api/token/refresh/")
    assert response.status == 401


@pytest.mark.gen_test
async def test_password_confirm_mismatch_returns_field_error(client, make_user, services, mailbox):
    uid, token = await _reset_link(client, make_user, services, mailbox)
    response = await client.post(f"/api/password_confirm/{uid}/{token}/",
                                 {"new_password": "brand-new-pass-7", "confirm_password": "other-pass-77"})
    assert (response.status, response.json()) == (400, {"confirm_password": ["Passwords do not match."]})


@pytest.mark.gen_test
async def test_password_confirm_weak_password_returns_field_error(client, make_user, services, mailbox):
    uid, token = await _reset_link(client, make_user, services, mailbox)
    response = await client.post(f"/api/password_confirm/{uid}/{token}/",
                                 {"new_password": "12345678901", "confirm_password": "12345678901"})
    assert response.status == 400
    assert list(response.json()) == ["new_password"]


@pytest.mark.gen_test
async def test_password_confirm_bad_token_returns_400(client, make_user, services, mailbox):
    uid, token = await _reset_link(client, make_user, services, mailbox)
    forged = token[:-1] + ("B" if token[-1] == "A" else "A")
    response = await client.post(f"/api/password_confirm/{uid}/{forged}/",
                                 {"new_password": "brand-new-pass-7", "confirm_password": "brand-new-pass-7"})
    assert (response.status, response.json()) == (400, {"detail": "Invalid or expired token."})


@pytest.mark.gen_test
async def test_password_confirm_expired_token_returns_400(client, make_user, services, config):
    user = await make_user(EMAIL, log_in=False)
    async with cursor(services.pool) as cur:
        row = await users.get_user(cur, user["id"])
    old = int(time.time()) - tokens.RESET_TTL_SECONDS - 5
    token = tokens.make_link_token(config.secret_key, "reset",
                                   f"{row['id']}:{row['password_hash']}:{row['token_version']}", old)
    response = await client.post(f"/api/password_confirm/{tokens.encode_uid(user['id'])}/{token}/",
                                 {"new_password": "brand-new-pass-7", "confirm_password": "brand-new-pass-7"})
    assert response.status == 400


# --- conventions --------------------------------------------------------------

@pytest.mark.gen_test
async def test_cors_preflight_answers_204_without_auth(client):
    response = await client.fetch("OPTIONS", "/api/video/", headers={
        "Origin": "http://127.0.0.1:5500", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "content-type"})
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:5500"
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    allowed = {h.strip() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "x-csrftoken", "authorization", "range"} <= allowed
    methods = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "POST", "PUT", "DELETE", "OPTIONS"} <= methods


@pytest.mark.gen_test
async def test_cors_unknown_origin_gets_no_allow_header(client):
    response = await client.post("/api/login/", {}, headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.gen_test
async def test_cors_headers_on_error_responses(client):
    response = await client.post("/api/login/", {}, headers={"Origin": "http://localhost:5500"})
    assert response.status == 400
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:5500"
    assert "Content-Range" in response.headers["Access-Control-Expose-Headers"]


@pytest.mark.gen_test
async def test_unknown_path_and_wrong_method_answer_json(client):
    missing = await client.get("/api/nope/")
    assert (missing.status, missing.json()) == (404, {"detail": "Not found."})
    wrong = await client.get("/api/login/")
    assert wrong.status == 405
    assert json.loads(wrong.body) == {"detail": "Method not allowed."}


@pytest.mark.gen_test
async def test_health_reports_ok(client):
    response = await client.get("/api/health/")
    assert (response.status, response.json()) == (200, {"status": "ok", "database": "ok", "redis": "ok"})


@pytest.mark.gen_test
async def test_health_reports_503_when_redis_is_down(client, services):
    import redis.asyncio

    real, services.redis = services.redis, redis.asyncio.Redis(host="127.0.0.1", port=1,
                                                               socket_connect_timeout=0.5)
    try:
        response = await client.get("/api/health/")
    finally:
        await services.redis.aclose()
        services.redis = real
    assert response.status == 503
    assert response.json() == {"status": "error", "database": "ok", "redis": "error"}
