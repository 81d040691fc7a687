"""HLS delivery, API.md §3, §4, §6 and §7: who may fetch which playlist, segment, trick-play
file, subtitle file and image, under which credential, and the route table.

Every answer is delivery/answer.py's, carried out by the handlers of web/hls_files.py
(finding and sending the file); these handlers decide access first:
- Every route exists once per credential (CREDENTIALS: the access cookie, a stream
  token, a media token for one version's folder), generated from one table (`twins`).
- Access is decided (asynchronously, one small query at most) before any file is
  opened. Refusals are JSON 404 for the cookie and stream credentials (a private video
  and a missing one look alike) and 403 under a media token (the player then reloads
  the master for fresh tokens).
- playback.resolve_file says which version's file answers; the master's URIs are under a
  media token of the caller's session (playback.media_folder_url). Warm plain segment
  GETs are answered before these handlers, by segment_lane.py, with the same answer.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tornado.httputil

from videoflix.accounts import sessions, tokens
from videoflix.delivery import answer, playback, tokenforms
from videoflix.library import images
from videoflix.platform import media
from videoflix.platform.config import Config, MediaTokenForm
from videoflix.web import schemas
from videoflix.web.base import (
    CORS_ALLOW_HEADERS,
    INVALID_TOKEN,
    APIError,
    BaseHandler,
    authenticated,
    public,
)
from videoflix.web.hls_files import MediaFileHandler, SubtitleHLSHandler
from videoflix.web.operation import media_file, operation

log = logging.getLogger(__name__)
# What each route kind serves, for the OpenAPI document (web/operation.py): its path
# parameters after the credential's, and its words; the answers are answer.KINDS'.
_MEDIA_FILE_WORDS: dict[str, tuple[Any, ...]] = {
    "master": (
        "Master playlist",
        (schemas.VIDEO_ID,),
        "Of the live version (measured BANDWIDTH), or while nothing is live of the version being built for "
        "the owner and admins (BANDWIDTH from the caps until measured); its URIs name the version. Under the "
        "cookie, they are the version's folder under a media token, where VIDEOFLIX_MEDIA_TOKEN_FORM puts it: in "
        "the path, in a query parameter on every URI, or in the header of that name this answer carries.",
    ),
    "iframes": (
        "I-frame playlist of one rendition of one version",
        (schemas.VIDEO_ID, schemas.VERSION, schemas.RESOLUTION),
        "Trick play: #EXT-X-I-FRAMES-ONLY, byte ranges into its segments; listed by the master as "
        "#EXT-X-I-FRAME-STREAM-INF once the version is done.",
    ),
    "thumbs": (
        "Seek-bar previews of one version",
        (schemas.VIDEO_ID, schemas.VERSION, schemas.THUMBS_FILE),
        "The WebVTT track (cues `sprite_NNN.jpg#xywh=x,y,w,h`, relative to it) or one of its sprite "
        "sheets; the detail's thumbnails_vtt links the live version's track.",
        (answer.VTT_TYPE.split(";")[0],),
    ),
    "vplaylist": (
        "Media playlist of one rendition of one version",
        (schemas.VIDEO_ID, schemas.VERSION, schemas.RESOLUTION),
        "The live version (or an older one kept for a grace period), or the one being built for the "
        "owner and admins (EVENT, growing, until it is done).",
    ),
    "playlist": (
        "Media playlist of one rendition of the live version",
        (schemas.VIDEO_ID, schemas.RESOLUTION),
        "A rendition above the highest one produced is served from the highest (API.md §3).",
    ),
    "vsegment": (
        "MPEG-TS segment of one version",
        (schemas.VIDEO_ID, schemas.VERSION, schemas.RESOLUTION, schemas.SEGMENT),
        "Immutable.",
    ),
    "segment": (
        "MPEG-TS segment of the live version",
        (schemas.VIDEO_ID, schemas.RESOLUTION, schemas.SEGMENT),
        "Follows the live version: cached briefly.",
    ),
    "subtitles": (
        "Subtitle playlist of one language of one version",
        (schemas.VIDEO_ID, schemas.VERSION, schemas.LANGUAGE),
        "Covers the whole duration; made per request from the WebVTT file.",
    ),
    "subsegment": (
        "WebVTT segment of a subtitle playlist",
        (schemas.VIDEO_ID, schemas.VERSION, schemas.LANGUAGE, schemas.SUBTITLE_SEGMENT),
        "With X-TIMESTAMP-MAP.",
    ),
    "thumbnail": (
        "Catalog thumbnail",
        (schemas.IMAGE_NAME,),
        "<id>.jpg: a public video's for anyone, a private video's for its owner and admins; "
        "<id>-<key>.jpg (a private video's thumbnail_url): for whoever holds the key.",
    ),
    "poster": ("Poster", (schemas.IMAGE_NAME,), "Access as for the thumbnail."),
}
MEDIA_FILES = {kind: media_file(kind, *declared) for kind, declared in _MEDIA_FILE_WORDS.items()}
UNWATCHABLE = "No such file, or a video the caller may not watch"
# (Retry-After): a file of the version being built not written yet, or the media store not answering.
FILE_UNAVAILABLE = "Not transcoded yet, or the media storage unavailable: try again (Retry-After)"
BAD_STREAM_TOKEN = "A bad, expired or revoked stream token"


class VideoFileHandler(MediaFileHandler):
    """/api/video/<id>/... with the access cookie or `Authorization: Bearer`."""

    @operation(kinds=MEDIA_FILES, responses={404: UNWATCHABLE, 503: FILE_UNAVAILABLE})
    @authenticated
    async def get(self, *args: str) -> None:
        target = self.target(args)  # before any DB or disk access
        try:
            served = await playback.watchable_file(self.services, target, self.current_user)
        except media.VideoNotFound:
            raise APIError(404) from None
        await self.serve_hls(target.video_id, served)

    @authenticated
    async def head(self, *args: str) -> None:
        await self.get(*args)

    def master_folder(self, video_id: int, version: int) -> playback.MediaFolder:
        """The version's folder under a media token of this session (API.md §7), in the
        form VIDEOFLIX_MEDIA_TOKEN_FORM names: its playlists, segments, I-frame playlists,
        sprites and subtitles need no cookie, and nginx checks the token by itself
        (deploy/nginx.conf)."""
        return playback.media_folder(self.config, self.current_user, video_id, version, int(time.time()))


BAD_MEDIA_TOKEN = "Invalid or expired media token."


class MediaTokenMixin:
    """The credential of /api/media/<token>/<id>/v<N>/...: a media token for that
    version's folder (tokens.read_media_token: HMAC only) whose session is live
    (sessions.is_live: in-process, CHECK_SECONDS old at most). Refusals are 403
    (JSON), so a player knows to reload the master for fresh tokens; the same rule
    nginx applies (deploy/media-token.js, then this check through auth_request)."""

    async def media_viewer(self: Any, token: str, video_id: int, version: int | None) -> tokens.MediaClaims:
        if version is None:  # a token opens one version's folder; nothing else is under it
            raise APIError(404)
        try:
            claims = tokens.read_media_token(
                self.config.secret_key, token, video_id=video_id, version=version, now=int(time.time())
            )
        except tokens.TokenError:
            raise APIError(403, BAD_MEDIA_TOKEN) from None
        try:
            live = await sessions.is_live(self.services, claims.user_id, claims.token_version, claims.session_id)
        except sessions.Unavailable:
            raise APIError(503) from None
        if not live:
            raise APIError(403, BAD_MEDIA_TOKEN)
        return claims

    async def media_file(self: Any, token: str, target: playback.HLSTarget) -> playback.ServedFile:
        """The file answering `target` under a media token: the token's session may
        still watch that version (a video made private or deleted since: 403)."""
        claims = await self.media_viewer(token, target.video_id, target.version)
        try:
            return await playback.watchable_file(self.services, target, claims)
        except media.VideoNotFound:
            raise APIError(403, BAD_MEDIA_TOKEN) from None


class MediaTokenFileHandler(MediaTokenMixin, MediaFileHandler):
    """/api/media/<token>/<id>/v<N>/...: a version's files for the holder of its media token."""

    @operation(
        "under a media token (the master's URIs)",
        params=(schemas.MEDIA_TOKEN,),
        kinds=MEDIA_FILES,
        responses={403: BAD_MEDIA_TOKEN, 404: "No such file", 503: FILE_UNAVAILABLE},
    )
    @public
    async def get(self, token: str, *args: str) -> None:
        target = self.target(args)
        served = await self.media_file(token, target)
        await self.serve_hls(target.video_id, served)

    @public
    async def head(self, token: str, *args: str) -> None:
        await self.get(token, *args)


