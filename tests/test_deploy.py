"""Deployment files (issue 13 items 1 and 2): the compose file against the Compose
Specification schema, .env.example against the README and config.py, the
Dockerfile's shape, and the shipped nginx configuration in front of the real app.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from videoflix.delivery import answer
from videoflix.platform.config import ENV_VARS, Config, ConfigError

from helpers import PASSWORD

ROOT = Path(__file__).resolve().parents[1]
ENV_LINE = re.compile(r"^#?\s?([A-Z][A-Z0-9_]*)=(.*)$")
README_ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \|")
# Defaults derived from other settings: .env.example leaves them empty and says so.
DERIVED = {"VIDEOFLIX_VAR_DIR", "VIDEOFLIX_MEDIA_DIR", "FRONTEND_URL"}


def env_example() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = ENV_LINE.match(line)
        if match:
            assert match.group(1) not in found, f"{match.group(1)} twice in .env.example"
            found[match.group(1)] = match.group(2)
    return found


def readme_variables() -> set[str]:
    return {m.group(1) for line in (ROOT / "README.md").read_text().splitlines() if (m := README_ROW.match(line))}


# --- docker-compose.yml -------------------------------------------------------------------

def check_jsonschema(*args: str) -> subprocess.CompletedProcess:
    binary = Path(sys.executable).with_name("check-jsonschema")
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120)


def test_compose_file_validates_against_the_compose_specification():
    done = check_jsonschema("--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("breakage", [
    ('command: ["videoflix", "worker"]', 'commands: ["videoflix", "worker"]'),  # unknown key
    ('      test: ["CMD", "redis-cli", "ping"]', '      tset: ["CMD", "redis-cli", "ping"]'),
    ("        condition: service_healthy", "        condition: when_ready"),  # not in the enum
    ("  pgdata:\n", "  pgdata: [1, 2]\n"),  # a volume is a mapping
])
def test_compose_schema_check_catches_a_broken_file(breakage, tmp_path):
    """The validation above can fail: the same check refuses a subtly broken copy."""
    text = (ROOT / "docker-compose.yml").read_text()
    assert breakage[0] in text
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(breakage[0], breakage[1], 1))
    done = check_jsonschema("--builtin-schema", "vendor.compose-spec", str(broken))
    assert done.returncode == 1, done.stdout


def test_compose_takes_every_interpolated_setting_from_env_and_documents_it():
    compose = (ROOT / "docker-compose.yml").read_text()
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose))
    assert interpolated, "no ${VAR} in docker-compose.yml"
    assert interpolated - set(env_example()) == set()
    assert "env_file: .env" in compose  # and every application setting reaches the containers


def test_compose_has_the_services_volumes_and_checks_operations_rely_on():
    compose = (ROOT / "docker-compose.yml").read_text()
    for needle in ("image: postgres:16", "image: redis:7", '"--appendonly", "yes"', "pg_isready",
                   '"redis-cli", "ping"', 'command: ["videoflix", "serve"]', 'command: ["videoflix", "worker"]',
                   "condition: service_healthy", "pgdata:/var/lib/postgresql/data", "redisdata:/data",
                   "media:/data", "./deploy/nginx.conf:/etc/nginx/templates/default.conf.template:ro",
                   "./deploy/nginx-main.conf:/etc/nginx/nginx.conf:ro",
                   "./deploy/media-token.js:/etc/nginx/njs/media-token.js:ro"):
        assert needle in compose, needle
    # Scalable: no fixed container name or host port on the worker.
    assert "container_name" not in compose


def test_compose_offers_object_storage_under_a_profile_never_published():
    """SeaweedFS (issue 21) only with `--profile s3`, its S3 port on the compose network
    alone, its admin identity the app's AWS_* pair, its data in a volume of its own."""
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    store = compose["services"]["seaweedfs"]
    assert store["profiles"] == ["s3"]
    assert store["image"].startswith("chrislusf/seaweedfs:") and not store["image"].endswith(":latest")
    assert "ports" not in store and store["expose"] == ["8333"]
    assert {"-s3", "-s3.port=8333"} <= set(store["command"])
    assert store["environment"] == {"AWS_ACCESS_KEY_ID": "${AWS_ACCESS_KEY_ID:-}",
                                    "AWS_SECRET_ACCESS_KEY": "${AWS_SECRET_ACCESS_KEY:-}"}
    assert store["volumes"] == ["objects:/data"] and "objects" in compose["volumes"]
    # Nothing else needs it to start (a profile's service cannot be depended on without the profile).
    for name, service in compose["services"].items():
        assert "seaweedfs" not in (service.get("depends_on") or {}), name


