"""Account flows: register, activate, log in, refresh, log out, reset a password.

Plain async functions over the services; they raise the domain errors below,
which the auth handlers map to HTTP answers.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Any

from videoflix.accounts import passwords, sessions, throttle, tokens
from videoflix.platform import clientaddr, rediskeys
from videoflix.platform.config import Config
from videoflix.platform.db import cursor, transaction
from videoflix.platform.mail import plain_mailbox
from videoflix.platform.services import Services
from videoflix.tables import users

log = logging.getLogger(__name__)

# Login throttling (CWE-307; the policy is in the README). Every attempt is
# reserved before its password check and stays counted when the password is
# wrong; a right password hands its reservation back. Per 15-minute window:
# - per (email, client address): the budget one guesser has against one account;
#   the owner elsewhere is not affected, and their success here clears it;
# - per client address, across all emails: one address spraying many accounts;
# - per email, across all addresses: the ceiling a distributed guesser reaches.
#   Larger, so an attacker needs many addresses before the owner is locked out;
#   and it does not bind the owner's own addresses: one that logged in to this
#   account successfully in the last KNOWN_ADDRESS_DAYS keeps only the first two
#   limits, so a distributed guesser cannot lock the owner out where they log in.
LOGIN_WINDOW_SECONDS = 15 * 60
MAX_LOGIN_FAILURES_PER_EMAIL_AND_ADDRESS = 10
MAX_LOGIN_FAILURES_PER_ADDRESS = 50
MAX_LOGIN_FAILURES_PER_EMAIL = 100
# Known addresses of an account: remembered this long after the last success there,
# at most this many (a random one goes to make room); stored as keyed digests.
KNOWN_ADDRESS_DAYS = 90
MAX_KNOWN_ADDRESSES = 32
# Mail flooding: emails (activation and reset together) per recipient and per
# client address. A reset over either is answered as usual and no mail goes out,
# so the answer says nothing about the account. A registration needs its
# activation mail (without it the address is trapped: taken, and never
# activated), so it is refused (429) before anything is created when the
# client's budget is spent, and it always mails once created (see register).
MAIL_WINDOW_SECONDS = 3600
MAX_MAILS_PER_RECIPIENT = 3
MAX_MAILS_PER_ADDRESS = 10
# Two tabs refreshing at once present the same refresh token: within this many
# seconds of its first use it is honoured again (same session). Later, its reuse
# means it was stolen (or the thief refreshed first): the whole session ends
# (RFC 6819 §5.2.2.3).
REFRESH_REUSE_GRACE_SECONDS = 10
REQUIRED = "This field is required."


class FieldErrors(Exception):
    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


class InvalidCredentials(Exception):
    pass


class InactiveAccount(Exception):
    pass


class Throttled(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class InvalidLink(Exception):
    """An activation or reset link that is malformed, forged or expired."""


class InvalidRefreshToken(Exception):
    pass


@dataclass(frozen=True)
class IssuedTokens:
    access: str
    refresh: str
    access_max_age: int
    refresh_max_age: int


def now() -> int:
    return int(time.time())


def normalize_email(value: object) -> str | None:
    """The one plain `local@domain` mailbox `value` names, lower-cased, or None
    (mail.plain_mailbox: no display names, groups, commas, brackets or quotes).
    Every budget, lookup and mail uses this form."""
    return plain_mailbox(value)


def _email_field(value: object) -> tuple[str, list[str]]:
    """(the normalised address, []) or ("", its field errors)."""
    if value is None or value == "":
        return "", [REQUIRED]
    email = normalize_email(value)
    return (email, []) if email else ("", ["Enter a valid email address."])


def _new_password_errors(
    password: object, confirm: object, password_field: str, confirm_field: str
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    problems = passwords.password_problems(password)
    if problems:
        errors[password_field] = problems
    if confirm is None or confirm == "":
        errors[confirm_field] = [REQUIRED]
    elif confirm != password:
        errors[confirm_field] = ["Passwords do not match."]
    return errors


def _reset_state(user: dict[str, Any]) -> str:
    # The password hash and version are in the state: the link dies once used.
    return f"{user['id']}:{user['password_hash']}:{user['token_version']}"


def _activation_state(user: dict[str, Any]) -> str:
    return f"{user['id']}:{user['email']}"


def session_lifetime(config: Config) -> int:
    """Seconds that cover every token a session may still hold (refresh, access,
    stream, media): how long its revocation mark must last."""
    return (
        max(
            config.refresh_token_days * 24 * 3600,
            config.access_token_minutes * 60,
            config.stream_token_ttl,
            config.media_token_ttl,
        )
        + 60
    )


def issue_tokens(config: Config, user: dict[str, Any], session_id: str) -> IssuedTokens:
    access_ttl = config.access_token_minutes * 60
    refresh_ttl = config.refresh_token_days * 24 * 3600
    issued = now()
    common = {
        "user_id": user["id"],
        "now": issued,
        "is_admin": user["is_admin"],
        "token_version": user["token_version"],
        "session_id": session_id,
    }
    access, _ = tokens.make_session_token(config.secret_key, kind="access", ttl_seconds=access_ttl, **common)
    refresh, _ = tokens.make_session_token(config.secret_key, kind="refresh", ttl_seconds=refresh_ttl, **common)
    return IssuedTokens(access, refresh, access_ttl, refresh_ttl)


def _recipient_mail_limit(recipient: str) -> throttle.Limit:
    return throttle.Limit(rediskeys.mails_to(recipient), MAX_MAILS_PER_RECIPIENT, MAIL_WINDOW_SECONDS)


def _client_mail_limit(address: str) -> throttle.Limit:
    return throttle.Limit(
        rediskeys.mails_from(clientaddr.limit_key(address)), MAX_MAILS_PER_ADDRESS, MAIL_WINDOW_SECONDS
    )


async def _may_mail(services: Services, recipient: str, address: str) -> bool:
    """Count one mail to `recipient` asked for by `address`; False when over a limit."""
    limits = [_recipient_mail_limit(recipient), _client_mail_limit(address)]
    wait = await throttle.reserve(services.redis, limits)
    if wait is not None:
        log.warning("mail limit reached (recipient or client %s): no mail sent", address)
        return False
    return True


async def register(config: Config, services: Services, body: dict[str, Any], address: str) -> dict[str, Any]:
    """Create an inactive account and mail its activation link. Throttled (nothing
    created) when the client `address` has spent its mail budget."""
    email, email_errors = _email_field(body.get("email"))
    errors = _new_password_errors(
        body.get("password"), body.get("confirmed_password"), "password", "confirmed_password"
    )
    if email_errors:
        errors["email"] = email_errors
    else:
        async with cursor(services.pool) as cur:
            if await users.get_user_by_email(cur, email) is not None:
                errors["email"] = ["A user with this email already exists."]
    if errors:
        raise FieldErrors(errors)
    # The client's mail is reserved before the account exists: when its budget is
    # spent, nothing is created (a per-client answer: it says nothing about accounts).
    client_budget = _client_mail_limit(address)
    wait = await throttle.reserve(services.redis, [client_budget])
    if wait is not None:
        log.warning("mail limit reached (client %s): registration refused", address)
        raise Throttled(wait)
    created = False
    try:
        hashed = await passwords.hash_password(services.cpu_executor, body["password"], config.bcrypt_rounds)
        try:
            async with transaction(services.pool) as cur:
                user_id = await users.insert_user(cur, email, hashed)
                user = await users.get_user(cur, user_id)
                assert user is not None  # (inserted in this transaction)
        except users.EmailTaken:
            raise FieldErrors({"email": ["A user with this email already exists."]}) from None
        created = True
    finally:
        if not created:
            await throttle.release(services.redis, [client_budget])  # no account, no mail
    link = make_link(config, services, "activate", "activate.html", user)
    await services.mailer.send("activation", email, {"link": link})
    log.info("registered user %s", user_id)
    # Counted against the recipient for later resets, but never refused by it: an
    # address takes one registration, so this is its only activation mail, and
    # refusing it would let three reset requests by anyone trap the address.
    await throttle.reserve(services.redis, [_recipient_mail_limit(email)])
    return {"id": user_id, "email": email}


# purpose -> (the user state a link is bound to, its lifetime)
LINKS = {
    "activate": (_activation_state, tokens.ACTIVATION_TTL_SECONDS),
    "reset": (_reset_state, tokens.RESET_TTL_SECONDS),
}


async def _user_for_link(config: Config, services: Services, purpose: str, uidb64: str, token: str) -> dict[str, Any]:
    """The user an emailed link names, if its token is genuine and fresh; else InvalidLink."""
    try:
        user_id = tokens.decode_uid(uidb64)
    except tokens.TokenError:
        raise InvalidLink() from None
    async with cursor(services.pool) as cur:
        user = await users.get_user(cur, user_id)
    if user is None:
        raise InvalidLink()
    state, ttl = LINKS[purpose]
    try:
        tokens.check_link_token(config.secret_key, purpose, state(user), token, now(), ttl)
    except tokens.TokenError:
        raise InvalidLink() from None
    return user


def make_link(config: Config, services: Services, purpose: str, page: str, user: dict[str, Any]) -> str:
    state, _ = LINKS[purpose]
    token = tokens.make_link_token(config.secret_key, purpose, state(user), now())
    return services.mailer.link(page, tokens.encode_uid(user["id"]), token)


async def activate(config: Config, services: Services, uidb64: str, token: str) -> bool:
    """True when the account was activated now, False when it already was."""
    user = await _user_for_link(config, services, "activate", uidb64, token)
    async with cursor(services.pool) as cur:
        activated = await users.activate_user(cur, user["id"])
    if activated:
        log.info("activated user %s", user["id"])
    return activated


def _login_limits(email: str, address: str) -> tuple[throttle.Limit, throttle.Limit, throttle.Limit]:
    """(per email and address, per address, per email)."""
    unit = clientaddr.limit_key(address)
    return (
        throttle.Limit(
            rediskeys.login_attempts_by_pair(unit, email),
            MAX_LOGIN_FAILURES_PER_EMAIL_AND_ADDRESS,
            LOGIN_WINDOW_SECONDS,
        ),
        throttle.Limit(rediskeys.login_attempts_by_address(unit), MAX_LOGIN_FAILURES_PER_ADDRESS, LOGIN_WINDOW_SECONDS),
        throttle.Limit(rediskeys.login_attempts_by_email(email), MAX_LOGIN_FAILURES_PER_EMAIL, LOGIN_WINDOW_SECONDS),
    )


def _known_address_key(config: Config, address: str) -> str:
    """A client unit as the known-address set stores it: a keyed digest, so Redis
    holds no list of where a user logs in from."""
    unit = clientaddr.limit_key(address)
    return hmac.new(config.secret_key.encode(), f"known-address:{unit}".encode(), hashlib.sha256).hexdigest()[:32]


async def _remember_address(services: Services, email: str, known: str) -> None:
    key = rediskeys.known_login_addresses(email)
    if not await services.redis.sismember(key, known) and await services.redis.scard(key) >= MAX_KNOWN_ADDRESSES:
        await services.redis.spop(key)
    async with services.redis.pipeline(transaction=True) as pipe:
        pipe.sadd(key, known)
        pipe.expire(key, KNOWN_ADDRESS_DAYS * 86400)
        await pipe.execute()


async def login(
    config: Config, services: Services, body: dict[str, Any], address: str
) -> tuple[dict[str, Any], IssuedTokens]:
    password = body.get("password")
    email = normalize_email(body.get("email"))
    if email is None or not isinstance(password, str) or not password:
        email_errors = _email_field(body.get("email"))[1]
        errors = {"email": email_errors} if email_errors else {}
        if not isinstance(password, str) or not password:
            errors["password"] = [REQUIRED]
        raise FieldErrors(errors)
    pair, per_address, per_email = _login_limits(email, address)
    known = _known_address_key(config, address)
    limits = [pair, per_address]
    if not await services.redis.sismember(rediskeys.known_login_addresses(email), known):
        limits.append(per_email)  # the owner's own addresses are not bound by the shared ceiling
    # Reserved before the password check, atomically: a burst cannot outrun the count.
    wait = await throttle.reserve(services.redis, limits)
    if wait is not None:
        raise Throttled(wait)
    wrong = True
    try:
        async with cursor(services.pool) as cur:
            user = await users.get_user_by_email(cur, email)
        # Unknown emails still pay for one bcrypt check: same timing class (CWE-208).
        hashed = (
            user["password_hash"] if user else await passwords.dummy_hash(services.cpu_executor, config.bcrypt_rounds)
        )
        wrong = not await passwords.check_password(services.cpu_executor, password, hashed) or user is None
    finally:
        if not wrong:
            # The owner: this was no failure. The pair's count is theirs to clear;
            # the shared counts only get this attempt back.
            await throttle.release(services.redis, limits[1:])
            await throttle.clear(services.redis, [pair])
            await _remember_address(services, email, known)
    if wrong:
        raise InvalidCredentials()
    assert user is not None
    if not user["is_active"]:
        raise InactiveAccount()
    async with cursor(services.pool) as cur:
        await users.record_login(cur, user["id"])
    return user, issue_tokens(config, user, tokens.new_session_id())


async def _read_refresh(config: Config, services: Services, token: str) -> tokens.SessionClaims:
    try:
        return tokens.read_session_token(config.secret_key, token, kind="refresh", now=now())
    except tokens.TokenError:
        raise InvalidRefreshToken() from None


async def _spend(services: Services, claims: tokens.SessionClaims) -> int | None:
    """Mark the refresh token spent (until it expires anyway). None when this call
    spent it; else the time it was first spent."""
    stamp = now()
    key = rediskeys.denied_jti(claims.jti)
    if await services.redis.set(key, stamp, nx=True, exat=claims.expires_at):
        return None
    spent = await services.redis.get(key)
    try:
        return int(spent)  # type: ignore[arg-type]  # (None: gone in between, below)
    except (TypeError, ValueError):
        return 0  # an old-style mark, or gone in between: long spent


async def refresh(config: Config, services: Services, token: str) -> IssuedTokens:
    """Rotate: the presented refresh token is spent, a new pair of the same session
    is issued. A spent token presented again within REFRESH_REUSE_GRACE_SECONDS
    (two tabs) gets a pair too; later, the whole session is revoked."""
    claims = await _read_refresh(config, services, token)
    async with cursor(services.pool) as cur:
        user = await users.get_user(cur, claims.user_id)
    if user is None or not user["is_active"] or user["token_version"] != claims.token_version:
        raise InvalidRefreshToken()
    if await sessions.is_revoked(services, claims.session_id):
        raise InvalidRefreshToken()
    # SET NX makes spending atomic: of concurrent refreshes exactly one spends it.
    spent_at = await _spend(services, claims)
    if spent_at is not None and not 0 <= now() - spent_at <= REFRESH_REUSE_GRACE_SECONDS:
        log.warning("reuse of a spent refresh token for user %s: session revoked", claims.user_id)
        await sessions.revoke(services, claims.session_id, session_lifetime(config))
        raise InvalidRefreshToken()
    return issue_tokens(config, user, claims.session_id)


async def logout(config: Config, services: Services, token: str) -> None:
    """End the token's session: its access, refresh and stream tokens stop working
    now. InvalidRefreshToken (after ending it all the same) when the token was spent."""
    claims = await _read_refresh(config, services, token)
    await sessions.revoke(services, claims.session_id, session_lifetime(config))
    if await _spend(services, claims) is not None:
        raise InvalidRefreshToken()


async def request_password_reset(config: Config, services: Services, body: dict[str, Any], address: str) -> None:
    email, email_errors = _email_field(body.get("email"))
    if email_errors:
        raise FieldErrors({"email": email_errors})
    # Counted before the account is looked up: known and unknown addresses alike.
    if not await _may_mail(services, email, address):
        return
    async with cursor(services.pool) as cur:
        user = await users.get_user_by_email(cur, email)
    if user is None:
        log.info("password reset asked for an unknown address")
        return
    link = make_link(config, services, "reset", "confirm_password.html", user)
    await services.mailer.send("password_reset", email, {"link": link})


async def confirm_password_reset(
    config: Config, services: Services, uidb64: str, token: str, body: dict[str, Any]
) -> None:
    user = await _user_for_link(config, services, "reset", uidb64, token)
    new_password = body.get("new_password")
    errors = _new_password_errors(new_password, body.get("confirm_password"), "new_password", "confirm_password")
    if errors:
        raise FieldErrors(errors)
    assert isinstance(new_password, str)  # (_new_password_errors refused anything else)
    hashed = await passwords.hash_password(services.cpu_executor, new_password, config.bcrypt_rounds)
    async with cursor(services.pool) as cur:
        version = await users.replace_password(cur, user["id"], user["password_hash"], hashed)
    if version is None:
        raise InvalidLink()  # the same link was used concurrently
    # Every session of the user ends: at once here, within sessions.CHECK_SECONDS elsewhere.
    sessions.version_changed(services, user["id"], version)
    log.info("password reset for user %s", user["id"])


async def ensure_admin(config: Config, services: Services, email: str, password: str) -> int:
    address = normalize_email(email)
    if address is None:
        raise FieldErrors({"email": ["Enter a valid email address."]})
    problems = passwords.password_problems(password)
    if problems:
        raise FieldErrors({"password": problems})
    hashed = await passwords.hash_password(services.cpu_executor, password, config.bcrypt_rounds)
    async with cursor(services.pool) as cur:
        return await users.set_admin_password(cur, address, hashed)


# Links an admin may have mailed to a user (console/user_admin.py): purpose -> (mail
# template, the page the link opens).
ADMIN_MAILS = {
    "activate": ("activation", "activate.html"),
    "reset": ("password_reset", "confirm_password.html"),
}


async def mail_link_for_admin(config: Config, services: Services, user: dict[str, Any], purpose: str) -> None:
    """Mail `user` (a users row) an activation or reset link at an admin's request,
    within the recipient's mail budget (MAX_MAILS_PER_RECIPIENT an hour, shared with
    the user's own requests): Throttled when it is spent, and nothing is sent."""
    template, page = ADMIN_MAILS[purpose]
    wait = await throttle.reserve(services.redis, [_recipient_mail_limit(user["email"])])
    if wait is not None:
        raise Throttled(wait)
    link = make_link(config, services, purpose, page, user)
    await services.mailer.send(template, user["email"], {"link": link})
