"""Receiving a multipart upload as it streams in: the file goes to disk in
executor-sized batches (never whole in memory, never a blocking write on the
loop); the small text fields are capped, every field comes at most once, and the
number of parts is bounded (CWE-400, CWE-770)."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import os
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

from streaming_form_data import StreamingFormDataParser
from streaming_form_data.parser import ParseFailedException
from streaming_form_data.targets import BaseTarget, NullTarget, ValueTarget
from streaming_form_data.validators import MaxSizeValidator, ValidationError

from videoflix.platform import media
from videoflix.platform.services import Services

# Bytes gathered before one write to disk on the executor: large enough that
# thread hand-offs are rare, small enough to bound memory per upload.
WRITE_BATCH_BYTES = 1024 * 1024
# While body bytes keep coming, the .part file's mtime is renewed at least this often
# (by the writes, else by touching it): that mtime is how any process (a worker's
# sweeper on a shared media directory, too) tells an upload still being received from
# an abandoned one. A trickle (50 bytes every 5 s, which the multipart parser may hold
# back for a long time) keeps it as fresh as a fast upload does.
LIVENESS_TOUCH_SECONDS = 1.0
# Limits of the text fields (characters after decoding; bytes while parsing).
FIELD_LIMITS = {"title": 200, "description": 5000, "category": 100, "visibility": 16}
# Parts of any name in one body: the known fields, the file, and a few a form may add
# (a CSRF token, a submit button). Unknown parts are read and dropped, never stored.
MAX_PARTS = 12


class UploadsInFlight(collections.Counter[int]):
    """Uploads in flight per user id in this process (one server process holds every
    upload it receives): `services.state(UploadsInFlight)`."""


def take_upload_slot(services: Services, user_id: int, limit: int) -> bool:
    """Count one more upload of `user_id`, unless `limit` are already in flight."""
    counts = services.state(UploadsInFlight)
    if counts[user_id] >= limit:
        return False
    counts[user_id] += 1
    return True


def release_upload_slot(services: Services, user_id: int) -> None:
    counts = services.state(UploadsInFlight)
    if counts[user_id] > 0:
        counts[user_id] -= 1
        if not counts[user_id]:
            del counts[user_id]


# Names of the .part files this process is receiving right now (sweeper.py keeps them).
_LIVE_PARTS: set[str] = set()


def live_uploads() -> set[str]:
    return set(_LIVE_PARTS)


def forget_upload(temp_path: Path) -> None:
    """The .part file became a source (moved away) or was removed."""
    _LIVE_PARTS.discard(temp_path.name)


class UploadError(Exception):
    """The multipart body is malformed or a field is over its limit."""


class PartCounter:
    """Counts the parts of one body as they start; refuses the one too many."""

    def __init__(self) -> None:
        self.parts = 0

    def start(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise UploadError(f"Too many parts: at most {MAX_PARTS} in one upload.")


class FieldTarget(ValueTarget):
    """A text field: capped, and refused when it comes twice."""

    def __init__(self, name: str, limit: int, counter: PartCounter) -> None:
        # Bytes while parsing: up to 4 per character of UTF-8.
        super().__init__(validator=MaxSizeValidator(limit * 4))
        self.name = name
        self._counter = counter
        self.sent = False

    async def astart(self) -> None:
        self._counter.start()
        if self.sent:
            raise UploadError(f"The field '{self.name}' was sent more than once.")
        self.sent = True
        await super().astart()


class MultipartForm:
    """A multipart body being parsed: one file part (`file`, any target taking the
    part counter), capped text fields, and parts of other names counted and dropped.
    Both uploads (videos, subtitles) are one of these."""

    def __init__(
        self,
        headers: Mapping[str, str],
        field_limits: Mapping[str, int],
        make_file: Callable[[PartCounter], BaseTarget],
    ) -> None:
        try:
            self._parser = StreamingFormDataParser(headers=headers)
        except ParseFailedException:
            raise UploadError("Expected a multipart/form-data body.") from None
        counter = PartCounter()
        self.file = make_file(counter)
        self._parser.register("file", self.file)
        self._fields = {name: FieldTarget(name, limit, counter) for name, limit in field_limits.items()}
        for name, target in self._fields.items():
            self._parser.register(name, target)
        # Registered last: known names match exactly first.
        self._parser.register("*", OtherPartTarget(counter), matches=lambda *names: True)
        self.received_bytes = 0

    async def feed(self, chunk: bytes) -> None:
        self.received_bytes += len(chunk)
        try:
            await self._parser.adata_received(chunk)
        except ValidationError:
            raise UploadError("A form field is too long.") from None
        except ParseFailedException:
            raise UploadError("Malformed multipart/form-data body.") from None

    def decoded_fields(self, only_sent: bool) -> dict[str, str]:
        """The text fields as str (UploadError for invalid UTF-8); fields not sent
        are "" or, with only_sent, left out."""
        values = {}
        for name, target in self._fields.items():
            if only_sent and not target.sent:
                continue
            try:
                values[name] = target.value.decode("utf-8")
            except UnicodeDecodeError:
                raise UploadError(f"The field '{name}' is not valid UTF-8.") from None
        return values

    @property
    def filename(self) -> str:
        return os.path.basename(self.file.multipart_filename or "")[:255]


class OtherPartTarget(NullTarget):
    """Any part of another name: counted, its bytes dropped."""

    def __init__(self, counter: PartCounter) -> None:
        super().__init__()
        self._counter = counter

    async def astart(self) -> None:
        self._counter.start()
        await super().astart()


def _open_for_writing(path: Path) -> BinaryIO:
    return open(path, "wb")


def _append(handle: BinaryIO, data: bytes) -> None:
    """Write `data` through to the file (executor): past Python's buffer, so the
    file's size and mtime show it (the liveness the sweepers read)."""
    handle.write(data)
    handle.flush()


