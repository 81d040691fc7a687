"""Resumable uploads, /api/uploads/ (tus 1.0 and the IETF draft; the protocol is
library/resumable.py's): the handlers only stream the body and map the answers.

Request rules (API.md §5) here: the Origin rule as everywhere; no JSON and no
X-CSRFToken: the bodies are the file's bytes, and every request carries a protocol
header (Tus-Resumable or Upload-Draft-Interop-Version) that no cross-site form can send,
so a browser preflights it and the CORS allow-list decides; tus bodies must be
application/offset+octet-stream (415). Bodies are streamed to disk with their own
deadline and the idle cut-off of the multipart upload (IdleBodyMixin).
"""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import Any

import tornado.web

from videoflix.accounts import tokens
from videoflix.library import lifecycle, resumable, upload_protocol
from videoflix.library.resumable import Appender
from videoflix.library.upload_protocol import Protocol, ProtocolError
from videoflix.platform import media
from videoflix.tables.resumable_uploads import Upload
from videoflix.web import schemas
from videoflix.web.base import (
    CORS_ALLOW_HEADERS,
    CORS_EXPOSE_HEADERS,
    APIError,
    BaseHandler,
    IdleBodyMixin,
    authenticated,
    http1,
    public,
)
from videoflix.web.operation import Param, Response, operation
from videoflix.web.video_handlers import MIN_UPLOAD_BYTES_PER_SECOND

log = logging.getLogger(__name__)

# What a cross-origin tus client sends and must read (CORS).
PROTOCOL_REQUEST_HEADERS = (
    "tus-resumable, upload-length, upload-metadata, upload-offset, upload-checksum, upload-defer-length, "
    "upload-complete, upload-incomplete, upload-draft-interop-version"
)
PROTOCOL_RESPONSE_HEADERS = (
    "Location, Upload-Offset, Upload-Length, Upload-Expires, Upload-Complete, Tus-Resumable, Tus-Version, "
    "Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, Video-Location"
)
UPLOAD_ID = Param("upload_id", "The upload's id (the last part of the creation's Location)")

_DESCRIPTION = (
    "tus 1.0 (Tus-Resumable: 1.0.0; core, creation, creation-with-upload, termination, expiration, "
    "checksum with sha1) or the IETF resumable-upload draft (Upload-Draft-Interop-Version: 5 for draft 03, "
    "6 for draft 05; Upload-Complete), told apart per request; neither header: 412. Metadata (tus "
    "Upload-Metadata, base64 values): title (required), description, category, visibility, filename."
)


