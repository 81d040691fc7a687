"""Originals by policy (issue 23 item 4, VIDEOFLIX_ORIGINALS): keep, replace by a copied
top rung, or remove after a successful transcode; without the original, playback and
downloads go on and a re-transcode reads the live version's top rung and says so. End to end: real
uploads through the API, the real runner and ffmpeg."""
from __future__ import annotations

import dataclasses
import subprocess

import pytest

from videoflix.platform import media
from videoflix.transcode.copyfit import CopyPlan
from videoflix.transcode.originals import drop_original

from helpers import upload, wait_for_status, wait_until


METRICS_TOKEN = "ledger-metrics-token-long-enough"


@pytest.fixture
def config(config, request):
    return dataclasses.replace(config, originals=getattr(request, "param", "keep"), metrics_token=METRICS_TOKEN)


@pytest.fixture
def admin_client(new_client, make_admin, io_loop):
    browser = new_client()
    io_loop.run_sync(lambda: make_admin(browser))
    return browser


@pytest.fixture
def fitting_clip(small_clip, state_dir):
    """small_clip with a keyframe every second and stereo audio: copied whole."""
    path = state_dir / "fitting_stereo.mp4"
    if not path.exists():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(small_clip), "-c:v", "libx264", "-preset",
                        "veryfast", "-crf", "28", "-g", "25", "-ac", "2", "-c:a", "aac", "-b:a", "96k", str(path)],
                       check=True)
    return path


COPIED = CopyPlan(video=True, audio=True)
COPIED_VIDEO_ONLY = CopyPlan(video=True, audio=False, audio_reason="audio 6 channels")
ENCODED = CopyPlan(video=False, audio=False, reason="source GOP 6 s")


@pytest.mark.parametrize(("policy", "plan", "has_audio", "dropped"), [
    ("keep", COPIED, True, False),
    ("replace", COPIED, True, True),
    ("replace", COPIED_VIDEO_ONLY, True, False),  # the audio was re-encoded: the original has more
    ("replace", COPIED_VIDEO_ONLY, False, True),  # no audio at all: nothing lost
    ("replace", ENCODED, True, False),
    ("remove", ENCODED, True, True),
])
def test_policy_decides_whether_the_original_goes(policy, plan, has_audio, dropped):
    assert drop_original(policy, plan, has_audio) is dropped


@pytest.mark.slow
@pytest.mark.parametrize("config", ["remove"], indirect=True)
@pytest.mark.gen_test(timeout=240)
async def test_removed_original_keeps_playback_and_retranscode_reads_the_top_rung(admin_client, runner, config,
                                                                                  small_clip):
    video_id = (await upload(admin_client, small_clip, title="Gone")).json()["id"]
    detail = await wait_for_status(admin_client, video_id, "ready")
    source = media.source_path(config.media_dir, video_id)
    assert not source.exists()
    assert detail["encoding"]["input"] == "the original"
    master = await admin_client.get(f"/api/video/{video_id}/master.m3u8")
    assert master.status == 200
    segment = await admin_client.get(f"/api/video/{video_id}/480p/seg_00000.ts")
    assert segment.status == 200 and len(segment.body) > 0
    # Downloads remux a rendition, never the original.
    download = await admin_client.get(f"/api/video/{video_id}/480p/download.mp4")
    assert download.status == 200 and download.body[4:8] == b"ftyp"

    rerun = await admin_client.post(f"/api/video/{video_id}/retranscode/")
    assert rerun.status == 202, rerun.body
    again = await wait_for_status(admin_client, video_id, "ready")
    # Read from v1's 480p rung, which fits (2 s GOPs, our encode): copied, no generation lost.
    assert again["encoding"]["input"] == "the 480p rung of v1 (no original)"
    assert again["encoding"]["video"] == "copied", again["encoding"]
    assert again["resolutions"] == ["480p"]
    assert (await admin_client.get(f"/api/video/{video_id}/480p/seg_00000.ts")).status == 200
    version_two = media.version_dir(config.media_dir, video_id, 2)
    assert not (version_two / media.RUNG_INPUT_NAME).exists()  # the joined input is gone
    assert (version_two / "480p" / "index.m3u8").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("config", ["replace"], indirect=True)
