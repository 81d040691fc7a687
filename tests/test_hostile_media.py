"""A corpus of hostile and awkward media, made here with ffmpeg (issue 11, item 3).

Each upload ends either `ready` with a valid ladder (checked with ffprobe: even
dimensions, no upscaling, an IDR keyframe at every segment start, audio when the
source had it) or as a clean 4xx / `failed` with a reason. Refused input leaves
nothing on disk, and the server stays healthy throughout.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import struct
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from videoflix.platform.db import cursor

from helpers import multipart, upload

pytestmark = pytest.mark.slow

LAVFI_VIDEO = "testsrc2=size={size}:rate={rate}"


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-nostdin", *args], check=True)


def make_clip(path: Path, *, size: str = "640x360", rate: str = "25", seconds: float = 3,
              audio: str | None = "sine=frequency=440:sample_rate=48000", extra: tuple[str, ...] = (),
              codec: tuple[str, ...] = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"),
              audio_codec: tuple[str, ...] = ("-c:a", "aac")) -> Path:
    inputs = ["-f", "lavfi", "-i", LAVFI_VIDEO.format(size=size, rate=rate)]
    if audio:
        inputs += ["-f", "lavfi", "-i", audio]
    ffmpeg(*inputs, "-t", str(seconds), *codec, *(audio_codec if audio else ()), *extra, str(path))
    return path


def patch_mvhd_duration(data: bytes, factor: int) -> bytes:
    """The same MP4 with a movie header that claims `factor` times the real duration."""
    at = data.index(b"mvhd") + 4
    version = data[at]
    offset = at + 4 + (16 if version == 1 else 8) + 4  # version+flags, times, timescale
    fmt = ">Q" if version == 1 else ">I"
    size = struct.calcsize(fmt)
    (duration,) = struct.unpack(fmt, data[offset:offset + size])
    return data[:offset] + struct.pack(fmt, duration * factor) + data[offset + size:]


def build_corpus(root: Path) -> dict[str, Path]:
    corpus: dict[str, Path] = {}

    def path(name: str, suffix: str = ".mp4") -> Path:
        corpus[name] = root / f"{name}{suffix}"
        return corpus[name]

    path("zero_bytes").write_bytes(b"")
    path("random_bytes").write_bytes(secrets.token_bytes(200_000))
    base = make_clip(root / "base.mp4")
    whole = base.read_bytes()
    path("truncated").write_bytes(whole[: len(whole) // 2])  # moov is at the end: lost
    fast = make_clip(root / "fast.mp4", extra=("-movflags", "+faststart"))
    path("truncated_faststart").write_bytes(fast.read_bytes()[: fast.stat().st_size // 2])
    path("moov_at_end").write_bytes(whole)
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440", "-t", "3", "-c:a", "aac", str(path("audio_only", ".m4a")))
    image = root / "image.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240", "-frames:v", "1", str(image))
    path("image_renamed").write_bytes(image.read_bytes())
    make_clip(path("one_frame"), audio=None, extra=("-frames:v", "1"))
    make_clip(path("uhd_60fps"), size="3840x2160", rate="60", seconds=1)
    make_clip(path("hdr_pq_hevc", ".mkv"), size="640x360", seconds=2, audio=None,
              codec=("-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error",
                     "-pix_fmt", "yuv420p10le", "-color_primaries", "bt2020", "-color_trc", "smpte2084",
                     "-colorspace", "bt2020nc"))
    path("lying_duration").write_bytes(patch_mvhd_duration(whole, 50))
    make_clip(path("odd_dimensions"), size="1279x721")
    make_clip(path("interlaced"), size="720x576", extra=("-flags", "+ildct+ilme", "-x264opts", "tff=1"))
    make_clip(path("half_fps"), rate="1/2", seconds=12)
    make_clip(path("two_audio_tracks"), extra=("-map", "0:v", "-map", "1:a", "-map", "1:a"))
    make_clip(path("surround_5_1"), audio="sine=frequency=440:sample_rate=48000,pan=5.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0",
              audio_codec=("-c:a", "aac", "-ac", "6"))
    return corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return build_corpus(tmp_path_factory.mktemp("hostile"))


# What each kind may become: "ready", "failed" (with a reason) or a 4xx at upload.
EXPECTED = {
    "zero_bytes": {"4xx"},
    "random_bytes": {"4xx"},
    "truncated": {"4xx"},
    "truncated_faststart": {"failed", "4xx"},
    "moov_at_end": {"ready"},
    "audio_only": {"4xx"},
    "image_renamed": {"4xx"},
    "one_frame": {"ready", "failed"},
    "uhd_60fps": {"ready"},
    "hdr_pq_hevc": {"ready"},
    "lying_duration": {"failed", "ready"},
    "odd_dimensions": {"ready"},
    "interlaced": {"ready"},
    "half_fps": {"ready", "failed"},
    "two_audio_tracks": {"ready"},
    "surround_5_1": {"ready"},
}


async def wait_final(client, video_id: int, timeout: float = 300) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        detail = (await client.get(f"/api/video/{video_id}/")).json()
        if detail["status"] in ("ready", "failed"):
            return detail
        assert loop.time() < deadline, detail
        await asyncio.sleep(0.25)


def ffprobe_json(path: Path, *args: str) -> dict:
    done = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", *args, str(path)],
                          capture_output=True, check=True)
    return json.loads(done.stdout)


async def check_ladder(client, detail: dict, source: Path, tmp_path: Path) -> None:
    """Every rendition: even size, not above the source, IDR at each segment start, audio kept."""
    src = ffprobe_json(source, "-show_streams")["streams"]
    source_height = min(s["height"] for s in src if s["codec_type"] == "video")
    source_width = max(s["width"] for s in src if s["codec_type"] == "video")
    had_audio = any(s["codec_type"] == "audio" for s in src)
    assert detail["resolutions"], detail
    for resolution in detail["resolutions"]:
        playlist = await client.get(f"/api/video/{detail['id']}/{resolution}/index.m3u8")
        assert playlist.status == 200
        names = [line for line in playlist.body.decode().splitlines() if line and not line.startswith("#")]
        assert names and "#EXT-X-ENDLIST" in playlist.body.decode()
        for name in names:
            segment = await client.get(f"/api/video/{detail['id']}/{resolution}/{name}")
            assert segment.status == 200
            local = tmp_path / f"{resolution}-{name}"
            local.write_bytes(segment.body)
            streams = ffprobe_json(local, "-show_streams")["streams"]
            video = next(s for s in streams if s["codec_type"] == "video")
            assert video["width"] % 2 == 0 and video["height"] % 2 == 0, video
            assert video["pix_fmt"] == "yuv420p", video
            assert min(video["width"], video["height"]) <= max(source_height, 2), (video, source_height)
            assert max(video["width"], video["height"]) <= max(source_width, source_height)
            assert any(s["codec_type"] == "audio" for s in streams) == had_audio, (resolution, name)
            first = ffprobe_json(local, "-select_streams", "v", "-show_frames", "-read_intervals", "%+#1",
                                 "-show_entries", "frame=key_frame,pict_type")["frames"][0]
            assert first["key_frame"] == 1 and first["pict_type"] == "I", (resolution, name, first)


def disk_files(config) -> list[str]:
    root = Path(config.media_dir)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def admin_client(new_client, make_admin, io_loop):
    browser = new_client()
    io_loop.run_sync(lambda: make_admin(browser))
    return browser


@pytest.mark.gen_test(timeout=400)
@pytest.mark.parametrize("kind", sorted(EXPECTED))
async def test_hostile_media_ends_ready_or_cleanly_refused(kind, corpus, admin_client, runner, config,
                                                           services, tmp_path):
    source = corpus[kind]
    response = await upload(admin_client, source, filename=source.name)
    assert (await admin_client.get("/api/health/")).status == 200
    if response.status != 201:
        print(f"hostile {kind}: {response.status} {response.body[:120]!r}")
        assert 400 <= response.status < 500, response.body
        assert "4xx" in EXPECTED[kind], (kind, response.status, response.body)
        assert isinstance(response.json().get("detail") or response.json().get("file"), (str, list))
        assert disk_files(config) == [], kind
        async with cursor(services.pool) as cur:
            await cur.execute("SELECT count(*) AS n FROM videos")
            assert (await cur.fetchone())["n"] == 0
        return
    detail = await wait_final(admin_client, response.json()["id"])
    print(f"hostile {kind}: {detail['status']} {detail['error'] or detail['resolutions']}")
    assert detail["status"] in EXPECTED[kind], (kind, detail)
    if detail["status"] == "failed":
        assert detail["error"] and "/" not in detail["error"].replace("1/2", ""), detail["error"]
        return
    await check_ladder(admin_client, detail, source, tmp_path)
    assert (await admin_client.get("/api/health/")).status == 200


# --- malformed multipart bodies ----------------------------------------------------

@pytest.mark.gen_test
async def test_two_files_in_one_upload_are_refused_and_nothing_kept(admin_client, corpus, config, services):
    body, content_type = multipart({"title": "t"}, "a.mp4", corpus["moov_at_end"].read_bytes())
    boundary = content_type.split("boundary=")[1]
    second = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="b.mp4"\r\n'
              f"Content-Type: application/octet-stream\r\n\r\n").encode() + b"x" * 1000 + b"\r\n"
    body = body.replace(f"--{boundary}--".encode(), second + f"--{boundary}--".encode())
    response = await admin_client.fetch("POST", "/api/video/", raw_body=body, headers={"Content-Type": content_type})
    assert response.status == 400, response.body
    assert disk_files(config) == []


@pytest.mark.gen_test
@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=",
                                          "multipart/mixed; boundary=x"])
async def test_multipart_without_a_usable_boundary_is_400(admin_client, corpus, config, content_type):
    body, _ = multipart({"title": "t"}, "a.mp4", corpus["moov_at_end"].read_bytes())
    response = await admin_client.fetch("POST", "/api/video/", raw_body=body, headers={"Content-Type": content_type})
    assert response.status == 400, response.body
    assert disk_files(config) == []


async def raw_upload(base_url: str, head: bytes, body: bytes, close_write: bool) -> bytes:
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(head + body)
    await writer.drain()
    if close_write:
        writer.write_eof()
    answer = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 30):
            answer += chunk
    except ConnectionResetError:
        pass  # the server answered and closed on the rest of a body it will not read
    finally:
        writer.close()
    return answer


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("lie", ["shorter", "longer"])
async def test_a_lying_content_length_keeps_nothing(lie, admin_client, corpus, config, services, base_url):
    body, content_type = multipart({"title": "t"}, "a.mp4", corpus["moov_at_end"].read_bytes())
    declared = len(body) // 2 if lie == "shorter" else len(body) * 2
    cookie = "; ".join(f"{k}={v}" for k, v in admin_client.cookies.items())
    head = (f"POST /api/video/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {declared}\r\nConnection: close\r\n\r\n").encode()
    answer = await raw_upload(base_url, head, body, close_write=lie == "longer")
    if answer:
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, answer[:300]
    # The server has let go of the request: nothing of it stays.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while disk_files(config) and loop.time() < deadline:
        await asyncio.sleep(0.1)
    assert disk_files(config) == []
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT count(*) AS n FROM videos")
        assert (await cur.fetchone())["n"] == 0
    assert (await admin_client.get("/api/health/")).status == 200
