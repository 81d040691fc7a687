"""The resumable-upload protocols' headers (tus 1.0 and the IETF draft, versions 03 and
05 as tus-js-client speaks them), read strictly and written: which protocol a request
speaks, its offsets, completion, metadata and checksum, and the headers every answer
carries. Pure: library/resumable.py holds the uploads themselves (state, files, finishing).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import format_datetime
from typing import Any

from videoflix.platform.config import Config
from videoflix.tables.resumable_uploads import Upload

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
# tus checksum extension: sha1 is the algorithm every server supports (and tus-js-client's).
CHECKSUM_ALGORITHMS = {"sha1": hashlib.sha1}
# tus: "460 Checksum Mismatch".
CHECKSUM_MISMATCH = 460
# The body of a tus PATCH (and of a creation with data) must say what it is (tus core, 415).
TUS_CONTENT_TYPE = "application/offset+octet-stream"
# Upload-Metadata: a header, so Tornado's 64 KiB header limit holds already; the fields
# need far less (title 200, description 5,000 characters: base64 of UTF-8 ~ 27 KiB).
MAX_METADATA_BYTES = 32 * 1024
MAX_METADATA_PAIRS = 16
# Metadata keys that become the video's fields; tus clients name the file either way.
FIELD_KEYS = ("title", "description", "category", "visibility")
FILENAME_KEYS = ("filename", "name")
# Offsets and lengths: decimal digits, no sign, within a bigint (sql/006).
MAX_OFFSET = 2**63 - 1
UPLOADS_PATH = "/api/uploads/"


class Protocol(enum.Enum):
    TUS = "tus-v1"
    IETF_03 = "ietf-draft-03"
    IETF_05 = "ietf-draft-05"

    @property
    def is_ietf(self) -> bool:
        return self is not Protocol.TUS


INTEROP_VERSIONS = {"5": Protocol.IETF_03, "6": Protocol.IETF_05}


class ProtocolError(Exception):
    """Answer `status` with {"detail": detail} and `headers` (the handler maps it)."""

    def __init__(self, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


# --- the headers, parsed strictly (pure) --------------------------------------------


def single_header(headers: Any, name: str) -> str | None:
    """The one value of `name`, None when absent; sent twice (or joined with commas
    by a proxy) is a 400, never a guess between them."""
    values = headers.get_list(name)
    if not values:
        return None
    if len(values) > 1:
        raise ProtocolError(400, f"{name} was sent more than once.")
    return str(values[0]).strip()


def detect_protocol(headers: Any) -> Protocol:
    """Which protocol a request speaks; 412 when it names none we speak."""
    interop = single_header(headers, "Upload-Draft-Interop-Version")
    if interop is not None:
        protocol = INTEROP_VERSIONS.get(interop)
        if protocol is None:
            raise ProtocolError(
                412,
                f"Unsupported Upload-Draft-Interop-Version: this server speaks "
                f"{', '.join(sorted(INTEROP_VERSIONS))} (drafts 03 and 05), or tus {TUS_VERSION}.",
                {"Tus-Version": TUS_VERSION},
            )
        return protocol
    version = single_header(headers, "Tus-Resumable")
    if version != TUS_VERSION:
        missing = version is None
        raise ProtocolError(
            412,
            "Missing Tus-Resumable header (or Upload-Draft-Interop-Version)."
            if missing
            else f"Unsupported Tus-Resumable version: this server speaks {TUS_VERSION}.",
            {"Tus-Version": TUS_VERSION},
        )
    return Protocol.TUS


def parse_count(headers: Any, name: str) -> int | None:
    """A byte count header (Upload-Offset, Upload-Length): digits only, within a bigint."""
    raw = single_header(headers, name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or int(raw) > MAX_OFFSET:
        raise ProtocolError(400, f"{name} must be a non-negative integer.")
    return int(raw)


def parse_complete(headers: Any) -> bool | None:
    """The IETF draft's end marker: Upload-Complete (?1 = this request ends the upload),
    or the older drafts' Upload-Incomplete (its inverse); None when neither is sent."""
    complete = single_header(headers, "Upload-Complete")
    incomplete = single_header(headers, "Upload-Incomplete")
    if complete is not None and incomplete is not None:
        raise ProtocolError(400, "Send Upload-Complete or Upload-Incomplete, not both.")
    for name, value, inverted in (("Upload-Complete", complete, False), ("Upload-Incomplete", incomplete, True)):
        if value is None:
            continue
        if value not in ("?0", "?1"):
            raise ProtocolError(400, f"{name} must be ?0 or ?1 (a structured boolean).")
        return (value == "?1") != inverted
    return None


@dataclass(frozen=True)
class Metadata:
    fields: dict[str, str]
    filename: str