class DiskFileTarget(BaseTarget):
    """streaming-form-data target that appends to a file through the executor."""

    def __init__(self, path: Path, executor: concurrent.futures.Executor, counter: PartCounter | None = None) -> None:
        super().__init__()
        self._counter = counter or PartCounter()
        self.path = path
        self.size = 0
        self._executor = executor
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._handle: BinaryIO | None = None
        self._written_at = time.monotonic()
        self.received = False  # the part has started
        self.complete = False  # ... and ended, its bytes written and the file closed

    async def astart(self) -> None:
        self._counter.start()
        if self.received:
            raise UploadError("Only one file per upload.")
        await super().astart()

    async def on_start_async(self) -> None:
        self.received = True
        loop = asyncio.get_running_loop()
        self._handle = await loop.run_in_executor(self._executor, _open_for_writing, self.path)

    async def on_data_received_async(self, chunk: bytes) -> None:
        self._buffer.append(chunk)
        self._buffered += len(chunk)
        self.size += len(chunk)
        if self._buffered >= WRITE_BATCH_BYTES:
            await self._flush()

    async def keep_alive(self) -> None:
        """Body bytes arrived (maybe not yet for this part): renew the file's mtime if
        it is LIVENESS_TOUCH_SECONDS old, writing what is buffered or touching it."""
        if self._handle is None or time.monotonic() - self._written_at < LIVENESS_TOUCH_SECONDS:
            return
        if self._buffer:
            await self._flush()
        else:
            self._written_at = time.monotonic()
            await asyncio.get_running_loop().run_in_executor(self._executor, os.utime, self.path)

    async def _flush(self) -> None:
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        self._written_at = time.monotonic()
        assert self._handle is not None  # (opened when the part started)
        await asyncio.get_running_loop().run_in_executor(self._executor, _append, self._handle, data)

    async def on_finish_async(self) -> None:
        await self._flush()
        handle, self._handle = self._handle, None
        assert handle is not None  # (opened when the part started)
        await asyncio.get_running_loop().run_in_executor(self._executor, handle.close)
        self.complete = True

    def close_quietly(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class UploadReceiver(MultipartForm):
    """One video upload in flight: the form, and the temporary file it streams into."""

    file: DiskFileTarget

    def __init__(self, headers: Mapping[str, str], media_dir: str, executor: concurrent.futures.Executor) -> None:
        incoming = media.incoming_dir(media_dir)
        self.temp_path = incoming / f"{secrets.token_hex(16)}.part"
        super().__init__(headers, FIELD_LIMITS, lambda counter: DiskFileTarget(self.temp_path, executor, counter))
        incoming.mkdir(parents=True, exist_ok=True)
        _LIVE_PARTS.add(self.temp_path.name)

    def fields(self) -> dict[str, str]:
        return self.decoded_fields(only_sent=False)

    async def feed(self, chunk: bytes) -> None:
        await super().feed(chunk)
        await self.file.keep_alive()

    @property
    def has_file(self) -> bool:
        """A non-empty file part arrived whole."""
        return self.file.received and self.file.complete and self.file.size > 0

    @property
    def size(self) -> int:
        return self.file.size

    def discard(self) -> None:
        """Remove the temporary file (called on any failure or disconnect)."""
        self.file.close_quietly()
        self.temp_path.unlink(missing_ok=True)
        _LIVE_PARTS.discard(self.temp_path.name)


# --- subtitle uploads (API.md §6): small, so held in memory, capped --------------

# Text fields of a subtitle upload (characters after decoding).
SUBTITLE_FIELD_LIMITS = {"language": 64, "label": 256}


class FileTooLarge(UploadError):
    """The file part is over its cap (413)."""


class MemoryFileTarget(BaseTarget):
    """The one file part, kept in memory up to `max_bytes` (a subtitle file)."""

    def __init__(self, max_bytes: int, counter: PartCounter) -> None:
        super().__init__()
        self.max_bytes = max_bytes
        self._counter = counter
        self._chunks: list[bytes] = []
        self.size = 0
        self.received = False
        self.complete = False

    async def astart(self) -> None:
        self._counter.start()
        if self.received:
            raise UploadError("Only one file per upload.")
        self.received = True
        await super().astart()

    async def on_data_received_async(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise FileTooLarge(f"File too large: the limit is {self.max_bytes} bytes.")
        self._chunks.append(chunk)

    async def on_finish_async(self) -> None:
        self.complete = True

    @property
    def value(self) -> bytes:
        return b"".join(self._chunks)


class SubtitleUploadReceiver(MultipartForm):
    """A subtitle upload in flight: `file` (in memory, capped), `language`, `label`."""

    file: MemoryFileTarget

    def __init__(self, headers: Mapping[str, str], max_file_bytes: int) -> None:
        super().__init__(headers, SUBTITLE_FIELD_LIMITS, lambda counter: MemoryFileTarget(max_file_bytes, counter))

    def fields(self) -> dict[str, str]:
        """The text fields sent (absent ones are missing from the dict)."""
        return self.decoded_fields(only_sent=True)

    @property
    def has_file(self) -> bool:
        return self.file.received and self.file.complete
