"""SIGKILL of a real server mid-chunk of a resumable upload (issue 22 items 2 and 6):
after a restart HEAD reports only what was acknowledged, the bytes the dead server wrote
past it are cut, and the official tus-js-client resumes from there to a ready video
whose source is byte-identical to the file sent, in tus 1.0 and both IETF draft modes."""
from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import requests

from faultkit import Api, make_user, wait_for

ROOT = Path(__file__).resolve().parents[2]
HEADERS = {"tus-v1": {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"},
           "ietf-draft-03": {"Upload-Draft-Interop-Version": "5"},
           "ietf-draft-05": {"Upload-Draft-Interop-Version": "6", "Content-Type": "application/partial-upload"}}

pytestmark = pytest.mark.skipif(shutil.which("node") is None or not (ROOT / "node_modules" / "tus-js-client").is_dir(),
                                reason="needs Node and `npm ci` (make setup)")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("protocol", list(HEADERS))
def test_sigkill_mid_chunk_resumes_with_tus_js_client_to_a_ready_identical_video(servers, db, media_dir, short_clip,
                                                                                 protocol):
    server = servers()
    api = Api(server.base)
    make_user(api, db)
    token = api.session.cookies["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    data = short_clip.read_bytes()
    proto = HEADERS[protocol]
    created = requests.post(server.base + "/api/uploads/", timeout=30, headers={
        **auth, **{k: v for k, v in proto.items() if k != "Content-Type"},
        "Upload-Length": str(len(data)), "Upload-Metadata": f"title {b64('Killed mid-chunk')},filename {b64('s.mp4')}"})
    assert created.status_code == 201, created.text
    url = created.headers["Location"]
    upload_id = url.rstrip("/").rsplit("/", 1)[-1]
    # One chunk acknowledged...
    first = 300_000
    done = requests.patch(server.base + url, data=data[:first], timeout=30,
                          headers={**auth, **proto, "Upload-Offset": "0"})
    assert done.status_code == 204, done.text
    # ...and the next one cut short by SIGKILL once more than a write batch of it is on disk.
    path = media_dir / ".resumable" / upload_id
    sent = first + 1_100_000
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        lines = "".join(f"{k}: {v}\r\n" for k, v in {**auth, **proto}.items())
        sock.sendall((f"PATCH {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}Upload-Offset: {first}\r\n"
                      f"Content-Length: {len(data) - first}\r\n\r\n").encode() + data[first:sent])
        wait_for(lambda: path.stat().st_size > first, "the second chunk to reach the disk")
        server.kill()
    assert path.stat().st_size > first  # written by the dead server, never acknowledged
    assert db.query("SELECT upload_offset FROM resumable_uploads")[0]["upload_offset"] == first

    restarted = servers(VIDEOFLIX_PORT=str(server.port))
    state = requests.head(restarted.base + url, headers={**auth, **{k: v for k, v in proto.items()
                                                                    if k != "Content-Type"}}, timeout=10)
    assert (state.status_code, state.headers["Upload-Offset"]) == (204, str(first))
    options = {"endpoint": restarted.base + "/api/uploads/", "file": str(short_clip), "protocol": protocol,
               "token": token, "chunkSize": 400_000, "metadata": {"title": "unused"},
               "uploadUrl": restarted.base + url}
    # (the dead server's lease on the upload lasts up to 10 s: 423s, which the client retries)
    run = subprocess.run(["node", str(ROOT / "tests" / "tus_client.js"), json.dumps(options)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["ok"], (run.stdout, run.stderr[-2000:])
    assert result["resumedFrom"] == first
    video_id = int(result["videoLocation"].rstrip("/").rsplit("/", 1)[-1])
    wait_for(lambda: api.call("GET", f"/api/video/{video_id}/").json()["status"] == "ready", "the video to be ready",
             timeout=120)
    assert api.detail(video_id)["title"] == "Killed mid-chunk"
    source = media_dir / "sources" / str(video_id)
    assert hashlib.sha256(source.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert not path.exists()
    assert len(db.query("SELECT id FROM videos")) == 1
