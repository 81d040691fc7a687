"""`videoflix storage copy` (issue 21 item 6): a local library into a real SeaweedFS bucket,
only the library's names, resumable after an interruption, every object verified, a
checksum mismatch found and mended, ladder.json of a version after its other objects."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import botocore.session
import pytest

from store_helpers import S3_TEST_BUCKET
from videoflix.library import storage_copy
from videoflix.platform.config import Config
from videoflix.platform.s3store import MULTIPART_THRESHOLD, part_size, s3_settings

BIG = MULTIPART_THRESHOLD + 3 * 1024 * 1024  # a multipart upload of 3 parts

LIBRARY = {
    "sources/1": BIG,
    "sources/2": 5000,
    "1/v1/ladder.json": 300,
    "1/v1/poster.jpg": 2000,
    "1/v1/thumbnail.jpg": 900,
    "1/v1/480p/index.m3u8": 200,
    "1/v1/480p/iframes.m3u8": 200,
    "1/v1/480p/seg_00000.ts": 70_000,
    "1/v1/480p/seg_00001.ts": 60_000,
    "1/v1/thumbs/sprite_000.jpg": 4000,
    "1/v1/thumbs/thumbnails.vtt": 300,
    "1/v1/tracks/2.vtt": 100,
    "1/v2/ladder.json": 300,
    "1/v2/720p/seg_00000.ts": 90_000,
    "1/poster/poster.jpg": 3000,
    "1/poster/thumbnail.jpg": 1000,
    "1/subtitles/en.vtt": 120,
    "1/subtitles/en-US.4000.cut": 400,
    "2/v3/ladder.json": 300,
    "2/v3/1080p/seg_00000.ts": 50_000,
}
NOT_LIBRARY = {
    ".incoming/0123abcd.part": 100,  # scratch: passed over
    ".resumable/0123456789abcdef0123456789abcdef": 100,
    ".work/1-v2.lease": 10,
    "1/v1/.poster.jpg.custom": 10,  # temporary names: skipped
    "1/v1/ladder.json.tmp": 10,
    "1/v1/480p/input.ts": 10,
    "1/notes.txt": 10,
    "3/master.m3u8": 10,  # the wave-1 layout
    "3/480p/index.m3u8": 10,
    "sources/01": 10,
}


@pytest.fixture
def library(tmp_path) -> Path:
    root = tmp_path / "media"
    for name, size in {**LIBRARY, **NOT_LIBRARY}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    return root


@pytest.fixture
def bucket_config(library, s3_server) -> Config:
    return Config(media_dir=str(library), var_dir=str(library.parent / "var"),
                  storage=f"s3://{S3_TEST_BUCKET}/{uuid.uuid4().hex}/", s3_endpoint=s3_server.endpoint,
                  s3_access_key=s3_server.access_key, s3_secret_key=s3_server.secret_key)


@pytest.fixture
def bucket(bucket_config):
    settings = s3_settings(bucket_config)
    client = botocore.session.get_session().create_client("s3", **settings.client_kwargs())
    yield client, settings.location.bucket, settings.location.prefix
    client.close()


def objects(bucket) -> dict[str, bytes]:
    client, name, prefix = bucket
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix):
        for item in page.get("Contents", ()):
            found[item["Key"][len(prefix):]] = client.get_object(Bucket=name, Key=item["Key"])["Body"].read()
    return found


def run_copy(config, out, **kwargs) -> storage_copy.CopyReport:
    return storage_copy.copy_library(config, s3_settings(config), out, **kwargs)


def test_library_names_are_media_names_only():
    for key in LIBRARY:
        assert storage_copy.library_name(key), key
    for key in [*NOT_LIBRARY, "sources/1/x", "1/v0/ladder.json", "1/v01/ladder.json", "1/v1/360p/seg_00000.ts",
                "1/v1/480p/seg_0000.ts", "1/v1/thumbs/sprite_0000.jpg", "1/v1/tracks/x.vtt", "1/poster/other.jpg",
                "1/subtitles/../x.vtt", "1/subtitles/en.vtt.bak", "1/subtitles/en.x.cut", "x/v1/ladder.json",
                "0/v1/ladder.json", "1/v1/480p/index.m3u8/x", "1/v1", "sources"]:
        assert not storage_copy.library_name(key), key


def test_multipart_etag_is_computed_as_the_store_makes_it(tmp_path):
    path = tmp_path / "big"
    data = os.urandom(BIG)
    path.write_bytes(data)
    digest = storage_copy.digest_file(path, BIG)
    chunk = part_size(BIG)
    parts = [hashlib.md5(data[i:i + chunk]).digest() for i in range(0, BIG, chunk)]
    assert digest.md5 == hashlib.md5(data).hexdigest()
    assert digest.etag == f'"{hashlib.md5(b"".join(parts)).hexdigest()}-{len(parts)}"'


def test_copy_takes_the_library_verified_and_ladders_last(library, bucket_config, bucket, capsys):
    os.symlink("/etc/passwd", library / "2" / "v3" / "1080p" / "seg_00001.ts")
    os.symlink(library / "1", library / "4")
    order: list[str] = []
    report = run_copy(bucket_config, sys.stdout, on_object=lambda key, outcome: order.append(key))
    out = capsys.readouterr().out
    stored = objects(bucket)
    assert stored == {key: (library / key).read_bytes() for key in LIBRARY}
    assert report.copied == len(LIBRARY) and report.skipped_present == 0 and not report.failed
    assert sorted(key for key, _ in report.library.refused) == ["2/v3/1080p/seg_00001.ts", "4"]
    assert not report.ok  # (refused names make the command fail)
    assert {key for key, _ in report.library.skipped} == {k for k in NOT_LIBRARY if not k.startswith(".")}
    assert report.library.scratch == 3
    for version in ("1/v1/", "1/v2/", "2/v3/"):
        ladder = order.index(version + "ladder.json")
        assert all(order.index(key) < ladder for key in LIBRARY if key.startswith(version) and "ladder" not in key)
    client, name, prefix = bucket
    head = client.head_object(Bucket=name, Key=prefix + "sources/1")
    assert head["ETag"].endswith('-3"') and head["Metadata"]["md5"] == hashlib.md5(stored["sources/1"]).hexdigest()
    assert client.list_multipart_uploads(Bucket=name, Prefix=prefix).get("Uploads", []) == []
    assert f"[{len(LIBRARY)}/{len(LIBRARY)}]" in out and "refused  4: a symlink" in out
    assert "the wave-1 layout" in out


def test_an_interrupted_copy_resumes_where_it_stopped(library, bucket_config, bucket, capsys):
    seen: list[str] = []

    def interrupt(key: str, outcome: str) -> None:
        seen.append(key)
        if len(seen) == 5:
            raise KeyboardInterrupt  # Ctrl-C mid-copy

    with pytest.raises(KeyboardInterrupt):
        run_copy(bucket_config, sys.stdout, on_object=interrupt)
    partial = objects(bucket)
    assert set(seen) <= set(partial) and len(partial) < len(LIBRARY)
    report = run_copy(bucket_config, sys.stdout)
    assert report.skipped_present == len(partial) and report.copied == len(LIBRARY) - len(partial)
    assert objects(bucket) == {key: (library / key).read_bytes() for key in LIBRARY}
    again = run_copy(bucket_config, sys.stdout)
    assert (again.copied, again.skipped_present) == (0, len(LIBRARY))


def test_a_checksum_mismatch_in_the_bucket_is_found_and_copied_again(library, bucket_config, bucket, capsys):
    run_copy(bucket_config, sys.stdout)
    client, name, prefix = bucket
    segment = "1/v1/480p/seg_00000.ts"
    client.put_object(Bucket=name, Key=prefix + segment, Body=os.urandom(70_000))  # same size, other bytes
    client.put_object(Bucket=name, Key=prefix + "1/poster/poster.jpg", Body=b"short")  # another size
    report = run_copy(bucket_config, sys.stdout)
    assert report.recopied == [segment]
    assert report.copied == 2 and report.skipped_present == len(LIBRARY) - 2
    assert "mismatch 1/v1/480p/seg_00000.ts" in capsys.readouterr().out
    assert objects(bucket) == {key: (library / key).read_bytes() for key in LIBRARY}


def test_the_command_line_copies_and_says_what_it_refused(library, bucket_config, bucket):
    env = {**os.environ, "VIDEOFLIX_MEDIA_DIR": bucket_config.media_dir, "VIDEOFLIX_VAR_DIR": bucket_config.var_dir,
           "VIDEOFLIX_STORAGE": bucket_config.storage, "VIDEOFLIX_S3_ENDPOINT": bucket_config.s3_endpoint,
           "AWS_ACCESS_KEY_ID": bucket_config.s3_access_key, "AWS_SECRET_ACCESS_KEY": bucket_config.s3_secret_key}
    command = [sys.executable, "-m", "videoflix", "storage", "copy"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=library.parent)
    assert done.returncode == 0, done.stderr
    assert f"done: {len(LIBRARY)} copied" in done.stdout
    os.symlink("/etc/passwd", library / "sources" / "9")
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=library.parent)
    assert refused.returncode == 1
    assert "refused  sources/9: a symlink" in refused.stdout and "1 name(s) refused" in refused.stderr
    assert "sources/9" not in objects(bucket)
    local = subprocess.run(command, env={**env, "VIDEOFLIX_STORAGE": ""}, capture_output=True, text=True,
                           timeout=60, cwd=library.parent)
    assert local.returncode == 1 and "VIDEOFLIX_STORAGE: name the bucket" in local.stderr


def test_create_bucket_makes_a_missing_bucket_once(bucket_config, tmp_path):
    name = f"made-{uuid.uuid4().hex[:12]}"
    env = {**os.environ, "VIDEOFLIX_STORAGE": f"s3://{name}/lib/", "VIDEOFLIX_S3_ENDPOINT": bucket_config.s3_endpoint,
           "AWS_ACCESS_KEY_ID": bucket_config.s3_access_key, "AWS_SECRET_ACCESS_KEY": bucket_config.s3_secret_key,
           "VIDEOFLIX_VAR_DIR": str(tmp_path / "var")}
    command = [sys.executable, "-m", "videoflix", "storage", "create-bucket"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert (first.returncode, first.stdout) == (0, f"bucket {name} created\n"), first.stderr
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert (again.returncode, again.stdout) == (0, f"bucket {name} exists\n"), again.stderr
