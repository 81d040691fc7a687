"""Resumable uploads: tus 1.0 and the IETF resumable-upload draft on one endpoint,
`/api/uploads/`, the protocol told apart per request (tus-java-server does the same).

- tus 1.0 (https://tus.io/protocols/resumable-upload): core, creation,
  creation-with-upload, termination, expiration and checksum (sha1). Every request but
  OPTIONS carries `Tus-Resumable: 1.0.0`.
- The IETF draft (draft-ietf-httpbis-resumable-upload) as tus-js-client 4.x speaks it:
  `Upload-Draft-Interop-Version: 5` (`protocol: 'ietf-draft-03'`) or `6`
  (`'ietf-draft-05'`), `Upload-Complete: ?0/?1` (`Upload-Incomplete`, the inverse of
  earlier drafts, is understood too), without the 104 interim answer: the creation
  is 201 + `Location`, then `HEAD` for the offset, `PATCH` at `Upload-Offset`, `DELETE`.

A request with neither header is 412 (tus's answer to an unsupported version).

State: one PostgreSQL row per upload (sql/006, tables/resumable_uploads.py), not Redis:
the offset must be as durable as the bytes it counts (it moves only after they are
fsynced, so HEAD reports only what a crash cannot take back), and the upload becomes a
video exactly once because the row is locked, marked finished and the video inserted in
one transaction (lifecycle.create_from_resumable). Redis holds only the short lease of
the one request appending to an upload (rediskeys.upload_lock): a second PATCH at the
same time is 423 (tus-js-client retries it), never interleaved.

Bytes go to media/.resumable/<id> through the file executor in batches, never whole in
memory; the file is cut back to the recorded offset before each append (a server killed
mid-chunk leaves bytes past it that were never acknowledged). A dropped connection keeps
what arrived (fsynced, then recorded) unless the request carried a checksum, which only
the whole body can match; a checksum mismatch is 460 and the offset stays where it was.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from videoflix.library import lifecycle
from videoflix.library.upload_protocol import (
    CHECKSUM_ALGORITHMS,
    CHECKSUM_MISMATCH,
    Protocol,
    ProtocolError,
    check_content_type,
    is_complete,
    parse_checksum,
    parse_complete,
    parse_count,
    parse_metadata,
    protocol_headers,
    single_header,
    state_headers,
)
from videoflix.platform import media, outage, rediskeys
from videoflix.platform.config import Config
from videoflix.platform.db import cursor, transaction
from videoflix.platform.services import Services
from videoflix.platform.storage import StorageError
from videoflix.tables import resumable_uploads as rows
from videoflix.tables import users
from videoflix.tables.resumable_uploads import Upload

log = logging.getLogger(__name__)

# Bytes gathered before one write (and hash update) on the executor.
WRITE_BATCH_BYTES = 1024 * 1024
# The appending request's lease in Redis, renewed while its body arrives: a server
# killed mid-PATCH blocks its upload at most this long (423, which clients retry).
LOCK_LEASE_MS = 10_000
LOCK_RENEW_SECONDS = 2.0
# Renew the lease only while it is still ours (compare-and-set; CAS-delete to release).
_RENEW_LUA = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE_LUA = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"

# --- the use cases --------------------------------------------------------------------


def _create_file(path: Path) -> None:
    """An empty file for the upload, durable (its folder fsynced) before the 201."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.close(fd)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


