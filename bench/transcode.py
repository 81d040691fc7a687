"""Benchmark: the one-decode ladder (build_command) against one ffmpeg run per rendition,
and the CPU the storyboard sprites add to it.

    python bench/transcode.py [--sprites-only] [--pairs N] [source]
    python bench/transcode.py --copy [--loops N] [fitting source]
    python bench/transcode.py --quality

Without a source, the 5.8 s park clip from shared/media is looped to about 58 s
(`-stream_loop 9 -c copy`) in a temporary directory. Both methods encode the same ladder
with the same encoder settings (x264 preset, CRF, caps, GOP, AAC) into HLS; the "seed
method" runs ffmpeg once per rendition, one after another, each decoding the source and
encoding its own audio, as the original Videoflix did. Wall time and CPU time (user +
system of the waited-for ffmpeg children, from getrusage) are printed for each.

Sprite overhead: the same one-decode command run with and without the storyboard branch
(TranscodeSettings.storyboard), one after the other in this run, CPU seconds of each and
the ratio (target: at most TARGET_SPRITE_OVERHEAD of the job). `--pairs N` repeats the pair
in alternating order and sums (the difference is small next to a loaded machine's noise);
`--sprites-only` skips the seed method.

`--copy` (issue 23, copy when it fits), side by side in one run on a fitting source (by
default the park clip re-encoded with 2 s GOPs, as a camera writes it, and looped): the seed
method, the full one-decode ladder and the copying ladder (top rung stream-copied, the
lower rungs' keyframes at the source's), CPU-seconds and wall time of each; then the whole
job (`job.transcode`: probe, packet scan, ladder, poster, trick play) against the seed
method's runs alone, as upload-to-ready; then, on a source that does not fit (the original
park clip: one keyframe in 5.8 s), the whole job with copying on (refused: it encodes)
against copying off, to show the decision costs nothing measurable.

`--quality` (issue 23 item 6): for each shared clip (long ones cut to QUALITY_SECONDS by
stream copy) and the camera-like park clip, each rung's size, bitrate, PSNR and SSIM
against the source (scaled to the rung's size with bicubic, same frame rate; Debian's
ffmpeg has no VMAF), for the encoded ladder and, where the source fits, the copying one:
a baseline for later tuning.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videoflix.platform.media import MEDIA_PLAYLIST_NAME, SEGMENT_PATTERN, THUMBS_DIR
from videoflix.transcode.command import (
    AUDIO_CHANNELS,
    AUDIO_PROFILE,
    AUDIO_SAMPLE_RATE,
    PIXEL_FORMAT,
    SPRITE_OUTPUT_PAD,
    VIDEO_PROFILE,
    TranscodeSettings,
    build_command,
    fps_arg,
    prepare_output,
    sprite_plan,
)
from videoflix.transcode.job import plan_copy, transcode
from videoflix.transcode.ladder import Rendition, pick_renditions
from videoflix.transcode.probe import Probe, probe_file_sync

MEDIA_DIR = Path(os.environ.get(
    "VIDEOFLIX_TEST_MEDIA", Path(__file__).resolve().parents[2] / "shared" / "media"))
DEFAULT_CLIP = "park_1080p_h264_aac_5s.mp4"
LOOPS = 9  # 10 plays of 5.8 s: about a minute, long enough for steady-state encoding
# The targets this benchmark checks (DESIGN.md, "One decode, the whole ladder").
TARGET_SPEEDUP = 1.25
TARGET_CPU_SAVED = 0.15
TARGET_SPRITE_OVERHEAD = 0.05  # issue 12: sprites cost at most 5 % of the job's CPU
# Issue 23 item 3: on fitting sources the copying ladder spends >= 45 % less CPU than the
# full ladder and a job is ready >= 2x sooner than the seed method; on others, no slower.
TARGET_COPY_CPU_SAVED = 0.45
TARGET_COPY_SPEEDUP = 2.0
TARGET_REFUSED_SLOWDOWN = 1.05  # wall and CPU of copy-on over copy-off, noise allowed
COPY_LOOPS = 2  # 3 plays of 5.8 s: short, the machine is shared
QUALITY_SECONDS = 20  # --quality cuts longer clips to this (stream copy)
QUALITY_CLIPS = (
    "park_1080p_h264_aac_5s.mp4",
    "bbb_1080p_rotate90_portrait_2s.mp4",
    "street_portrait_1376x1840_hevc_5s.mp4",
    "people_768x432_10fps_noaudio_139s.mp4",
    "fire_720p_vfr_rotate180_2s.mp4",
    "bbb_720p_vp8_vorbis_30s.webm",
)


def seed_commands(
    source: Path, out_dir: Path, probe: Probe, renditions: Sequence[Rendition],
    settings: TranscodeSettings,
) -> list[list[str]]:
    """One standalone ffmpeg run per rendition, same encoder settings as build_command."""
    commands = []
    for r in renditions:
        gop = max(1, round(r.fps * settings.gop_seconds))
        command = [
            "ffmpeg", "-hide_banner", "-nostdin", "-y", "-v", "error",
            "-i", "file:" + str(source),
            "-map", "0:%d" % probe.video_stream_index,
            "-vf", "fps=%s,scale=%d:%d,setsar=1,format=%s" % (fps_arg(r.fps), r.width, r.height, PIXEL_FORMAT),
            "-map_metadata", "-1", "-map_chapters", "-1",
            "-c:v", "libx264", "-preset", settings.preset, "-crf", str(settings.crf),
            "-profile:v", VIDEO_PROFILE, "-maxrate", "%dk" % r.max_kbps, "-bufsize", "%dk" % r.bufsize_kbps,
            "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
            "-flags:v", "+cgop", "-forced-idr", "1",
            "-force_key_frames:v", "expr:gte(t,n_forced*%d)" % settings.gop_seconds,
        ]
        if probe.audio_stream_index is not None:
            command += [
                "-map", "0:%d" % probe.audio_stream_index,
                "-c:a", "aac", "-profile:a", AUDIO_PROFILE, "-b:a", "%dk" % settings.audio_kbps,
                "-ac", str(AUDIO_CHANNELS), "-ar", str(AUDIO_SAMPLE_RATE),
            ]
        directory = out_dir / r.name
        command += [
            "-f", "hls", "-hls_time", str(settings.segment_seconds), "-hls_playlist_type", "vod",
            "-hls_segment_filename", str(directory / SEGMENT_PATTERN), str(directory / MEDIA_PLAYLIST_NAME),
        ]
        commands.append(command)
    return commands


def graph_only(command: Sequence[str]) -> list[str]:
    """`command` with the encoders and the HLS outputs replaced by the null muxer (raw
    frames, no encode): what its filter graph costs alone, the sprite sheets (mjpeg,
    image2) included when `command` has them."""
    at = command.index("-filter_complex")
    pads = sorted(set(re.findall(r"\[(v\d+)\]", command[at + 1])))
    null = [*command[:at + 2], *(arg for pad in pads for arg in ("-map", "[%s]" % pad)), "-f", "null", "-"]
    sprite_pad = "[%s]" % SPRITE_OUTPUT_PAD
    return null + (list(command[command.index(sprite_pad) - 1:]) if sprite_pad in command else [])


def timed(commands: Sequence[Sequence[str]]) -> tuple[float, float]:
    """Run the commands one after another; (wall seconds, CPU seconds of the children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    for command in commands:
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def looped_clip(source: Path, loops: int, target: Path) -> Path:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-stream_loop", str(loops),
         "-i", str(source), "-c", "copy", str(target)],
        check=True,
    )
    return target