def carried_token(form: MediaTokenForm, request: tornado.httputil.HTTPServerRequest) -> str:
    """The media token a request to /api/media/<id>/v<N>/... carries where the query
    or header form says (tokenforms.py: raw, exactly once); "" when none (the path form
    carries none there)."""
    if form.carrier == "query":
        return tokenforms.token_in_query(form.name, request.query)
    if form.carrier == "header":
        return tokenforms.token_in_headers(request.headers.get_list(form.name))
    return ""


def _carried_words(config: Config) -> str:
    form = config.media_token_form
    where = {"query": "query parameter", "header": "request header"}.get(form.carrier)
    this = f"on this server the {where} `{form.name}`" if where else "this server uses the path form: refused"
    return (
        "The version's folder without the token in the path: the media token travels in the query parameter "
        f"or request header VIDEOFLIX_MEDIA_TOKEN_FORM names ({this}). Under the query form, playlists and the "
        "thumbnails track carry it on every URI they name."
    )


class CarriedTokenMixin(MediaTokenMixin):
    """The credential of /api/media/<id>/v<N>/...: a media token in the query parameter
    or header VIDEOFLIX_MEDIA_TOKEN_FORM names, checked as a path token is."""

    async def carried_file(self: Any, target: playback.HLSTarget) -> playback.ServedFile:
        form = self.config.media_token_form
        token = carried_token(form, self.request)
        served: playback.ServedFile = await self.media_file(token, target)
        if form.carrier == "query":
            self.token_query = f"{form.name}={token}"
        return served

    def cors_allow_headers(self: Any) -> str:
        # Preflight: a player on another origin may send the token's header (the header form).
        form = self.config.media_token_form
        return f"{CORS_ALLOW_HEADERS}, {form.name.lower()}" if form.carrier == "header" else CORS_ALLOW_HEADERS


