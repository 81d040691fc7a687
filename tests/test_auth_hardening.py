"""Issue 8, items 3, 4 and 6: login throttling under concurrency, sessions that
end at once, and no mail flooding. Real server, PostgreSQL, Redis and SMTP."""
from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
from pathlib import Path

import pytest

from videoflix.accounts import flows, passwords
from videoflix.platform import clientaddr, rediskeys
from videoflix.platform.config import Config, ConfigError

from helpers import PASSWORD, link_from_mail, login

EMAIL = "owner@example.com"
WRONG = "wrong-password-1"
LOGIN = "/api/login/"
RESET = "/api/password_reset/"
RESET_ANSWER = {"detail": "An email has been sent to reset your password."}


def trust(app, config, *networks: str) -> None:
    app.settings["config"] = dataclasses.replace(
        config, trusted_proxies=tuple(ipaddress.ip_network(n) for n in networks))


# --- client address ------------------------------------------------------------------

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1"))


@pytest.mark.parametrize("peer, headers, expected", [
    # No trusted peer: the headers are the client's own words and are ignored.
    ("203.0.113.9", {"X-Forwarded-For": "198.51.100.1"}, "203.0.113.9"),
    ("203.0.113.9", {"X-Real-IP": "198.51.100.1"}, "203.0.113.9"),
    # A trusted proxy: the right-most address that is not one of ours.
    ("10.0.0.2", {"X-Forwarded-For": "198.51.100.1"}, "198.51.100.1"),
    ("10.0.0.2", {"X-Forwarded-For": "6.6.6.6, 198.51.100.1, 10.0.0.7"}, "198.51.100.1"),
    ("10.0.0.2", {"X-Forwarded-For": "10.1.1.1, 10.0.0.7"}, "10.1.1.1"),  # every hop ours
    ("10.0.0.2", {"X-Forwarded-For": "198.51.100.1:4711"}, "198.51.100.1"),
    ("10.0.0.2", {"X-Forwarded-For": "[2001:db8::5]:443"}, "2001:db8::5"),
    ("10.0.0.2", {"X-Forwarded-For": "6.6.6.6, garbage, 10.0.0.7"}, "10.0.0.7"),  # no guessing
    ("10.0.0.2", {"X-Real-IP": "198.51.100.1"}, "198.51.100.1"),
    ("10.0.0.2", {"X-Real-IP": "not-an-address"}, "10.0.0.2"),
    ("10.0.0.2", {}, "10.0.0.2"),
    ("::ffff:10.0.0.2", {"X-Forwarded-For": "198.51.100.1"}, "198.51.100.1"),
    ("::1", {"X-Forwarded-For": "2001:db8::1"}, "2001:db8::1"),
])
def test_client_address_believes_forwarding_headers_only_from_trusted_proxies(peer, headers, expected):
    assert clientaddr.client_address(peer, headers, TRUSTED) == expected


def test_client_address_without_trusted_proxies_is_the_peer():
    assert clientaddr.client_address("10.0.0.2", {"X-Forwarded-For": "198.51.100.1"}, ()) == "10.0.0.2"


def test_ipv6_clients_are_limited_per_64_block():
    assert clientaddr.limit_key("2001:db8:1:2:aaaa::1") == clientaddr.limit_key("2001:db8:1:2:bbbb::9")
    assert clientaddr.limit_key("2001:db8:1:2::1") != clientaddr.limit_key("2001:db8:1:3::1")
    assert clientaddr.limit_key("198.51.100.7") == "198.51.100.7"


def test_trusted_proxies_are_read_from_the_environment():
    config = Config.from_env({"VIDEOFLIX_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.5,::1"})
    assert [str(n) for n in config.trusted_proxies] == ["10.0.0.0/8", "192.168.1.5/32", "::1/128"]
    assert Config.from_env({}).trusted_proxies == ()
    with pytest.raises(ConfigError, match="VIDEOFLIX_TRUSTED_PROXIES"):
        Config.from_env({"VIDEOFLIX_TRUSTED_PROXIES": "10.0.0.0/33"})


