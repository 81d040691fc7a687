"""Every SQL string touching resumable_uploads (sql/006): library/resumable.py's state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

COLUMNS = (
    "id, owner_id, upload_length, upload_offset, title, description, category, visibility,"
    " filename, video_id, finished_at, created_at, expires_at, expires_at <= now() AS expired"
)


@dataclass(frozen=True)
class Upload:
    id: str
    owner_id: int
    length: int | None  # None: an IETF-draft upload whose end is not known yet
    offset: int  # bytes durably on disk
    title: str
    description: str
    category: str
    visibility: str
    filename: str
    video_id: int | None
    finished_at: datetime | None
    created_at: datetime
    expires_at: datetime
    expired: bool

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def fields(self) -> dict[str, str]:
        """The metadata as the upload form's fields (lifecycle.check_upload_fields)."""
        fields = {"title": self.title, "description": self.description, "category": self.category}
        if self.visibility:
            fields["visibility"] = self.visibility
        return fields


def _upload(row: Mapping[str, Any] | None) -> Upload | None:
    if row is None:
        return None
    return Upload(
        id=row["id"],
        owner_id=int(row["owner_id"]),
        length=None if row["upload_length"] is None else int(row["upload_length"]),
        offset=int(row["upload_offset"]),
        title=row["title"],
        description=row["description"],
        category=row["category"],
        visibility=row["visibility"],
        filename=row["filename"],
        video_id=None if row["video_id"] is None else int(row["video_id"]),
        finished_at=row["finished_at"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        expired=bool(row["expired"]),
    )


async def insert_upload(
    cur: Any,
    *,
    upload_id: str,
    owner_id: int,
    length: int | None,
    fields: Mapping[str, str],
    filename: str,
    expiry_seconds: float,
) -> Upload:
    await cur.execute(
        "INSERT INTO resumable_uploads (id, owner_id, upload_length, title, description, category,"
        " visibility, filename, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
        f" now() + make_interval(secs => %s)) RETURNING {COLUMNS}",
        (
            upload_id,
            owner_id,
            length,
            fields["title"],
            fields.get("description", ""),
            fields.get("category", ""),
            fields.get("visibility", ""),
            filename,
            float(expiry_seconds),
        ),
    )
    upload = _upload(await cur.fetchone())
    assert upload is not None  # (RETURNING of the row inserted)
    return upload


async def get_upload(cur: Any, upload_id: str, owner_id: int, *, lock: bool = False) -> Upload | None:
    """The owner's upload (another user's is None: the same 404 as a missing one)."""
    await cur.execute(
        f"SELECT {COLUMNS} FROM resumable_uploads WHERE id = %s AND owner_id = %s" + (" FOR UPDATE" if lock else ""),
        (upload_id, owner_id),
    )
    return _upload(await cur.fetchone())


async def open_usage(cur: Any, owner_id: int) -> tuple[int, int]:
    """(unfinished, unexpired uploads of the owner; the bytes they declared)."""
    await cur.execute(
        "SELECT count(*) AS n, COALESCE(sum(upload_length), 0) AS declared FROM resumable_uploads"
        " WHERE owner_id = %s AND finished_at IS NULL AND expires_at > now()",
        (owner_id,),
    )
    row = await cur.fetchone()
    return int(row["n"]), int(row["declared"])


async def record_progress(
    cur: Any, upload_id: str, offset: int, length: int | None, expiry_seconds: float
) -> Upload | None:
    """Bytes up to `offset` are on disk (and `length` is known, if it now is): the offset
    moves and the expiry starts again. None when the row is gone (terminated, swept)."""
    await cur.execute(
        "UPDATE resumable_uploads SET upload_offset = %s, upload_length = COALESCE(upload_length, %s),"
        " expires_at = now() + make_interval(secs => %s)"
        f" WHERE id = %s AND finished_at IS NULL RETURNING {COLUMNS}",
        (offset, length, float(expiry_seconds), upload_id),
    )
    return _upload(await cur.fetchone())


async def mark_finished(cur: Any, upload_id: str, video_id: int) -> None:
    await cur.execute(
        "UPDATE resumable_uploads SET video_id = %s, finished_at = now() WHERE id = %s AND finished_at IS NULL",
        (video_id, upload_id),
    )


async def delete_upload(cur: Any, upload_id: str, owner_id: int) -> bool:
    await cur.execute(
        "DELETE FROM resumable_uploads WHERE id = %s AND owner_id = %s RETURNING id", (upload_id, owner_id)
    )
    return await cur.fetchone() is not None


async def delete_expired(cur: Any) -> list[str]:
    """Remove the rows past their expiry (unfinished: abandoned; finished: no longer
    asked about); their ids, whose files the caller removes."""
    await cur.execute("DELETE FROM resumable_uploads WHERE expires_at <= now() RETURNING id")
    return [row["id"] for row in await cur.fetchall()]


async def existing(cur: Any, upload_ids: list[str]) -> dict[str, bool]:
    """{id: finished} of the rows among `upload_ids`."""
    if not upload_ids:
        return {}
    await cur.execute(
        "SELECT id, finished_at IS NOT NULL AS finished FROM resumable_uploads WHERE id = ANY(%s)", (upload_ids,)
    )
    return {row["id"]: bool(row["finished"]) for row in await cur.fetchall()}
