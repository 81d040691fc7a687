-- Where each user stopped in each video (API.md §6: PUT /api/video/<id>/progress/,
-- the detail's `position`, GET /api/video/continue/). One row per user and video,
-- overwritten on every save; gone with the user or the video.
CREATE TABLE watch_progress (
    user_id     bigint           NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    video_id    bigint           NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    position    double precision NOT NULL CONSTRAINT watch_progress_position_check CHECK (position >= 0),
    updated_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, video_id)
);

-- "Continue watching": a user's rows, most recently watched first.
CREATE INDEX watch_progress_recent_idx ON watch_progress (user_id, updated_at DESC);
-- ON DELETE CASCADE from videos looks rows up by video.
CREATE INDEX watch_progress_video_idx ON watch_progress (video_id);