# --- login throttling ---------------------------------------------------------------

@pytest.mark.gen_test(timeout=120)
async def test_concurrent_wrong_guesses_are_evaluated_at_most_the_budget(client, new_client, make_user):
    await make_user(EMAIL, log_in=False)
    budget = flows.MAX_LOGIN_FAILURES_PER_EMAIL_AND_ADDRESS
    responses = await asyncio.gather(*[new_client().post(LOGIN, {"email": EMAIL, "password": WRONG})
                                       for _ in range(30)])
    statuses = sorted(r.status for r in responses)
    # A 400 is an evaluated password; a 429 was refused before any check.
    assert statuses == [400] * budget + [429] * (30 - budget), statuses
    for response in responses:
        if response.status == 429:
            assert 0 < int(response.headers["Retry-After"]) <= flows.LOGIN_WINDOW_SECONDS
            assert response.json() == {"detail": "Too many failed login attempts. Try again later."}
    # Even the right password is not checked from this address now.
    assert (await client.post(LOGIN, {"email": EMAIL, "password": PASSWORD})).status == 429


@pytest.mark.gen_test(timeout=120)
async def test_concurrent_guesses_for_an_unknown_email_are_bounded_too(new_client):
    responses = await asyncio.gather(*[new_client().post(LOGIN, {"email": "ghost@example.com", "password": WRONG})
                                       for _ in range(20)])
    statuses = sorted(r.status for r in responses)
    budget = flows.MAX_LOGIN_FAILURES_PER_EMAIL_AND_ADDRESS
    assert statuses == [400] * budget + [429] * (20 - budget), statuses


@pytest.mark.gen_test(timeout=120)
async def test_owner_from_another_address_logs_in_after_an_attacker_spent_his_budget(client, new_client,
                                                                                    make_user):
    await make_user(EMAIL, log_in=False)
    attacker = new_client("127.0.0.2")
    for _ in range(flows.MAX_LOGIN_FAILURES_PER_EMAIL_AND_ADDRESS):
        assert (await attacker.post(LOGIN, {"email": EMAIL, "password": WRONG})).status == 400
    assert (await attacker.post(LOGIN, {"email": EMAIL, "password": WRONG})).status == 429
    assert (await attacker.post(LOGIN, {"email": EMAIL, "password": PASSWORD})).status == 429
    owner = new_client("127.0.0.3")
    response = await owner.post(LOGIN, {"email": EMAIL, "password": PASSWORD})
    assert response.status == 200, response.body
    assert (await owner.get("/api/video/")).status == 200


@pytest.mark.gen_test(timeout=120)
async def test_owner_success_clears_own_failures_but_not_the_shared_counts(client, make_user, services):
    await make_user(EMAIL, log_in=False)
    for _ in range(flows.MAX_LOGIN_FAILURES_PER_EMAIL_AND_ADDRESS - 1):
        assert (await client.post(LOGIN, {"email": EMAIL, "password": WRONG})).status == 400
    await login(client, EMAIL)
    # The owner's own typos are forgiven here...
    for _ in range(flows.MAX_LOGIN_FAILURES_PER_EMAIL_AND_ADDRESS):
        assert (await client.post(LOGIN, {"email": EMAIL, "password": WRONG})).status == 400
    # ...the per-address count keeps every failure, and the per-email ceiling those from
    # before the success: now that the address is the owner's, the ceiling no longer binds it.
    assert int(await services.redis.get(rediskeys.login_attempts_by_email(EMAIL))) == 9
    assert int(await services.redis.get(rediskeys.login_attempts_by_address("127.0.0.1"))) == 19