# --- .env.example ---------------------------------------------------------------------------

def test_env_example_and_readme_table_name_the_same_variables():
    documented = env_example()
    assert set(documented) == readme_variables()


def test_env_example_lists_every_application_setting():
    assert {var for _, var, _, _ in ENV_VARS} - set(env_example()) == set()


@pytest.mark.parametrize("name, var, parse", [(name, var, parse) for name, var, parse, _ in ENV_VARS],
                         ids=[var for _, var, _, _ in ENV_VARS])
def test_env_example_states_the_real_default(name, var, parse):
    value = env_example()[var]
    default = getattr(Config(host="127.0.0.1", port=8000), name)
    if value == "":
        assert var in DERIVED or not default, f"{var}: .env.example leaves it empty, default is {default!r}"
        return
    try:
        assert parse(value) == default, f"{var}={value} in .env.example, default is {default!r}"
    except (ValueError, ConfigError) as exc:
        pytest.fail(f"{var}={value} in .env.example does not parse: {exc}")


def test_env_example_sets_nothing_but_the_required_blanks():
    # Uncommented lines would override defaults for everyone who copies the file.
    set_lines = [line for line in (ROOT / ".env.example").read_text().splitlines()
                 if ENV_LINE.match(line) and not line.startswith("#")]
    assert set_lines == ["SECRET_KEY=", "POSTGRES_PASSWORD=", "VIDEOFLIX_MEDIA_KEY="]  # (compose: nginx needs it)


# --- Dockerfile -----------------------------------------------------------------------------

def dockerfile_stages() -> list[list[str]]:
    stages: list[list[str]] = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_final_stage_is_slim_non_root_with_ffmpeg_and_a_health_check():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    final = "\n".join(stages[-1])
    assert stages[-1][0].startswith("FROM python:3.11-slim-bookworm")
    assert "apt-get install -y --no-install-recommends ffmpeg" in final
    for tool in ("build-essential", "gcc", "g++", "make ", "pip install", "npm "):
        assert tool not in final, tool
    users = re.findall(r"^USER (\S+)", final, re.M)
    assert users and users[-1] not in ("root", "0")
    assert "HEALTHCHECK" in final and "/api/health/" in final
    assert 'VOLUME ["/data"]' in final
    assert final.rstrip().endswith('CMD ["videoflix", "serve"]')


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image():
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for entry in (".git", ".venv", "var", ".env", "node_modules"):
        assert entry in ignored


# --- nginx in front of the real application ---------------------------------------------------

def start_nginx(http_port: int, temp: Path, media_dir: str = "/data/media/"):
    """The shipped deploy/nginx.conf (tests/nginx_site.py), pointed at this test's server
    instead of `web` and at `media_dir` instead of the compose volume; (base URL, process)."""
    from videoflix.accounts import tokens
    from videoflix.platform.embedded import free_port

    import nginx_site

    port = free_port()
    proc = nginx_site.start(temp, upstream_port=http_port, listen_port=port, media_dir=media_dir,
                            media_key=tokens.media_key("unused by these tests"))
    return f"http://127.0.0.1:{port}", proc


def stop_nginx(proc) -> None:
    proc.terminate()
    proc.wait(timeout=10)
    proc.stderr.close()


@pytest.fixture
def nginx_front(http_port, tmp_path):
    base, proc = start_nginx(http_port, tmp_path / "nginx")
    yield base, proc
    stop_nginx(proc)