class CarriedTokenFileHandler(CarriedTokenMixin, MediaFileHandler):
    """/api/media/<id>/v<N>/...: a version's files for the holder of its media token,
    carried in a query parameter or a header (VIDEOFLIX_MEDIA_TOKEN_FORM)."""

    @operation(
        "under a media token in a query parameter or header",
        _carried_words,
        kinds=MEDIA_FILES,
        responses={403: BAD_MEDIA_TOKEN, 404: "No such file"},
    )
    @public
    async def get(self, *args: str) -> None:
        target = self.target(args)
        served = await self.carried_file(target)
        await self.serve_hls(target.video_id, served)

    @public
    async def head(self, *args: str) -> None:
        await self.get(*args)


class MediaTokenCheckHandler(MediaTokenMixin, BaseHandler):
    """GET /api/media/<token>/<id>/v<N>/: 204 while the token may open that folder,
    else 403. nginx asks it (auth_request) and keeps the answer MEDIA_CHECK_SECONDS:
    the whole per-session cost of a viewer behind nginx, and how soon a logout, a
    password change, a deactivation or a video made private or deleted stops the
    token's segments there (README: Edge delivery)."""

    @operation(
        "Whether a media token still opens its folder (nginx's auth_request)",
        params=(schemas.MEDIA_TOKEN, schemas.VIDEO_ID, schemas.VERSION),
        responses={204: "It does", 403: BAD_MEDIA_TOKEN, 404: "Not a video's version folder"},
    )
    @public
    async def get(self, token: str, raw_id: str, raw_version: str) -> None:
        video_id = media.parse_video_id(raw_id)
        version = media.parse_version(raw_version)
        if video_id is None or version is None:
            raise APIError(404)
        claims = await self.media_viewer(token, video_id, version)
        try:
            await playback.watchable_video_version(self.services, video_id, version, claims)
        except media.VideoNotFound:
            raise APIError(403, BAD_MEDIA_TOKEN) from None
        keep = max(0, min(MEDIA_CHECK_SECONDS, claims.expires_at - int(time.time())))
        self.set_header("Cache-Control", f"private, max-age={keep}")
        self.set_header("X-Accel-Expires", str(keep))  # nginx's cache of this answer
        self.set_status(204)