@pytest.mark.gen_test(timeout=120)
async def test_a_distributed_guesser_cannot_lock_the_owner_out_where_they_log_in(new_client, make_user, services):
    await make_user(EMAIL, log_in=False)
    home = new_client("127.0.7.1")
    await login(home, EMAIL)  # the owner's address: it has logged in successfully before
    guessers = [new_client(f"127.0.8.{i}") for i in range(1, 11)]
    for guesser in guessers:  # 100 failures from 10 addresses: the per-email ceiling is spent
        for _ in range(flows.MAX_LOGIN_FAILURES_PER_EMAIL_AND_ADDRESS):
            await guesser.post(LOGIN, {"email": EMAIL, "password": WRONG})
    stranger = await new_client("127.0.9.1").post(LOGIN, {"email": EMAIL, "password": PASSWORD})
    assert stranger.status == 429  # a new address still meets the ceiling (even with the password)
    assert (await home.post(LOGIN, {"email": EMAIL, "password": PASSWORD})).status == 200
    # The known address is still bound by its own budget: it is not a free pass for guessing.
    statuses = [(await home.post(LOGIN, {"email": EMAIL, "password": WRONG})).status
                for _ in range(flows.MAX_LOGIN_FAILURES_PER_EMAIL_AND_ADDRESS + 1)]
    assert statuses == [400] * flows.MAX_LOGIN_FAILURES_PER_EMAIL_AND_ADDRESS + [429]


@pytest.mark.gen_test(timeout=60)
async def test_known_addresses_are_stored_as_digests_and_bounded(new_client, make_user, services):
    await make_user(EMAIL, log_in=False)
    for i in range(flows.MAX_KNOWN_ADDRESSES + 5):
        await login(new_client(f"127.0.10.{i + 1}"), EMAIL)
    members = await services.redis.smembers(rediskeys.known_login_addresses(EMAIL))
    assert len(members) == flows.MAX_KNOWN_ADDRESSES
    assert not any("127.0" in member for member in members)
    assert 0 < await services.redis.ttl(rediskeys.known_login_addresses(EMAIL)) <= flows.KNOWN_ADDRESS_DAYS * 86400


@pytest.mark.gen_test(timeout=120)
async def test_one_address_spraying_many_emails_is_throttled(new_client, services):
    sprayer = new_client("127.0.0.4")
    budget = flows.MAX_LOGIN_FAILURES_PER_ADDRESS
    statuses = []
    for start in range(0, budget + 5, 11):  # bursts of 11, each over the per-pair budget's reach
        batch = await asyncio.gather(*[sprayer.post(LOGIN, {"email": f"user{i}@example.com", "password": WRONG})
                                       for i in range(start, min(start + 11, budget + 5))])
        statuses += [r.status for r in batch]
    assert statuses.count(400) == budget and statuses.count(429) == 5, statuses
    # Another address is not affected, nor is any account's owner elsewhere.
    other = await new_client("127.0.0.5").post(LOGIN, {"email": "user1@example.com", "password": WRONG})
    assert other.status == 400


@pytest.mark.gen_test(timeout=120)
async def test_per_email_ceiling_holds_against_many_addresses(new_client, make_user, services):
    await make_user(EMAIL, log_in=False)
    ceiling = flows.MAX_LOGIN_FAILURES_PER_EMAIL
    # Most of the ceiling spent from elsewhere (recorded as the limiter counts it).
    await services.redis.set(rediskeys.login_attempts_by_email(EMAIL), ceiling - 2, ex=600)
    fresh = [new_client(f"127.0.1.{i}") for i in range(1, 5)]
    statuses = [(await c.post(LOGIN, {"email": EMAIL, "password": WRONG})).status for c in fresh]
    assert statuses == [400, 400, 429, 429]


