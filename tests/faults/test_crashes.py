"""SIGKILL of a real server process mid-upload, mid-transcode and mid-registration-burst:
after a restart nothing is lost and nothing is left behind (issue 11, item 2). The upload
and the transcode run on both stores (issue 21): with object storage MEDIA_DIR is the
server's scratch, and the bucket must hold nothing of the dead upload or run either."""
from __future__ import annotations

import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from store_helpers import STORAGE_BACKENDS

from faultkit import PASSWORD, Api, ffmpeg_pids, files_under, gone, make_user, unique_email, wait_for


def cookie_header(api: Api) -> str:
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in api.session.cookies)


@pytest.mark.parametrize("storage_backend", STORAGE_BACKENDS)
def test_sigkill_during_upload_leaves_no_row_and_no_part_file_after_restart(servers, db, media_dir, bucket,
                                                                           long_clip):
    server = servers()
    api = Api(server.base)
    make_user(api, db)
    boundary = uuid.uuid4().hex
    content = long_clip.read_bytes()
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nCut short\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    # Built before the headers go out: copying ~180 MB can take longer than the
    # server's 2 s upload idle limit on a busy machine.
    first_half = head + content[: len(content) // 2]
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall((f"POST /api/video/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie_header(api)}\r\n"
                      f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                      f"Content-Length: {len(head) + len(content) + len(tail)}\r\n\r\n").encode())
        sock.sendall(first_half)
        incoming = media_dir / ".incoming"
        part = wait_for(lambda: [p for p in incoming.glob("*.part") if p.stat().st_size > 0],
                        "the upload to reach the disk")[0]
        server.kill()
    assert part.exists()  # the crash left it behind

    restarted = servers()
    wait_for(lambda: not part.exists(), "the sweep to remove the orphaned upload", timeout=30)
    assert db.query("SELECT id FROM videos") == []
    assert files_under(incoming) == []
    wait_for(lambda: f"removed {part}" in restarted.log(), "the sweep's log line")  # (written after the unlink)
    assert requests.get(restarted.base + "/api/health/", timeout=5).status_code == 200
    if bucket is not None:  # the source goes to the bucket only once whole
        assert bucket.keys() == set()


@pytest.mark.parametrize("storage_backend", STORAGE_BACKENDS)
def test_sigkill_during_transcode_reruns_the_job_to_ready_and_removes_the_crashed_version(
        servers, db, media_dir, bucket, long_clip):
    server = servers()
    api = Api(server.base)
    make_user(api, db)
    video_id = api.upload(long_clip).json()["id"]
    work = media_dir / ".work"
    first_version = media_dir / str(video_id) / "v1"  # written in place (README, Architecture: Transcode)
    wait_for(lambda: ffmpeg_pids(server.pid) and first_version.is_dir() and any(work.iterdir()),
             "ffmpeg to be encoding", timeout=60)
    crashed = [first_version, *work.iterdir()]  # the version and its lease fence
    encoders = ffmpeg_pids(server.pid)
    server.kill()
    # The crashed server's ffmpeg goes with it (parent-death signal): no orphan encode.
    wait_for(lambda: all(gone(pid) for pid in encoders), "the crashed run's ffmpeg to exit", timeout=10)
    assert all(path.exists() for path in crashed)

    restarted = servers(VIDEOFLIX_VERSION_GRACE_SECONDS="1")
    api = Api(restarted.base)
    assert api.login("owner@example.com").status_code == 200
    wait_for(lambda: api.detail(video_id)["status"] == "ready", "the job to re-run to ready", timeout=240,
             interval=0.5)
    wait_for(lambda: not any(path.exists() for path in crashed), "the crashed run's files to be swept",
             timeout=60)
    assert db.video(video_id)["attempts"] == 2
    assert db.video(video_id)["live_version"] == 2  # the re-run's own version
    assert files_under(work) == []
    assert "left by a transcode run that is no longer alive" in restarted.log()
    if bucket is None:
        assert "a version neither live nor being built" in restarted.log()
    else:
        assert "the scratch copy of a run that is no longer alive" in restarted.log()
        # The crashed run's objects are swept from the bucket; the re-run's version is whole.
        wait_for(lambda: bucket.keys(f"{video_id}/v1/") == set(), "the crashed run's objects to be swept",
                 timeout=60, interval=0.5)
        assert bucket.missing(video_id, 2) == []


def test_sigkill_during_a_registration_burst_loses_no_account_and_no_activation_mail(servers, db, mails):
    server = servers()
    mails.refuse = 10_000  # nothing is delivered before the crash: every mail must survive it
    emails = [unique_email() for _ in range(40)]
    created: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()

    def register(email: str) -> None:
        try:
            response = requests.post(server.base + "/api/register/", timeout=30, json={
                "email": email, "password": PASSWORD, "confirmed_password": PASSWORD})
        except requests.RequestException:
            return  # the server died under it: no promise was made
        if response.status_code == 201:
            with lock:
                created.append(email)
                # 6: below the per-client mail budget (accounts.MAX_MAILS_PER_ADDRESS, 10 an
                # hour), beyond which registrations are answered 429 and promise nothing.
                if len(created) >= 6:
                    enough.set()

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(register, email) for email in emails]
        assert enough.wait(60), "no registrations answered"
        server.kill()
        for future in futures:
            future.result()
    assert len(created) >= 6
    mails.refuse = 0

    servers()
    wait_for(lambda: {m["To"] for m in mails.messages} >= set(created),
             "every answered registration's activation mail", timeout=60)
    accounts = {row["email"] for row in db.query("SELECT email FROM users")}
    assert set(created) <= accounts
    for message in mails.messages:
        assert "activate" in message.get_body(preferencelist=("plain",)).get_content()