# nginx keeps a media token's check this long (X-Accel-Expires): with the up to
# sessions.CHECK_SECONDS another server of ours may take to see a revocation, a
# revoked token's segments stop within 10 s.
MEDIA_CHECK_SECONDS = 5


class StreamFileHandler(MediaFileHandler):
    """/api/stream/<token>/<id>/...: the same files for cookie-less players.

    @public because the signed token in the path is the credential, checked here.
    A bad, expired or revoked token is 401 "Invalid or expired token." like an
    expired access JWT (API.md §1): the client knows to ask /stream/ for a new URL,
    while 404 keeps meaning the video itself is gone or not watchable.
    """

    @operation(
        "under a signed stream URL",
        params=(schemas.STREAM_TOKEN,),
        kinds=MEDIA_FILES,
        responses={401: BAD_STREAM_TOKEN, 404: UNWATCHABLE, 503: FILE_UNAVAILABLE},
    )
    @public
    async def get(self, token: str, *args: str) -> None:
        target = self.target(args)
        served = await self.streamed_file(token, target)
        await self.serve_hls(target.video_id, served)

    @public
    async def head(self, token: str, *args: str) -> None:
        await self.get(token, *args)


class MediaImageHandler(MediaFileHandler):
    """/media/{thumbnail,poster}/<id>.jpg and <id>-<key>.jpg: who may fetch them and
    how they are cached is images.py's rule (public videos: anyone; private: owner
    and admins, or the unguessable keyed URL).

    They exist only once a transcode has put them in place and go with the video.
    """

    @operation(
        security=schemas.ANYONE_OR_ACCESS_TOKEN,
        kinds=MEDIA_FILES,
        responses={
            401: f"{INVALID_TOKEN} (a stale or forged access token)",
            404: "No such image, or a video the caller may not see",
            503: "Sessions or the media storage unavailable: try again (Retry-After)",
        },
    )
    @public
    async def get(self, name: str) -> None:
        request = images.parse_image_name(name)
        if request is None:
            raise APIError(404)
        try:
            access = await images.image_access(self.config, self.services, request, self.current_user)
        except media.VideoNotFound:
            if self._auth_problem == INVALID_TOKEN:
                # A stale or forged token says so, as for the HLS files; a private video
                # and a missing one still get the same answer.
                raise APIError(401, INVALID_TOKEN) from None
            raise APIError(404) from None
        except sessions.Unavailable:
            raise APIError(503) from None
        root = media.version_dir(self.config.media_dir, request.video_id, access.version)
        # Cached as images.py says for this caller (its own Vary when it answers by credentials).
        policy = answer.Policy(
            self.policy.content_type, access.cache_control, extra=(("Vary", access.vary),) if access.vary else ()
        )
        await self.serve_file(root, (images.file_name(self.kind),), policy)

    @public
    async def head(self, name: str) -> None:
        await self.get(name)


SUBTITLES_NOT_READY = "Of the version being built: not ready yet (Retry-After)"