@pytest.mark.gen_test(timeout=120)
async def test_forged_forwarded_for_from_an_untrusted_peer_is_ignored(client, new_client, make_user, app, config):
    await make_user(EMAIL, log_in=False)
    attacker = new_client("127.0.0.2")
    budget = flows.MAX_LOGIN_FAILURES_PER_EMAIL_AND_ADDRESS
    # A fresh X-Forwarded-For per guess would be a fresh budget if it were believed.
    statuses = []
    for i in range(budget + 3):
        for header in ("X-Forwarded-For", "X-Real-IP"):
            response = await attacker.post(LOGIN, {"email": EMAIL, "password": WRONG},
                                           headers={header: f"198.51.100.{i}"})
            statuses.append(response.status)
    assert statuses.count(400) == budget, statuses


@pytest.mark.gen_test(timeout=120)
async def test_forwarded_for_from_a_trusted_proxy_names_the_client(client, new_client, make_user, app, config):
    await make_user(EMAIL, log_in=False)
    trust(app, config, "127.0.0.1/32")  # the tests' proxy is the loopback peer
    budget = flows.MAX_LOGIN_FAILURES_PER_EMAIL_AND_ADDRESS
    for _ in range(budget):
        response = await client.post(LOGIN, {"email": EMAIL, "password": WRONG},
                                     headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.7"})
        assert response.status == 400
    # That client is throttled, whatever it writes left of what our proxy appended...
    spoofed = await client.post(LOGIN, {"email": EMAIL, "password": PASSWORD},
                                headers={"X-Forwarded-For": "203.0.113.50, 198.51.100.7"})
    assert spoofed.status == 429
    # ...the proxy's other clients are not, by X-Forwarded-For or X-Real-IP.
    owner = await client.post(LOGIN, {"email": EMAIL, "password": PASSWORD},
                              headers={"X-Forwarded-For": "203.0.113.50"})
    assert owner.status == 200
    owner_again = await client.post(LOGIN, {"email": EMAIL, "password": PASSWORD},
                                    headers={"X-Real-IP": "203.0.113.51"})
    assert owner_again.status == 200
    # A peer that is not the configured proxy still cannot name the client.
    other = new_client("127.0.0.2")
    ignored = await other.post(LOGIN, {"email": EMAIL, "password": PASSWORD},
                               headers={"X-Forwarded-For": "198.51.100.7"})
    assert ignored.status == 200


@pytest.mark.gen_test(timeout=60)
async def test_access_log_names_the_forwarded_client_only_behind_a_trusted_proxy(client, new_client, app,
                                                                                 config, caplog):
    caplog.set_level(logging.INFO, logger="videoflix.access")
    forwarded = {"X-Forwarded-For": "6.6.6.6, 198.51.100.7"}

    async def logged_client(browser, headers) -> list[str]:
        caplog.clear()
        assert (await browser.get("/api/health/", headers=headers)).status == 200
        [line] = [r.getMessage() for r in caplog.records if r.name == "videoflix.access"]
        return line.split()[3:-1]  # after "200 GET /api/health/", before the duration

    # No trusted proxy: the peer, whatever the headers say.
    assert await logged_client(client, forwarded) == ["127.0.0.1"]
    trust(app, config, "127.0.0.1/32")
    assert await logged_client(client, forwarded) == ["198.51.100.7", "via", "127.0.0.1"]
    assert await logged_client(client, {"X-Real-IP": "203.0.113.51"}) == ["203.0.113.51", "via", "127.0.0.1"]
    assert await logged_client(client, {}) == ["127.0.0.1"]
    # A peer that is not the proxy cannot name anyone in the log either.
    assert await logged_client(new_client("127.0.0.2"), forwarded) == ["127.0.0.2"]


# --- sessions -------------------------------------------------------------------------

async def _ready_video(services, user_id: int, media_dir: str) -> str:
    """A ready private video with one segment on disk; returns the segment's path."""
    from pathlib import Path

    from videoflix.platform.db import cursor
    from videoflix.tables import videos

    async with cursor(services.pool) as cur:
        video_id = await videos.insert_video(cur, owner_id=user_id, title="t", description="", category="c",
                                             visibility="private", status="queued")
        version = (await videos.mark_processing(cur, video_id)).building_version
        await videos.mark_ready(cur, video_id, version=version, duration=2.0, width=1280, height=720, fps=25.0,
                                has_audio=False, resolutions=["720p"])
    folder = Path(media_dir) / str(video_id) / f"v{version}" / "720p"
    folder.mkdir(parents=True)
    (folder / "seg_00000.ts").write_bytes(b"\x47" * 188 * 10)
    (folder / "index.m3u8").write_text("#EXTM3U\n#EXTINF:2.0,\nseg_00000.ts\n#EXT-X-ENDLIST\n")
    return f"/api/video/{video_id}/720p/seg_00000.ts"


@pytest.mark.gen_test(timeout=120)
async def test_logout_ends_the_access_token_at_once_api_and_hls(client, new_client, make_user, services, config):
    user = await make_user(EMAIL)
    segment = await _ready_video(services, user["id"], config.media_dir)
    access = client.cookies["access_token"]
    bearer = {"Authorization": f"Bearer {access}"}
    cookie = {"Cookie": f"access_token={access}"}
    stream = (await client.get(f"/api/video/{segment.split('/')[3]}/stream/")).json()["url"]
    stream_path = stream.split(str(config.port), 1)[1].replace("master.m3u8", "720p/seg_00000.ts")
    player = new_client()
    for headers in (bearer, cookie):  # warm every cache the hot path has
        assert (await player.get("/api/video/", headers=headers, cookies=False)).status == 200
        assert (await player.get(segment, headers=headers, cookies=False)).status == 200
    assert (await player.get(stream_path, cookies=False)).status == 200
    assert (await client.post("/api/logout/")).status == 200
    for headers in (bearer, cookie):
        listing = await player.get("/api/video/", headers=headers, cookies=False)
        assert (listing.status, listing.json()) == (401, {"detail": "Invalid or expired token."})
        assert (await player.get(segment, headers=headers, cookies=False)).status == 401
        assert (await player.get(segment.replace("seg_00000.ts", "index.m3u8"), headers=headers,
                                 cookies=False)).status == 401
    assert (await player.get(stream_path, cookies=False)).status == 401


@pytest.mark.gen_test(timeout=120)
async def test_logout_ends_the_owner_access_to_private_images_at_once(client, new_client, make_user, services,
                                                                      config):
    """The plain /media/<kind>/<id>.jpg of a private video takes the owner's access
    token: a logged-out one is anyone's, a 404 like a missing video."""
    user = await make_user(EMAIL)
    video_id = (await _ready_video(services, user["id"], config.media_dir)).split("/")[3]
    for name in ("thumbnail.jpg", "poster.jpg"):
        # In its live version, the first (_ready_video's).
        (Path(config.media_dir) / video_id / "v1" / name).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    access = client.cookies["access_token"]
    paths = [f"/media/thumbnail/{video_id}.jpg", f"/media/poster/{video_id}.jpg"]
    credentials = ({"Authorization": f"Bearer {access}"}, {"Cookie": f"access_token={access}"})
    viewer = new_client()
    for headers in credentials:
        for path in paths:
            assert (await viewer.get(path, headers=headers, cookies=False)).status == 200
    assert (await client.post("/api/logout/")).status == 200
    for headers in credentials:
        for path in paths:
            response = await viewer.get(path, headers=headers, cookies=False)
            assert response.status == 404, path
            assert response.json() == {"detail": "Not found."}
    # The keyed URL the catalog hands out is a capability of its own and still works.
    await login(client, EMAIL)
    keyed = (await client.get(f"/api/video/{video_id}/")).json()["thumbnail_url"]
    assert (await new_client().get(keyed.split(str(config.port), 1)[1], cookies=False)).status == 200


@pytest.mark.gen_test(timeout=120)
async def test_logout_ends_only_its_own_session(client, new_client, make_user):
    await make_user(EMAIL)
    laptop = new_client()
    await login(laptop, EMAIL)
    assert (await client.post("/api/logout/")).status == 200
    assert (await laptop.get("/api/video/")).status == 200
    assert (await laptop.post("/api/token/refresh/")).status == 200


@pytest.mark.gen_test(timeout=120)
async def test_password_reset_ends_every_session_at_once(client, new_client, make_user, services, mailbox,
                                                         config):
    user = await make_user(EMAIL)
    segment = await _ready_video(services, user["id"], config.media_dir)
    phone = new_client("127.0.0.2")
    await login(phone, EMAIL)
    for browser in (client, phone):
        assert (await browser.get("/api/video/")).status == 200
        assert (await browser.get(segment)).status == 200
    mailbox.clear()
    assert (await new_client().post(RESET, {"email": EMAIL})).status == 200
    await services.mailer.drain()
    uid, token = link_from_mail(mailbox.messages[-1])
    body = {"new_password": "brand-new-pass-7", "confirm_password": "brand-new-pass-7"}
    assert (await new_client().post(f"/api/password_confirm/{uid}/{token}/", body)).status == 200
    for browser in (client, phone):
        assert (await browser.get("/api/video/")).status == 401
        assert (await browser.get(segment)).status == 401
        assert (await browser.post("/api/token/refresh/")).status == 401
    fresh = new_client()
    await login(fresh, EMAIL, "brand-new-pass-7")
    assert (await fresh.get(segment)).status == 200


@pytest.mark.gen_test(timeout=120)
async def test_token_version_changed_elsewhere_is_seen_within_the_staleness_bound(client, make_user, services):
    """A change another process makes (here: SQL) reaches this process's cache within
    sessions.CHECK_SECONDS; waited for by polling, not by sleeping a fixed time."""
    from videoflix.accounts import sessions
    from videoflix.platform.db import cursor

    user = await make_user(EMAIL)
    assert (await client.get("/api/video/")).status == 200
    async with cursor(services.pool) as cur:
        await cur.execute("UPDATE users SET token_version = token_version + 1 WHERE id = %s", (user["id"],))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + sessions.CHECK_SECONDS + 2
    while (await client.get("/api/video/")).status == 200:
        assert loop.time() < deadline, "still accepted after the staleness bound"
        await asyncio.sleep(0.2)


# --- mail flooding ----------------------------------------------------------------------

@pytest.mark.gen_test(timeout=120)
async def test_password_reset_mails_are_limited_per_recipient_with_the_same_answer(new_client, make_user,
                                                                                  services, mailbox):
    await make_user(EMAIL, log_in=False)  # the activation mail counts too
    mailbox.clear()
    answers = []
    for i in range(flows.MAX_MAILS_PER_RECIPIENT + 3):
        # From different clients: the per-recipient limit holds whoever asks.
        response = await new_client(f"127.0.2.{i + 1}").post(RESET, {"email": EMAIL})
        answers.append((response.status, response.json()))
    assert answers == [(200, RESET_ANSWER)] * len(answers)
    await services.mailer.drain()
    assert [m["To"] for m in mailbox.messages] == [EMAIL] * (flows.MAX_MAILS_PER_RECIPIENT - 1)


@pytest.mark.gen_test(timeout=120)
async def test_password_reset_answers_alike_for_known_and_unknown_addresses_once_limited(client, make_user,
                                                                                        services, mailbox):
    await make_user(EMAIL, log_in=False)
    for _ in range(flows.MAX_MAILS_PER_RECIPIENT):
        await client.post(RESET, {"email": EMAIL})
        await client.post(RESET, {"email": "ghost@example.com"})
    known = await client.post(RESET, {"email": EMAIL})
    unknown = await client.post(RESET, {"email": "ghost@example.com"})
    assert (known.status, known.body, dict(known.headers.get_all()).keys()) == \
        (unknown.status, unknown.body, dict(unknown.headers.get_all()).keys())
    assert known.json() == RESET_ANSWER


@pytest.mark.gen_test(timeout=120)
async def test_one_client_cannot_mail_many_recipients(new_client, make_user, services, mailbox, config):
    from videoflix.platform.db import cursor
    from videoflix.tables import users

    hashed = await passwords.hash_password(services.cpu_executor, PASSWORD, config.bcrypt_rounds)
    async with cursor(services.pool) as cur:
        for i in range(flows.MAX_MAILS_PER_ADDRESS + 2):
            await users.insert_user(cur, f"victim{i}@example.com", hashed, is_active=True)
    mailbox.clear()
    flooder = new_client("127.0.0.6")
    for i in range(flows.MAX_MAILS_PER_ADDRESS + 2):
        response = await flooder.post(RESET, {"email": f"victim{i}@example.com"})
        assert (response.status, response.json()) == (200, RESET_ANSWER)
    await services.mailer.drain()
    assert len(mailbox.messages) == flows.MAX_MAILS_PER_ADDRESS
    # Another client still gets its mail through.
    assert (await new_client("127.0.0.7").post(RESET, {"email": "victim0@example.com"})).status == 200
    await services.mailer.drain()
    assert len(mailbox.messages) == flows.MAX_MAILS_PER_ADDRESS + 1


REGISTER = "/api/register/"
MAIL_LIMITED = {"detail": "Too many emails asked for from your address. Try again later."}


def _sign_up(email: str) -> dict:
    return {"email": email, "password": PASSWORD, "confirmed_password": PASSWORD}


async def _user_count(services, email_like: str) -> int:
    from videoflix.platform.db import cursor

    async with cursor(services.pool) as cur:
        await cur.execute("SELECT count(*) AS n FROM users WHERE email LIKE %s", (email_like,))
        return (await cur.fetchone())["n"]


@pytest.mark.gen_test(timeout=120)
async def test_register_over_the_client_mail_budget_is_429_and_creates_no_account(new_client, services,
                                                                                  mailbox):
    flooder = new_client("127.0.0.8")
    limit = flows.MAX_MAILS_PER_ADDRESS
    for i in range(limit):
        email = f"someone{i}@example.com"
        response = await flooder.post(REGISTER, _sign_up(email))
        assert response.status == 201
        assert response.json() == {"user": {"id": response.json()["user"]["id"], "email": email}}
    refused = [await flooder.post(REGISTER, _sign_up(f"late{i}@example.com")) for i in range(2)]
    for response in refused:
        assert (response.status, response.json()) == (429, MAIL_LIMITED)
        assert 0 < int(response.headers["Retry-After"]) <= flows.MAIL_WINDOW_SECONDS
    assert await _user_count(services, "late%") == 0
    await services.mailer.drain()
    assert len(mailbox.messages) == limit  # one activation mail per account, none for the refused
    # A reset request from the same client is over the same budget: the usual 200, no mail.
    assert (await flooder.post(RESET, {"email": "someone0@example.com"})).json() == RESET_ANSWER
    await services.mailer.drain()
    assert len(mailbox.messages) == limit


@pytest.mark.gen_test(timeout=120)
async def test_owner_refused_by_a_spent_client_budget_registers_later_from_elsewhere(client, new_client,
                                                                                    services, mailbox):
    """The address is not trapped: nothing was created, so its owner signs up,
    activates and logs in from another client."""
    flooder = new_client("127.0.0.9")
    for i in range(flows.MAX_MAILS_PER_ADDRESS):
        assert (await flooder.post(REGISTER, _sign_up(f"filler{i}@example.com"))).status == 201
    assert (await flooder.post(REGISTER, _sign_up(EMAIL))).status == 429
    await services.mailer.drain()  # the fillers' mails are out before the box is emptied
    mailbox.clear()
    response = await client.post(REGISTER, _sign_up(EMAIL))
    assert response.status == 201, response.body
    await services.mailer.drain()
    assert [m["To"] for m in mailbox.messages] == [EMAIL]
    uid, token = link_from_mail(mailbox.messages[-1])
    assert (await client.get(f"/api/activate/{uid}/{token}/")).status == 200
    await login(client, EMAIL)


@pytest.mark.gen_test(timeout=120)
async def test_concurrent_registrations_from_one_client_get_exactly_the_budget(new_client, services, mailbox):
    flooder = new_client("127.0.0.10")
    limit = flows.MAX_MAILS_PER_ADDRESS
    responses = await asyncio.gather(*[flooder.post(REGISTER, _sign_up(f"burst{i}@example.com"))
                                       for i in range(limit + 6)])
    statuses = [r.status for r in responses]
    assert statuses.count(201) == limit and statuses.count(429) == 6, statuses
    assert await _user_count(services, "burst%") == limit
    await services.mailer.drain()
    assert len(mailbox.messages) == limit


@pytest.mark.gen_test(timeout=120)
async def test_refused_registrations_do_not_spend_the_client_mail_budget(new_client, services):
    """Field errors and a taken address create nothing and send nothing: they
    leave the client's budget as it was."""
    browser = new_client("127.0.0.11")
    assert (await browser.post(REGISTER, _sign_up(EMAIL))).status == 201
    refused = [
        _sign_up(EMAIL),  # taken
        _sign_up(EMAIL.upper()),  # taken, in other letters
        {"email": "new@example.com", "password": PASSWORD, "confirmed_password": PASSWORD + "x"},
        {"email": "new@example.com", "password": "12345678", "confirmed_password": "12345678"},
        {"email": "not-an-address", "password": PASSWORD, "confirmed_password": PASSWORD},
        {"email": "new@example.com"},
    ] * 3
    for body in refused:
        assert (await browser.post(REGISTER, body)).status == 400
    # One address signed up five times at once: all pass the first check, one is
    # created, the others lose at the insert and hand their reservation back.
    raced = await asyncio.gather(*[browser.post(REGISTER, _sign_up("race@example.com")) for _ in range(5)])
    assert sorted(r.status for r in raced) == [201, 400, 400, 400, 400]
    assert int(await services.redis.get(rediskeys.mails_from("127.0.0.11"))) == 2
    for i in range(flows.MAX_MAILS_PER_ADDRESS - 2):
        assert (await browser.post(REGISTER, _sign_up(f"later{i}@example.com"))).status == 201
    assert (await browser.post(REGISTER, _sign_up("one-too-many@example.com"))).status == 429


@pytest.mark.gen_test(timeout=120)
async def test_register_still_mails_when_resets_spent_the_recipient_budget(client, new_client, services, mailbox):
    """Reset requests for an address nobody registered yet (anyone can send them)
    must not leave its owner with an account and no activation link."""
    for i in range(flows.MAX_MAILS_PER_RECIPIENT + 1):
        assert (await new_client(f"127.0.4.{i + 1}").post(RESET, {"email": EMAIL})).json() == RESET_ANSWER
    mailbox.clear()
    assert (await client.post(REGISTER, _sign_up(EMAIL))).status == 201
    await services.mailer.drain()
    assert [m["To"] for m in mailbox.messages] == [EMAIL]
    uid, token = link_from_mail(mailbox.messages[-1])
    assert (await client.get(f"/api/activate/{uid}/{token}/")).status == 200
    await login(client, EMAIL)


@pytest.mark.gen_test(timeout=120)
async def test_register_and_reset_share_the_recipient_budget(client, new_client, services, mailbox):
    email = "shared@example.com"
    response = await new_client("127.0.3.1").post("/api/register/", {"email": email, "password": PASSWORD,
                                                                      "confirmed_password": PASSWORD})
    assert response.status == 201
    for i in range(flows.MAX_MAILS_PER_RECIPIENT + 1):
        assert (await new_client(f"127.0.3.{i + 2}").post(RESET, {"email": email})).status == 200
    await services.mailer.drain()
    assert len(mailbox.messages) == flows.MAX_MAILS_PER_RECIPIENT