class UploadHandlerBase(IdleBodyMixin, BaseHandler):
    """What both routes share: the protocol of the request, errors with its headers,
    the tus headers in CORS, and the body streamed into an Appender."""

    takes_json = False
    protocol: Protocol | None = None
    appender: Appender | None = None
    refused = False

    def set_cors_headers(self) -> None:
        super().set_cors_headers()
        if "Access-Control-Expose-Headers" in self._headers:
            self.set_header("Access-Control-Expose-Headers", f"{CORS_EXPOSE_HEADERS}, {PROTOCOL_RESPONSE_HEADERS}")

    @public
    def options(self, *args: Any, **kwargs: Any) -> None:
        # The CORS preflight and tus discovery at once, without credentials.
        for name, value in upload_protocol.discovery_headers(self.config).items():
            self.set_header(name, value)
        self.set_header("Access-Control-Allow-Headers", f"{CORS_ALLOW_HEADERS}, {PROTOCOL_REQUEST_HEADERS}")
        self.set_header("Access-Control-Allow-Methods", "GET, HEAD, POST, PATCH, DELETE, OPTIONS")
        self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    def refusal(self, exc: Exception) -> APIError:
        headers = upload_protocol.protocol_headers(self.protocol)
        if isinstance(exc, ProtocolError):
            return APIError(exc.status, exc.detail, headers={**headers, **exc.headers})
        if isinstance(exc, lifecycle.InvalidUpload):
            return APIError(400, body=dict(exc.errors), headers=headers)
        if isinstance(exc, lifecycle.QuotaExceeded):
            return APIError(exc.status, exc.detail, headers=headers)
        raise exc

    async def begin(self) -> tokens.SessionClaims:
        """Before any body byte: the protocol (412), the caller (401)."""
        try:
            self.protocol = upload_protocol.detect_protocol(self.request.headers)
        except ProtocolError as exc:
            raise self.refusal(exc) from None
        return await self.authenticate()

    async def start_body(self, upload: Upload, *, creating: bool) -> None:
        """Lock the upload and take its body (within its limits, with the idle cut-off)."""
        assert self.protocol is not None
        try:
            self.appender = await Appender.begin(
                self.config, self.services, self.protocol, upload, self.request.headers, creating=creating
            )
        except ProtocolError as exc:
            raise self.refusal(exc) from None
        # Tornado's own caps are for small bodies; this one is capped by the Appender
        # (a JSON 413), and may take hours, a stall being cut off by watch_idle.
        limit = self.config.max_upload_bytes + 1024 * 1024
        http1(self.request).set_max_body_size(limit)
        http1(self.request).set_body_timeout(limit / MIN_UPLOAD_BYTES_PER_SECOND)
        self.watch_idle()

    async def data_received(self, chunk: bytes) -> None:
        appender = self.appender
        if appender is None or self.refused:
            return
        self.body_arrived()
        try:
            await appender.feed(chunk)
        except ProtocolError as exc:
            await self.refuse(self.refusal(exc))
        except OSError as exc:
            log.error("resumable upload %s: writing failed: %s", appender.upload.id, exc)
            status = 507 if exc.errno == errno.ENOSPC else 500
            detail = "Not enough storage to receive the upload." if status == 507 else "Internal server error."
            await self.refuse(APIError(status, detail))

    async def refuse(self, error: APIError) -> None:
        """Answer now, mid-body; nothing of this body is kept, the rest is ignored."""
        self.refused = True
        self.stop_watching_idle()
        appender, self.appender = self.appender, None
        if appender is not None:
            await appender.discard()
        self.send_error(error.status, exc_info=(type(error), error, None))

    async def end_body(self) -> Upload:
        """The body is whole: record it (and finish the upload on its last byte)."""
        self.stop_watching_idle()
        appender, self.appender = self.appender, None
        assert appender is not None  # (start_body made it)
        try:
            return await appender.end(self.current_user.is_admin)
        except (ProtocolError, lifecycle.InvalidUpload, lifecycle.QuotaExceeded) as exc:
            raise self.refusal(exc) from None

    def on_idle(self) -> None:
        self.keep_what_arrived()

    def on_connection_close(self) -> None:
        self.keep_what_arrived()
        super().on_connection_close()

    def on_finish(self) -> None:
        self.stop_watching_idle()
        self.keep_what_arrived()

    def keep_what_arrived(self) -> None:
        """The body stopped short (dropped, stalled): what arrived is kept, the lock released."""
        self.stop_watching_idle()
        appender, self.appender = self.appender, None
        if appender is not None:
            task = asyncio.ensure_future(appender.abort())
            _KEEPING.add(task)
            task.add_done_callback(_KEEPING.discard)

    def answer(self, status: int, upload: Upload, extra: dict[str, str] | None = None) -> None:
        assert self.protocol is not None
        for name, value in {**upload_protocol.state_headers(self.protocol, upload), **(extra or {})}.items():
            self.set_header(name, value)
        self.set_status(status)
        if status == 204:
            self.clear_header("Content-Type")
            self.finish()
        else:
            self.write_json(upload_item(upload), status)


# Aborts in flight (a reference, so none is collected before it ends).
_KEEPING: set[asyncio.Future[None]] = set()


def upload_item(upload: Upload) -> dict[str, Any]:
    """The JSON body of a creation (clients of the protocols read only the headers)."""
    return {
        "id": upload.id,
        "url": upload_protocol.upload_url(upload.id),
        "offset": upload.offset,
        "length": upload.length,
        "expires_at": upload.expires_at.isoformat().replace("+00:00", "Z"),
        "video_url": upload_protocol.video_location(upload.video_id) if upload.video_id is not None else None,
    }


_COMMON_ERRORS: dict[int, Any] = {
    400: "A malformed protocol header (offset, length, metadata, checksum, a header sent twice) or field errors",
    412: "Neither Tus-Resumable: 1.0.0 nor a supported Upload-Draft-Interop-Version",
}


