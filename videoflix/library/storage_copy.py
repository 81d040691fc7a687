"""`videoflix storage copy`: an existing local library (MEDIA_DIR) copied into the bucket
VIDEOFLIX_STORAGE names, so that moving to object storage is this command and then one
configuration change (README, Object storage).

- Only the library's own names are copied, each under its key (platform/storage.media_key:
  `sources/12`, `12/v3/720p/seg_00001.ts`, `12/poster/poster.jpg`, `12/subtitles/en.vtt`):
  what `library_name` accepts, built from platform/media.py's names and patterns. Scratch
  (.incoming, .resumable, .work) is passed over; any other name (a temporary file, the
  wave-1 layout) is skipped and listed; a symlink is refused (never followed).
- Resumable: one listing of the bucket first; an object already there with the same size
  and checksum is skipped, so an interrupted copy is simply run again. A same-sized object
  with another checksum is copied again (and reported).
- Verified: every object goes up with Content-MD5 (the store checks each request's bytes)
  and its MD5 in its metadata (`x-amz-meta-md5`); after the upload its size and ETag are
  read back and compared with what was computed locally: the MD5 for a single PutObject,
  S3's multipart ETag (the MD5 of the parts' MD5s, "-<parts>") for a multipart upload. A
  store whose ETags are not MD5s (SSE-KMS) is checked on the metadata instead.
- Ordered: each version's ladder.json goes after every other object of that version (a
  version is published when its ladder.json exists in the store).

Blocking (a command, not the server): botocore's client from threads, parts in parallel.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import botocore.exceptions
import botocore.session

from videoflix.platform import media
from videoflix.platform.config import Config
from videoflix.platform.s3store import MULTIPART_THRESHOLD, PART_CONCURRENCY, S3Settings, part_size
from videoflix.platform.storage import StorageError, content_type

log = logging.getLogger(__name__)

# Objects copied at once (each multipart one sends PART_CONCURRENCY parts at a time).
DEFAULT_THREADS = 4
# Read size while hashing a local file.
HASH_CHUNK_BYTES = 1024 * 1024
METADATA_MD5 = "md5"
# Top-level folders of MEDIA_DIR that are one host's scratch, never the library.
SCRATCH_DIRS = frozenset({media.incoming_dir("").name, media.resumable_dir("").name, media.work_dir("").name})

_ID = re.compile(media.VIDEO_ID_PATTERN)
_VERSION = re.compile(media.VERSION_PATTERN)
_TRACK = re.compile(r"[0-9]{1,5}" + re.escape(media.SUBTITLE_SUFFIX))
_CUT = re.compile(r"([A-Za-z0-9-]+)\.[0-9]{1,9}" + re.escape(media.SUBTITLE_CUT_SUFFIX))
_IMAGES = (media.POSTER_NAME, media.THUMBNAIL_NAME)


def _subtitle_name(name: str) -> bool:
    if name.endswith(media.SUBTITLE_SUFFIX):
        try:
            return media.subtitle_file_name(name.removesuffix(media.SUBTITLE_SUFFIX)) == name
        except ValueError:
            return False
    match = _CUT.fullmatch(name)
    if match is None:
        return False
    try:
        return media.is_subtitle_cut_of(match.group(1), name)
    except ValueError:
        return False


def _version_file(parts: list[str]) -> bool:
    """A name below media/<id>/v<N>/ that a run writes and that stays (media.py)."""
    if len(parts) == 1:
        return parts[0] in (media.LADDER_NAME, *_IMAGES)
    if len(parts) != 2:
        return False
    folder, name = parts
    if folder in media.RESOLUTIONS:
        return name in (media.MEDIA_PLAYLIST_NAME, media.IFRAME_PLAYLIST_NAME) or media.is_segment_name(name)
    if folder == media.THUMBS_DIR:
        return media.is_thumbs_file_name(name)
    if folder == media.TRACKS_DIR_NAME:
        return _TRACK.fullmatch(name) is not None
    return False


def library_name(key: str) -> bool:
    """Whether `key` (a path relative to MEDIA_DIR, "/"-separated) is one of the library's
    names that platform/media.py makes (pure)."""
    parts = key.split("/")
    if len(parts) == 2 and parts[0] == "sources":
        return _ID.fullmatch(parts[1]) is not None
    if len(parts) < 3 or _ID.fullmatch(parts[0]) is None:
        return False
    folder = parts[1]
    if folder == media.CUSTOM_POSTER_DIR:
        return len(parts) == 3 and parts[2] in _IMAGES
    if folder == media.SUBTITLES_DIR_NAME:
        return len(parts) == 3 and _subtitle_name(parts[2])
    if _VERSION.fullmatch(folder):
        return _version_file(parts[2:])
    return False


@dataclass(frozen=True)
class LocalObject:
    key: str  # relative to MEDIA_DIR
    path: Path
    size: int


@dataclass
class Library:
    """What a walk of MEDIA_DIR found: the objects to copy, in order, and what it will not copy."""

    objects: list[LocalObject] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why)
    refused: list[tuple[str, str]] = field(default_factory=list)
    scratch: int = 0


def _order(key: str) -> tuple[int, str, int, str]:
    """Sources first, then each video's objects with each version's ladder.json last."""
    parts = key.split("/")
    if parts[0] == "sources":
        return (0, "", 0, key)
    return (1, f"{int(parts[0]):020d}", 1 if parts[-1] == media.LADDER_NAME else 0, key)


def scan_library(media_dir: str) -> Library:
    """Walk MEDIA_DIR (symlinks never followed) and sort what is there."""
    library = Library()
    root = Path(media_dir)
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        relative = here.relative_to(root).as_posix()
        if relative == ".":
            relative = ""
            library.scratch += sum(1 for name in dirs if name in SCRATCH_DIRS)
            dirs[:] = [name for name in dirs if name not in SCRATCH_DIRS]
        for name in list(dirs):
            if (here / name).is_symlink():
                library.refused.append((f"{relative}/{name}".lstrip("/"), "a symlink (never followed)"))
                dirs.remove(name)
        dirs.sort()
        for name in sorted(files):
            key = f"{relative}/{name}".lstrip("/")
            try:
                info = os.lstat(here / name)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(info.st_mode):
                library.refused.append((key, "a symlink (never followed)"))
            elif not stat.S_ISREG(info.st_mode):
                library.refused.append((key, "not a regular file"))
            elif not library_name(key):
                parts = key.split("/")
                wave1 = len(parts) >= 2 and _ID.fullmatch(parts[0]) and media.is_wave1_name(parts[1])
                library.skipped.append(
                    (
                        key,
                        "the wave-1 layout: start `videoflix serve` once on the local store to move it"
                        if wave1
                        else "not a library name",
                    )
                )
            else:
                library.objects.append(LocalObject(key, here / name, info.st_size))
    library.objects.sort(key=lambda item: _order(item.key))
    return library


@dataclass(frozen=True)
class Digest:
    md5: str  # hex MD5 of the whole file
    etag: str  # the ETag S3 gives it as we upload it (quoted)
    part_bytes: int  # 0: one PutObject


def digest_file(path: Path, size: int) -> Digest:
    """The file's MD5, and the ETag it gets from our upload: the MD5 for one PutObject,
    for a multipart upload the MD5 of the parts' MD5s and "-<parts>" (blocking)."""
    whole = hashlib.md5(usedforsecurity=False)
    if size < MULTIPART_THRESHOLD:
        with open(path, "rb") as handle:
            while block := handle.read(HASH_CHUNK_BYTES):
                whole.update(block)
        return Digest(whole.hexdigest(), f'"{whole.hexdigest()}"', 0)
    chunk = part_size(size)
    parts: list[bytes] = []
    with open(path, "rb") as handle:
        while True:
            part = hashlib.md5(usedforsecurity=False)
            left = chunk
            while left:
                block = handle.read(min(HASH_CHUNK_BYTES, left))
                if not block:
                    break
                part.update(block)
                whole.update(block)
                left -= len(block)
            if left == chunk:
                break
            parts.append(part.digest())
            if left:
                break
    combined = hashlib.md5(b"".join(parts), usedforsecurity=False).hexdigest()
    return Digest(whole.hexdigest(), f'"{combined}-{len(parts)}"', chunk)


