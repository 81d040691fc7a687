-- Videos and their transcode state. Progress (0-100) lives in Redis while a
-- job runs; the row holds the lasting facts.
CREATE TABLE videos (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id      bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title         text        NOT NULL,
    description   text        NOT NULL DEFAULT '',
    category      text        NOT NULL DEFAULT '',
    visibility    text        NOT NULL DEFAULT 'private'
                  CONSTRAINT videos_visibility_check CHECK (visibility IN ('public', 'private')),
    status        text        NOT NULL DEFAULT 'uploading'
                  CONSTRAINT videos_status_check CHECK (status IN ('uploading', 'queued', 'processing', 'ready', 'failed')),
    error         text,
    source_name   text        NOT NULL DEFAULT '',
    source_size   bigint      NOT NULL DEFAULT 0,
    duration      double precision,
    width         integer,
    height        integer,
    fps           double precision,
    has_audio     boolean,
    resolutions   text[]      NOT NULL DEFAULT '{}',
    attempts      integer     NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    ready_at      timestamptz
);

-- The catalog: ready videos, newest first.
CREATE INDEX videos_ready_created_idx ON videos (created_at DESC, id DESC) WHERE status = 'ready';
CREATE INDEX videos_owner_idx ON videos (owner_id);
-- Start-up recovery looks for unfinished jobs.
CREATE INDEX videos_unfinished_idx ON videos (id) WHERE status IN ('queued', 'processing');