async def create_upload(
    config: Config, services: Services, owner_id: int, is_admin: bool, protocol: Protocol, headers: Any
) -> Upload:
    """A new upload from a creation request's headers: its length (tus: required;
    drafts: optional), metadata (the upload form's field rules), the caller's limits
    (open uploads 429, stored bytes 413); the row, then its empty file."""
    if protocol is Protocol.TUS and single_header(headers, "Upload-Defer-Length") is not None:
        raise ProtocolError(400, "Upload-Defer-Length is not supported: send Upload-Length.")
    length = parse_count(headers, "Upload-Length")
    if length is None and protocol is Protocol.TUS:
        raise ProtocolError(400, "Upload-Length is required.")
    if length is not None and length > config.max_upload_bytes:
        raise ProtocolError(413, f"File too large: the limit is {config.max_upload_bytes} bytes.")
    if length == 0:
        raise ProtocolError(400, "An empty file is not a video.")
    metadata = parse_metadata(single_header(headers, "Upload-Metadata"))
    fields, visibility = lifecycle.check_upload_fields(
        metadata.fields, is_admin, config.allow_public_user_uploads
    )  # InvalidUpload: the multipart upload's field errors
    fields["visibility"] = visibility
    upload_id = secrets.token_hex(16)
    async with transaction(services.pool) as cur:
        await users.lock_user(cur, owner_id)  # two creations at once count each other
        open_count, declared = await rows.open_usage(cur, owner_id)
        if not is_admin and config.max_open_uploads and open_count >= config.max_open_uploads:
            raise ProtocolError(
                429,
                f"You have {open_count} unfinished uploads (at most {config.max_open_uploads}): "
                "finish or cancel one first.",
            )
        await lifecycle.check_quota(config, services, owner_id, is_admin, (length or 0) + declared, cur)
        upload = await rows.insert_upload(
            cur,
            upload_id=upload_id,
            owner_id=owner_id,
            length=length,
            fields=fields,
            filename=metadata.filename,
            expiry_seconds=config.upload_expiry_seconds,
        )
    # After the commit: the sweeper removes files it finds without a row.
    path = media.resumable_path(config.media_dir, upload_id)
    await asyncio.get_running_loop().run_in_executor(services.file_executor, _create_file, path)
    log.info("resumable upload %s created by user %s (%s, %s bytes)", upload_id, owner_id, protocol.value, length)
    return upload


async def get_upload(services: Services, upload_id: str, owner_id: int) -> Upload:
    """The caller's upload; 404 for an unknown one or another user's, 410 once expired."""
    if not media.is_upload_id(upload_id):
        raise ProtocolError(404, "Not found.")
    async with cursor(services.pool) as cur:
        upload = await rows.get_upload(cur, upload_id, owner_id)
    if upload is None:
        raise ProtocolError(404, "Not found.")
    if upload.expired and not upload.finished:
        raise ProtocolError(410, "This upload expired: start a new one.")
    return upload


async def terminate(config: Config, services: Services, upload_id: str, owner_id: int) -> None:
    """tus termination / the draft's cancellation: the row and the file go (a video
    already made of it stays). An upload being appended to is 423."""
    await get_upload(services, upload_id, owner_id)
    token = await _take_lock(services, upload_id)
    try:
        async with cursor(services.pool) as cur:
            if not await rows.delete_upload(cur, upload_id, owner_id):
                raise ProtocolError(404, "Not found.")
        path = media.resumable_path(config.media_dir, upload_id)
        await asyncio.get_running_loop().run_in_executor(services.file_executor, _unlink, path)
    finally:
        await _release_lock(services, upload_id, token)
    log.info("resumable upload %s terminated by user %s", upload_id, owner_id)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


async def _take_lock(services: Services, upload_id: str) -> str:
    token = secrets.token_hex(8)
    if not await services.redis.set(rediskeys.upload_lock(upload_id), token, nx=True, px=LOCK_LEASE_MS):
        raise ProtocolError(423, "Another request is sending to this upload: try again shortly.", {"Retry-After": "1"})
    return token


async def _release_lock(services: Services, upload_id: str, token: str) -> None:
    await services.redis.eval(_RELEASE_LUA, 1, rediskeys.upload_lock(upload_id), token)


# --- appending ------------------------------------------------------------------------


class _File:
    """The upload's file, opened for one append (executor calls only)."""

    def __init__(self, path: Path, offset: int, algorithm: str | None) -> None:
        # Created when missing only at offset 0 (a crash between the row and its file):
        # later, a missing or short file means acknowledged bytes are gone, and cutting
        # it to the offset would fill them with zeros.
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | (os.O_CREAT if offset == 0 else 0), 0o600)
        if os.fstat(fd).st_size < offset:
            os.close(fd)
            raise FileNotFoundError(path)
        self.fd = fd
        # Bytes past the recorded offset were never acknowledged (a server killed mid-chunk).
        os.ftruncate(fd, offset)
        os.lseek(fd, offset, os.SEEK_SET)
        self.hash = CHECKSUM_ALGORITHMS[algorithm]() if algorithm else None

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        if self.hash is not None:
            self.hash.update(data)

    def cut(self, offset: int) -> None:
        os.ftruncate(self.fd, offset)

    def sync_and_close(self, keep_to: int | None) -> None:
        """Cut back to `keep_to` when given, fsync, close."""
        try:
            if keep_to is not None:
                os.ftruncate(self.fd, keep_to)
            os.fsync(self.fd)
        finally:
            os.close(self.fd)


