"""The API's JSON shapes (OpenAPI components), path parameters and credentials, as plain
data for the handlers' declarations (web/operation.py). Every limit is read from the
module that enforces it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from videoflix.library import subtitle_formats, watching
from videoflix.library.uploads import FIELD_LIMITS
from videoflix.platform import media
from videoflix.web.operation import Param, Schema

NULLABLE_STRING = {"type": ["string", "null"]}
VISIBILITY = {"enum": ["public", "private"]}


def strings(names: Iterable[str], required: Iterable[str] = ()) -> dict[str, Any]:
    """An object of string fields (a JSON body's `*_FIELDS`)."""
    return {"type": "object", "properties": {name: {"type": "string"} for name in names}, "required": list(required)}


def _text_fields() -> dict[str, Any]:
    """An upload's text fields, as lifecycle.check_upload_fields takes them."""
    return {name: {"type": "string", "maxLength": FIELD_LIMITS[name]} for name in ("title", "description", "category")}


ERROR = Schema(
    "Error",
    {
        "description": '`{"detail": message}` or field errors `{field: [messages]}`',
        "type": "object",
        "anyOf": [
            {"required": ["detail"], "properties": {"detail": {"type": "string"}}},
            {"additionalProperties": {"type": "array", "items": {"type": "string"}}},
        ],
    },
)
MESSAGE = Schema("Message", strings(("detail", "message")))
REGISTERED = {
    "type": "object",
    "required": ["user"],
    "properties": {
        "user": {
            "type": "object",
            "required": ["id", "email"],
            "properties": {"id": {"type": "integer"}, "email": {"type": "string"}},
        }
    },
}
LOGIN = {
    "type": "object",
    "required": ["detail", "user"],
    "properties": {
        "detail": {"type": "string"},
        "user": {
            "type": "object",
            "required": ["id", "username"],
            "properties": {"id": {"type": "integer"}, "username": {"type": "string"}},
        },
    },
}
REFRESHED = strings(("detail", "access"), required=("detail", "access"))
HEALTH = Schema("Health", strings(("status", "database", "redis"), required=("status", "database", "redis")))
STREAM_URL = strings(("url", "expires_at"), required=("url", "expires_at"))
POSITION = {
    "type": "object",
    "required": ["position"],
    "properties": {
        "position": {
            "type": "number",
            "minimum": 0,
            "maximum": watching.MAX_POSITION_SECONDS,
            "description": "Seconds from the start",
        }
    },
}

CATALOG_ITEM = Schema(
    "CatalogItem",
    {
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
    },
)
SUBTITLE = Schema(
    "Subtitle",
    {
        "type": "object",
        "required": ["language", "label", "url"],
        "properties": {
            "language": {"type": "string", "description": "BCP 47, canonical form"},
            "label": {"type": "string", "maxLength": subtitle_formats.MAX_LABEL_CHARS},
            "url": {"type": "string", "format": "uri", "description": "GET: the WebVTT file; DELETE: remove it"},
        },
    },
)
VIDEO_DETAIL = Schema(
    "VideoDetail",
    {
        "allOf": [
            CATALOG_ITEM,
            {
                "type": "object",
                "required": [
                    "status",
                    "progress",
                    "error",
                    "duration",
                    "width",
                    "height",
                    "resolutions",
                    "visibility",
                    "master_url",
                ],
                "properties": {
                    "status": {"enum": ["uploading", "queued", "processing", "ready", "failed"]},
                    "progress": {"type": "integer", "minimum": 0, "maximum": 100},
                    "error": NULLABLE_STRING,
                    "duration": {"type": ["number", "null"]},
                    "width": {"type": ["integer", "null"]},
                    "height": {"type": ["integer", "null"]},
                    "resolutions": {"type": "array", "items": {"enum": list(media.RESOLUTIONS)}},
                    "visibility": VISIBILITY,
                    "master_url": NULLABLE_STRING,
                    "position": {"type": ["number", "null"]},
                    "playable": {
                        "type": "boolean",
                        "description": "A live version exists, or the one being built lists a segment in every "
                        "rendition (master_url is then set)",
                    },
                    "subtitles": {"type": "array", "items": SUBTITLE},
                    "thumbnails_vtt": {
                        "type": ["string", "null"],
                        "format": "uri",
                        "description": "The live version's WebVTT thumbnails track (cues point into sprite "
                        "sheets with #xywh=), or null",
                    },
                },
            },
        ]
    },
)
CONTINUE_ITEM = Schema(
    "ContinueItem",
    {
        "allOf": [
            CATALOG_ITEM,
            {
                "type": "object",
                "required": ["position", "duration"],
                "properties": {"position": {"type": "number"}, "duration": {"type": ["number", "null"]}},
            },
        ]
    },
)
VIDEO_CHANGES = Schema(
    "VideoChanges",
    {
        "type": "object",
        "description": "Any of the upload's text fields, validated by the same rules",
        "properties": {**_text_fields(), "visibility": VISIBILITY},
    },
)
UPLOAD = Schema(
    "Upload",
    {
        "type": "object",
        "required": ["title", "file"],
        "properties": {
            **_text_fields(),
            "visibility": VISIBILITY,
            "file": {"type": "string", "contentMediaType": "application/octet-stream"},
        },
    },
)
RESUMABLE_UPLOAD = Schema(
    "ResumableUpload",
    {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "url": {"type": "string"},
            "offset": {"type": "integer", "minimum": 0},
            "length": {"type": ["integer", "null"], "minimum": 0},
            "expires_at": {"type": "string"},
            "video_url": NULLABLE_STRING,
        },
        "required": ["id", "url", "offset", "length", "expires_at", "video_url"],
    },
)
SUBTITLE_UPLOAD = Schema(
    "SubtitleUpload",
    {
        "type": "object",
        "required": ["file", "language"],
        "properties": {
            "file": {
                "type": "string",
                "contentMediaType": "application/octet-stream",
                "description": f".vtt or .srt, UTF-8, at most {subtitle_formats.MAX_FILE_BYTES} bytes",
            },
            "language": {
                "type": "string",
                "description": f"BCP 47 tag, e.g. en, pt-BR (at most {subtitle_formats.MAX_LANGUAGE_CHARS} characters)",
            },
            "label": {
                "type": "string",
                "maxLength": subtitle_formats.MAX_LABEL_CHARS,
                "description": "Menu name; default: the language's English name",
            },
        },
    },
)