def parse_metadata(raw: str | None) -> Metadata:
    """tus's Upload-Metadata (`key base64,key base64`, a key alone for an empty value):
    keys unique and plain, values strict base64 of UTF-8 without NUL characters."""
    if raw is None or not raw.strip():
        return Metadata({}, "")
    if len(raw) > MAX_METADATA_BYTES:
        raise ProtocolError(400, f"Upload-Metadata is too long: at most {MAX_METADATA_BYTES} bytes.")
    pairs = raw.split(",")
    if len(pairs) > MAX_METADATA_PAIRS:
        raise ProtocolError(400, f"Upload-Metadata has too many keys: at most {MAX_METADATA_PAIRS}.")
    values: dict[str, str] = {}
    for pair in pairs:
        parts = pair.strip().split(" ")
        if len(parts) > 2 or not parts[0]:
            raise ProtocolError(400, "Upload-Metadata must be comma-separated 'key base64value' pairs.")
        key = parts[0]
        if not key.isascii() or not key.isprintable() or len(key) > 64:
            raise ProtocolError(400, "Upload-Metadata keys must be short printable ASCII.")
        if key in values:
            raise ProtocolError(400, f"Upload-Metadata names '{key}' more than once.")
        try:
            value = base64.b64decode(parts[1], validate=True).decode("utf-8") if len(parts) == 2 else ""
        except (binascii.Error, ValueError):
            raise ProtocolError(400, f"Upload-Metadata '{key}' is not base64 of UTF-8 text.") from None
        if "\x00" in value:
            raise ProtocolError(400, f"Upload-Metadata '{key}': null characters are not allowed.")
        values[key] = value
    filename = next((values[key] for key in FILENAME_KEYS if values.get(key)), "")
    return Metadata(
        {key: values[key] for key in FIELD_KEYS if key in values},
        os.path.basename(filename.replace("\\", "/"))[:255],
    )


def parse_checksum(headers: Any) -> tuple[str, bytes] | None:
    """tus Upload-Checksum: `<algorithm> <base64 digest>`."""
    raw = single_header(headers, "Upload-Checksum")
    if raw is None:
        return None
    algorithm, _, encoded = raw.partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise ProtocolError(400, f"Unsupported checksum algorithm: use {', '.join(CHECKSUM_ALGORITHMS)}.")
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != CHECKSUM_ALGORITHMS[algorithm]().digest_size:
        raise ProtocolError(400, "Upload-Checksum is not a base64 digest of that algorithm.")
    return algorithm, digest


def announces_body(headers: Any) -> bool:
    if "Transfer-Encoding" in headers:
        return True
    length = headers.get("Content-Length")
    return length is not None and length.strip() != "0"


def check_content_type(protocol: Protocol, headers: Any) -> None:
    """tus bodies are application/offset+octet-stream (415 otherwise). The drafts'
    (application/partial-upload in 05, anything in 03) are taken as they come: every
    request here carries a protocol header no cross-site form can send, so a browser
    preflights it; the Origin rule (API.md §5) refuses other sites all the same."""
    if protocol is Protocol.TUS and announces_body(headers):
        media_type = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if media_type != TUS_CONTENT_TYPE:
            raise ProtocolError(415, f"Expected Content-Type: {TUS_CONTENT_TYPE}.")


# --- answers (pure) -------------------------------------------------------------------


def upload_url(upload_id: str) -> str:
    return f"{UPLOADS_PATH}{upload_id}/"


def video_location(video_id: int) -> str:
    return f"/api/video/{int(video_id)}/"


def protocol_headers(protocol: Protocol | None) -> dict[str, str]:
    """Headers every answer of `protocol` carries (tus: Tus-Resumable, even on errors)."""
    return {"Tus-Resumable": TUS_VERSION} if protocol is Protocol.TUS else {}


def discovery_headers(config: Config) -> dict[str, str]:
    """tus OPTIONS (discovery): what this server speaks."""
    return {
        "Tus-Resumable": TUS_VERSION,
        "Tus-Version": TUS_VERSION,
        "Tus-Extension": TUS_EXTENSIONS,
        "Tus-Max-Size": str(config.max_upload_bytes),
        "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
    }


def is_complete(upload: Upload) -> bool:
    return upload.finished or (upload.length is not None and upload.offset == upload.length)


def state_headers(protocol: Protocol, upload: Upload) -> dict[str, str]:
    """What HEAD (and every successful PATCH and creation) says of an upload."""
    headers = protocol_headers(protocol)
    headers["Upload-Offset"] = str(upload.offset)
    if upload.length is not None:
        headers["Upload-Length"] = str(upload.length)
    if protocol.is_ietf:
        headers["Upload-Complete"] = "?1" if is_complete(upload) else "?0"
    if not upload.finished:  # tus expiration: an RFC 9110 HTTP-date
        headers["Upload-Expires"] = format_datetime(upload.expires_at.astimezone(UTC), usegmt=True)
    if upload.video_id is not None:
        headers["Video-Location"] = video_location(upload.video_id)
    return headers