class VideoSubtitleHLSHandler(SubtitleHLSHandler):
    @operation(kinds=MEDIA_FILES, responses={404: UNWATCHABLE, 503: SUBTITLES_NOT_READY})
    @authenticated
    async def get(self, raw_id: str, raw_version: str, language: str, name: str = "") -> None:
        target, language = self.target(raw_id, raw_version, language, name)
        try:
            served = await playback.watchable_file(self.services, target, self.current_user)
        except media.VideoNotFound:
            raise APIError(404) from None
        await self.serve(served, target, language)

    @authenticated
    async def head(self, raw_id: str, raw_version: str, language: str, name: str = "") -> None:
        await self.get(raw_id, raw_version, language, name)


class StreamSubtitleHLSHandler(SubtitleHLSHandler):
    @operation(
        "under a signed stream URL",
        params=(schemas.STREAM_TOKEN,),
        kinds=MEDIA_FILES,
        responses={401: BAD_STREAM_TOKEN, 404: UNWATCHABLE, 503: SUBTITLES_NOT_READY},
    )
    @public
    async def get(self, token: str, raw_id: str, raw_version: str, language: str, name: str = "") -> None:
        target, language = self.target(raw_id, raw_version, language, name)
        served = await self.streamed_file(token, target)
        await self.serve(served, target, language)

    @public
    async def head(self, token: str, raw_id: str, raw_version: str, language: str, name: str = "") -> None:
        await self.get(token, raw_id, raw_version, language, name)


class MediaTokenSubtitleHLSHandler(MediaTokenMixin, SubtitleHLSHandler):
    @operation(
        "under a media token (the master's URIs)",
        params=(schemas.MEDIA_TOKEN,),
        kinds=MEDIA_FILES,
        responses={403: BAD_MEDIA_TOKEN, 404: "No such file", 503: SUBTITLES_NOT_READY},
    )
    @public
    async def get(self, token: str, raw_id: str, raw_version: str, language: str, name: str = "") -> None:
        target, language = self.target(raw_id, raw_version, language, name)
        served = await self.media_file(token, target)
        await self.serve(served, target, language)

    @public
    async def head(self, token: str, raw_id: str, raw_version: str, language: str, name: str = "") -> None:
        await self.get(token, raw_id, raw_version, language, name)


class CarriedTokenSubtitleHLSHandler(CarriedTokenMixin, SubtitleHLSHandler):
    @operation(
        "under a media token in a query parameter or header",
        _carried_words,
        kinds=MEDIA_FILES,
        responses={403: BAD_MEDIA_TOKEN, 404: "No such file", 503: SUBTITLES_NOT_READY},
    )
    @public
    async def get(self, raw_id: str, raw_version: str, language: str, name: str = "") -> None:
        target, language = self.target(raw_id, raw_version, language, name)
        served = await self.carried_file(target)
        await self.serve(served, target, language)

    @public
    async def head(self, raw_id: str, raw_version: str, language: str, name: str = "") -> None:
        await self.get(raw_id, raw_version, language, name)


class VideoStreamURLHandler(BaseHandler):
    """GET /api/video/<id>/stream/ -> a signed playback URL (API.md §4)."""

    @operation(
        "A signed, expiring playback URL for any HLS player",
        params=(schemas.VIDEO_ID,),
        responses={200: schemas.STREAM_URL, 404: "Unknown video, or one the caller may not watch"},
    )
    @authenticated
    async def get(self, raw_id: str) -> None:
        video_id = media.parse_video_id(raw_id)
        if video_id is None:
            raise APIError(404)
        try:
            issued = await playback.issue_stream_url(
                self.config, self.services, video_id, self.current_user, int(time.time())
            )
        except media.VideoNotFound:
            raise APIError(404) from None
        except playback.InvalidStreamToken:
            raise APIError(401, INVALID_TOKEN) from None
        self.write_json({"url": issued.url, "expires_at": issued.expires_at})


# --- routes ---------------------------------------------------------------------------
# Path parts are matched loosely and validated in the handlers (JSON 404s, and the
# same checks whatever the router lets through); Tornado percent-decodes each part
# after matching, so %2F never splits a part and is refused by the name rules.
PART = r"([^/]+)"
VERSION = r"(v[^/]*)"
IFRAMES = re.escape(media.IFRAME_PLAYLIST_NAME)
THUMBS = re.escape(media.THUMBS_DIR)
SUBTITLES = re.escape(media.SUBTITLES_DIR_NAME)


