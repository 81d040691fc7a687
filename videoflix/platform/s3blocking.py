"""The bucket from a process with no event loop: the transcode pool child and `videoflix
storage copy`'s threads. botocore's synchronous client (the library aiobotocore wraps for
the server's loop, s3store.py), with the same settings, keys and error translation."""

from __future__ import annotations

import concurrent.futures
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session

from videoflix.platform.s3store import (
    DELETE_BATCH,
    MULTIPART_THRESHOLD,
    PART_CONCURRENCY,
    S3Settings,
    part_size,
    store_errors,
    unlink_quietly,
)
from videoflix.platform.storage import STREAM_CHUNK_BYTES, content_type, media_key

log = logging.getLogger(__name__)


class BlockingS3:
    """The bucket from a process with no event loop (the transcode pool child, `videoflix
    storage copy`'s threads): botocore's synchronous client, thread-safe."""

    def __init__(self, settings: S3Settings, media_dir: str) -> None:
        self.settings = settings
        self.media_dir = media_dir
        self.bucket = settings.location.bucket
        self._client: Any = botocore.session.get_session().create_client("s3", **settings.client_kwargs())

    def key(self, path: Path | str) -> str:
        return self.settings.location.prefix + media_key(self.media_dir, path)

    def put_file(self, path: Path | str, local_file: Path | str) -> None:
        """Upload one local file (one PutObject, or multipart with parts in parallel threads)."""
        key = self.key(path)
        size = os.stat(local_file).st_size
        if size < MULTIPART_THRESHOLD:
            self.put_bytes(path, Path(local_file).read_bytes())
            return
        with store_errors(f"PUT {key}", os_errors=False):
            self._multipart(key, Path(local_file), size)

    def put_bytes(self, path: Path | str, data: bytes) -> None:
        key = self.key(path)
        with store_errors(f"PUT {key}", os_errors=False):
            self._client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type(key))

    def _multipart(self, key: str, local_file: Path, size: int) -> None:
        chunk = part_size(size)
        count = (size + chunk - 1) // chunk
        upload_id = self._client.create_multipart_upload(Bucket=self.bucket, Key=key, ContentType=content_type(key))[
            "UploadId"
        ]

        def send(number: int) -> dict[str, Any]:
            with open(local_file, "rb") as handle:
                handle.seek((number - 1) * chunk)
                body = handle.read(chunk)
            answer = self._client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
            )
            return {"PartNumber": number, "ETag": answer["ETag"]}

        try:
            with concurrent.futures.ThreadPoolExecutor(PART_CONCURRENCY, thread_name_prefix="s3-part") as threads:
                parts = list(threads.map(send, range(1, count + 1)))
            self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            try:
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except Exception as abort_exc:
                log.warning("could not abort the multipart upload of %s: %s", key, abort_exc)
            raise

    def get_file(self, path: Path | str, local_file: Path | str) -> bool:
        """Download an object into `local_file` (beside it, then renamed); False when missing."""
        key = self.key(path)
        target = Path(local_file)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            with store_errors(f"GET {key}", os_errors=False):
                answer = self._client.get_object(Bucket=self.bucket, Key=key)
        except FileNotFoundError:
            return False
        try:
            with open(partial, "wb") as handle:
                for block in answer["Body"].iter_chunks(STREAM_CHUNK_BYTES):
                    handle.write(block)
            os.replace(partial, target)
        except BaseException:
            unlink_quietly(partial)
            raise
        return True

    def iter_keys(self, prefix: Path | str) -> Iterator[dict[str, Any]]:
        folder = self.key(prefix).rstrip("/") + "/"
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=folder):
            yield from page.get("Contents", ())

    def head(self, path: Path | str) -> dict[str, Any] | None:
        key = self.key(path)
        try:
            with store_errors(f"HEAD {key}", os_errors=False):
                answer: dict[str, Any] = self._client.head_object(Bucket=self.bucket, Key=key)
        except FileNotFoundError:
            return None
        return answer

    def delete_tree(self, prefix: Path | str) -> int:
        keys = [item["Key"] for item in self.iter_keys(prefix)]
        for start in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": key} for key in keys[start : start + DELETE_BATCH]]
            self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(keys)

    def close(self) -> None:
        self._client.close()