class CopyFailed(Exception):
    """An object could not be copied or did not verify; str() says which and why."""


@dataclass
class CopyReport:
    copied: int = 0
    skipped_present: int = 0
    recopied: list[str] = field(default_factory=list)  # same size, another checksum: copied again
    bytes_copied: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    library: Library = field(default_factory=Library)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.library.refused


class Copier:
    """Copies one library into one bucket (thread-safe: one botocore client)."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.bucket = settings.location.bucket
        self.prefix = settings.location.prefix
        self.client: Any = botocore.session.get_session().create_client("s3", **settings.client_kwargs())

    def close(self) -> None:
        self.client.close()

    def listing(self) -> dict[str, tuple[int, str]]:
        """{key relative to the prefix: (size, ETag)} of every object under the prefix."""
        found: dict[str, tuple[int, str]] = {}
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", ()):
                    found[item["Key"][len(self.prefix) :]] = (int(item["Size"]), str(item.get("ETag", "")))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise StorageError(f"listing s3://{self.bucket}/{self.prefix}: {exc}") from exc
        return found

    def _metadata_md5(self, key: str) -> str | None:
        answer = self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        value = answer.get("Metadata", {}).get(METADATA_MD5)
        return str(value) if value else None

    def matches(self, item: LocalObject, digest: Digest, present: tuple[int, str] | None) -> bool:
        """The object is in the bucket with this size and checksum."""
        if present is None or present[0] != item.size:
            return False
        if present[1] == digest.etag:
            return True
        return self._metadata_md5(item.key) == digest.md5

    def upload(self, item: LocalObject, digest: Digest) -> None:
        key = self.prefix + item.key
        kind = content_type(item.key)
        metadata = {METADATA_MD5: digest.md5}
        if not digest.part_bytes:
            with open(item.path, "rb") as handle:
                body = handle.read()
            if hashlib.md5(body, usedforsecurity=False).hexdigest() != digest.md5:
                raise CopyFailed(f"{item.key}: changed while it was copied")
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentMD5=base64.b64encode(bytes.fromhex(digest.md5)).decode(),
                ContentType=kind,
                Metadata=metadata,
            )
        else:
            self._multipart(item, key, digest, kind, metadata)
        self.verify(item, digest)

    def _multipart(self, item: LocalObject, key: str, digest: Digest, kind: str, metadata: dict[str, str]) -> None:
        chunk = digest.part_bytes
        count = (item.size + chunk - 1) // chunk
        upload_id = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=kind, Metadata=metadata
        )["UploadId"]

        def send(number: int) -> dict[str, Any]:
            with open(item.path, "rb") as handle:
                handle.seek((number - 1) * chunk)
                body = handle.read(chunk)
            answer = self.client.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ContentMD5=base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode(),
            )
            return {"PartNumber": number, "ETag": answer["ETag"]}

        try:
            with concurrent.futures.ThreadPoolExecutor(PART_CONCURRENCY, thread_name_prefix="copy-part") as threads:
                parts = list(threads.map(send, range(1, count + 1)))
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except Exception as exc:  # the store is down: its lifecycle rule reaps the parts
                log.warning("could not abort the multipart upload of %s: %s", key, exc)
            raise

    def verify(self, item: LocalObject, digest: Digest) -> None:
        """Read the object's size and checksum back: CopyFailed unless they are ours."""
        answer = self.client.head_object(Bucket=self.bucket, Key=self.prefix + item.key)
        size = int(answer["ContentLength"])
        if size != item.size:
            raise CopyFailed(f"{item.key}: the bucket holds {size} bytes, the file has {item.size}")
        if answer.get("ETag") == digest.etag:
            return
        if answer.get("Metadata", {}).get(METADATA_MD5) == digest.md5 and not _md5_shaped(str(answer.get("ETag"))):
            return  # a store whose ETags are not MD5s (SSE-KMS): Content-MD5 was checked per request
        raise CopyFailed(
            f"{item.key}: checksum mismatch after the upload (ETag {answer.get('ETag')}, ours {digest.etag})"
        )


