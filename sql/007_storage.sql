-- The storage ledger (issue 23 item 5): what each video takes on disk, written when a
-- run publishes (library/ledger.py; the version's sizes from transcode/footprint.py) and
-- when the original is removed. Per user and in total by summing; gone with the video.
-- Counts the live version only: a replaced version lingers for the grace period
-- (VIDEOFLIX_VERSION_GRACE_SECONDS) uncounted.
CREATE TABLE video_storage (
    video_id               bigint      PRIMARY KEY REFERENCES videos (id) ON DELETE CASCADE,
    version                integer     NOT NULL CONSTRAINT video_storage_version_check CHECK (version >= 0),
    original_bytes         bigint      NOT NULL DEFAULT 0 CONSTRAINT video_storage_original_check CHECK (original_bytes >= 0),
    -- {"1080p": bytes, ...}: segments and media playlist of each rendition.
    rendition_bytes        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    renditions_total       bigint      NOT NULL DEFAULT 0 CONSTRAINT video_storage_renditions_check CHECK (renditions_total >= 0),
    trickplay_bytes        bigint      NOT NULL DEFAULT 0 CONSTRAINT video_storage_trickplay_check CHECK (trickplay_bytes >= 0),
    picture_bytes          bigint      NOT NULL DEFAULT 0 CONSTRAINT video_storage_picture_check CHECK (picture_bytes >= 0),
    subtitle_bytes         bigint      NOT NULL DEFAULT 0 CONSTRAINT video_storage_subtitle_check CHECK (subtitle_bytes >= 0),
    encode_cpu_seconds     double precision NOT NULL DEFAULT 0,
    -- What the copy path saved: an estimate of the CPU (NULL: nothing copied to measure by)
    -- and the original's bytes when it was dropped because the top rung is a copy of it.
    copy_saved_cpu_seconds double precision,
    copy_saved_bytes       bigint      NOT NULL DEFAULT 0,
    updated_at             timestamptz NOT NULL DEFAULT now()
);