@dataclass(frozen=True)
class _Received:
    """A whole upload for lifecycle (its ReceivedFile)."""

    temp_path: Path
    size: int
    filename: str


class _FinishOnce:
    """lifecycle.StoreHooks of one upload: lock its row, refuse a second video, record the first."""

    def __init__(self, upload: Upload) -> None:
        self.upload = upload

    async def claim(self, cur: Any) -> None:
        row = await rows.get_upload(cur, self.upload.id, self.upload.owner_id, lock=True)
        if row is None:
            raise ProtocolError(404, "Not found.")
        if row.finished:
            raise lifecycle.AlreadyStored(row.video_id)

    async def bind(self, cur: Any, video_id: int) -> None:
        await rows.mark_finished(cur, self.upload.id, video_id)


async def finish(config: Config, services: Services, upload: Upload, is_admin: bool) -> Upload:
    """A whole upload becomes a video (once: a second call returns the first's). Refused
    as the multipart upload would be (not a video, over the caps: 400, the upload and its
    file removed); over a quota: 413/429, the upload kept to finish later."""
    assert upload.length is not None and upload.offset == upload.length
    path = media.resumable_path(config.media_dir, upload.id)
    received = _Received(path, upload.length, upload.filename)
    try:
        await lifecycle.create_from_resumable(
            config, services, received, upload.fields, upload.owner_id, is_admin, _FinishOnce(upload)
        )
    except lifecycle.AlreadyStored:
        pass
    except (lifecycle.UploadRejected, lifecycle.InvalidUpload) as exc:
        async with cursor(services.pool) as cur:
            await rows.delete_upload(cur, upload.id, upload.owner_id)
        await asyncio.get_running_loop().run_in_executor(services.file_executor, _unlink, path)
        log.info("resumable upload %s refused: %s", upload.id, exc)
        if isinstance(exc, lifecycle.InvalidUpload):
            raise
        raise ProtocolError(400, str(exc)) from None
    except lifecycle.QuotaExceeded as exc:
        raise ProtocolError(exc.status, exc.detail) from None
    except StorageError as exc:
        # The bucket did not take the source (s3store aborted its multipart upload): no
        # video was made, the upload keeps every byte and finishes on a later PATCH.
        log.warning("resumable upload %s: not stored, the media store failed: %s", upload.id, exc)
        raise ProtocolError(
            503,
            "The media store is unreachable right now: the upload is kept whole; "
            "send an empty PATCH at its offset shortly to finish it.",
            {"Retry-After": str(outage.RETRY_AFTER_SECONDS)},
        ) from None
    async with cursor(services.pool) as cur:
        done = await rows.get_upload(cur, upload.id, upload.owner_id)
    if done is None:
        raise ProtocolError(404, "Not found.")
    log.info("resumable upload %s finished: video %s", upload.id, done.video_id)
    return done