def _md5_shaped(etag: str) -> bool:
    return re.fullmatch(r'"[0-9a-f]{32}(-[0-9]+)?"', etag) is not None


def _video_of(key: str) -> str:
    parts = key.split("/")
    return "sources" if parts[0] == "sources" else parts[0]


def _batches(objects: list[LocalObject]) -> Iterator[tuple[str, list[LocalObject]]]:
    """(label, objects) in copy order: the sources, then per video its objects, then its
    versions' ladder.json files (after every other object of the video)."""
    current: str | None = None
    batch: list[LocalObject] = []
    for item in objects:
        video = _video_of(item.key)
        last = item.key.endswith("/" + media.LADDER_NAME)
        label = f"{video} (ladders)" if last else video
        if label != current and batch:
            yield current or "", batch
            batch = []
        current = label
        batch.append(item)
    if batch:
        yield current or "", batch


def _mib(size: int) -> str:
    return f"{size / 1024**2:.1f} MiB"


def copy_library(
    config: Config,
    settings: S3Settings,
    out: TextIO,
    *,
    threads: int = DEFAULT_THREADS,
    on_object: Callable[[str, str], None] | None = None,
) -> CopyReport:
    """Copy MEDIA_DIR's library into the bucket; progress to `out`, one line per video.
    `on_object(key, outcome)` ("copied", "present", "recopied") after each object, in this
    thread. StorageError when the bucket cannot be listed."""
    report = CopyReport(library=scan_library(config.media_dir))
    library = report.library
    for key, why in library.refused:
        out.write(f"refused  {key}: {why}\n")
    for key, why in library.skipped:
        out.write(f"skipped  {key}: {why}\n")
    total = len(library.objects)
    total_bytes = sum(item.size for item in library.objects)
    out.write(
        f"{total} objects ({_mib(total_bytes)}) from {config.media_dir} to "
        f"s3://{settings.location.bucket}/{settings.location.prefix}\n"
    )
    out.flush()
    copier = Copier(settings)
    pool = concurrent.futures.ThreadPoolExecutor(max(1, threads), thread_name_prefix="copy")
    done = 0
    try:
        present = copier.listing()
        failed_videos: set[str] = set()

        def one(item: LocalObject) -> str:
            digest = digest_file(item.path, item.size)
            there = present.get(item.key)
            if copier.matches(item, digest, there):
                return "present"
            copier.upload(item, digest)
            return "recopied" if there is not None and there[0] == item.size else "copied"

        for label, batch in _batches(library.objects):
            video = label.split(" ")[0]
            if video in failed_videos:
                for item in batch:
                    report.failed.append((item.key, "not copied: another object of its video failed"))
                continue
            futures = {pool.submit(one, item): item for item in batch}
            counts = {"copied": 0, "present": 0, "recopied": 0}
            for future in concurrent.futures.as_completed(futures):
                item = futures[future]
                done += 1
                try:
                    outcome = future.result()
                except (CopyFailed, OSError, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                    report.failed.append((item.key, str(exc)))
                    failed_videos.add(video)
                    out.write(f"FAILED   {item.key}: {exc}\n")
                    continue
                counts[outcome] += 1
                if outcome == "present":
                    report.skipped_present += 1
                else:
                    report.copied += 1
                    report.bytes_copied += item.size
                    if outcome == "recopied":
                        report.recopied.append(item.key)
                        out.write(f"mismatch {item.key}: same size, another checksum in the bucket: copied again\n")
                if on_object is not None:
                    on_object(item.key, outcome)
            out.write(
                f"[{done}/{total}] {label}: {counts['copied'] + counts['recopied']} copied, "
                f"{counts['present']} already there\n"
            )
            out.flush()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        copier.close()
    out.write(
        f"done: {report.copied} copied ({_mib(report.bytes_copied)}), {report.skipped_present} already there, "
        f"{len(report.recopied)} copied again after a checksum mismatch, {len(report.failed)} failed, "
        f"{len(library.refused)} refused, {len(library.skipped)} skipped, "
        f"{library.scratch} scratch folder(s) passed over\n"
    )
    out.flush()
    return report
