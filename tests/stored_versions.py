"""What a published version must hold in its store (issue 21 items 3 and 7), read through
the store itself: every object its ladder.json names, and nothing of a run in progress.

`missing_objects` is pure (a listing and a reader in, the names missing out), so the
in-process tests (services.storage, async) and the many-hosts test (botocore, sync, from
outside the servers) check one rule.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable

from videoflix.platform import media
from videoflix.transcode.playlist import parse_media_playlist

_SPRITE_IN_VTT = re.compile(r"^(sprite_[0-9]{3}\.jpg)#", re.MULTILINE)


def named_objects(ladder: dict, read: Callable[[str], bytes | None]) -> set[str]:
    """Every name (relative to the version's folder) the ladder leads a player to: the media
    playlists and their segments, the I-frame playlists, the thumbnails track and its
    sheets, the poster and thumbnail. `read(name)` gives a stored object's bytes or None."""
    names = {media.POSTER_NAME, media.THUMBNAIL_NAME}
    for variant in ladder["variants"]:
        playlist = f"{variant['name']}/{media.MEDIA_PLAYLIST_NAME}"
        names.add(playlist)
        text = read(playlist)
        if text is not None:
            names.update(f"{variant['name']}/{uri}" for uri, _ in parse_media_playlist(text.decode())[1])
    for stream in ladder.get("iframes") or ():
        names.add(f"{stream['name']}/{media.IFRAME_PLAYLIST_NAME}")
    vtt = ladder.get("thumbnails_vtt")
    if vtt:
        names.add(vtt)
        text = read(vtt)
        if text is not None:
            folder = vtt.rsplit("/", 1)[0]
            names.update(f"{folder}/{sheet}" for sheet in _SPRITE_IN_VTT.findall(text.decode()))
    return names


def missing_objects(listed: set[str], read: Callable[[str], bytes | None]) -> list[str]:
    """What a published version lacks, given the names `listed` under its folder (empty:
    complete). ladder.json must be there and complete, no provisional ladder left."""
    raw = read(media.LADDER_NAME)
    if raw is None:
        return [media.LADDER_NAME]
    ladder = json.loads(raw)
    problems = [] if ladder.get("complete") else ["ladder.json is provisional"]
    problems += sorted(named_objects(ladder, read) - listed)
    if media.BUILDING_LADDER_NAME in listed:
        problems.append(media.BUILDING_LADDER_NAME)
    for name in listed:
        if name.endswith(".m3u8") and "/" in name and name.endswith(media.MEDIA_PLAYLIST_NAME):
            text = read(name)
            if text is not None and b"#EXT-X-ENDLIST" not in text:
                problems.append(f"{name} is not finished")
    return problems