@pytest.mark.gen_test
async def test_shipped_nginx_config_proxies_to_the_app_and_keeps_the_request_id(nginx_front, http_client):
    import tornado.httpclient

    base, proc = nginx_front

    async def get(path: str, **headers: str) -> tornado.httpclient.HTTPResponse:
        loop_deadline = 100
        for _ in range(loop_deadline):  # nginx is ready once it accepts
            try:
                return await http_client.fetch(base + path, headers=headers, raise_error=False)
            except ConnectionRefusedError:
                assert proc.poll() is None, proc.stderr.read().decode()
                import asyncio
                await asyncio.sleep(0.05)
        raise AssertionError("nginx did not start")

    health = await get("/api/health/")
    assert health.code == 200 and b'"database":"ok"' in health.body
    kept = await get("/api/health/", **{"X-Request-ID": "via-nginx-1"})
    assert kept.headers["X-Request-ID"] == "via-nginx-1"
    made = await get("/api/health/")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])  # nginx's $request_id
    missing = await get("/api/video/1/")
    assert missing.code == 401 and missing.headers["Content-Type"].startswith("application/json")


@pytest.mark.gen_test(timeout=120)
async def test_resumable_uploads_pass_nginx_in_chunks_under_its_100_mb_cap(nginx_front, client, make_user,
                                                                          small_clip, config):
    """Issue 22 item 2: the shipped config caps /api/uploads/ bodies at 100 MB; tus-js-client
    sends chunks under it and the file arrives whole; a body over it is a JSON 413."""
    import asyncio
    import base64
    import hashlib
    import json

    from videoflix.platform import media

    base, proc = nginx_front
    await make_user()
    token = client.cookies["access_token"]
    for _ in range(100):  # nginx is ready once it accepts
        try:
            await client.http.fetch(base + "/api/health/", raise_error=False)
            break
        except ConnectionRefusedError:
            await asyncio.sleep(0.05)
    created = await client.http.fetch(
        base + "/api/uploads/", method="POST", body=b"", raise_error=False, headers={
            "Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0", "Upload-Length": "10",
            "Upload-Metadata": "title " + base64.b64encode(b"Big").decode()})
    assert created.code == 201, created.body
    url = created.headers["Location"]
    # A declared body over the cap is refused by nginx before a byte of it is read.
    import socket
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall((f"PATCH {url} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                     "Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
                     f"Upload-Offset: 0\r\nContent-Length: {100 * 1024 * 1024 + 1}\r\n\r\n").encode())
        answer = raw.recv(65536).decode("latin1")
    assert answer.startswith("HTTP/1.1 413"), answer
    assert '"detail"' in answer and "smaller chunks" in answer
    options = {"endpoint": base + "/api/uploads/", "file": str(small_clip), "protocol": "tus-v1", "token": token,
               "chunkSize": 400_000, "metadata": {"title": "Through nginx"}}
    node = await asyncio.create_subprocess_exec(
        "node", str(ROOT / "tests" / "tus_client.js"), json.dumps(options), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(node.communicate(), timeout=100)
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["ok"], (out, err[-2000:])
    video_id = int(result["videoLocation"].rstrip("/").rsplit("/", 1)[-1])
    source = media.source_path(config.media_dir, video_id).read_bytes()
    assert hashlib.sha256(source).hexdigest() == hashlib.sha256(small_clip.read_bytes()).hexdigest()


# --- behind nginx: X-Accel-Redirect (issue 13 item 5) ------------------------------------------

ACCEL_SEGMENT = os.urandom(3 * 1024 * 1024 + 777)
ACCEL_PLAYLIST = ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n"
                  + "".join(f"#EXTINF:4.000,\nseg_{n:05d}.ts\n" for n in range(200)) + "#EXT-X-ENDLIST\n").encode()


accel_versioned: list[str] = []  # the versioned segment path of the fixture below


