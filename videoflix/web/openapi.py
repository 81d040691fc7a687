"""The OpenAPI 3.1 description of the HTTP API (API.md §4), built as plain data.

`openapi_document(public_url)` is pure. tests/test_openapi.py fails when a route of the
application is missing here, and a bounded schemathesis run checks the live server
against it (no 5xx, every error a JSON body, every response matching its schema).
"""
from __future__ import annotations

from typing import Any

JSON = "application/json"
M3U8 = "application/vnd.apple.mpegurl"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _errors(*statuses: int) -> dict[str, Any]:
    """The JSON error answers shared by many operations."""
    texts = {
        400: "Bad request: `detail` or field errors",
        401: "Missing, invalid or expired credentials",
        403: "Not allowed (admin only, or a cross-site request: API.md §5)",
        404: "Unknown or invisible video",
        405: "Method not allowed",
        409: "The video is busy",
        413: "Body too large",
        415: "Body of the wrong content type",
        429: "Too many attempts; see Retry-After",
        503: "A dependency is down",
    }
    return {str(status): _error(texts[status]) for status in statuses}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": schema}}}


def _strings(*names: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": {name: {"type": "string"} for name in names},
            "required": list(required)}


# Unsafe methods are answered 403 cross-site, 413 oversize, 415 non-JSON (API.md §5).
_RULES = (403, 413, 415)
_AUTHENTICATED = [{"cookieAuth": []}, {"bearerAuth": []}]
# Anonymous, or either credential (images: a private video's need its owner's).
_OPTIONAL_AUTH = [{}, *_AUTHENTICATED]
_VIDEO_ID = {"name": "id", "in": "path", "required": True,
             "schema": {"type": "integer", "minimum": 1, "maximum": 999999999999999999}}
_LINK = [{"name": "uidb64", "in": "path", "required": True, "schema": {"type": "string"}},
         {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}]
_HLS_ERRORS = _errors(401, 404, 405)


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "pattern": "^[^/]+$"}}


def _playlist(description: str) -> dict[str, Any]:
    return {"description": description, "content": {M3U8: {"schema": {"type": "string"}}}}


def _file_get(summary: str, ok: dict[str, Any], params: list[dict[str, Any]], *,
              ranged: bool = False, security: list | None = None, building: bool = False) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": ok, "304": {"description": "Not modified"}, **_HLS_ERRORS}
    if building:
        responses["503"] = _error("Of the version being built, not written yet: retry after Retry-After seconds")
    if ranged:
        responses["206"] = {**ok, "description": "One byte range (RFC 7233)"}
        responses["416"] = _error("Unsatisfiable range")
    operation: dict[str, Any] = {"summary": summary, "parameters": params, "responses": responses}
    if security is not None:
        operation["security"] = security
    return {"get": operation}


