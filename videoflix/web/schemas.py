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
MEDIA_TOKEN = Param("token", "Media token of one version's folder, as the master playlist hands it out")
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


# --- the admin console (web/admin_handlers.py; console/) ------------------------
def _page_of(item: Schema) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["count", "limit", "offset", "results"],
        "properties": {
            "count": {"type": "integer", "description": "How many match the filters, on every page"},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
            "results": {"type": "array", "items": item},
        },
    }


NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
ADMIN_USER = Schema(
    "AdminUser",
    {
        "type": "object",
        "required": [
            "id",
            "email",
            "joined",
            "activated_at",
            "last_login",
            "is_active",
            "is_admin",
            "video_count",
            "bytes_stored",
        ],
        "properties": {
            "id": {"type": "integer"},
            "email": {"type": "string"},
            "joined": {"type": "string", "format": "date-time"},
            "activated_at": NULLABLE_TIME,
            "last_login": NULLABLE_TIME,
            "is_active": {"type": "boolean"},
            "is_admin": {"type": "boolean"},
            "video_count": {"type": "integer"},
            "bytes_stored": {"type": "integer", "description": "Bytes of the user's uploaded sources"},
        },
    },
)
ADMIN_USER_PAGE = _page_of(ADMIN_USER)
ADMIN_USER_CHANGES = Schema(
    "AdminUserChanges",
    {
        "type": "object",
        "description": "Either or both; false for is_active or is_admin ends every session of the user at once",
        "properties": {"is_active": {"type": "boolean"}, "is_admin": {"type": "boolean"}},
    },
)
ADMIN_USER_DELETED = {
    "type": "object",
    "required": ["user", "removed"],
    "properties": {
        "user": ADMIN_USER,
        "removed": {
            "type": "object",
            "required": ["videos", "source_bytes", "files"],
            "properties": {
                "videos": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "title"],
                        "properties": {"id": {"type": "integer"}, "title": {"type": "string"}},
                    },
                },
                "source_bytes": {"type": "integer"},
                "files": {"type": "integer", "description": "Files removed from the media directory"},
            },
        },
    },
}
_JOB_VIDEO = {
    "id": {"type": "string", "description": "The job's id: its video's id, or a dead letter's entry id"},
    "video_id": {"type": ["integer", "null"]},
    "title": NULLABLE_STRING,
    "owner_id": {"type": ["integer", "null"]},
    "owner_email": NULLABLE_STRING,
    "status": NULLABLE_STRING,
    "error": NULLABLE_STRING,
}


def _job(name: str, extra: dict[str, Any]) -> Schema:
    properties = {**_JOB_VIDEO, **extra}
    return Schema(name, {"type": "object", "required": list(properties), "properties": properties})


JOB_LIST = Schema(
    "AdminJobs",
    {
        "type": "object",
        "required": ["counts", "queued", "running", "failed", "dead_letters"],
        "properties": {
            "counts": {
                "type": "object",
                "required": ["queued", "running", "failed", "dead_letters"],
                "properties": {name: {"type": "integer"} for name in ("queued", "running", "failed", "dead_letters")},
            },
            "queued": {
                "type": "array",
                "items": _job(
                    "QueuedJob",
                    {"waiting_turn": {"type": "boolean", "description": "Behind its owner's earlier jobs"}},
                ),
            },
            "running": {
                "type": "array",
                "items": _job(
                    "RunningJob",
                    {
                        "host": {"type": "string"},
                        "worker_pid": {"type": ["integer", "null"]},
                        "consumer": {"type": "string"},
                        "progress": {"type": ["number", "null"], "minimum": 0, "maximum": 100},
                        "lease_age_seconds": {"type": "number", "description": "Since the lease was last renewed"},
                        "deliveries": {"type": "integer"},
                    },
                ),
            },
            "failed": {
                "type": "array",
                "items": _job("FailedJob", {"attempts": {"type": "integer"}, "failed_at": NULLABLE_TIME}),
            },
            "dead_letters": {
                "type": "array",
                "items": _job("DeadLetter", {"reason": {"type": "string"}, "deliveries": {"type": "integer"}}),
            },
        },
    },
)
JOB_CHANGED = {
    "type": "object",
    "required": ["video_id", "status"],
    "properties": {"video_id": {"type": "integer"}, "status": {"type": "string"}, "error": {"type": "string"}},
}
ADMIN_VIDEO = Schema(
    "AdminVideo",
    {
        "type": "object",
        "required": [
            "id",
            "title",
            "owner_id",
            "owner_email",
            "status",
            "visibility",
            "size",
            "duration",
            "created_at",
            "error",
            "listed",
        ],
        "properties": {
            "id": {"type": "integer"},
            "title": {"type": "string"},
            "owner_id": {"type": "integer"},
            "owner_email": {"type": "string"},
            "status": {"enum": ["uploading", "queued", "processing", "ready", "failed"]},
            "visibility": VISIBILITY,
            "size": {"type": "integer", "description": "Bytes of the source"},
            "duration": {"type": ["number", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "error": NULLABLE_STRING,
            "listed": {"type": "boolean", "description": "A live version exists (it is in the catalog)"},
        },
    },
)
ADMIN_VIDEO_PAGE = _page_of(ADMIN_VIDEO)
BULK_REQUEST = Schema(
    "AdminBulk",
    {
        "type": "object",
        "required": ["action", "ids"],
        "properties": {
            "action": {"enum": ["retranscode", "make_private", "delete"]},
            "ids": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1, "maxItems": 100},
        },
    },
)
BULK_RESULT = {
    "type": "object",
    "required": ["action", "results"],
    "properties": {
        "action": {"type": "string"},
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "result"],
                "properties": {
                    "id": {"type": "integer"},
                    "result": {"enum": ["queued", "busy", "private", "unchanged", "deleted", "not_found"]},
                },
            },
        },
    },
}
AUDIT_ENTRY = Schema(
    "AuditEntry",
    {
        "type": "object",
        "required": [
            "id",
            "created_at",
            "actor_id",
            "actor",
            "address",
            "action",
            "target_type",
            "target_id",
            "target_label",
            "details",
        ],
        "properties": {
            "id": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "actor_id": {"type": ["integer", "null"], "description": "null: the command line"},
            "actor": {"type": "string", "description": "The admin's email, or cli"},
            "address": {"type": "string"},
            "action": {"type": "string"},
            "target_type": {"enum": ["user", "video", "job"]},
            "target_id": {"type": "string"},
            "target_label": {"type": "string"},
            "details": {"type": "object"},
        },
    },
)
AUDIT_PAGE = {
    "type": "object",
    "required": ["results", "next_before"],
    "properties": {
        "results": {"type": "array", "items": AUDIT_ENTRY},
        "next_before": {"type": ["integer", "null"], "description": "`before` for the next (older) page"},
    },
}
USER_ID = Param("id", "User id")
JOB_ID = Param("id", "A video id (its job), or a dead letter's entry id such as 1733580000000-0")