@pytest.fixture
def accel(app, config, http_port, tmp_path, io_loop, make_user, new_client, services, http_client):
    """nginx (the shipped config) in front of the app with VIDEOFLIX_ACCEL_REDIRECT set,
    a media directory nginx's workers can read, and videos in it."""
    import dataclasses

    from videoflix.platform import media

    from helpers import make_ready_version, make_ready_video

    media_root = Path(tempfile.mkdtemp(prefix="videoflix-accel-"))
    media_root.chmod(0o755)  # nginx's workers run as another user
    app.settings["config"] = dataclasses.replace(config, media_dir=str(media_root),
                                                 accel_redirect="/internal-media/")
    base, proc = start_nginx(http_port, tmp_path / "nginx", str(media_root))

    async def setup():
        owner, stranger = new_client(), new_client()
        owner.base_url = stranger.base_url = base
        await wait_for_nginx(owner, proc)
        user = await make_user("owner@example.com", log_in=False)
        await make_user("stranger@example.com", log_in=False)
        for client, email in ((owner, "owner@example.com"), (stranger, "stranger@example.com")):
            assert (await client.post("/api/login/", {"email": email, "password": PASSWORD})).status == 200
        video_id = await make_ready_video(services, user["id"], visibility="private")  # 720p and 480p
        folder = media.version_dir(str(media_root), video_id, 1) / "720p"  # its first (and live) version
        folder.mkdir(parents=True)
        (folder / "seg_00000.ts").write_bytes(ACCEL_SEGMENT)
        (folder / "index.m3u8").write_bytes(ACCEL_PLAYLIST)
        for path in (media_root, folder.parent.parent, folder.parent, folder):
            path.chmod(0o755)
        # And one asked for by its versioned path (media/<id>/v<N>/).
        versioned, version = await make_ready_version(services, user["id"])
        vfolder = media.version_dir(str(media_root), versioned, version) / "720p"
        vfolder.mkdir(parents=True)
        (vfolder / "seg_00000.ts").write_bytes(ACCEL_SEGMENT)
        for path in (vfolder.parent.parent, vfolder.parent, vfolder):
            path.chmod(0o755)
        accel_versioned.clear()
        accel_versioned.append(f"/api/video/{versioned}/v{version}/720p/seg_00000.ts")
        return owner, stranger, video_id

    owner, stranger, video_id = io_loop.run_sync(setup)
    yield base, owner, stranger, video_id, media_root
    stop_nginx(proc)
    shutil.rmtree(media_root, ignore_errors=True)


async def wait_for_nginx(client, proc) -> None:
    import asyncio
    for _ in range(200):
        try:
            await client.get("/api/health/")
            return
        except ConnectionRefusedError:
            assert proc.poll() is None, proc.stderr.read().decode()
            await asyncio.sleep(0.05)
    raise AssertionError("nginx did not start")


