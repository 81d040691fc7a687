-- A video's subtitle tracks (API.md §6). One per language per video; the WebVTT
-- file itself is media/<id>/subtitles/<language>.vtt (media.py names it), per video
-- rather than per version, so it survives re-transcodes. `origin` says where it came
-- from: an owner's upload, or a text track extracted from the source at transcode
-- time (which never replaces an upload). Gone with the video.
CREATE TABLE subtitles (
    video_id    bigint      NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    -- BCP 47, canonical form (subtitles.check_language); also the file name.
    language    text        NOT NULL
                CONSTRAINT subtitles_language_check CHECK (language ~ '^[A-Za-z0-9]{1,8}(-[A-Za-z0-9]{1,8})*$'
                                                           AND length(language) <= 35),
    -- The menu entry and the master's NAME: unique in the group (RFC 8216 §4.3.4.1.1).
    label       text        NOT NULL
                CONSTRAINT subtitles_label_check CHECK (length(label) BETWEEN 1 AND 64),
    origin      text        NOT NULL
                CONSTRAINT subtitles_origin_check CHECK (origin IN ('upload', 'track')),
    cue_count   integer     NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (video_id, language),
    CONSTRAINT subtitles_label_key UNIQUE (video_id, label)
);