def camera_like(source: Path, loops: int, target: Path) -> Path:
    """`source` played 1 + `loops` times, re-encoded as a camera writes H.264: a constant
    30 fps (a stream-copied loop has a seam off the frame grid where the audio outlasts
    the video), 2 s closed GOPs, a bitrate within the 1080p rung's cap, the audio as is."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-stream_loop", str(loops), "-i", str(source),
         "-vf", "fps=30", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-maxrate", "5000k", "-bufsize", "10000k",
         "-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-c:a", "copy", str(target)],
        check=True,
    )
    return target


def timed_job(source: Path, out: Path, settings: TranscodeSettings) -> tuple[float, float, str]:
    """The whole job (job.transcode) on `source`: wall, CPU of its children, the copy note."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    result = transcode(source, out, settings)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, result.copy.note() if result.copy is not None else "?"


def copy_main(args: argparse.Namespace) -> int:
    settings = TranscodeSettings(storyboard=False)
    with tempfile.TemporaryDirectory(prefix="videoflix-bench-") as scratch:
        work = Path(scratch)
        park = MEDIA_DIR / DEFAULT_CLIP
        source = Path(args.source).resolve() if args.source else camera_like(park, args.loops, work / "park_gop2.mp4")
        probe = probe_file_sync(source)
        renditions = pick_renditions(probe)
        plan = plan_copy(source, probe, renditions, settings)
        print("fitting source: %s (%dx%d, %.1f s, %.3f fps, audio=%s): %s, audio %s" % (
            source.name, probe.width, probe.height, probe.duration, probe.fps, probe.has_audio, plan.note(),
            "copied" if plan.audio else plan.audio_reason))
        print("ladder: %s; preset %s, crf %d, %d nproc, load average %.2f %.2f %.2f" % (
            ", ".join("%s %dx%d" % (r.name, r.width, r.height) for r in renditions),
            settings.preset, settings.crf, os.cpu_count() or 0, *os.getloadavg()))
        if not plan.video:
            print("the source does not fit: nothing to compare")
            return 1
        dirs = {name: work / name for name in ("seed", "full", "copy")}
        for directory in dirs.values():
            prepare_output(directory, probe, renditions, settings)
        seed = timed(seed_commands(source, dirs["seed"], probe, renditions, settings))
        full = timed([build_command(source, dirs["full"], probe, renditions, settings)])
        copy = timed([build_command(source, dirs["copy"], probe, renditions, settings, plan)])
        job_wall, job_cpu, note = timed_job(source, work / "job", settings)
        per_second = probe.duration
        print("%-34s %8s %8s %12s" % ("ffmpeg only", "wall s", "CPU s", "CPU s / s"))
        for name, (wall, cpu) in (("seed method (%d runs)" % len(renditions), seed), ("full ladder (one decode)", full),
                                  ("copying ladder (one decode)", copy)):
            print("%-34s %8.1f %8.1f %12.2f" % (name, wall, cpu, cpu / per_second))
        print("%-34s %8.1f %8.1f %12.2f   (%s)" % ("whole job, copying", job_wall, job_cpu, job_cpu / per_second, note))
        saved = 1 - copy[1] / full[1]
        speedup = seed[0] / job_wall
        print("encode CPU saved by copying: %.1f%% of the full ladder's (target >= %.0f%%)" % (
            100 * saved, 100 * TARGET_COPY_CPU_SAVED))
        print("upload->ready: whole copying job %.2fx faster than the seed method's runs (target >= %.2fx); "
              "ffmpeg alone %.2fx" % (speedup, TARGET_COPY_SPEEDUP, seed[0] / copy[0]))
        ok = saved >= TARGET_COPY_CPU_SAVED and speedup >= TARGET_COPY_SPEEDUP

        # A source that does not fit: the decision must cost nothing measurable.
        refused = looped_clip(park, args.loops, work / "park_long.mp4")
        off = dataclasses.replace(settings, copy_when_fits=False)
        runs: list[tuple[str, float, float]] = []
        # Alternating order (on, off, off, on, ...): a machine getting busier or quieter
        # favours neither side.
        order = (("copy on", settings), ("copy off", off), ("copy off", off), ("copy on", settings))
        for name, job_settings in (order * max(1, args.pairs))[: 2 * max(1, args.pairs)]:
            wall, cpu, note = timed_job(refused, work / ("refused-" + name.strip().replace(" ", "-")
                                                         + str(len(runs))), job_settings)
            runs.append((name.strip(), wall, cpu))
            print("not fitting (%s), whole job %-9s: wall %6.1f s  cpu %6.1f s  (%s)" % (
                refused.name, name.strip(), wall, cpu, note))
        # What the decision itself costs on it: the probe's rules, then the packet scan.
        refused_probe = probe_file_sync(refused)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        decision = plan_copy(refused, refused_probe, pick_renditions(refused_probe), settings)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        print("the copy decision on it alone: wall %.2f s, cpu %.2f s (%s)" % (
            time.monotonic() - started,
            (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), decision.note()))
        on = [(w, c) for k, w, c in runs if k == "copy on"]
        off_runs = [(w, c) for k, w, c in runs if k == "copy off"]
        wall_ratio = sum(w for w, _ in on) / sum(w for w, _ in off_runs)
        cpu_ratio = sum(c for _, c in on) / sum(c for _, c in off_runs)
        print("not fitting: copy on / copy off: wall %.3f, CPU %.3f (target <= %.2f: no slower than today)" % (
            wall_ratio, cpu_ratio, TARGET_REFUSED_SLOWDOWN))
        ok = ok and cpu_ratio <= TARGET_REFUSED_SLOWDOWN
        print("load average after: %.2f %.2f %.2f" % os.getloadavg())
        return 0 if ok else 1