def _schemas() -> dict[str, Any]:
    nullable_string = {"type": ["string", "null"]}
    catalog_item = {
        "type": "object",
        "required": ["id", "created_at", "title", "description", "thumbnail_url", "category"],
        "properties": {
            "id": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "title": {"type": "string"},
            "description": {"type": "string"},
            "thumbnail_url": {"type": ["string", "null"], "format": "uri"},
            "category": {"type": "string"},
        },
    }
    detail = {
        "allOf": [_ref("CatalogItem"), {
            "type": "object",
            "required": ["status", "progress", "error", "duration", "width", "height", "resolutions",
                         "visibility", "master_url"],
            "properties": {
                "status": {"enum": ["uploading", "queued", "processing", "ready", "failed"]},
                "progress": {"type": "integer", "minimum": 0, "maximum": 100},
                "error": nullable_string,
                "duration": {"type": ["number", "null"]},
                "width": {"type": ["integer", "null"]},
                "height": {"type": ["integer", "null"]},
                "resolutions": {"type": "array", "items": {"type": "string"}},
                "visibility": {"enum": ["public", "private"]},
                "master_url": nullable_string,
                "position": {"type": ["number", "null"]},
                "playable": {"type": "boolean",
                             "description": "A live version exists, or the one being built lists a "
                                            "segment in every rendition (master_url is then set)"},
                "subtitles": {"type": "array", "items": _ref("Subtitle")},
                "thumbnails_vtt": {"type": ["string", "null"], "format": "uri",
                                   "description": "The live version's WebVTT thumbnails track (cues point "
                                                  "into sprite sheets with #xywh=), or null"},
            },
        }],
    }
    return {
        "Error": {
            "description": "`{\"detail\": message}` or field errors `{field: [messages]}`",
            "type": "object",
            "anyOf": [
                {"required": ["detail"], "properties": {"detail": {"type": "string"}}},
                {"additionalProperties": {"type": "array", "items": {"type": "string"}}},
            ],
        },
        "Message": _strings("detail", "message"),
        "CatalogItem": catalog_item,
        "VideoDetail": detail,
        "ContinueItem": {"allOf": [_ref("CatalogItem"), {
            "type": "object", "required": ["position", "duration"],
            "properties": {"position": {"type": "number"}, "duration": {"type": ["number", "null"]}},
        }]},
        "VideoChanges": {
            "type": "object",
            "description": "Any of the upload's text fields, validated by the same rules",
            "properties": {
                "title": {"type": "string", "maxLength": 200},
                "description": {"type": "string", "maxLength": 5000},
                "category": {"type": "string", "maxLength": 100},
                "visibility": {"enum": ["public", "private"]},
            },
        },
        "Subtitle": {
            "type": "object", "required": ["language", "label", "url"],
            "properties": {"language": {"type": "string", "description": "BCP 47, canonical form"},
                           "label": {"type": "string", "maxLength": 64},
                           "url": {"type": "string", "format": "uri",
                                   "description": "GET: the WebVTT file; DELETE: remove it"}},
        },
        "SubtitleUpload": {
            "type": "object",
            "required": ["file", "language"],
            "properties": {
                "file": {"type": "string", "contentMediaType": "application/octet-stream",
                         "description": ".vtt or .srt, UTF-8, at most 2 MiB"},
                "language": {"type": "string", "description": "BCP 47 tag, e.g. en, pt-BR"},
                "label": {"type": "string", "maxLength": 64,
                          "description": "Menu name; default: the language's English name"},
            },
        },
        "Upload": {
            "type": "object",
            "required": ["title", "file"],
            "properties": {
                "title": {"type": "string", "maxLength": 200},
                "description": {"type": "string", "maxLength": 5000},
                "category": {"type": "string", "maxLength": 100},
                "visibility": {"enum": ["public", "private"]},
                "file": {"type": "string", "contentMediaType": "application/octet-stream"},
            },
        },
    }


def _subtitle_paths(video_id: list[dict[str, Any]]) -> dict[str, Any]:
    """API.md §6: a video's subtitles (handlers/subtitles.py)."""
    language = _path_param("language", "BCP 47 tag, any case (en, en-us, pt-BR)")
    return {
        "/api/video/{id}/subtitles/": {
            "parameters": video_id,
            "post": {"summary": "Add subtitles in a language (owner or admin): a .vtt or .srt file; "
                                "an existing one of that language is replaced (201 as well)",
                     "requestBody": {"required": True,
                                     "content": {"multipart/form-data": {"schema": _ref("SubtitleUpload")}}},
                     "responses": {"201": _json(_ref("Subtitle"), "Stored"),
                                   **_errors(400, 401, 403, 404, 413, 415, 429)}},
        },
        "/api/video/{id}/subtitles/{language}/": {
            "parameters": [*video_id, language],
            "get": {"summary": "The WebVTT file of one language (whoever may see the video)",
                    "responses": {"200": {"description": "WebVTT",
                                          "content": {"text/vtt": {"schema": {"type": "string"}}}},
                                  **_errors(401, 404)}},
            "delete": {"summary": "Remove the subtitles of one language (owner or admin)",
                       "responses": {"204": {"description": "Deleted"}, **_errors(401, 403, 404)}},
        },
        **_subtitle_hls_paths(),
    }


