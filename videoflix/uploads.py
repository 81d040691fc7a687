"""Receiving a multipart upload as it streams in: the file goes to disk in
executor-sized batches (never whole in memory, never a blocking write on the
loop); the small text fields are capped."""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
from pathlib import Path
from typing import Mapping

from streaming_form_data import StreamingFormDataParser
from streaming_form_data.parser import ParseFailedException
from streaming_form_data.targets import BaseTarget, ValueTarget
from streaming_form_data.validators import MaxSizeValidator, ValidationError

from videoflix import media

# Bytes gathered before one write to disk on the executor: large enough that
# thread hand-offs are rare, small enough to bound memory per upload.
WRITE_BATCH_BYTES = 1024 * 1024
# Limits of the text fields (characters after decoding; bytes while parsing).
FIELD_LIMITS = {"title": 200, "description": 5000, "category": 100, "visibility": 16}


class UploadError(Exception):
    """The multipart body is malformed or a field is over its limit."""


class DiskFileTarget(BaseTarget):
    """streaming-form-data target that appends to a file through the executor."""

    def __init__(self, path: Path, executor: concurrent.futures.Executor) -> None:
        super().__init__()
        self.path = path
        self.size = 0
        self._executor = executor
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._handle = None
        self.received = False  # the part has started
        self.complete = False  # ... and ended, its bytes written and the file closed

    async def on_start_async(self) -> None:
        self.received = True
        loop = asyncio.get_running_loop()
        self._handle = await loop.run_in_executor(self._executor, open, self.path, "wb")

    async def on_data_received_async(self, chunk: bytes) -> None:
        self._buffer.append(chunk)
        self._buffered += len(chunk)
        self.size += len(chunk)
        if self._buffered >= WRITE_BATCH_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        await asyncio.get_running_loop().run_in_executor(self._executor, self._handle.write, data)

    async def on_finish_async(self) -> None:
        await self._flush()
        handle, self._handle = self._handle, None
        await asyncio.get_running_loop().run_in_executor(self._executor, handle.close)
        self.complete = True

    def close_quietly(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class UploadReceiver:
    """One upload in flight: parser, targets, and the temporary file."""

    def __init__(self, headers: Mapping[str, str], media_dir: str,
                 executor: concurrent.futures.Executor) -> None:
        try:
            self._parser = StreamingFormDataParser(headers=headers)
        except ParseFailedException:
            raise UploadError("Expected a multipart/form-data body.") from None
        incoming = media.incoming_dir(media_dir)
        incoming.mkdir(parents=True, exist_ok=True)
        self.temp_path = incoming / f"{secrets.token_hex(16)}.part"
        self.file = DiskFileTarget(self.temp_path, executor)
        self._parser.register("file", self.file)
        self._fields = {name: ValueTarget(validator=MaxSizeValidator(limit * 4))
                        for name, limit in FIELD_LIMITS.items()}
        for name, target in self._fields.items():
            self._parser.register(name, target)
        self.received_bytes = 0

    async def feed(self, chunk: bytes) -> None:
        self.received_bytes += len(chunk)
        try:
            await self._parser.adata_received(chunk)
        except ValidationError:
            raise UploadError("A form field is too long.") from None
        except ParseFailedException:
            raise UploadError("Malformed multipart/form-data body.") from None

    def fields(self) -> dict[str, str]:
        values = {}
        for name, target in self._fields.items():
            try:
                values[name] = target.value.decode("utf-8")
            except UnicodeDecodeError:
                raise UploadError(f"The field '{name}' is not valid UTF-8.") from None
        return values

    @property
    def has_file(self) -> bool:
        """A non-empty file part arrived whole."""
        return self.file.received and self.file.complete and self.file.size > 0

    @property
    def size(self) -> int:
        return self.file.size

    @property
    def filename(self) -> str:
        return os.path.basename(self.file.multipart_filename or "")[:255]

    def discard(self) -> None:
        """Remove the temporary file (called on any failure or disconnect)."""
        self.file.close_quietly()
        self.temp_path.unlink(missing_ok=True)