def joined_rung(directory: Path) -> tuple[Path, int, float]:
    """The rung's segments as one MPEG-TS file beside it; its bytes and seconds."""
    text = (directory / MEDIA_PLAYLIST_NAME).read_text()
    names = [line for line in text.splitlines() if line and not line.startswith("#")]
    seconds = sum(float(line[len("#EXTINF:"):].split(",")[0]) for line in text.splitlines()
                  if line.startswith("#EXTINF:"))
    target = directory.parent / (directory.name + ".ts")
    with open(target, "wb") as joined:
        for name in names:
            joined.write((directory / name).read_bytes())
    return target, target.stat().st_size, seconds


def psnr_ssim(rung_file: Path, source: Path, rendition: Rendition) -> tuple[str, str]:
    """Average PSNR (dB, all planes) and SSIM (All) of a rung against the source scaled
    to the rung's size at its frame rate, both from their first frame."""
    graph = (
        "[0:v]setpts=PTS-STARTPTS,setsar=1,format=yuv420p,split[d1][d2];"
        "[1:v]fps=%s,scale=%d:%d:flags=bicubic,setsar=1,format=yuv420p,setpts=PTS-STARTPTS,split[r1][r2];"
        "[d1][r1]psnr[p];[d2][r2]ssim[s]" % (fps_arg(rendition.fps), rendition.width, rendition.height)
    )
    done = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-f", "mpegts", "-i", str(rung_file), "-i", str(source),
         "-lavfi", graph, "-map", "[p]", "-f", "null", "-", "-map", "[s]", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )
    psnr = re.search(r"PSNR .*average:(\S+)", done.stderr)
    ssim = re.search(r"SSIM .*All:(\S+)", done.stderr)
    return (psnr.group(1) if psnr else "?"), (ssim.group(1) if ssim else "?")