def _subtitle_hls_paths() -> dict[str, Any]:
    """A version's subtitle playlists and WebVTT segments (made per request; access as
    for that version's segments)."""
    video = _path_param("id", "Video id (digits)")
    version = _path_param("version", "A version of the renditions: v1, v2, ... (as the master names it)")
    language = _path_param("language", "BCP 47 tag as the master names it")
    segment = _path_param("segment", "seg_NNNNN.vtt")
    token = _path_param("token", "Signed stream token from GET /api/video/{id}/stream/")
    vtt = {"description": "WebVTT segment with X-TIMESTAMP-MAP", "content": {"text/vtt": {"schema": {"type": "string"}}}}
    playlist = _playlist("Subtitle media playlist covering the whole duration")
    return {
        "/api/video/{id}/{version}/subtitles/{language}/index.m3u8": _file_get(
            "Subtitle playlist of one language for one version", playlist, [video, version, language],
            building=True),
        "/api/video/{id}/{version}/subtitles/{language}/{segment}": _file_get(
            "WebVTT segment of a subtitle playlist", vtt, [video, version, language, segment], building=True),
        "/api/stream/{token}/{id}/{version}/subtitles/{language}/index.m3u8": _file_get(
            "Subtitle playlist under a signed URL", playlist, [token, video, version, language], security=[],
            building=True),
        "/api/stream/{token}/{id}/{version}/subtitles/{language}/{segment}": _file_get(
            "WebVTT segment under a signed URL", vtt, [token, video, version, language, segment], security=[],
            building=True),
    }