@pytest.mark.gen_test(timeout=240)
async def test_replace_drops_only_originals_whose_top_rung_is_a_copy(admin_client, runner, config, small_clip,
                                                                     fitting_clip):
    encoded = (await upload(admin_client, small_clip, title="Encoded")).json()["id"]
    copied = (await upload(admin_client, fitting_clip, title="Copied")).json()["id"]
    assert (await wait_for_status(admin_client, encoded, "ready"))["encoding"]["video"] == "encoded"
    assert (await wait_for_status(admin_client, copied, "ready"))["encoding"]["video"] == "copied"
    assert media.source_path(config.media_dir, encoded).exists()
    assert not media.source_path(config.media_dir, copied).exists()


@pytest.mark.slow
@pytest.mark.gen_test(timeout=240)
async def test_keep_is_the_default_and_keeps_every_original(admin_client, runner, config, fitting_clip):
    assert config.originals == "keep"
    video_id = (await upload(admin_client, fitting_clip, title="Kept")).json()["id"]
    assert (await wait_for_status(admin_client, video_id, "ready"))["encoding"]["video"] == "copied"
    assert media.source_path(config.media_dir, video_id).exists()


# --- the storage ledger (issue 23 item 5) -------------------------------------------------


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.slow
@pytest.mark.parametrize("config", ["replace"], indirect=True)
@pytest.mark.gen_test(timeout=240)
async def test_storage_ledger_per_video_per_user_in_total_and_in_metrics(admin_client, client, make_user, runner,
                                                                         config, small_clip, fitting_clip):
    encoded = (await upload(admin_client, small_clip, title="Encoded")).json()["id"]
    copied = (await upload(admin_client, fitting_clip, title="Copied")).json()["id"]
    details = {}

    async def ledgers_written() -> bool:
        # The runner writes a ledger row right after the publishing UPDATE (and the
        # original's removal): `ready` can be seen a moment before it.
        for video_id in (encoded, copied):
            details[video_id] = (await admin_client.get(f"/api/video/{video_id}/")).json()
        return all(detail["storage"] is not None for detail in details.values())

    await wait_for_status(admin_client, encoded, "ready")
    await wait_for_status(admin_client, copied, "ready")
    await wait_until(ledgers_written, "both ledger rows")
    encoded_detail, copied_detail = details[encoded], details[copied]

    version = media.version_dir(config.media_dir, encoded, 1)
    kept = encoded_detail["storage"]
    assert kept["original_bytes"] == small_clip.stat().st_size  # kept: the top rung was encoded
    assert kept["rendition_bytes"] == {
        "480p": sum(p.stat().st_size for p in (version / "480p").iterdir() if p.name != "iframes.m3u8")}
    assert kept["picture_bytes"] == (version / "poster.jpg").stat().st_size + (version / "thumbnail.jpg").stat().st_size
    assert kept["trickplay_bytes"] > 0 and kept["encode_cpu_seconds"] > 0
    assert kept["total_bytes"] == (kept["original_bytes"] + kept["rendition_bytes"]["480p"] + kept["trickplay_bytes"]
                                   + kept["picture_bytes"] + kept["subtitle_bytes"])
    assert (kept["copy_saved_bytes"], kept["copy_saved_cpu_seconds"]) == (0, None)
    dropped = copied_detail["storage"]
    # Replaced by its copied top rung: the original's bytes are what copying saved.
    assert dropped["original_bytes"] == 0
    assert dropped["copy_saved_bytes"] == fitting_clip.stat().st_size
    assert dropped["copy_saved_cpu_seconds"] is None  # one rung, copied: no encode to measure by

    summary = (await admin_client.get("/api/storage/")).json()
    total = kept["total_bytes"] + dropped["total_bytes"]
    assert summary["total"]["total_bytes"] == total and summary["total"]["videos"] == 2
    assert summary["mine"]["total_bytes"] == total
    assert [(user["email"], user["total_bytes"]) for user in summary["users"]] == [("admin@example.com", total)]
    assert summary["total"]["copy_saved_bytes"] == fitting_clip.stat().st_size

    # Another user sees neither the ledger of the admin's public video nor the totals.
    await make_user("viewer@example.com")
    viewer_detail = (await client.get(f"/api/video/{encoded}/")).json()
    assert "storage" not in viewer_detail
    assert (await client.get("/api/storage/")).json() == {"mine": {
        "videos": 0, "original_bytes": 0, "rendition_bytes": 0, "trickplay_bytes": 0, "picture_bytes": 0,
        "subtitle_bytes": 0, "total_bytes": 0, "copy_saved_cpu_seconds": 0.0, "copy_saved_bytes": 0}}

    scraped = (await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                                cookies=False)).body.decode()
    assert metric(scraped, 'videoflix_storage_bytes{kind="total"}') == total
    assert metric(scraped, "videoflix_copy_saved_bytes") == fitting_clip.stat().st_size