def quality_main(args: argparse.Namespace) -> int:
    settings = TranscodeSettings(storyboard=False)
    print("quality per bit: preset %s, crf %d; PSNR (dB, average of Y, U, V) and SSIM (All) against the source "
          "scaled to each rung; load average %.2f %.2f %.2f" % (settings.preset, settings.crf, *os.getloadavg()))
    print("%-40s %-8s %-6s %10s %9s %8s %7s" % ("clip", "ladder", "rung", "bytes", "kb/s", "PSNR", "SSIM"))
    with tempfile.TemporaryDirectory(prefix="videoflix-bench-") as scratch:
        work = Path(scratch)
        sources = []
        for name in QUALITY_CLIPS:
            clip_path = MEDIA_DIR / name
            if probe_file_sync(clip_path).duration > QUALITY_SECONDS + 1:
                cut = work / ("cut_" + name)
                subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(clip_path), "-t", str(QUALITY_SECONDS),
                                "-c", "copy", str(cut)], check=True)
                clip_path = cut
            sources.append(clip_path)
        sources.append(camera_like(MEDIA_DIR / DEFAULT_CLIP, 0, work / "park_gop2.mp4"))
        for number, source in enumerate(sources):
            probe = probe_file_sync(source)
            renditions = pick_renditions(probe)
            plan = plan_copy(source, probe, renditions, settings)
            ladders = [("encoded", None)] + ([("copied", plan)] if plan.video else [])
            for label, copy in ladders:
                out = work / ("%d-%s" % (number, label))
                prepare_output(out, probe, renditions, settings)
                subprocess.run(build_command(source, out, probe, renditions, settings, copy), check=True,
                               stdout=subprocess.DEVNULL)
                for rendition in renditions:
                    joined, size, seconds = joined_rung(out / rendition.name)
                    psnr, ssim = psnr_ssim(joined, source, rendition)
                    top_copied = copy is not None and rendition is renditions[0]
                    print("%-40s %-8s %-6s %10d %9.0f %8s %7s%s" % (
                        source.name[:40], label, rendition.name, size, size * 8 / 1000 / seconds, psnr, ssim,
                        "  (the source's stream)" if top_copied else ""))
            if not plan.video:
                print("%-40s %-8s %s" % (source.name[:40], "copied", "-- " + plan.note()))
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", help="a video (default: the park clip looped to ~58 s)")
    parser.add_argument("--sprites-only", action="store_true", help="skip the seed method")
    parser.add_argument("--pairs", type=int, default=1,
                        help="with/without-sprites pairs to run, in alternating order (default 1)")
    parser.add_argument("--copy", action="store_true", help="copy when it fits (issue 23): see above")
    parser.add_argument("--loops", type=int, default=COPY_LOOPS,
                        help="with --copy: extra plays of the 5.8 s clip (default %d)" % COPY_LOOPS)
    parser.add_argument("--quality", action="store_true", help="bitrate, PSNR and SSIM per rung (issue 23 item 6)")
    args = parser.parse_args(argv[1:])
    if args.quality:
        return quality_main(args)
    if args.copy:
        return copy_main(args)
    settings = TranscodeSettings()
    with tempfile.TemporaryDirectory(prefix="videoflix-bench-") as scratch:
        work = Path(scratch)
        if args.source:
            source = Path(args.source).resolve()
        else:
            source = work / "park_58s.mp4"
            subprocess.run(
                ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-stream_loop", str(LOOPS),
                 "-i", str(MEDIA_DIR / DEFAULT_CLIP), "-c", "copy", str(source)],
                check=True,
            )
        probe = probe_file_sync(source)
        renditions = pick_renditions(probe)
        print("source: %s (%dx%d, %.1f s, %.3f fps, audio=%s)" % (
            source.name, probe.width, probe.height, probe.duration, probe.fps, probe.has_audio))
        print("ladder: %s; preset %s, crf %d, %d nproc" % (
            ", ".join("%s %dx%d" % (r.name, r.width, r.height) for r in renditions),
            settings.preset, settings.crf, os.cpu_count() or 0))

        seed_dir, one_dir, bare_dir = work / "seed", work / "one", work / "bare"
        without_sprites = dataclasses.replace(settings, storyboard=False)
        prepare_output(seed_dir, probe, renditions, without_sprites)
        prepare_output(bare_dir, probe, renditions, without_sprites)
        prepare_output(one_dir, probe, renditions, settings)
        plan = sprite_plan(probe, renditions, settings)
        assert plan is not None
        with_sprites = build_command(source, one_dir, probe, renditions, settings)
        no_sprites = build_command(source, bare_dir, probe, renditions, without_sprites)

        ok = True
        if not args.sprites_only:
            seed_wall, seed_cpu = timed(seed_commands(source, seed_dir, probe, renditions, settings))
            print("seed method (%d runs): wall %6.1f s  cpu %6.1f s" % (len(renditions), seed_wall, seed_cpu))
        # The pairs whose difference is the sprites' cost, back to back; the order
        # alternates so a machine getting busier or quieter does not favour one side.
        one_wall = one_cpu = bare_cpu = 0.0
        for pair in range(max(1, args.pairs)):
            runs = {}
            for name in (("without", "with") if pair % 2 == 0 else ("with", "without")):
                runs[name] = timed([with_sprites if name == "with" else no_sprites])
            one_wall += runs["with"][0]
            one_cpu += runs["with"][1]
            bare_cpu += runs["without"][1]
            print("pair %d: one decode without sprites: wall %6.1f s  cpu %6.1f s | with sprites: wall %6.1f s  "
                  "cpu %6.1f s | ratio %.3f" % (pair + 1, *runs["without"], *runs["with"],
                                                runs["with"][1] / runs["without"][1]))
        if not args.sprites_only:
            speedup = seed_wall / (one_wall / max(1, args.pairs))
            saved = 1 - (one_cpu / max(1, args.pairs)) / seed_cpu
            print("wall speed-up %.2fx (target >= %.2fx), CPU saved %.1f%% (target >= %.0f%%)" % (
                speedup, TARGET_SPEEDUP, 100 * saved, 100 * TARGET_CPU_SAVED))
            ok = speedup >= TARGET_SPEEDUP and saved >= TARGET_CPU_SAVED

        sheets = sorted(p.name for p in (one_dir / THUMBS_DIR).iterdir())
        overhead = one_cpu / bare_cpu - 1
        print("sprites: %d sheet(s), a %dx%d tile every %d s; cpu %.1f s with vs %.1f s without "
              "(%d pair(s)): ratio %.3f, overhead %+.1f%% (target <= %.0f%%)" % (
                  len(sheets), plan.tile_width, plan.tile_height, plan.interval, one_cpu, bare_cpu,
                  max(1, args.pairs), one_cpu / bare_cpu, 100 * overhead, 100 * TARGET_SPRITE_OVERHEAD))
        # The same pair without the encoders: the sprites' own CPU stands out of a total
        # ten times smaller, so a busy machine's noise hides it much less.
        for name in ("one", "bare"):
            shutil.rmtree(work / name)
        prepare_output(one_dir, probe, renditions, settings)
        graph_cpu = {"with": 0.0, "without": 0.0}
        for pair in range(max(1, args.pairs)):
            for name in (("without", "with") if pair % 2 == 0 else ("with", "without")):
                graph_cpu[name] += timed([graph_only(with_sprites if name == "with" else no_sprites)])[1]
        sprite_cpu = graph_cpu["with"] - graph_cpu["without"]
        print("graph alone (decode + scaling, no encode): cpu %.1f s with sprites vs %.1f s without: the "
              "sprites cost %.2f s, %.2f%% of the job's %.1f s" % (
                  graph_cpu["with"], graph_cpu["without"], sprite_cpu, 100 * sprite_cpu / one_cpu, one_cpu))
        return 0 if ok and overhead <= TARGET_SPRITE_OVERHEAD else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
