"""Many hosts (issue 13, item 3): processes that share PostgreSQL, Redis and the media
directory see each other's video changes at once, not after the row cache's TTL.

Real processes (`python -m videoflix serve|worker`), as on separate hosts: they
share nothing but the database, Redis and media/.
"""
from __future__ import annotations

import json
import re
import time

from videoflix.delivery import playback
from videoflix.platform import rediskeys

from faultkit import Api, ffmpeg_pids, make_user, redis_client, unique_email, wait_for

# Well inside the playback row cache's TTL: only a message can make B see it this fast.
PROMPT_SECONDS = 4.0
assert PROMPT_SECONDS < playback.VIDEO_CACHE_SECONDS / 2


def test_visibility_change_on_one_server_is_seen_by_another_at_once(servers, db, short_clip):
    first = servers(ALLOW_PUBLIC_USER_UPLOADS="true")
    second = servers(ALLOW_PUBLIC_USER_UPLOADS="true")
    owner = Api(first.base)
    make_user(owner, db)
    video_id = owner.call("POST", "/api/video/", timeout=120, files={
        "file": (short_clip.name, short_clip.read_bytes(), "video/mp4")},
        data={"title": "Shared", "category": "Faults", "visibility": "public"}).json()["id"]
    wait_for(lambda: owner.detail(video_id)["status"] == "ready", "the transcode", timeout=240, interval=0.5)

    viewer = Api(second.base)
    make_user(viewer, db, unique_email())
    master = f"/api/video/{video_id}/master.m3u8"
    for _ in range(3):  # the row is in the second server's cache now
        assert viewer.call("GET", master).status_code == 200

    assert owner.call("PATCH", f"/api/video/{video_id}/", json={"visibility": "private"}).status_code == 200
    changed_at = time.monotonic()
    wait_for(lambda: viewer.call("GET", master).status_code == 404,
             "the second server to stop serving the now private video", timeout=PROMPT_SECONDS)
    assert time.monotonic() - changed_at < PROMPT_SECONDS

    # And back: public again is seen at once too (the 404 cached nothing).
    assert owner.call("PATCH", f"/api/video/{video_id}/", json={"visibility": "public"}).status_code == 200
    wait_for(lambda: viewer.call("GET", master).status_code == 200, "public again", timeout=PROMPT_SECONDS)
    # Deleting through the first server: the second answers 404 at once.
    assert owner.call("DELETE", f"/api/video/{video_id}/").status_code == 204
    wait_for(lambda: viewer.call("GET", master).status_code == 404, "the deletion", timeout=PROMPT_SECONDS)


def test_worker_on_another_host_announces_the_videos_it_finishes(servers, db, fault_redis, short_clip, long_clip):
    """`videoflix worker` runs the transcode and publishes the change on the channel
    every server listens to (videos.video_changed via make_runner)."""
    listener = redis_client(fault_redis.url).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(rediskeys.VIDEO_EVENTS_CHANNEL)
    try:
        # veryfast: its long transcode lasts until the worker has started and taken the next job.
        web = servers(VIDEOFLIX_X264_PRESET="veryfast")  # one consumer (TRANSCODE_WORKERS=1) ...
        owner = Api(web.base)
        make_user(owner, db)
        user_id = db.query("SELECT id FROM users WHERE email = 'owner@example.com'")[0]["id"]
        assert owner.upload(long_clip).status_code == 201
        wait_for(lambda: ffmpeg_pids(web.pid), "the web server to be encoding", timeout=90, interval=0.2)
        # ... busy with a long transcode: the next job can only go to the worker.
        worker = servers("worker")
        video_id = owner.upload(short_clip).json()["id"]
        wait_for(lambda: db.video(video_id)["status"] == "ready", "the worker's transcode", timeout=240,
                 interval=0.5)
        assert re.search(rf"video {video_id} job \S+: ready", worker.log())
        assert not re.search(rf"video {video_id} job", web.log())

        def announced():
            message = listener.get_message(timeout=0.2)
            return message is not None and json.loads(message["data"]) == {"id": video_id, "owner": user_id}
        wait_for(announced, "the worker's change message", timeout=10)
    finally:
        listener.close()