def openapi_document(public_url: str) -> dict[str, Any]:
    user = {"type": "object", "required": ["id", "email"],
            "properties": {"id": {"type": "integer"}, "email": {"type": "string"}}}
    login_user = {"type": "object", "required": ["id", "username"],
                  "properties": {"id": {"type": "integer"}, "username": {"type": "string"}}}
    message = _ref("Message")
    video_id = [_VIDEO_ID]
    video = _path_param("id", "Video id (digits)")
    resolution = _path_param("resolution", "480p, 720p or 1080p")
    segment = _path_param("segment", "Segment file name, e.g. seg_00000.ts")
    token = _path_param("token", "Signed stream token from GET /api/video/{id}/stream/")
    version = _path_param("version", "A version of the renditions: v1, v2, ... (as the master names it)")
    segment_ok = {"description": "Segment bytes", "content": {"video/MP2T": {}}}
    thumbs_file = _path_param("name", "thumbnails.vtt or sprite_NNN.jpg (three digits, from 000)")
    thumbs_ok = {"description": "The WebVTT track or a JPEG sprite sheet",
                 "content": {"text/vtt": {"schema": {"type": "string"}}, "image/jpeg": {}}}
    paths: dict[str, Any] = {
        "/api/register/": {"post": {
            "summary": "Create an inactive account and email its activation link",
            "security": [],
            "requestBody": _body(_strings("email", "password", "confirmed_password",
                                          required=("email", "password", "confirmed_password"))),
            "responses": {"201": _json({"type": "object", "required": ["user"],
                                        "properties": {"user": user}}, "Registered"),
                          **_errors(400, 429, *_RULES)},
        }},
        "/api/activate/{uidb64}/{token}/": {"get": {
            "summary": "Activate an account from the emailed link", "security": [], "parameters": _LINK,
            "responses": {"200": _json(message, "Activated (or already active)"), **_errors(400)},
        }},
        "/api/login/": {"post": {
            "summary": "Log in: sets access_token, refresh_token and csrftoken cookies",
            "security": [],
            "requestBody": _body(_strings("email", "password", required=("email", "password"))),
            "responses": {"200": _json({"type": "object", "required": ["detail", "user"],
                                        "properties": {"detail": {"type": "string"}, "user": login_user}},
                                       "Logged in"),
                          **_errors(400, 429, *_RULES)},
        }},
        "/api/logout/": {"post": {
            "summary": "End the session of the refresh cookie", "security": [{"refreshCookie": []}],
            "responses": {"200": _json(message, "Logged out"), **_errors(400, *_RULES)},
        }},
        "/api/token/refresh/": {"post": {
            "summary": "A new access token from the refresh cookie", "security": [{"refreshCookie": []}],
            "responses": {"200": _json({"type": "object", "required": ["detail", "access"],
                                        "properties": {"detail": {"type": "string"},
                                                       "access": {"type": "string"}}}, "Refreshed"),
                          **_errors(400, 401, *_RULES)},
        }},
        "/api/password_reset/": {"post": {
            "summary": "Email a password-reset link (same answer for unknown addresses)", "security": [],
            "requestBody": _body(_strings("email", required=("email",))),
            "responses": {"200": _json(message, "Sent if the account exists"), **_errors(400, 429, *_RULES)},
        }},
        "/api/password_confirm/{uidb64}/{token}/": {"post": {
            "summary": "Set a new password from the emailed link", "security": [], "parameters": _LINK,
            "requestBody": _body(_strings("new_password", "confirm_password",
                                          required=("new_password", "confirm_password"))),
            "responses": {"200": _json(message, "Password changed"), **_errors(400, *_RULES)},
        }},
        "/api/health/": {"get": {
            "summary": "Liveness of the server, PostgreSQL and Redis", "security": [],
            "responses": {"200": _json(_strings("status", "database", "redis"), "All up"),
                          "503": _json(_strings("status", "database", "redis"), "A dependency is down")},
        }},
        "/metrics": {"get": {
            "summary": "Prometheus metrics (text format): 404 unless VIDEOFLIX_METRICS_TOKEN is set, then "
                       "`Authorization: Bearer <that token>`", "security": [],
            "responses": {"200": {"description": "Prometheus text exposition format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **_errors(401, 404)},
        }},
        "/api/openapi.json": {"get": {
            "summary": "This document", "security": [],
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
        }},
        "/api/video/": {
            "get": {"summary": "Catalog: ready videos the caller may watch, newest first",
                    "responses": {"200": _json({"type": "array", "items": _ref("CatalogItem")}, "Catalog"),
                                  **_errors(401)}},
            "post": {"summary": "Upload a video (multipart, streamed to disk); queued for transcoding",
                     "requestBody": {"required": True,
                                     "content": {"multipart/form-data": {"schema": _ref("Upload")}}},
                     "responses": {"201": _json(_ref("VideoDetail"), "Queued"),
                                   **_errors(400, 401, 403, 413, 429, 503)}},
        },
        "/api/video/{id}/": {
            "parameters": video_id,
            "get": {"summary": "Detail of a video the caller may see",
                    "responses": {"200": _json(_ref("VideoDetail"), "Detail"), **_errors(401, 404)}},
            "delete": {"summary": "Delete a video (owner or admin): row, source, renditions, images",
                       "responses": {"204": {"description": "Deleted"}, **_errors(401, 403, 404)}},
            "patch": {"summary": "Edit title, description, category or visibility (owner or admin)",
                      "requestBody": _body(_ref("VideoChanges")),
                      "responses": {"200": _json(_ref("VideoDetail"), "Changed"),
                                    **_errors(400, 401, 404, *_RULES)}},
        },
        "/api/video/{id}/progress/": {
            "parameters": video_id,
            "put": {"summary": "Store the caller's position in the video (seconds)",
                    "requestBody": _body({"type": "object", "required": ["position"],
                                          "properties": {"position": {"type": "number", "minimum": 0}}}),
                    "responses": {"204": {"description": "Stored"}, **_errors(400, 401, 404, *_RULES)}},
            "post": {"summary": "The same as PUT, for navigator.sendBeacon (which can only POST)",
                     "requestBody": _body({"type": "object", "required": ["position"],
                                           "properties": {"position": {"type": "number", "minimum": 0}}}),
                     "responses": {"204": {"description": "Stored"}, **_errors(400, 401, 404, *_RULES)}},
        },
        "/api/video/continue/": {"get": {
            "summary": "Started and unfinished (< 95 %) videos, most recently watched first",
            "responses": {"200": _json({"type": "array", "items": _ref("ContinueItem")}, "Continue watching"),
                          **_errors(401)},
        }},
        "/api/video/events/": {"get": {
            "summary": "Server-Sent Events: a snapshot of the caller's videos (admins: all), then "
                       "`video` (the detail) on every change and progress step, `video-deleted`",
            "responses": {"200": {"description": "An endless event stream",
                                  "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                          **_errors(401, 503)},
        }},
        "/api/video/{id}/retranscode/": {
            "parameters": video_id,
            "post": {"summary": "Transcode again (admin)",
                     "responses": {"202": _json(_ref("VideoDetail"), "Queued again"),
                                   **_errors(401, 404, 409, *_RULES)}},
        },
        **_subtitle_paths(video_id),
        "/api/video/{id}/stream/": {"get": {
            "summary": "A signed, expiring playback URL for any HLS player", "parameters": [video],
            "responses": {"200": _json(_strings("url", "expires_at", required=("url", "expires_at")),
                                       "Signed URL"), **_errors(401, 404)},
        }},
        "/api/video/{id}/master.m3u8": _file_get(
            "Master playlist (measured BANDWIDTH) of the live version, or while nothing is live of the "
            "version being built for the owner and admins (BANDWIDTH from the caps until measured); its "
            "URIs name the version", _playlist("Master playlist"), [video]),
        "/api/video/{id}/{version}/{resolution}/index.m3u8": _file_get(
            "Media playlist of one rendition of one version: the live one (or an older one kept for a "
            "grace period), or the one being built (owner and admins; EVENT, growing, until it is done)",
            _playlist("Media playlist"), [video, version, resolution], building=True),
        "/api/video/{id}/{version}/{resolution}/{segment}": _file_get(
            "MPEG-TS segment of one version (immutable)", segment_ok, [video, version, resolution, segment],
            ranged=True, building=True),
        "/api/video/{id}/{version}/{resolution}/iframes.m3u8": _file_get(
            "I-frame playlist of one rendition of one version (trick play: #EXT-X-I-FRAMES-ONLY, byte "
            "ranges into its segments; listed by the master as #EXT-X-I-FRAME-STREAM-INF), once the "
            "version is done", _playlist("I-frame playlist"), [video, version, resolution]),
        "/api/video/{id}/{version}/thumbs/{name}": _file_get(
            "Seek-bar previews of one version: thumbnails.vtt (WebVTT cues `sprite_NNN.jpg#xywh=x,y,w,h`, "
            "relative to the track) or one of its sprite sheets sprite_NNN.jpg; the detail's "
            "thumbnails_vtt links the live version's track", thumbs_ok, [video, version, thumbs_file]),
        "/api/stream/{token}/{id}/{version}/{resolution}/iframes.m3u8": _file_get(
            "Versioned I-frame playlist under a signed URL", _playlist("I-frame playlist"),
            [token, video, version, resolution], security=[]),
        "/api/stream/{token}/{id}/{version}/thumbs/{name}": _file_get(
            "Versioned thumbnails track or sprite sheet under a signed URL", thumbs_ok,
            [token, video, version, thumbs_file], security=[]),
        "/api/stream/{token}/{id}/{version}/{resolution}/index.m3u8": _file_get(
            "Versioned media playlist under a signed URL", _playlist("Media playlist"),
            [token, video, version, resolution], security=[], building=True),
        "/api/stream/{token}/{id}/{version}/{resolution}/{segment}": _file_get(
            "Versioned segment under a signed URL", segment_ok, [token, video, version, resolution, segment],
            ranged=True, security=[], building=True),
        "/api/video/{id}/{resolution}/index.m3u8": _file_get(
            "Media playlist of one rendition", _playlist("Media playlist"), [video, resolution]),
        "/api/video/{id}/{resolution}/{segment}": _file_get(
            "MPEG-TS segment", {"description": "Segment bytes", "content": {"video/MP2T": {}}},
            [video, resolution, segment], ranged=True),
        "/api/stream/{token}/{id}/master.m3u8": _file_get(
            "Master playlist under a signed URL (no cookies)", _playlist("Master playlist"),
            [token, video], security=[]),
        "/api/stream/{token}/{id}/{resolution}/index.m3u8": _file_get(
            "Media playlist under a signed URL", _playlist("Media playlist"), [token, video, resolution],
            security=[]),
        "/api/stream/{token}/{id}/{resolution}/{segment}": _file_get(
            "Segment under a signed URL", {"description": "Segment bytes", "content": {"video/MP2T": {}}},
            [token, video, resolution, segment], ranged=True, security=[]),
        "/media/thumbnail/{name}": _file_get(
            "Catalog thumbnail (JPEG). <id>.jpg: a public video's for anyone, a private video's "
            "for its owner and admins; <id>-<key>.jpg (the thumbnail_url of a private video): "
            "for whoever holds the key", {"description": "JPEG", "content": {"image/jpeg": {}}},
            [_path_param("name", "<id>.jpg or <id>-<key>.jpg")], security=_OPTIONAL_AUTH),
        "/media/poster/{name}": _file_get(
            "Poster (JPEG); access as for the thumbnail", {"description": "JPEG", "content": {"image/jpeg": {}}},
            [_path_param("name", "<id>.jpg or <id>-<key>.jpg")], security=_OPTIONAL_AUTH),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Videoflix", "version": "2",
                 "description": "Self-hosted video streaming: accounts, catalog, upload, HLS delivery. "
                                "The contract in prose is API.md."},
        "servers": [{"url": public_url}],
        "security": _AUTHENTICATED,
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "access_token",
                               "description": "Access JWT set by POST /api/login/"},
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "refreshCookie": {"type": "apiKey", "in": "cookie", "name": "refresh_token"},
            },
        },
    }