# Path parameters (their patterns are the routes').
VIDEO_ID = Param("id", "Video id")
LINK_UID = Param("uidb64", "The emailed link's user id (unpadded base64url)")
LINK_TOKEN = Param("token", "The emailed link's signed token")
STREAM_TOKEN = Param("token", "Signed stream token from GET /api/video/{id}/stream/")
VERSION = Param("version", "A version of the renditions: v1, v2, ... (as the master names it)")
RESOLUTION = Param("resolution", f"A rendition: {', '.join(media.RESOLUTIONS)}")
SEGMENT = Param("segment", f"Segment file name, e.g. {media.SEGMENT_PATTERN % 0}")
SUBTITLE_SEGMENT = Param("segment", f"WebVTT segment file name, e.g. {media.SUBTITLE_SEGMENT_PATTERN % 0}")
LANGUAGE = Param("language", "BCP 47 tag, any case (en, en-us, pt-BR)")
THUMBS_FILE = Param("name", f"{media.THUMBNAILS_VTT_NAME} or a sprite sheet, e.g. {media.SPRITE_PATTERN % 0}")
IMAGE_NAME = Param("name", "<id>.jpg or <id>-<key>.jpg (the catalog's thumbnail_url)")

# Credentials (components/securitySchemes) and the requirements that name them.
SECURITY_SCHEMES = {
    "cookieAuth": {
        "type": "apiKey",
        "in": "cookie",
        "name": "access_token",
        "description": "Access JWT set by POST /api/login/",
    },
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "refreshCookie": {"type": "apiKey", "in": "cookie", "name": "refresh_token"},
    "metricsToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "VIDEOFLIX_METRICS_TOKEN; without it set, GET /metrics answers 404",
    },
}
ACCESS_TOKEN: list[dict[str, list[str]]] = [{"cookieAuth": []}, {"bearerAuth": []}]
ANYONE: list[dict[str, list[str]]] = []
# Anonymous, or either credential (a private video's images need its owner's or an admin's).
ANYONE_OR_ACCESS_TOKEN = [{}, *ACCESS_TOKEN]
REFRESH_COOKIE: list[dict[str, list[str]]] = [{"refreshCookie": []}]
METRICS_TOKEN: list[dict[str, list[str]]] = [{"metricsToken": []}]
