-- Resumable uploads (library/resumable.py): tus 1.0 and the IETF resumable-upload
-- draft on /api/uploads/. The state lives here, not in Redis: the offset must be as
-- durable as the bytes it counts (it is written after their fsync), and the upload
-- becomes a video exactly once because marking it finished and inserting the video
-- row happen in one transaction, with this row locked.
CREATE TABLE resumable_uploads (
    id             text        PRIMARY KEY
                   CONSTRAINT resumable_uploads_id_check CHECK (id ~ '^[0-9a-f]{32}$'),
    owner_id       bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- NULL while an IETF-draft client has not said how long it is (Upload-Complete
    -- tells the end).
    upload_length  bigint
                   CONSTRAINT resumable_uploads_length_check CHECK (upload_length >= 0),
    -- Bytes durably on disk (fsynced before this moved).
    upload_offset  bigint      NOT NULL DEFAULT 0
                   CONSTRAINT resumable_uploads_offset_check
                   CHECK (upload_offset >= 0 AND (upload_length IS NULL OR upload_offset <= upload_length)),
    title          text        NOT NULL,
    description    text        NOT NULL DEFAULT '',
    category       text        NOT NULL DEFAULT '',
    visibility     text        NOT NULL DEFAULT '',
    filename       text        NOT NULL DEFAULT '',
    -- Set once, in the transaction that inserts the video (NULL again if the video
    -- is deleted later: finished_at still says it was made).
    video_id       bigint      REFERENCES videos (id) ON DELETE SET NULL,
    finished_at    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- Renewed by every PATCH: an upload without progress this long is abandoned.
    expires_at     timestamptz NOT NULL
);

CREATE INDEX resumable_uploads_owner_idx ON resumable_uploads (owner_id);
CREATE INDEX resumable_uploads_expires_idx ON resumable_uploads (expires_at);

-- Downloads for offline viewing (delivery/download.py): on unless an admin turns them
-- off for this video.
ALTER TABLE videos ADD COLUMN downloads_enabled boolean NOT NULL DEFAULT true;
