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
# The storage ledger (issue 23 item 5, library/ledger.py).
_BYTES = {"type": "integer", "minimum": 0}
VIDEO_STORAGE = Schema(
    "VideoStorage",
    {
        "type": ["object", "null"],
        "description": "The video's bytes on disk by kind as of its last run (the live version), and what "
        "copying saved; null before its first run. Only for its owner and admins.",
        "required": [
            "original_bytes",
            "rendition_bytes",
            "trickplay_bytes",
            "picture_bytes",
            "subtitle_bytes",
            "total_bytes",
            "encode_cpu_seconds",
            "copy_saved_cpu_seconds",
            "copy_saved_bytes",
        ],
        "properties": {
            "original_bytes": {**_BYTES, "description": "0 once removed (VIDEOFLIX_ORIGINALS)"},
            "rendition_bytes": {"type": "object", "additionalProperties": _BYTES, "description": "per rung"},
            "trickplay_bytes": _BYTES,
            "picture_bytes": _BYTES,
            "subtitle_bytes": _BYTES,
            "total_bytes": _BYTES,
            "encode_cpu_seconds": {"type": "number", "description": "CPU of the run's ffmpeg and ffprobe"},
            "copy_saved_cpu_seconds": {
                "type": ["number", "null"],
                "description": "Estimated CPU the copied top rung did not cost; null when nothing was copied "
                "beside an encoded rung",
            },
            "copy_saved_bytes": {
                **_BYTES,
                "description": "The original's bytes, when it was dropped because the top rung is a copy",
            },
        },
    },
)
_SUMS = {
    "type": "object",
    "required": ["videos", "original_bytes", "rendition_bytes", "total_bytes", "copy_saved_bytes"],
    "properties": {
        "videos": _BYTES,
        "original_bytes": _BYTES,
        "rendition_bytes": _BYTES,
        "trickplay_bytes": _BYTES,
        "picture_bytes": _BYTES,
        "subtitle_bytes": _BYTES,
        "total_bytes": _BYTES,
        "copy_saved_cpu_seconds": {"type": "number"},
        "copy_saved_bytes": _BYTES,
    },
}
STORAGE_SUMMARY = Schema(
    "StorageSummary",
    {
        "type": "object",
        "required": ["mine"],
        "properties": {
            "mine": {**_SUMS, "description": "The caller's own videos"},
            "total": {**_SUMS, "description": "Every video (admins only)"},
            "users": {
                "type": "array",
                "description": "Each owner's sums, largest first (admins only)",
                "items": {
                    "allOf": [
                        _SUMS,
                        {
                            "type": "object",
                            "required": ["user_id", "email"],
                            "properties": {"user_id": {"type": "integer"}, "email": {"type": "string"}},
                        },
                    ]
                },
            },
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
                    "encoding": {
                        "type": ["object", "null"],
                        "description": "How the live version was made: its top rung the source's video stream "
                        "copied (no re-encode) or encoded, and why it was not copied; null when nothing is live "
                        "or the version predates this field",
                        "required": ["video", "audio", "reason", "audio_reason", "note", "input"],
                        "properties": {
                            "video": {"enum": ["copied", "encoded"]},
                            "audio": {"enum": ["copied", "encoded", None], "description": "null: no sound"},
                            "reason": {
                                "type": ["string", "null"],
                                "description": 'Why the video was encoded, e.g. "source GOP 10 s"',
                            },
                            "audio_reason": {
                                "type": ["string", "null"],
                                "description": 'Why the audio was encoded, e.g. "audio 6 channels"',
                            },
                            "note": {
                                "type": ["string", "null"],
                                "description": 'For people: "copied" or "encoded: <reason>"',
                            },
                            "input": {
                                "type": ["string", "null"],
                                "description": 'What the run read: "the original", or once the original was '
                                'removed (VIDEOFLIX_ORIGINALS), e.g. "the 1080p rung of v3 (no original)"',
                            },
                        },
                    },
                    "storage": VIDEO_STORAGE,
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