@dataclass(frozen=True)
class Credential:
    """How an HLS path says who may play: what comes before the video id, and the
    handlers that check it (API.md §3: the access cookie or Bearer token; §4: a signed
    stream token in the path, for players without cookies)."""

    prefix: str
    files: type[MediaFileHandler]
    subtitles: type[SubtitleHLSHandler]
    kinds: frozenset[str] | None = None  # the route kinds it opens (None: all)


# A media token opens one version's folder: the versioned kinds alone.
VERSION_FOLDER_KINDS = frozenset({"vplaylist", "vsegment", "iframes", "thumbs", "subtitles", "subsegment"})
CREDENTIALS = (
    Credential("/api/video/", VideoFileHandler, VideoSubtitleHLSHandler),
    Credential(rf"/api/stream/{PART}/", StreamFileHandler, StreamSubtitleHLSHandler),
    Credential(
        rf"{playback.MEDIA_TOKEN_PREFIX}{PART}/",
        MediaTokenFileHandler,
        MediaTokenSubtitleHLSHandler,
        VERSION_FOLDER_KINDS,
    ),
    # The query and header forms: the same folder, the token elsewhere. (Never mistaken
    # for the path form's routes: there the part after the id is v<N>, here the id's.)
    Credential(
        playback.MEDIA_TOKEN_PREFIX, CarriedTokenFileHandler, CarriedTokenSubtitleHLSHandler, VERSION_FOLDER_KINDS
    ),
)
# Every HLS route, as (the path after <prefix><id>/, its kind in answer.KINDS), and the
# handler family serving it; each becomes one route per credential (`twins`).
FILE_ROUTES = (
    (r"master\.m3u8", "master"),
    (rf"{VERSION}/{PART}/{IFRAMES}", "iframes"),
    (rf"{VERSION}/{THUMBS}/{PART}", "thumbs"),
    (rf"{VERSION}/{PART}/index\.m3u8", "vplaylist"),
    (rf"{PART}/index\.m3u8", "playlist"),
)
SUBTITLE_ROUTES = (
    (rf"{PART}/{SUBTITLES}/{PART}/index\.m3u8", "subtitles"),
    (rf"{PART}/{SUBTITLES}/{PART}/{PART}", "subsegment"),
)
# Segments take any name (and refuse what is not one), with or without a trailing
# slash (API.md §3), so every route naming a file or folder of its own must be matched
# before them, whichever module has it (index.m3u8, iframes.m3u8, thumbs/, and the
# subtitle file at /api/video/<id>/subtitles/<language>/): app.collect_routes puts
# these after every other route.
SEGMENT_ROUTES = (
    (rf"{VERSION}/{PART}/{PART}/?", "vsegment"),
    (rf"{PART}/{PART}/?", "segment"),
)


def twins(table: tuple[tuple[str, str], ...], handler: Callable[[Credential], type]) -> list[Any]:
    """One route per credential for each (path, kind) of `table`, served by `handler`
    of the credential."""
    return [
        (f"{credential.prefix}{PART}/{path}", handler(credential), {"kind": kind})
        for credential in CREDENTIALS
        for path, kind in table
        if credential.kinds is None or kind in credential.kinds
    ]


ROUTES: list[Any] = [
    (rf"/api/video/{PART}/stream/", VideoStreamURLHandler),
    (rf"{playback.MEDIA_TOKEN_PREFIX}{PART}/{PART}/{VERSION}/", MediaTokenCheckHandler),
    *twins(FILE_ROUTES, lambda credential: credential.files),
    *twins(SUBTITLE_ROUTES, lambda credential: credential.subtitles),
    (rf"/media/thumbnail/{PART}", MediaImageHandler, {"kind": "thumbnail"}),
    (rf"/media/poster/{PART}", MediaImageHandler, {"kind": "poster"}),
]
CATCH_ALL_ROUTES: list[Any] = twins(SEGMENT_ROUTES, lambda credential: credential.files)
