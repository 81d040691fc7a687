"""The storage seam's contract (platform/storage.py), one table of cases run against both
backends: MEDIA_DIR, and a real SeaweedFS through its S3 gateway (no mock of S3)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import botocore.session
import pytest

from store_helpers import STORAGE_BACKENDS
from videoflix.platform import media
from videoflix.platform.config import Config, ConfigError
from videoflix.platform.s3blocking import BlockingS3
from videoflix.platform.s3store import MULTIPART_THRESHOLD, S3Storage, part_size, s3_settings
from videoflix.platform.storage import StorageError, StorageLocation, media_key


@pytest.fixture(params=STORAGE_BACKENDS)
def storage_backend(request):
    return request.param


@pytest.fixture
def store(services):
    return services.storage


def test_locations_parse_strictly():
    assert StorageLocation.parse("").is_local
    assert StorageLocation.parse("local").is_local
    assert StorageLocation.parse("s3://media-bucket") == StorageLocation("s3", "media-bucket", "")
    assert StorageLocation.parse("s3://media.bucket/a/b/") == StorageLocation("s3", "media.bucket", "a/b/")
    for bad in ("s3://", "s3://UPPER", "s3://ab", "s3://-bucket", "s3://b..x", "s3://bucket/a/../b",
                "s3://bucket/a//b", "s3://bucket?x=1", "http://bucket", "/var/media", "s3://bu_cket"):
        with pytest.raises(ValueError):
            StorageLocation.parse(bad)
    with pytest.raises(ConfigError, match="VIDEOFLIX_STORAGE"):
        Config.from_env({"VIDEOFLIX_STORAGE": "s3://Bad"})
    config = Config.from_env({"VIDEOFLIX_STORAGE": "s3://videos/lib", "VIDEOFLIX_S3_ENDPOINT": "http://s3.local:9000",
                              "AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_REGION": "eu-west-1"})
    settings = s3_settings(config)
    assert (settings.location.bucket, settings.location.prefix, settings.endpoint, settings.region) == (
        "videos", "lib/", "http://s3.local:9000", "eu-west-1")


def test_keys_are_media_names_and_nothing_outside(tmp_path):
    root = str(tmp_path / "media")
    assert media_key(root, media.version_dir(root, 12, 3) / "720p" / "seg_00001.ts") == "12/v3/720p/seg_00001.ts"
    assert media_key(root, media.source_path(root, 12)) == "sources/12"
    for outside in (tmp_path, tmp_path / "media", tmp_path / "elsewhere" / "x", "/etc/passwd",
                    Path(root) / ".." / "x"):
        with pytest.raises(ValueError):
            media_key(root, outside)


def test_part_size_stays_under_the_part_limit():
    assert part_size(1) == 8 * 1024 * 1024
    assert part_size(200 * 1024**3) * 10_000 >= 200 * 1024**3


@pytest.mark.gen_test(timeout=60)
async def test_write_read_head_stream_list_delete(store, config):
    root = Path(config.media_dir)
    segment = media.version_dir(config.media_dir, 7, 2) / "720p" / "seg_00000.ts"
    body = os.urandom(700_000)
    assert await store.head(segment) is None
    assert await store.read_bytes(segment) is None
    await store.write_bytes(segment, body)
    info = await store.head(segment)
    assert info is not None and info.size == len(body) and info.key == "7/v2/720p/seg_00000.ts"
    assert info.etag.startswith('"') and info.etag.endswith('"')
    assert await store.read_bytes(segment) == body
    assert await store.read_object(media.version_dir(config.media_dir, 7, 2) / "nope.ts") is None
    read_info, read_data = await store.read_object(segment)  # bytes and facts of one read
    assert read_data == body and (read_info.size, read_info.etag) == (info.size, info.etag)
    with pytest.raises(StorageError):
        await store.read_object(segment, limit=1000)
    with pytest.raises(StorageError):
        await store.read_bytes(segment, limit=1000)
    assert b"".join([chunk async for chunk in store.stream(segment, 100, 199)]) == body[100:200]
    assert b"".join([chunk async for chunk in store.stream(segment, 699_990)]) == body[699_990:]
    with pytest.raises(FileNotFoundError):
        async for _chunk in store.stream(root / "7" / "v2" / "nope.ts"):
            pass

    await store.write_bytes(media.ladder_path(config.media_dir, 7, 2), b"{}")
    await store.write_bytes(media.ladder_path(config.media_dir, 7, 3), b"{}")
    await store.write_bytes(media.ladder_path(config.media_dir, 70, 1), b"{}")  # "7" is no prefix of "70"
    listed = await store.list_tree(media.version_dir(config.media_dir, 7, 2))
    assert [item.key for item in listed] == ["7/v2/720p/seg_00000.ts", "7/v2/ladder.json"]
    assert [item.key for item in await store.list_tree(media.video_dir(config.media_dir, 7))] == [
        "7/v2/720p/seg_00000.ts", "7/v2/ladder.json", "7/v3/ladder.json"]

    assert await store.copy(segment, media.version_dir(config.media_dir, 7, 3) / "720p" / "seg_00000.ts")
    assert await store.copy(root / "7" / "missing", root / "7" / "other") is False
    assert await store.delete_tree(media.video_dir(config.media_dir, 7)) == 4
    assert await store.list_tree(media.video_dir(config.media_dir, 7)) == []
    assert [item.key for item in await store.list_tree(media.video_dir(config.media_dir, 70))] == ["70/v1/ladder.json"]
    await store.delete(media.ladder_path(config.media_dir, 70, 1))
    await store.delete(media.ladder_path(config.media_dir, 70, 1))  # gone already: no error
    assert await store.head(media.ladder_path(config.media_dir, 70, 1)) is None


@pytest.mark.gen_test(timeout=120)
async def test_put_and_get_large_files_whole(store, config, tmp_path):
    """Above the multipart threshold: parts in parallel, the object whole and equal."""
    local = tmp_path / "upload.bin"
    size = MULTIPART_THRESHOLD + 3 * 1024 * 1024 + 17
    block = os.urandom(1024 * 1024)
    with open(local, "wb") as handle:
        for _ in range(size // len(block)):
            handle.write(block)
        handle.write(block[: size % len(block)])
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    source = media.source_path(config.media_dir, 5)
    await store.put_file(source, local)
    assert local.exists()
    assert (await store.head(source)).size == size
    back = tmp_path / "back" / "5"
    assert await store.get_file(source, back)
    assert hashlib.sha256(back.read_bytes()).hexdigest() == digest
    assert await store.get_file(media.source_path(config.media_dir, 6), tmp_path / "none") is False
    assert not (tmp_path / "none").exists()
    await store.put_file(media.source_path(config.media_dir, 8), local, move=True)
    assert not local.exists()
    assert (await store.head(media.source_path(config.media_dir, 8))).size == size


@pytest.mark.parametrize("storage_backend", ["s3"])  # multipart is S3's
@pytest.mark.gen_test(timeout=120)
async def test_failed_multipart_upload_leaves_no_parts(services, config, tmp_path, storage_backend, monkeypatch):
    """A file that cannot be read whole mid-upload: the upload is aborted, no object and
    no multipart upload remains in the bucket."""
    store = services.storage
    assert isinstance(store, S3Storage)
    local = tmp_path / "shrinks.bin"
    local.write_bytes(os.urandom(MULTIPART_THRESHOLD + 1024))
    target = media.source_path(config.media_dir, 9)
    real_open = open

    # The disk fails under the second part (an I/O error reading at its offset), after the
    # first part is in the bucket: the fault injected at the OS call, everything else real.

    class Failing:
        def __init__(self, *args, **kwargs):
            self.handle = real_open(*args, **kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def close(self):
            self.handle.close()

        def seek(self, offset):
            if offset > 0:
                raise OSError(5, "Input/output error")
            self.handle.seek(offset)

        def read(self, size):
            return self.handle.read(size)

    import videoflix.platform.s3store as s3store

    monkeypatch.setattr(s3store, "open", Failing, raising=False)  # the module's own file reads only
    with pytest.raises(StorageError):
        await store.put_file(target, local)
    monkeypatch.undo()
    assert await store.head(target) is None
    client = await store.client()
    uploads = await client.list_multipart_uploads(Bucket=store.bucket, Prefix=store.key(target))
    assert not uploads.get("Uploads")


def test_blocking_client_round_trip(s3_server, tmp_path):
    """The pool child's client: the same keys, multipart above the threshold, tree removal."""
    from store_helpers import S3_TEST_BUCKET
    from videoflix.platform.s3store import S3Settings

    root = str(tmp_path / "media")
    location = StorageLocation("s3", S3_TEST_BUCKET, f"blocking-{os.getpid()}/")
    client = BlockingS3(S3Settings(location, s3_server.endpoint, "", s3_server.access_key, s3_server.secret_key), root)
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(MULTIPART_THRESHOLD + 5))
    target = media.version_dir(root, 3, 1) / "720p" / "seg_00000.ts"
    client.put_file(target, local)
    client.put_bytes(media.ladder_path(root, 3, 1), b"{}")
    assert client.head(target)["ContentLength"] == MULTIPART_THRESHOLD + 5
    assert client.get_file(target, tmp_path / "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == local.read_bytes()
    assert client.get_file(media.ladder_path(root, 4, 1), tmp_path / "none") is False
    assert client.delete_tree(media.video_dir(root, 3)) == 2
    assert client.head(target) is None
    raw = botocore.session.get_session().create_client("s3", **client.settings.client_kwargs())
    assert not raw.list_multipart_uploads(Bucket=S3_TEST_BUCKET, Prefix=location.prefix).get("Uploads")
    client.close()
    raw.close()


@pytest.mark.gen_test(timeout=60)
async def test_unreachable_store_is_a_storage_error(tmp_path):
    """Nothing listens: every call fails with StorageError (a reason), never hangs."""
    from videoflix.platform.embedded import free_port
    from videoflix.platform.s3store import S3Settings

    port = free_port()
    import concurrent.futures

    executor = concurrent.futures.ThreadPoolExecutor(2)
    store = S3Storage(S3Settings(StorageLocation("s3", "nowhere"), f"http://127.0.0.1:{port}", "", "a", "b"),
                      str(tmp_path), executor)
    try:
        with pytest.raises(StorageError):
            await store.head(tmp_path / "1" / "v1" / "ladder.json")
        with pytest.raises(StorageError):
            await store.write_bytes(tmp_path / "1" / "v1" / "ladder.json", b"{}")
    finally:
        await store.close()
        executor.shutdown()


def test_a_process_on_media_dir_never_imports_the_s3_client():
    """botocore, aiobotocore and aiohttp are a quarter of a process's start-up imports:
    the server, the CLI and a transcode's child load them only with a bucket."""
    probe = ("import sys, videoflix.cli, videoflix.app, videoflix.transcode.job, videoflix.transcode.pool; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'botocore', 'aiobotocore', 'aiohttp'}))")
    root = Path(__file__).resolve().parents[1]
    answer = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=60,
                            check=True)
    assert answer.stdout.strip() == "[]"
