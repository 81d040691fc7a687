"""Tests that run against both stores (local MEDIA_DIR and a SeaweedFS bucket): set up and
look at media through services.storage, the one interface both keep, never the disk."""
from __future__ import annotations

import os
from pathlib import Path

from videoflix.platform import media

from helpers import publish_ladder

# Objects tests read whole (segments, sources of test clips).
READ_LIMIT = 512 * 1024 * 1024

# The stores a module runs on when it overrides the `storage_backend` fixture (conftest.py):
#     @pytest.fixture(params=STORAGE_BACKENDS)
#     def storage_backend(request): return request.param
# Import them from here, not from conftest: tests/faults/conftest.py is a `conftest` too.
STORAGE_BACKENDS = ["local", "s3"]
# The bucket of the tests' SeaweedFS (conftest.s3_server); each test has a prefix of its own.
S3_TEST_BUCKET = "videoflix-tests"


async def read_stored(services, path: Path) -> bytes | None:
    return await services.storage.read_bytes(path, limit=READ_LIMIT)


async def stored_keys(services, config, folder: Path) -> list[str]:
    """The keys below a folder of MEDIA_DIR's names (media/<id>/ ...), in either store."""
    return [item.key for item in await services.storage.list_tree(folder)]


async def put_tree(services, local: Path, target: Path) -> None:
    """Every file below `local` stored under the folder `target` (ladder.json last, as a
    run publishes)."""
    files = sorted(p for p in Path(local).rglob("*") if p.is_file())
    files.sort(key=lambda p: p.name == media.LADDER_NAME)
    for path in files:
        await services.storage.put_file(target / path.relative_to(local), path)


async def publish_stored(services, config, owner_id: int, ladder: Path, result, **fields) -> int:
    """helpers.publish_ladder into whichever store the test runs on: the row as the
    runner leaves it, the version's files under media/<id>/v<N>/ (in the bucket with S3)."""
    if services.storage.is_local:
        return await publish_ladder(services, config, owner_id, ladder, result, **fields)
    from videoflix.platform.db import cursor
    from videoflix.tables import videos as video_rows

    async with cursor(services.pool) as cur:
        video_id = await video_rows.insert_video(
            cur, owner_id=owner_id, title=fields.get("title", "A clip"), description="", category="Test",
            visibility=fields.get("visibility", "private"), status="queued")
        version = (await video_rows.mark_processing(cur, video_id)).building_version
    await put_tree(services, ladder, media.version_dir(config.media_dir, video_id, version))
    async with cursor(services.pool) as cur:
        assert await video_rows.mark_ready(cur, video_id, version=version, duration=result.duration,
                                           width=result.width, height=result.height, fps=result.fps,
                                           has_audio=result.has_audio, resolutions=result.resolutions)
    return video_id


def scratch_files(config) -> list[str]:
    """What is left in MEDIA_DIR (the library with the local store, scratch with S3)."""
    root = Path(config.media_dir)
    if not root.exists():
        return []
    return sorted(os.path.relpath(p, root) for p in root.rglob("*") if p.is_file())
