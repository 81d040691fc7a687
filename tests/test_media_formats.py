"""Only real media reaches a demuxer (issue 8, item 1; CWE-73, CWE-918, CWE-209).

An upload that is a playlist, a concat list, a manifest or an image must never make
ffprobe or ffmpeg open the files it names: it is refused with 400 and nothing is kept.
The transcoder forces the demuxer that the allow-listed probe chose, and a failed job's
`error` names no server path.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from videoflix.platform import media
from videoflix.platform.db import cursor
from videoflix.transcode.command import TranscodeSettings, build_command, build_poster_command, prepare_output
from videoflix.transcode.errors import TranscodeError, public_reason
from videoflix.transcode.ffmpeg import run_ffmpeg
from videoflix.transcode.job import transcode
from videoflix.transcode.ladder import pick_renditions
from videoflix.transcode.probe import (
    ALLOWED_DEMUXERS,
    UNSUPPORTED_FORMAT_MESSAGE,
    ProbeError,
    input_options,
    parse_probe,
    probe_file,
    probe_file_sync,
)

from helpers import upload
from media import PARK, clip, probe_facts


def hls_playlist(target: Path) -> bytes:
    return (f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXTINF:5.0,\n{target}\n"
            "#EXT-X-ENDLIST\n").encode()


def concat_list(target: Path) -> bytes:
    return f"ffconcat version 1.0\nfile '{target}'\n".encode()


def dash_manifest(target: Path) -> bytes:
    return (f'<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" '
            f'mediaPresentationDuration="PT5S" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">'
            f'<Period><AdaptationSet mimeType="video/mp4"><Representation id="1" bandwidth="1000000">'
            f'<BaseURL>file:{target}</BaseURL></Representation></AdaptationSet></Period></MPD>\n').encode()


def png_image(tmp_path: Path) -> bytes:
    path = tmp_path / "still.png"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240",
                    "-frames:v", "1", str(path)], check=True)
    return path.read_bytes()


# Each makes a file that older ffprobe/ffmpeg runs happily opened (and followed).
HOSTILE = {
    "hls_playlist": lambda tmp, target: hls_playlist(target),
    "concat_list": lambda tmp, target: concat_list(target),
    "dash_manifest": lambda tmp, target: dash_manifest(target),
    "png_image": lambda tmp, target: png_image(tmp),
}


def old_probe_format(path: Path) -> str:
    """What ffprobe makes of `path` with only the protocol whitelist (wave 1's command)."""
    done = subprocess.run(["ffprobe", "-v", "quiet", "-protocol_whitelist", "file", "-show_entries",
                           "format=format_name", "-of", "default=nw=1:nk=1", "file:" + str(path)],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip()


# --- the allow-list (pure) ---------------------------------------------------

@pytest.mark.parametrize("format_name", ["hls", "dash", "concat", "image2", "png_pipe", "tty", "mxf",
                                         "h264", "sdp", "mp3", "ffmetadata", ""])
def test_probe_refuses_formats_outside_the_allow_list(format_name):
    data = probe_facts(PARK)
    data["format"]["format_name"] = format_name
    with pytest.raises(ProbeError, match="^Unsupported file format"):
        parse_probe(data)


@pytest.mark.parametrize("format_name, demuxer", [("mov,mp4,m4a,3gp,3g2,mj2", "mov"),
                                                  ("matroska,webm", "matroska"), ("mpegts", "mpegts")])
def test_probe_keeps_the_demuxer_it_allowed(format_name, demuxer):
    data = probe_facts(PARK)
    data["format"]["format_name"] = format_name
    assert parse_probe(data).demuxer == demuxer


def test_detection_runs_under_the_format_whitelist():
    options = input_options(None)
    assert options[options.index("-protocol_whitelist") + 1] == "file"
    assert set(options[options.index("-format_whitelist") + 1].split(",")) == set(ALLOWED_DEMUXERS)
    assert "-f" not in options


def test_a_pinned_demuxer_is_forced_and_alone_on_the_whitelist():
    options = input_options("matroska")
    assert options[options.index("-f") + 1] == "matroska"
    assert options[options.index("-format_whitelist") + 1] == "matroska"
    mov = input_options("mov")
    assert mov[mov.index("-enable_drefs") + 1] == "0"
    with pytest.raises(ProbeError):
        input_options("hls")


def test_every_ffmpeg_run_on_the_source_forces_the_probed_demuxer(tmp_path):
    probe = probe_file_sync(clip(PARK))
    commands = [build_command(clip(PARK), tmp_path, probe, pick_renditions(probe), TranscodeSettings()),
                build_poster_command(clip(PARK), tmp_path, probe)]
    for command in commands:
        before_input = command[:command.index("-i")]
        assert before_input[before_input.index("-f") + 1] == "mov"
        assert before_input[before_input.index("-format_whitelist") + 1] == "mov"
        assert before_input[before_input.index("-protocol_whitelist") + 1] == "file"


# --- real ffprobe / ffmpeg on hostile files ---------------------------------

@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_probe_refuses_files_that_reference_or_are_not_video(tmp_path, kind):
    path = tmp_path / "upload.part"
    path.write_bytes(HOSTILE[kind](tmp_path, clip(PARK)))
    with pytest.raises(ProbeError) as raised:
        probe_file_sync(path)
    assert str(raised.value) in (UNSUPPORTED_FORMAT_MESSAGE, "Unreadable media file.")


def test_a_playlist_naming_a_real_video_was_followed_without_the_allow_list(tmp_path):
    # The hole itself: wave 1's probe read the playlist and the clip it names as a video.
    path = tmp_path / "upload.part"
    path.write_bytes(hls_playlist(clip(PARK)))
    assert old_probe_format(path) == "hls"
    with pytest.raises(ProbeError, match="^Unsupported file format"):
        probe_file_sync(path)


@pytest.mark.gen_test
async def test_async_probe_refuses_a_concat_list(tmp_path):
    path = tmp_path / "upload.part"
    path.write_bytes(concat_list(clip(PARK)))
    with pytest.raises(ProbeError, match="^Unsupported file format"):
        await probe_file(path)


def test_ffmpeg_cannot_open_a_playlist_as_the_demuxer_it_was_pinned_to(tmp_path):
    # A file that "probed" as MP4 but is a playlist: the forced mov demuxer reads it as
    # MP4 (and fails) instead of following the playlist to the clip it names.
    source = tmp_path / "upload.part"
    source.write_bytes(hls_playlist(clip(PARK)))
    probe = probe_file_sync(clip(PARK))
    out = tmp_path / "out"
    prepare_output(out, probe, pick_renditions(probe), TranscodeSettings())
    command = build_command(source, out, probe, pick_renditions(probe), TranscodeSettings())
    with pytest.raises(TranscodeError):
        run_ffmpeg(command, duration=probe.duration, stall_seconds=30, time_limit=60)
    assert not list(out.rglob("*.ts"))


@pytest.mark.parametrize("kind", ["hls_playlist", "concat_list"])
def test_transcode_refuses_a_reference_file_without_naming_paths(tmp_path, kind):
    source = tmp_path / "source"
    source.write_bytes(HOSTILE[kind](tmp_path, clip(PARK)))
    with pytest.raises(TranscodeError) as raised:
        transcode(source, tmp_path / "out")
    assert str(raised.value) == UNSUPPORTED_FORMAT_MESSAGE
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.ts"))


# --- failure messages name no server path ---------------------------------------

@pytest.mark.parametrize("message, expected", [
    ("ffmpeg failed (exit 1): file:/srv/media/.work/7-1/source: Invalid data found",
     "ffmpeg failed (exit 1): source: Invalid data found"),
    ("[hls @ 0x55] Opening '/var/lib/videoflix/media/3/720p/seg_00000.ts' for writing",
     "[hls @ 0x55] Opening 'seg_00000.ts' for writing"),
    ("Failed to open /tmp/x/ | /root/y/z.m3u8", "Failed to open x | z.m3u8"),
    ("fps 30000/1001 at 1920/1080", "fps 30000/1001 at 1920/1080"),
])
def test_public_reason_strips_paths_and_keeps_the_rest(message, expected):
    assert public_reason(message) == expected


@pytest.mark.slow
def test_a_failed_encode_reports_no_server_path(tmp_path, small_clip):
    out = tmp_path / "work"
    for name in ("1080p", "720p", "480p"):
        # A directory where ffmpeg must write the first segment (as seg_00000.ts.tmp:
        # hls_flags temp_file): the HLS muxer fails and names the path it could not open.
        (out / name / "seg_00000.ts.tmp").mkdir(parents=True)
    with pytest.raises(TranscodeError) as raised:
        transcode(small_clip, out, TranscodeSettings(preset="ultrafast"))
    message = str(raised.value)
    assert message.startswith("ffmpeg failed"), message
    assert str(tmp_path) not in message and "/work/" not in message, message


# --- the upload API ------------------------------------------------------------------

async def count_rows(services) -> int:
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT count(*) AS n FROM videos")
        return (await cur.fetchone())["n"]


def files_under(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.gen_test
@pytest.mark.parametrize("kind", sorted(HOSTILE))
async def test_upload_of_a_file_referencing_another_users_video_is_refused(
        kind, tmp_path, client, new_client, make_user, make_admin, services, config, small_clip):
    # The victim: an admin's video whose source sits in the media directory.
    admin = new_client()
    await make_admin(admin)
    first = await upload(admin, small_clip, visibility="private")
    assert first.status == 201, first.body
    victim_source = media.source_path(config.media_dir, first.json()["id"])
    before = files_under(Path(config.media_dir))

    await make_user("attacker@example.com")
    response = await upload(client, HOSTILE[kind](tmp_path, victim_source), filename="movie.mp4")
    assert response.status == 400, response.body
    assert response.json()["detail"] in (UNSUPPORTED_FORMAT_MESSAGE, "Unreadable media file.")
    assert await count_rows(services) == 1
    assert files_under(Path(config.media_dir)) == before  # no .part, no source kept


@pytest.mark.gen_test
async def test_upload_of_a_playlist_names_the_accepted_formats(tmp_path, client, make_user, services):
    await make_user()
    response = await upload(client, hls_playlist(clip(PARK)), filename="clip.m3u8")
    assert (response.status, response.json()) == (400, {"detail": UNSUPPORTED_FORMAT_MESSAGE})
    assert await count_rows(services) == 0


@pytest.mark.gen_test
async def test_upload_of_real_webm_and_mp4_still_accepted(client, make_user, services):
    await make_user()
    for name in (PARK, "bbb_720p_vp8_vorbis_30s.webm"):
        response = await upload(client, clip(name), filename=name)
        assert response.status == 201, response.body
    assert await count_rows(services) == 2