@tornado.web.stream_request_body
class UploadCreateHandler(UploadHandlerBase):
    upload: Upload | None = None

    async def prepare(self) -> None:
        super().prepare()
        if self.request.method != "POST":
            return
        user = await self.begin()
        assert self.protocol is not None
        try:
            if self.protocol is Protocol.TUS:
                upload_protocol.check_content_type(self.protocol, self.request.headers)
            self.upload = await resumable.create_upload(
                self.config, self.services, user.user_id, user.is_admin, self.protocol, self.request.headers
            )
        except (ProtocolError, lifecycle.InvalidUpload, lifecycle.QuotaExceeded) as exc:
            raise self.refusal(exc) from None
        if upload_protocol.announces_body(self.request.headers):
            await self.start_body(self.upload, creating=True)

    @operation(
        "Create a resumable upload (tus creation, creation-with-upload; the draft's upload creation)",
        description=_DESCRIPTION + " With a body (creation-with-upload) its bytes are the upload's first.",
        responses={
            201: Response(
                "Created: Location names the upload; Upload-Offset; Video-Location once the body completed it",
                schemas.RESUMABLE_UPLOAD,
            ),
            **_COMMON_ERRORS,
            409: "Upload-Offset other than 0 on a creation with data",
            413: lambda config: (
                f"Upload-Length over {config.max_upload_bytes} bytes, a body past it, or the caller's storage quota"
            ),
            415: "A tus body that is not application/offset+octet-stream",
            423: "Locked (never for a new upload)",
            429: lambda config: (
                f"{config.max_open_uploads} unfinished uploads of the caller, or "
                f"{config.max_queued_per_user} videos waiting to be transcoded (admins exempt)"
            ),
            460: "Upload-Checksum does not match the body",
            507: "Not enough storage to receive it",
        },
    )
    @authenticated
    async def post(self) -> None:
        upload = self.upload
        if self.refused or upload is None:  # (answered mid-body)
            return
        if self.appender is not None:
            upload = await self.end_body()
        self.answer(201, upload, {"Location": upload_protocol.upload_url(upload.id)})


@tornado.web.stream_request_body
class UploadHandler(UploadHandlerBase):
    async def prepare(self) -> None:
        super().prepare()
        if self.request.method != "PATCH":
            return
        user = await self.begin()
        upload = await self.find(user.user_id)
        await self.start_body(upload, creating=False)

    async def find(self, owner_id: int) -> Upload:
        try:
            return await resumable.get_upload(self.services, self.path_args[0], owner_id)
        except ProtocolError as exc:
            raise self.refusal(exc) from None

    @operation(
        "Offset of a resumable upload: only bytes durably on disk",
        params=(UPLOAD_ID,),
        description="Upload-Offset, Upload-Length, Upload-Expires; Upload-Complete (draft); Video-Location "
        "once the upload became a video.",
        responses={
            204: "The upload's state, in headers",
            **_COMMON_ERRORS,
            404: "Unknown upload, or another user's",
            410: "Expired",
        },
    )
    @authenticated
    async def head(self, upload_id: str) -> None:
        user = await self.begin()
        upload = await self.find(user.user_id)
        self.answer(204, upload)

    @operation(
        "Append to a resumable upload at Upload-Offset; its last byte makes the video",
        params=(UPLOAD_ID,),
        description=_DESCRIPTION,
        responses={
            204: "Appended: the new Upload-Offset (fsynced first); Video-Location when it completed the upload",
            **_COMMON_ERRORS,
            404: "Unknown upload, or another user's",
            409: "Upload-Offset is not the upload's offset (the answer's Upload-Offset is)",
            410: "Expired",
            413: "A body past the upload's length, or past the storage quota",
            415: "A tus body that is not application/offset+octet-stream",
            423: "Another request is appending to this upload (Retry-After)",
            429: "Too many videos waiting to be transcoded (the upload is kept: send an empty PATCH later)",
            460: "Upload-Checksum does not match the body: nothing kept, the offset did not move",
            507: "Not enough storage to receive it",
        },
    )
    @authenticated
    async def patch(self, upload_id: str) -> None:
        if self.refused:  # (answered mid-body)
            return
        upload = await self.end_body()
        self.answer(204, upload)

    @operation(
        "Terminate a resumable upload: its bytes are removed (a video made of it stays)",
        params=(UPLOAD_ID,),
        responses={
            204: "Terminated",
            **_COMMON_ERRORS,
            404: "Unknown upload, or another user's",
            410: "Expired",
            423: "Another request is appending to this upload",
        },
    )
    @authenticated
    async def delete(self, upload_id: str) -> None:
        user = await self.begin()
        try:
            await resumable.terminate(self.config, self.services, upload_id, user.user_id)
        except ProtocolError as exc:
            raise self.refusal(exc) from None
        for name, value in upload_protocol.protocol_headers(self.protocol).items():
            self.set_header(name, value)
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()


ROUTES = [
    (r"/api/uploads/", UploadCreateHandler),
    (rf"/api/uploads/({media.UPLOAD_ID_PATTERN})/", UploadHandler),
]
