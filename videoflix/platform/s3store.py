"""Media in an S3-compatible bucket: the server's async store (the pool child's blocking client: s3blocking.py).

Only the plain S3 API is used (SigV4, PutObject, multipart upload, ranged GetObject,
HeadObject, CopyObject, ListObjectsV2, DeleteObjects), with path-style addressing, so AWS S3,
Ceph RGW, MinIO, Garage and SeaweedFS all serve. The async client is aiobotocore (botocore's
own request signing, retries and error model on aiohttp); the pool child, which has no event
loop, uses botocore itself (the same library, synchronous) with a few threads for parts.

Retries: botocore's "standard" mode (MAX_ATTEMPTS attempts, backoff, throttling and 5xx and connection
errors retried); a multipart upload that still fails is aborted, so no part stays billed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import botocore.config
import botocore.exceptions
import botocore.session
from aiobotocore.session import get_session

from videoflix.platform.config import Config
from videoflix.platform.storage import (
    SMALL_OBJECT_BYTES,
    STREAM_CHUNK_BYTES,
    ObjectInfo,
    StorageError,
    StorageLocation,
    content_type,
    media_key,
)

log = logging.getLogger(__name__)

# Multipart: parts of 8 MiB (S3's minimum is 5 MiB, its maximum count 10,000: larger files
# get larger parts), PART_CONCURRENCY in flight, so an upload holds at most about 32 MiB.
PART_BYTES = 8 * 1024 * 1024
MAX_PARTS = 10_000
PART_CONCURRENCY = 4
# The server's own uploads (S3Storage: an upload's source, on the loop) send fewer at once:
# a part in flight is held twice there (its bytes, and the socket's send buffer that
# asyncio copies the unsent rest into), so 2 parts keep an upload near 32 MiB, inside
# the 64 MiB a 2 GiB upload may grow the server by (bench/uploads.py --s3).
SERVER_PART_CONCURRENCY = 2
# Below this a file goes up in one PutObject.
MULTIPART_THRESHOLD = 16 * 1024 * 1024
# A stopped or unreachable store must cost a request seconds, not minutes: three attempts
# (botocore's standard mode backs off between them), each bounded.
CONNECT_TIMEOUT_SECONDS = 3
READ_TIMEOUT_SECONDS = 15
MAX_ATTEMPTS = 3
MAX_POOL_CONNECTIONS = 32
DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys


@dataclass(frozen=True)
class S3Settings:
    """Everything a process needs to reach the bucket (picklable: sent to pool children)."""

    location: StorageLocation
    endpoint: str = ""  # "" = AWS
    region: str = ""
    access_key: str = ""  # "" = botocore's own chain (credentials file, instance role)
    secret_key: str = ""

    def client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "region_name": self.region or "us-east-1",
            "config": botocore.config.Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                read_timeout=READ_TIMEOUT_SECONDS,
                max_pool_connections=MAX_POOL_CONNECTIONS,
                # Checksums only when an operation requires them: some S3-compatible
                # stores refuse the newer default CRC32 trailers.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        }
        if self.endpoint:
            kwargs["endpoint_url"] = self.endpoint
        if self.access_key:
            kwargs["aws_access_key_id"] = self.access_key
            kwargs["aws_secret_access_key"] = self.secret_key
        return kwargs


def s3_settings(config: Config) -> S3Settings:
    """The bucket of an s3:// VIDEOFLIX_STORAGE (ValueError for any other)."""
    location = config.storage_location
    if location.kind != "s3":
        raise ValueError("VIDEOFLIX_STORAGE does not name a bucket")
    return S3Settings(
        location=location,
        endpoint=config.s3_endpoint,
        region=config.s3_region,
        access_key=config.s3_access_key,
        secret_key=config.s3_secret_key,
    )


def part_size(total: int) -> int:
    """The part size for a file of `total` bytes: PART_BYTES, or more to stay under MAX_PARTS."""
    size = PART_BYTES
    while size * MAX_PARTS < total:
        size *= 2
    return size


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _missing(exc: botocore.exceptions.ClientError) -> bool:
    return _code(exc) in ("404", "NoSuchKey", "NotFound")