@pytest.mark.gen_test(timeout=60)
async def test_accel_redirect_nginx_sends_segments_with_ranges_and_validators(accel, new_client):
    base, owner, _, video_id, _ = accel
    path = f"/api/video/{video_id}/720p/seg_00000.ts"
    full = await owner.get(path, headers={"Origin": "http://127.0.0.1:5500", "X-Request-ID": "accel-1"})
    assert full.status == 200 and full.body == ACCEL_SEGMENT
    headers = full.headers
    assert "X-Accel-Redirect" not in headers
    assert headers["Content-Type"] == "video/MP2T"
    assert headers["Cache-Control"] == answer.UNVERSIONED_SEGMENT_CACHE_CONTROL  # Videoflix's policy
    assert int(headers["Content-Length"]) == len(ACCEL_SEGMENT)
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["X-Request-ID"] == "accel-1"  # Videoflix's, copied by the internal location
    assert headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:5500"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    etag, modified = headers["ETag"], headers["Last-Modified"]

    ranged = await owner.get(path, headers={"Range": "bytes=1000-1000999"})
    assert (ranged.status, ranged.headers["Content-Range"]) == (206, f"bytes 1000-1000999/{len(ACCEL_SEGMENT)}")
    assert ranged.body == ACCEL_SEGMENT[1000:1001000]
    assert ranged.headers["Cache-Control"] == headers["Cache-Control"]
    suffix = await owner.get(path, headers={"Range": "bytes=-5"})
    assert (suffix.status, suffix.body) == (206, ACCEL_SEGMENT[-5:])
    beyond = await owner.get(path, headers={"Range": f"bytes={len(ACCEL_SEGMENT)}-"})
    assert beyond.status == 416

    for validator in ({"If-None-Match": etag}, {"If-Modified-Since": modified}):
        again = await owner.get(path, headers=validator)
        assert (again.status, again.body) == (304, b""), validator
        assert again.headers["ETag"] == etag
    changed = await owner.get(path, headers={"If-None-Match": '"something-else"'})
    assert changed.status == 200 and changed.body == ACCEL_SEGMENT
    stale_range = await owner.get(path, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert stale_range.status == 200 and stale_range.body == ACCEL_SEGMENT  # If-Range: the whole file

    head = await owner.fetch("HEAD", path)
    assert (head.status, head.body, int(head.headers["Content-Length"])) == (200, b"", len(ACCEL_SEGMENT))

    # A versioned segment (what a rendered master points at): immutable, ranges alike.
    versioned = await owner.get(accel_versioned[0], headers={"Range": "bytes=10-19"})
    assert (versioned.status, versioned.body) == (206, ACCEL_SEGMENT[10:20])
    assert versioned.headers["Cache-Control"] == answer.IMMUTABLE_CACHE_CONTROL
    anonymous = new_client()
    anonymous.base_url = base
    assert (await anonymous.get(accel_versioned[0])).status == 401


@pytest.mark.gen_test(timeout=60)
async def test_accel_redirect_playlists_are_gzipped_by_nginx_and_fresh_for_5_seconds(accel):
    _, owner, _, video_id, _ = accel
    path = f"/api/video/{video_id}/720p/index.m3u8"
    plain = await owner.get(path, headers={"Accept-Encoding": "identity"})
    assert plain.status == 200 and plain.body == ACCEL_PLAYLIST
    assert plain.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert plain.headers["Cache-Control"] == "private, max-age=5"
    zipped = await owner.fetch("GET", path, headers={"Accept-Encoding": "gzip"})
    assert zipped.status == 200 and zipped.body == ACCEL_PLAYLIST  # decoded by the client
    assert zipped.raw.headers.get("Vary") == "Accept-Encoding"


@pytest.mark.gen_test(timeout=60)
async def test_accel_redirect_refusals_are_videoflix_json_and_internal_location_is_closed(
        accel, new_client):
    base, owner, stranger, video_id, media_root = accel
    segment = f"/api/video/{video_id}/720p/seg_00000.ts"
    anonymous = new_client()
    anonymous.base_url = base
    refused = await anonymous.get(segment)
    assert refused.status == 401 and refused.headers["Content-Type"].startswith("application/json")
    assert ACCEL_SEGMENT[:64] not in refused.body
    private = await stranger.get(segment)  # someone else's private video: as if it did not exist
    assert private.status == 404 and private.json() == {"detail": "Not found."}
    for traversal in (f"/api/video/{video_id}/720p/..%2F..%2F..%2Fetc%2Fpasswd",
                      f"/api/video/{video_id}/..%2F..%2Fetc/passwd",
                      f"/api/video/{video_id}/720p/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                      f"/api/video/{video_id}/720p/seg_00009.ts"):
        response = await owner.get(traversal)
        assert response.status == 404 and response.body.startswith(b"{"), traversal
        assert ACCEL_SEGMENT[:64] not in response.body
    nul = await owner.get(f"/api/video/{video_id}/720p/seg_00000.ts%00.txt")  # nginx refuses %00 itself
    assert nul.status == 400 and ACCEL_SEGMENT[:64] not in nul.body
    for direct in (f"/internal-media/{video_id}/v1/720p/seg_00000.ts",
                   f"/internal-media/{video_id}/v1/720p/index.m3u8",
                   "/internal-media/", "/internal-media/../etc/passwd", "/INTERNAL-MEDIA/1/720p/seg_00000.ts"):
        response = await owner.get(direct)
        assert response.status == 404, direct
        assert ACCEL_SEGMENT[:64] not in response.body and b"#EXTM3U" not in response.body
    # A symlink planted below media/<id>/ is refused by nginx too (disable_symlinks).
    (media_root / str(video_id) / "v1" / "480p").symlink_to(media_root / str(video_id) / "v1" / "720p")
    planted = await owner.get(f"/api/video/{video_id}/480p/seg_00000.ts")
    assert planted.status == 404 and ACCEL_SEGMENT[:64] not in planted.body