class Appender:
    """One request appending to an upload (a PATCH, or a creation with data): `begin`
    checks and locks, `feed` each chunk, then `end` (the body is whole) or `abort` (the
    connection went away: what arrived is kept, unless a checksum was asked for)."""

    def __init__(
        self,
        config: Config,
        services: Services,
        protocol: Protocol,
        upload: Upload,
        token: str,
        complete: bool | None,
        checksum: tuple[str, bytes] | None,
    ) -> None:
        self.config = config
        self.services = services
        self.protocol = protocol
        self.upload = upload
        self.start = upload.offset
        self.received = 0
        self.complete = complete
        self.checksum = checksum
        self._token = token
        self._file: _File | None = None
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._renewed = time.monotonic()
        self._io = asyncio.Lock()  # one file operation at a time (abort may come mid-write)
        self._closed = False

    @property
    def limit(self) -> int:
        """The most bytes this upload can hold."""
        return self.upload.length if self.upload.length is not None else self.config.max_upload_bytes

    @classmethod
    async def begin(
        cls, config: Config, services: Services, protocol: Protocol, upload: Upload, headers: Any, *, creating: bool
    ) -> Appender:
        check_content_type(protocol, headers)
        offset = parse_count(headers, "Upload-Offset")
        if offset is None and not creating:
            raise ProtocolError(400, "Upload-Offset is required.")
        if offset is not None and offset != upload.offset:
            raise ProtocolError(
                409,
                f"Upload-Offset {offset} does not match the upload's offset {upload.offset}: ask HEAD and resume there.",
                {**protocol_headers(protocol), "Upload-Offset": str(upload.offset)},
            )
        complete = parse_complete(headers) if protocol.is_ietf else None
        length = parse_count(headers, "Upload-Length") if not creating else None
        if length is not None and upload.length is not None and length != upload.length:
            raise ProtocolError(400, f"Upload-Length {length} differs from the upload's {upload.length}.")
        if length is not None and length > config.max_upload_bytes:
            raise ProtocolError(413, f"File too large: the limit is {config.max_upload_bytes} bytes.")
        if length is not None and upload.length is None:
            if length < upload.offset:
                raise ProtocolError(400, "Upload-Length is below the bytes already received.")
            upload = _with_length(upload, length)
        checksum = parse_checksum(headers)
        declared = headers.get("Content-Length")
        if declared is not None:
            declared = declared.strip()
            if not declared.isascii() or not declared.isdigit():
                raise ProtocolError(400, "Content-Length must be a non-negative integer.")
            limit = upload.length if upload.length is not None else config.max_upload_bytes
            if upload.offset + int(declared) > limit:
                raise ProtocolError(
                    413,
                    f"The body runs past the end of the upload ({limit} bytes)."
                    if upload.length is not None
                    else f"File too large: the limit is {config.max_upload_bytes} bytes.",
                )
        if upload.finished and (declared not in (None, "0") or "Transfer-Encoding" in headers):
            raise ProtocolError(400, "This upload is complete already.", state_headers(protocol, upload))
        token = await _take_lock(services, upload.id)
        appender = cls(config, services, protocol, upload, token, complete, checksum)
        if not upload.finished:
            try:
                path = media.resumable_path(config.media_dir, upload.id)
                loop = asyncio.get_running_loop()
                appender._file = await loop.run_in_executor(
                    services.file_executor, _File, path, upload.offset, checksum[0] if checksum else None
                )
            except FileNotFoundError:
                await _release_lock(services, upload.id, token)
                log.error("resumable upload %s: its file lost bytes it had acknowledged", upload.id)
                raise ProtocolError(410, "The bytes of this upload are gone: start a new one.") from None
            except BaseException:
                await _release_lock(services, upload.id, token)
                raise
        return appender

    async def feed(self, chunk: bytes) -> None:
        if self._closed or not chunk:
            return
        if self.upload.finished or self.start + self.received + len(chunk) > self.limit:
            raise ProtocolError(
                413,
                f"The body runs past the end of the upload ({self.limit} bytes)."
                if self.upload.length is not None
                else f"File too large: the limit is {self.config.max_upload_bytes} bytes.",
            )
        self.received += len(chunk)
        self._buffer.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= WRITE_BATCH_BYTES:
            await self._flush()
        if time.monotonic() - self._renewed >= LOCK_RENEW_SECONDS:
            self._renewed = time.monotonic()
            await self.services.redis.eval(
                _RENEW_LUA, 1, rediskeys.upload_lock(self.upload.id), self._token, LOCK_LEASE_MS
            )

    async def _flush(self) -> None:
        if not self._buffer or self._file is None:
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        async with self._io:
            if self._file is not None:
                await asyncio.get_running_loop().run_in_executor(self.services.file_executor, self._file.write, data)

    async def _close_file(self, keep_to: int | None) -> None:
        async with self._io:
            handle, self._file = self._file, None
            if handle is not None:
                await asyncio.get_running_loop().run_in_executor(
                    self.services.file_executor, handle.sync_and_close, keep_to
                )

    async def _record(self, offset: int, length: int | None) -> Upload:
        async with cursor(self.services.pool) as cur:
            updated = await rows.record_progress(cur, self.upload.id, offset, length, self.config.upload_expiry_seconds)
        if updated is None:  # terminated or swept meanwhile
            raise ProtocolError(404, "Not found.")
        return updated

    async def end(self, is_admin: bool) -> Upload:
        """The body is whole: checksum, fsync, record the offset; the last byte finishes it."""
        try:
            if self.upload.finished:
                return self.upload
            await self._flush()
            offset = self.start + self.received
            if self.checksum is not None:
                assert self._file is not None and self._file.hash is not None
                if self._file.hash.digest() != self.checksum[1]:
                    await self._close_file(keep_to=self.start)
                    raise ProtocolError(
                        CHECKSUM_MISMATCH,
                        "Checksum mismatch: the chunk was discarded, the offset did not move.",
                        {**protocol_headers(self.protocol), "Upload-Offset": str(self.start)},
                    )
            await self._close_file(keep_to=None)
            length = self.upload.length
            if self.complete is True and length is None:
                length = offset  # the draft: this request ends the upload, so its length is known now
            upload = await self._record(offset, length)
            if self.complete is True and upload.length != offset:
                raise ProtocolError(
                    400,
                    f"Upload-Complete says the upload ends at {offset} bytes but its length is {upload.length}.",
                    state_headers(self.protocol, upload),
                )
            if is_complete(upload):
                upload = await finish(self.config, self.services, upload, is_admin)
            return upload
        finally:
            await self.close()

    async def abort(self) -> None:
        """The connection went away mid-body: keep what arrived (fsynced, then recorded),
        unless a checksum was asked for, which only the whole body could match."""
        if self._closed:
            return
        try:
            if self.checksum is not None or self.upload.finished:
                await self._close_file(keep_to=self.start)
                return
            await self._flush()
            await self._close_file(keep_to=None)
            if self.received:
                await self._record(self.start + self.received, None)
                log.info(
                    "resumable upload %s: connection lost, kept %s bytes (offset %s)",
                    self.upload.id,
                    self.received,
                    self.start + self.received,
                )
        except ProtocolError:
            pass
        finally:
            await self.close()

    async def discard(self) -> None:
        """The request was refused mid-body: nothing of it is kept."""
        if not self._closed:
            self._buffer.clear()
            await self._close_file(keep_to=self.start)
            await self.close()

    async def close(self) -> None:
        """Release the file and the lock (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._close_file(keep_to=None)
        finally:
            await _release_lock(self.services, self.upload.id, self._token)


def _with_length(upload: Upload, length: int) -> Upload:
    return replace(upload, length=length)


# --- the sweeper's part ---------------------------------------------------------------


def _list_files(media_dir: str) -> list[str]:
    folder = media.resumable_dir(media_dir)
    if not folder.is_dir():
        return []
    return [path.name for path in folder.iterdir()]


def _remove(media_dir: str, names: list[str]) -> None:
    folder = media.resumable_dir(media_dir)
    for name in names:
        (folder / name).unlink(missing_ok=True)


async def sweep(config: Config, services: Services) -> list[str]:
    """Expired uploads (rows and files), files of finished uploads (their video has its
    own name for them) and files without a row (a terminated upload, a deleted user).
    Files are listed before the rows are read: a row created after the read has no file
    in the listing. Returns the names of the files removed."""
    loop = asyncio.get_running_loop()
    listed = await loop.run_in_executor(services.file_executor, _list_files, config.media_dir)
    async with cursor(services.pool) as cur:
        expired = set(await rows.delete_expired(cur))
        known = await rows.existing(cur, [name for name in listed if media.is_upload_id(name)])
    doomed = [name for name in listed if name in expired or known.get(name, True) is True]
    doomed += [name for name in expired if name not in listed]
    if doomed:
        await loop.run_in_executor(services.file_executor, _remove, config.media_dir, doomed)
    for name in sorted(expired):
        log.warning("sweep: resumable upload %s expired (no progress for %ss)", name, config.upload_expiry_seconds)
    return doomed
