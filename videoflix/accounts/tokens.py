"""Tokens: JWTs for sessions, HMAC tokens for email links and playback URLs.

Pure functions: every one takes the secret and the current time explicitly.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Protocol

import jwt

ALGORITHM = "HS256"
ACTIVATION_TTL_SECONDS = 3 * 24 * 3600
RESET_TTL_SECONDS = 24 * 3600


class TokenError(Exception):
    """A token is malformed, forged, expired or of the wrong kind."""


@dataclass(frozen=True)
class SessionClaims:
    user_id: int
    kind: str  # "access" | "refresh"
    jti: str
    expires_at: int
    is_admin: bool
    token_version: int
    session_id: str  # the login (refresh-token family) this token belongs to


class Viewer(Protocol):
    """Who watches, as the watch rule needs it (SessionClaims, MediaClaims)."""

    @property
    def user_id(self) -> int: ...

    @property
    def is_admin(self) -> bool: ...


def new_session_id() -> str:
    """A fresh session id: 32 hex digits (also a field of stream tokens)."""
    return secrets.token_hex(16)


_SESSION_ID_CHARS = frozenset("0123456789abcdef")


def is_session_id(value: object) -> bool:
    return isinstance(value, str) and len(value) == 32 and set(value) <= _SESSION_ID_CHARS


def encode_uid(user_id: int) -> str:
    """Unpadded base64url of the decimal id: 1 -> 'MQ' (API.md §1)."""
    return base64.urlsafe_b64encode(str(user_id).encode()).decode().rstrip("=")


def decode_uid(uidb64: str) -> int:
    """Inverse of encode_uid; TokenError for anything that is not a positive id."""
    if not uidb64 or len(uidb64) > 32:
        raise TokenError("bad uid")
    try:
        raw = base64.urlsafe_b64decode(uidb64 + "=" * (-len(uidb64) % 4)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise TokenError("bad uid") from None
    if not raw.isdigit() or raw.startswith("0") or len(raw) > 18:
        raise TokenError("bad uid")
    return int(raw)


def make_session_token(
    secret: str,
    *,
    user_id: int,
    kind: str,
    now: int,
    ttl_seconds: int,
    is_admin: bool,
    token_version: int,
    session_id: str,
) -> tuple[str, SessionClaims]:
    claims = SessionClaims(
        user_id=user_id,
        kind=kind,
        jti=secrets.token_urlsafe(16),
        expires_at=now + ttl_seconds,
        is_admin=is_admin,
        token_version=token_version,
        session_id=session_id,
    )
    payload = {
        "sub": str(user_id),
        "typ": kind,
        "jti": claims.jti,
        "iat": now,
        "exp": claims.expires_at,
        "adm": is_admin,
        "ver": token_version,
        "sid": session_id,
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM), claims


def read_session_token(secret: str, token: str, *, kind: str, now: int) -> SessionClaims:
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "typ", "jti", "exp", "ver", "sid"], "verify_exp": False},
        )
    except jwt.PyJWTError:
        raise TokenError("invalid token") from None
    if payload.get("typ") != kind:
        raise TokenError("wrong token type")
    try:
        expires_at = int(payload["exp"])
        user_id = int(payload["sub"])
        version = int(payload["ver"])
    except (TypeError, ValueError):
        raise TokenError("invalid claims") from None
    if not is_session_id(payload["sid"]):
        raise TokenError("invalid claims")
    if expires_at <= now:
        raise TokenError("expired")
    return SessionClaims(
        user_id=user_id,
        kind=kind,
        jti=str(payload["jti"]),
        expires_at=expires_at,
        is_admin=bool(payload.get("adm")),
        token_version=version,
        session_id=payload["sid"],
    )


def _b36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rem = divmod(number, 36)
        out = digits[rem] + out
        if number == 0:
            return out


def _mac(secret: str, purpose: str, message: str) -> str:
    key = hashlib.sha256(f"videoflix:{purpose}:{secret}".encode()).digest()
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def make_link_token(secret: str, purpose: str, state: str, now: int) -> str:
    """A URL-safe `<ts36>-<mac>` token bound to `purpose` and the user's `state`.

    `state` should change when the token must die: for a password reset it
    includes the password hash, so the link stops working once it is used.
    """
    stamp = _b36(now)
    return f"{stamp}-{_mac(secret, purpose, f'{stamp}:{state}')}"


def check_link_token(secret: str, purpose: str, state: str, token: str, now: int, ttl_seconds: int) -> None:
    stamp, _, mac = token.partition("-")
    if not stamp or not mac or len(token) > 80:
        raise TokenError("malformed")
    try:
        issued = int(stamp, 36)
    except ValueError:
        raise TokenError("malformed") from None
    expected = _mac(secret, purpose, f"{stamp}:{state}")
    if not hmac.compare_digest(expected, mac):
        raise TokenError("bad signature")
    if not 0 <= now - issued <= ttl_seconds:
        raise TokenError("expired")


# --- signed playback URLs (API.md §4: GET /api/video/<id>/stream/) -----------

# Bounds the work done on a token before the MAC check rejects it.
STREAM_TOKEN_MAX_LENGTH = 160
_STREAM_FIELD_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class StreamClaims:
    user_id: int
    token_version: int
    expires_at: int
    session_id: str


def make_stream_token(
    secret: str, *, video_id: int, user_id: int, token_version: int, now: int, ttl_seconds: int, session_id: str
) -> tuple[str, int]:
    """A URL-safe `<user36>.<version36>.<expiry36>.<session>.<mac>` token for one
    video and one user.

    The MAC binds the video id (not written in the token: the URL carries it), the
    user, the user's `token_version` (a password change kills the token), the
    session that asked for it (its logout kills the token) and the expiry.
    Returns (token, expires_at).
    """
    if not is_session_id(session_id):
        raise ValueError("not a session id")
    expires_at = now + ttl_seconds
    fields = f"{_b36(user_id)}.{_b36(token_version)}.{_b36(expires_at)}.{session_id}"
    return f"{fields}.{_mac(secret, 'stream', f'{int(video_id)}:{fields}')}", expires_at


def read_stream_token(secret: str, token: str, *, video_id: int, now: int) -> StreamClaims:
    """The claims of a stream token for `video_id`; TokenError when malformed, forged,
    meant for another video, or expired. The caller still checks token_version."""
    # isascii: hmac.compare_digest refuses non-ASCII str.
    if not token or len(token) > STREAM_TOKEN_MAX_LENGTH or not token.isascii():
        raise TokenError("malformed")
    parts = token.split(".")
    if (
        len(parts) != 5
        or not all(p and len(p) <= 13 and set(p) <= _STREAM_FIELD_CHARS for p in parts[:3])
        or not is_session_id(parts[3])
    ):
        raise TokenError("malformed")
    fields, mac = ".".join(parts[:4]), parts[4]
    if not hmac.compare_digest(_mac(secret, "stream", f"{int(video_id)}:{fields}"), mac):
        raise TokenError("bad signature")
    user_id, version, expires_at = (int(p, 36) for p in parts[:3])
    if expires_at <= now:
        raise TokenError("expired")
    return StreamClaims(user_id=user_id, token_version=version, expires_at=expires_at, session_id=parts[3])


# --- media tokens: directory-scoped, checked inside nginx too (deploy/media-token.js) --
#
# `<user36>.<version36>.<expiry36>.<admin 0|1>.<session>.<mac>`, placed in the path of
# one version's folder: /api/media/<token>/<id>/v<N>/... Every file below it (media
# playlists, segments, I-frame playlists, sprites, subtitles) inherits it through
# relative URIs. The MAC is HMAC-SHA256 over "<scope>:<fields>", the scope being
# "/<id>/v<N>/", under media_key(SECRET_KEY): a 64-hex-digit string whose ASCII bytes
# are the key, so nginx's njs (which is given the same string) computes the same MAC.
# No MD5 (nginx's secure_link_md5) anywhere. The session, its token version and the
# admin flag ride along so that a check needs no lookup to know whom to ask about.

MEDIA_TOKEN_MAX_LENGTH = 160
MEDIA_MAC_CHARS = 43  # unpadded base64url of 32 bytes


@dataclass(frozen=True)
class MediaClaims:
    user_id: int
    token_version: int
    expires_at: int
    is_admin: bool
    session_id: str


@functools.lru_cache(maxsize=4)
def media_key(secret: str) -> str:
    """The media-token key derived from SECRET_KEY: what `videoflix media-key` prints for nginx."""
    return hashlib.sha256(f"videoflix:media:{secret}".encode()).hexdigest()


def media_scope(video_id: int, version: int) -> str:
    """The directory a media token opens, as signed: "/<id>/v<N>/"."""
    return f"/{int(video_id)}/v{int(version)}/"


def _media_mac(key: str, scope: str, fields: str) -> str:
    digest = hmac.new(key.encode(), f"{scope}:{fields}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def make_media_token(
    secret: str,
    *,
    video_id: int,
    version: int,
    user_id: int,
    token_version: int,
    is_admin: bool,
    session_id: str,
    expires_at: int,
) -> str:
    """A media token opening /<id>/v<N>/ for one session until `expires_at`."""
    if not is_session_id(session_id):
        raise ValueError("not a session id")
    fields = f"{_b36(user_id)}.{_b36(token_version)}.{_b36(expires_at)}.{int(is_admin)}.{session_id}"
    return f"{fields}.{_media_mac(media_key(secret), media_scope(video_id, version), fields)}"


def read_media_token(secret: str, token: str, *, video_id: int, version: int, now: int) -> MediaClaims:
    """The claims of a media token for the folder of (video_id, version); TokenError
    when malformed, forged, of another folder, or expired. The caller still asks
    whether its session is live (sessions.is_live)."""
    if not token or len(token) > MEDIA_TOKEN_MAX_LENGTH or not token.isascii():
        raise TokenError("malformed")
    parts = token.split(".")
    if (
        len(parts) != 6
        or not all(p and len(p) <= 13 and set(p) <= _STREAM_FIELD_CHARS for p in parts[:3])
        or parts[3] not in ("0", "1")
        or not is_session_id(parts[4])
        or len(parts[5]) != MEDIA_MAC_CHARS
    ):
        raise TokenError("malformed")
    fields = ".".join(parts[:5])
    expected = _media_mac(media_key(secret), media_scope(video_id, version), fields)
    if not hmac.compare_digest(expected, parts[5]):
        raise TokenError("bad signature")
    user_id, token_version, expires_at = (int(p, 36) for p in parts[:3])
    if expires_at <= now:
        raise TokenError("expired")
    return MediaClaims(user_id, token_version, expires_at, parts[3] == "1", parts[4])


# The lane (web/segment_lane.py) sees the same token with every segment of a folder:
# tokens that verified are kept (expiry still checked on every call), as access tokens below.
MEDIA_CLAIMS_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=MEDIA_CLAIMS_CACHE_SIZE)
def _verified_media_claims(secret: str, token: str, video_id: int, version: int) -> MediaClaims:
    return read_media_token(secret, token, video_id=video_id, version=version, now=0)


def read_media_token_cached(secret: str, token: str, *, video_id: int, version: int, now: int) -> MediaClaims:
    """read_media_token, remembering tokens that verified (bounded: MEDIA_TOKEN_MAX_LENGTH
    characters each, MEDIA_CLAIMS_CACHE_SIZE of them)."""
    claims = _verified_media_claims(secret, token, video_id, version)
    if claims.expires_at <= now:
        raise TokenError("expired")
    return claims


# --- verified access tokens, cached (web/media_handlers.py, web/segment_lane.py) --

# A player sends the same access JWT with every segment, and verifying it (base64,
# JSON, HMAC) was ~10% of a segment GET's time on the loop: the claims of recently
# verified tokens are kept. Keyed by (secret, token): the same bytes always verify
# the same way; expiry is still checked on every request. Only tokens that verified
# are kept (a failure raises, and lru_cache keeps no exceptions), so the cache holds
# tokens we signed: ~300 bytes each, 4096 of them ~1-2 MB.
ACCESS_CLAIMS_CACHE_SIZE = 4096
# Ours are ~250 characters; anything much longer is verified but never kept.
MAX_CACHED_TOKEN_CHARS = 1024


@functools.lru_cache(maxsize=ACCESS_CLAIMS_CACHE_SIZE)
def _verified_access_claims(secret: str, token: str) -> SessionClaims:
    # now=0: expiry is the caller's check, so the cached claims stay true.
    return read_session_token(secret, token, kind="access", now=0)


def read_access_token_cached(secret: str, token: str, now: int) -> SessionClaims:
    """read_session_token(kind="access") for the HLS file handlers, remembering
    tokens that verified (expiry is still checked on every call)."""
    if len(token) > MAX_CACHED_TOKEN_CHARS:
        return read_session_token(secret, token, kind="access", now=now)
    claims = _verified_access_claims(secret, token)
    if claims.expires_at <= now:
        raise TokenError("expired")
    return claims


# --- unguessable image URLs (thumbnails and posters of private videos) --------

# 22 base64url characters: 132 bits of the MAC.
IMAGE_KEY_CHARS = 22


def image_key(secret: str, video_id: int) -> str:
    """The key in a private video's image URLs: stable (the URL stays cacheable) and
    unguessable without SECRET_KEY; rotating the secret changes every key."""
    return _mac(secret, "image", str(int(video_id)))[:IMAGE_KEY_CHARS]


def check_image_key(secret: str, video_id: int, key: str) -> bool:
    return key.isascii() and hmac.compare_digest(image_key(secret, video_id), key)