@contextlib.contextmanager
def store_errors(what: str, os_errors: bool = True) -> Iterator[None]:
    """Calls on the bucket: a missing object (404, NoSuchKey) as FileNotFoundError, every
    other failure of botocore (and, with `os_errors`, of the connection: aiohttp's are
    OSErrors) as StorageError naming `what`."""
    translated: tuple[type[BaseException], ...] = (botocore.exceptions.BotoCoreError,)
    if os_errors:
        translated += (OSError,)
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        if _missing(exc):
            raise FileNotFoundError(what) from None
        raise StorageError(f"{what}: {exc}") from exc
    except FileNotFoundError:
        raise
    except translated as exc:
        raise StorageError(f"{what}: {exc}") from exc


def _mtime(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else 0.0


class S3Storage:
    """The bucket as the server's store (one aiobotocore client per process)."""

    def __init__(self, settings: S3Settings, media_dir: str, executor: concurrent.futures.Executor) -> None:
        self.settings = settings
        self.media_dir = media_dir
        self._executor = executor
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._lock = asyncio.Lock()

    @property
    def is_local(self) -> bool:
        return False

    @property
    def location(self) -> StorageLocation:
        return self.settings.location

    @property
    def bucket(self) -> str:
        return self.settings.location.bucket

    def key(self, path: Path | str) -> str:
        return self.settings.location.prefix + media_key(self.media_dir, path)

    def _folder(self, prefix: Path) -> str:
        return self.key(prefix).rstrip("/") + "/"

    def _relative(self, key: str) -> str:
        return key[len(self.settings.location.prefix) :]

    async def client(self) -> Any:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    session = get_session()
                    self._client = await self._stack.enter_async_context(
                        session.create_client("s3", **self.settings.client_kwargs())
                    )
        return self._client

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    async def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (dev and tests; production buckets are
        made by the operator with their policy)."""
        client = await self.client()
        try:
            await client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise StorageError(f"bucket {self.bucket}: {exc}") from exc
            await client.create_bucket(Bucket=self.bucket)

    async def head(self, path: Path) -> ObjectInfo | None:
        client = await self.client()
        key = self.key(path)
        try:
            with store_errors(f"HEAD {key}"):
                answer = await client.head_object(Bucket=self.bucket, Key=key)
        except FileNotFoundError:
            return None
        return ObjectInfo(
            self._relative(key), int(answer["ContentLength"]), answer["ETag"], _mtime(answer.get("LastModified"))
        )

    async def read_bytes(self, path: Path, limit: int = SMALL_OBJECT_BYTES) -> bytes | None:
        found = await self.read_object(path, limit)
        return None if found is None else found[1]

    async def read_object(self, path: Path, limit: int = SMALL_OBJECT_BYTES) -> tuple[ObjectInfo, bytes] | None:
        client = await self.client()
        key = self.key(path)
        try:
            with store_errors(f"GET {key}"):
                answer = await client.get_object(Bucket=self.bucket, Key=key)
                async with answer["Body"] as body:
                    if int(answer["ContentLength"]) > limit:
                        raise StorageError(f"{key}: larger than {limit} bytes")
                    data: bytes = await body.read()
        except FileNotFoundError:
            return None
        info = ObjectInfo(self._relative(key), len(data), answer["ETag"], _mtime(answer.get("LastModified")))
        return info, data

    async def stream(self, path: Path, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        client = await self.client()
        key = self.key(path)
        byte_range = f"bytes={start}-{'' if end is None else end}"
        try:
            with store_errors(f"GET {key}"):
                answer = await client.get_object(Bucket=self.bucket, Key=key, Range=byte_range)
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, botocore.exceptions.ClientError) and _code(cause) in ("InvalidRange", "416"):
                return
            raise
        async with answer["Body"] as body:
            while chunk := await body.read(STREAM_CHUNK_BYTES):
                yield chunk

    async def write_bytes(self, path: Path, data: bytes) -> None:
        client = await self.client()
        key = self.key(path)
        with store_errors(f"PUT {key}"):
            await client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type(key))

    async def put_file(self, path: Path, local_file: Path, *, move: bool = False) -> None:
        key = self.key(path)
        loop = asyncio.get_running_loop()
        size = (await loop.run_in_executor(self._executor, os.stat, local_file)).st_size
        if size < MULTIPART_THRESHOLD:
            data = await loop.run_in_executor(self._executor, Path(local_file).read_bytes)
            await self.write_bytes(path, data)
        else:
            await self._multipart(key, local_file, size)
        if move:
            await loop.run_in_executor(self._executor, unlink_quietly, local_file)

    async def _multipart(self, key: str, local_file: Path, size: int) -> None:
        client = await self.client()
        loop = asyncio.get_running_loop()
        chunk = part_size(size)
        count = (size + chunk - 1) // chunk
        with store_errors(f"multipart {key}"):
            created = await client.create_multipart_upload(Bucket=self.bucket, Key=key, ContentType=content_type(key))
        upload_id = created["UploadId"]
        etags: dict[int, str] = {}
        slots = asyncio.Semaphore(SERVER_PART_CONCURRENCY)

        def read_part(number: int) -> bytes:
            with open(local_file, "rb") as handle:
                handle.seek((number - 1) * chunk)
                return handle.read(chunk)

        async def send(number: int) -> None:
            async with slots:
                body = await loop.run_in_executor(self._executor, read_part, number)
                answer = await client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
                )
                del body
                etags[number] = answer["ETag"]

        pending: set[asyncio.Task[None]] = set()
        try:
            # A bounded number of tasks at a time: SERVER_PART_CONCURRENCY parts in memory at most.
            for number in range(1, count + 1):
                pending.add(asyncio.ensure_future(send(number)))
                if len(pending) >= SERVER_PART_CONCURRENCY * 2:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()
            parts = [{"PartNumber": n, "ETag": etags[n]} for n in range(1, count + 1)]
            await client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException as exc:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            try:
                await asyncio.shield(client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id))
            except Exception as abort_exc:  # the store is down: its lifecycle rule must reap the parts
                log.warning("could not abort the multipart upload of %s: %s", key, abort_exc)
            if isinstance(exc, (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError)):
                raise StorageError(f"multipart {key}: {exc}") from exc
            raise

    async def get_file(self, path: Path, local_file: Path) -> bool:
        loop = asyncio.get_running_loop()
        local_file.parent.mkdir(parents=True, exist_ok=True)
        partial = local_file.with_name(f".{local_file.name}.{os.getpid()}.part")
        handle = await loop.run_in_executor(self._executor, open, partial, "wb")
        try:
            try:
                async for chunk in self.stream(path):
                    await loop.run_in_executor(self._executor, handle.write, chunk)
            finally:
                await loop.run_in_executor(self._executor, handle.close)
        except FileNotFoundError:
            await loop.run_in_executor(self._executor, unlink_quietly, partial)
            return False
        except BaseException:
            await loop.run_in_executor(self._executor, unlink_quietly, partial)
            raise
        await loop.run_in_executor(self._executor, os.replace, partial, local_file)
        return True

    async def copy(self, src: Path, dst: Path) -> bool:
        client = await self.client()
        source, target = self.key(src), self.key(dst)
        try:
            with store_errors(f"COPY {source} -> {target}"):
                await client.copy_object(
                    Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": source}
                )
        except FileNotFoundError:
            return False
        return True

    async def _list_keys(self, folder: str) -> list[dict[str, Any]]:
        client = await self.client()
        found: list[dict[str, Any]] = []
        with store_errors(f"LIST {folder}"):
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=folder):
                found.extend(page.get("Contents", ()))
        return found

    async def list_tree(self, prefix: Path) -> list[ObjectInfo]:
        return [
            ObjectInfo(
                self._relative(item["Key"]), int(item["Size"]), item.get("ETag", ""), _mtime(item.get("LastModified"))
            )
            for item in await self._list_keys(self._folder(prefix))
        ]

    async def delete(self, path: Path) -> None:
        client = await self.client()
        key = self.key(path)
        with store_errors(f"DELETE {key}"):
            await client.delete_object(Bucket=self.bucket, Key=key)

    async def delete_keys(self, keys: list[str]) -> None:
        """Remove these full keys (as listed), a thousand per request."""
        client = await self.client()
        for start in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": key} for key in keys[start : start + DELETE_BATCH]]
            with store_errors(f"DELETE {len(batch)} objects"):
                answer = await client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if answer.get("Errors"):
                raise StorageError(f"DELETE: {answer['Errors'][0]}")

    async def delete_tree(self, prefix: Path) -> int:
        keys = [item["Key"] for item in await self._list_keys(self._folder(prefix))]
        await self.delete_keys(keys)
        return len(keys)


def unlink_quietly(path: Path) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)
