"""The official tus-js-client (npm, pinned in package-lock.json, run by Node through
tests/tus_client.js) against /api/uploads/ in all three of its protocol modes: tus 1.0,
ietf-draft-03 and ietf-draft-05. Each upload must end in a video whose source is
byte-identical to the file sent, also after the client stopped and a new one resumed
from the upload's URL (a page reload). tests/faults/test_resumable_crash.py kills the
server mid-chunk."""
from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from videoflix.platform import media
from videoflix.platform.db import cursor

from helpers import wait_for_status

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "tus_client.js"
PROTOCOLS = ["tus-v1", "ietf-draft-03", "ietf-draft-05"]

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "tus-js-client").is_dir(),
    reason="needs Node and `npm ci` (make setup)",
)


async def run_client(**options) -> list[dict]:
    proc = await asyncio.create_subprocess_exec(
        "node", str(SCRIPT), json.dumps(options), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=ROOT)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    lines = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    assert proc.returncode == 0 and lines and lines[-1]["ok"], (out.decode(), err.decode()[-3000:])
    return lines


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source_of(config, location: str) -> bytes:
    return media.source_path(config.media_dir, int(location.rstrip("/").rsplit("/", 1)[-1])).read_bytes()


async def videos(services) -> list[dict]:
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT id, title, category, status FROM videos ORDER BY id")
        return list(await cur.fetchall())


def options_for(client, small_clip, protocol: str, **more) -> dict:
    return {
        "endpoint": client.base_url + "/api/uploads/",
        "file": str(small_clip),
        "protocol": protocol,
        "token": client.cookies["access_token"],
        "chunkSize": 200_000,
        "metadata": {"title": f"Sent by tus-js-client ({protocol})", "category": "Clients",
                     "filename": small_clip.name, "filetype": "video/mp4"},
        **more,
    }


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.gen_test(timeout=150)
async def test_tus_js_client_uploads_in_chunks_to_a_video_with_the_same_bytes(client, make_user, small_clip,
                                                                              services, config, protocol):
    await make_user()
    result = (await run_client(**options_for(client, small_clip, protocol)))[-1]
    location = result["videoLocation"]
    assert location and location.startswith("/api/video/")
    assert sha256(source_of(config, location)) == sha256(small_clip.read_bytes())
    [row] = await videos(services)
    assert (row["title"], row["category"], row["status"]) == (f"Sent by tus-js-client ({protocol})", "Clients",
                                                              "queued")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.gen_test(timeout=150)
async def test_tus_js_client_with_data_during_creation(client, make_user, small_clip, services, config, protocol):
    await make_user()
    result = (await run_client(**options_for(client, small_clip, protocol, uploadDataDuringCreation=True)))[-1]
    assert sha256(source_of(config, result["videoLocation"])) == sha256(small_clip.read_bytes())
    assert len(await videos(services)) == 1


@pytest.mark.slow  # (a transcode through the runner: seconds)
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.gen_test(timeout=150)
async def test_tus_js_client_resumes_from_the_upload_url_after_stopping_to_a_ready_video(
        client, make_user, small_clip, services, config, runner, protocol):
    await make_user()
    size = small_clip.stat().st_size
    result = (await run_client(**options_for(client, small_clip, protocol, stopAfter=size // 2)))[-1]
    # The new client asked HEAD and went on from where the first stopped, not from 0.
    assert 0 < result["resumedFrom"] < size
    assert result["resumedFrom"] >= size // 2
    assert sha256(source_of(config, result["videoLocation"])) == sha256(small_clip.read_bytes())
    video_id = int(result["videoLocation"].rstrip("/").rsplit("/", 1)[-1])
    detail = await wait_for_status(client, video_id, "ready")
    assert detail["title"] == f"Sent by tus-js-client ({protocol})"
    assert len(await videos(services)) == 1
