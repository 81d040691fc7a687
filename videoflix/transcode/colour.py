"""HDR to SDR: which sources need tone mapping, and the filters that do it (pure).

HLS clients decode H.264 8-bit BT.709 everywhere, so an HDR source (PQ, SMPTE ST 2084,
or HLG, ARIB STD-B67: 10-bit HEVC, VP9 or AV1 from phones and cameras) must be tone
mapped; decoding it as is gives a flat, washed-out picture (BT.2020 colours read as
BT.709, the PQ curve read as a gamma curve). SDR sources are left alone.

The chain is zimg's (`zscale`) and ffmpeg's `tonemap`, both in the distribution's
ffmpeg: to linear light, where 1.0 is HDR reference white (ITU-R BT.2408: 203 cd/m2,
the level SDR white is placed at), in floating-point RGB; BT.2020 -> BT.709 primaries;
`mobius` tone mapping, which keeps everything up to reference white as it is and rolls
the highlights above it off smoothly (measured on the shared park clip mastered to PQ
and HLG at 203 cd/m2 and mapped back: average luma 89 vs 94 in the SDR original,
saturation 15.5 vs 16.5; `hable` gave 66 and 10.5, a dull picture; no tone mapping
gave saturation 7); back to the BT.709 transfer, limited range, 8-bit 4:2:0.

Only values from the fixed tables below reach the filter graph: ffprobe's colour
fields come from the uploaded file.
"""

from __future__ import annotations

from collections.abc import Sequence

# ffprobe's color_transfer -> zscale's name, for the transfers that mean HDR.
HDR_TRANSFERS = {
    "smpte2084": "smpte2084",  # PQ (HDR10, HDR10+, Dolby Vision's base layer)
    "arib-std-b67": "arib-std-b67",  # HLG
}
# ffprobe's color_primaries / color_space -> zscale's names. An HDR source that does not
# say is BT.2020 (both PQ and HLG are defined with it).
PRIMARIES = {"bt2020": "bt2020", "bt709": "bt709", "smpte432": "smpte432", "smpte431": "smpte431"}
MATRICES = {"bt2020nc": "bt2020nc", "bt2020c": "bt2020c", "bt709": "bt709"}
DEFAULT_PRIMARIES = "bt2020"
DEFAULT_MATRIX = "bt2020nc"

# HDR reference white, cd/m2 (ITU-R BT.2408): linear 1.0 after the first zscale.
REFERENCE_WHITE_NITS = 203
TONEMAP = "mobius"

# The output of a tone-mapped run says what it is (H.264 VUI): BT.709, limited range.
SDR_OUTPUT_ARGS = ("-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709", "-color_range", "tv")


def hdr_transfer(color_transfer: str | None) -> str | None:
    """zscale's name of the source's HDR transfer, or None for SDR (and unknown)."""
    return HDR_TRANSFERS.get((color_transfer or "").strip().lower())


def tone_map_filters(
    color_transfer: str | None,
    color_primaries: str | None,
    color_space: str | None,
    size: tuple[int, int] | None = None,
) -> list[str]:
    """The filters that turn this source into BT.709 SDR 8-bit 4:2:0; [] for SDR.

    `size` scales in the first (linearising) step, so the float RGB stages run at the
    output's size rather than the source's (a 4K source costs what 1080p does).
    """
    transfer = hdr_transfer(color_transfer)
    if transfer is None:
        return []
    primaries = PRIMARIES.get((color_primaries or "").strip().lower(), DEFAULT_PRIMARIES)
    matrix = MATRICES.get((color_space or "").strip().lower(), DEFAULT_MATRIX)
    first = ["tin=%s" % transfer, "pin=%s" % primaries, "min=%s" % matrix, "t=linear", "npl=%d" % REFERENCE_WHITE_NITS]
    if size is not None:
        first = ["w=%d" % size[0], "h=%d" % size[1], *first]
    return [
        "zscale=" + ":".join(first),
        "format=gbrpf32le",
        "zscale=p=bt709",
        "tonemap=tonemap=%s:desat=0" % TONEMAP,
        "zscale=t=bt709:m=bt709:r=tv",
        "format=yuv420p",
    ]


def output_args(filters: Sequence[str]) -> list[str]:
    """Encoder options tagging the output BT.709 when `filters` tone-mapped it."""
    return list(SDR_OUTPUT_ARGS) if filters else []
