-- Versioned renditions (issue 12, PIPELINE_V2.md). Every transcode run writes
-- media/<id>/v<N>/ in place; the row says which version is served and which one
-- is being built. `status` stays the job's state (queued/processing/ready/failed):
-- a re-transcode of a listed video keeps `live_version` (and so the catalog entry
-- and every player) until the new version is published by one UPDATE.
ALTER TABLE videos
    -- The served version: 0 is the wave-1 layout (files directly in media/<id>/),
    -- N >= 1 is media/<id>/v<N>/. NULL: nothing to watch yet (the catalog skips it).
    ADD COLUMN live_version     integer CONSTRAINT videos_live_version_check CHECK (live_version >= 0),
    -- The version a running job writes (allocated per delivery); NULL when none runs.
    ADD COLUMN building_version integer CONSTRAINT videos_building_version_check CHECK (building_version >= 1),
    -- The last version number handed out; the next run takes version_seq + 1.
    ADD COLUMN version_seq      integer NOT NULL DEFAULT 0,
    -- When live_version last changed: older versions are removed a grace period after it.
    ADD COLUMN live_since       timestamptz;

-- Videos made ready before this migration are served as they are, from media/<id>/.
UPDATE videos SET live_version = 0, live_since = coalesce(ready_at, updated_at) WHERE status = 'ready';

-- The catalog lists videos with a live version, newest first.
DROP INDEX videos_ready_created_idx;
CREATE INDEX videos_live_created_idx ON videos (created_at DESC, id DESC) WHERE live_version IS NOT NULL;
