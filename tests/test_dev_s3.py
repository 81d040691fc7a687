"""`videoflix dev` with VIDEOFLIX_STORAGE=embedded-s3 (issue 21 item 2): a SeaweedFS under
./var/seaweedfs beside the embedded PostgreSQL and Redis, its bucket made, and the server on
s3://videoflix/: an upload's source lands in that bucket, not in ./var/media."""
from __future__ import annotations

import json
import subprocess
import sys

import botocore.session
import pytest
import requests

from videoflix.platform.embedded import free_port
from videoflix.platform.s3store import S3Settings
from videoflix.platform.storage import StorageLocation

from helpers import PASSWORD, cli_env, stop_process, wait_for_health


@pytest.mark.slow
def test_dev_with_embedded_s3_stores_uploads_in_its_own_seaweedfs(tmp_path, small_clip):
    port = free_port()
    env = cli_env(VIDEOFLIX_STORAGE="embedded-s3", VIDEOFLIX_PORT=str(port), VIDEOFLIX_BCRYPT_ROUNDS="4",
                  VIDEOFLIX_VAR_DIR=str(tmp_path / "var"), VIDEOFLIX_ADMIN_PASSWORD=PASSWORD)
    with open(tmp_path / "dev.log", "wb") as log, subprocess.Popen(
            [sys.executable, "-m", "videoflix", "dev"], cwd=tmp_path, env=env,
            stdout=log, stderr=subprocess.STDOUT) as proc:
        try:
            wait_for_health(port, proc, deadline_seconds=120)
            base = f"http://127.0.0.1:{port}"
            session = requests.Session()
            login = session.post(f"{base}/api/login/", json={"email": "admin@videoflix.local", "password": PASSWORD},
                                 headers={"Origin": base}, timeout=30)
            assert login.status_code == 200, login.text
            with open(small_clip, "rb") as handle:
                answer = session.post(f"{base}/api/video/", data={"title": "In the bucket"},
                                      files={"file": ("clip.mp4", handle, "video/mp4")},
                                      headers={"Origin": base, "X-CSRFToken": session.cookies.get("csrftoken", "")},
                                      timeout=60)
            assert answer.status_code == 201, answer.text
            video_id = answer.json()["id"]
            keys = json.loads((tmp_path / "var" / "seaweedfs" / "s3-keys.json").read_text())
            endpoint = next(line.split("embedded SeaweedFS S3 on ")[1].split()[0]
                            for line in (tmp_path / "dev.log").read_text().splitlines()
                            if "embedded SeaweedFS S3 on " in line)
            settings = S3Settings(StorageLocation("s3", "videoflix"), endpoint, "", keys["access_key"],
                                  keys["secret_key"])
            client = botocore.session.get_session().create_client("s3", **settings.client_kwargs())
            try:
                stored = client.get_object(Bucket="videoflix", Key=f"sources/{video_id}")["Body"].read()
            finally:
                client.close()
            assert stored == small_clip.read_bytes()
            assert not (tmp_path / "var" / "media" / "sources" / str(video_id)).exists()
        finally:
            assert stop_process(proc) == 0, (tmp_path / "dev.log").read_text()[-3000:]
