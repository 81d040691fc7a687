"""The storage ledger (issue 23 item 5): bytes per video by kind, per user and in total,
and what copying saved; kept in PostgreSQL (tables/video_storage.py, sql/007).

A run that publishes records its video's row (`record_run`, a subscriber of the
transcode runner's outcomes, app.make_runner): the live version's sizes measured by the
transcode child (transcode/footprint.py), the original's size (0 once removed by
VIDEOFLIX_ORIGINALS), the video's subtitle files. The detail shows a video's row to its
owner and admins (`detail_storage`), GET /api/storage/ the sums (`summary`), and
/metrics the totals (`totals`). Sizes are as of the last run: subtitles uploaded later
are counted at the next one.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from videoflix.platform import media
from videoflix.platform.config import Config
from videoflix.platform.db import cursor
from videoflix.platform.services import Services
from videoflix.tables import video_storage as storage_rows
from videoflix.transcode.runner import JobOutcome

log = logging.getLogger(__name__)


def _file_size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _tree_size(path: Path) -> int:
    return sum(_file_size(Path(root) / name) for root, _, files in os.walk(path) for name in files)


async def record_run(config: Config, services: Services, outcome: JobOutcome) -> None:
    """The runner's outcome subscriber: a published version's ledger row (never raises:
    a ledger that failed to update is logged, the video is ready all the same)."""
    result = outcome.result
    if outcome.kind != "ready" or result is None or result.storage is None or outcome.version is None:
        return
    loop = asyncio.get_running_loop()
    try:
        source = media.source_path(config.media_dir, outcome.video_id)
        subtitles = media.subtitles_dir(config.media_dir, outcome.video_id)
        if services.storage.is_local:
            original = await loop.run_in_executor(services.file_executor, _file_size, source)
            uploaded_subtitles = await loop.run_in_executor(services.file_executor, _tree_size, subtitles)
        else:  # the bucket holds them (this host's scratch may not)
            head = await services.storage.head(source)
            original = head.size if head is not None else 0
            uploaded_subtitles = sum(item.size for item in await services.storage.list_tree(subtitles))
        copied = result.copy is not None and result.copy.video
        version = result.storage
        async with cursor(services.pool) as cur:
            await storage_rows.record(
                cur,
                outcome.video_id,
                version=outcome.version,
                original_bytes=original,
                rendition_bytes=dict(version.renditions),
                trickplay_bytes=version.trickplay,
                picture_bytes=version.pictures,
                subtitle_bytes=version.subtitles + uploaded_subtitles,
                encode_cpu_seconds=version.encode_cpu_seconds,
                copy_saved_cpu_seconds=version.copy_saved_cpu_seconds,
                # The original went because the top rung is a copy of it (replace).
                copy_saved_bytes=outcome.original_dropped_bytes if copied and config.originals == "replace" else 0,
            )
    except Exception:
        log.exception("video %s: storage ledger not updated", outcome.video_id)


def _item(row: dict[str, Any]) -> dict[str, Any]:
    renditions = {str(k): int(v) for k, v in (row["rendition_bytes"] or {}).items()}
    total = (
        int(row["original_bytes"])
        + int(row["renditions_total"])
        + int(row["trickplay_bytes"])
        + int(row["picture_bytes"])
        + int(row["subtitle_bytes"])
    )
    return {
        "original_bytes": int(row["original_bytes"]),
        "rendition_bytes": renditions,
        "trickplay_bytes": int(row["trickplay_bytes"]),
        "picture_bytes": int(row["picture_bytes"]),
        "subtitle_bytes": int(row["subtitle_bytes"]),
        "total_bytes": total,
        "encode_cpu_seconds": float(row["encode_cpu_seconds"]),
        "copy_saved_cpu_seconds": (
            None if row["copy_saved_cpu_seconds"] is None else float(row["copy_saved_cpu_seconds"])
        ),
        "copy_saved_bytes": int(row["copy_saved_bytes"]),
    }


async def detail_storage(services: Services, video_id: int) -> dict[str, Any] | None:
    """The detail's `storage` (owners and admins): the video's ledger row, or None before
    its first run under issue 23."""
    async with cursor(services.pool) as cur:
        row = await storage_rows.get(cur, video_id)
    return _item(row) if row is not None else None


async def many_storage(services: Services, video_ids: list[int]) -> dict[int, dict[str, Any]]:
    async with cursor(services.pool) as cur:
        rows = await storage_rows.get_many(cur, video_ids)
    return {video_id: _item(row) for video_id, row in rows.items()}


def _sums(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "videos": int(row["videos"]),
        "original_bytes": int(row["original_bytes"]),
        "rendition_bytes": int(row["renditions_bytes"]),
        "trickplay_bytes": int(row["trickplay_bytes"]),
        "picture_bytes": int(row["picture_bytes"]),
        "subtitle_bytes": int(row["subtitle_bytes"]),
        "total_bytes": int(row["total_bytes"]),
        "copy_saved_cpu_seconds": round(float(row["copy_saved_cpu_seconds"]), 2),
        "copy_saved_bytes": int(row["copy_saved_bytes"]),
    }


async def totals(services: Services, owner_id: int | None = None) -> dict[str, Any]:
    """Sums over every video (None) or one user's."""
    async with cursor(services.pool) as cur:
        return _sums(await storage_rows.totals(cur, owner_id))


async def summary(services: Services, user_id: int, is_admin: bool) -> dict[str, Any]:
    """GET /api/storage/: the caller's own sums; for admins also the total and each user's."""
    async with cursor(services.pool) as cur:
        answer: dict[str, Any] = {"mine": _sums(await storage_rows.totals(cur, user_id))}
        if is_admin:
            answer["total"] = _sums(await storage_rows.totals(cur))
            answer["users"] = [
                {"user_id": int(row["user_id"]), "email": row["email"], **_sums(row)}
                for row in await storage_rows.totals_by_user(cur)
            ]
    return answer
