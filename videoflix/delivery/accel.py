"""Behind nginx: the X-Accel-Redirect target of a file Videoflix decided to serve (pure).

With VIDEOFLIX_ACCEL_REDIRECT=/internal-media/ (config.accel_redirect) the HLS
handlers authorise a playlist or segment GET exactly as before, then answer with
an empty 200 carrying `X-Accel-Redirect: /internal-media/<path below media/>`;
nginx serves that file from its `internal` location (deploy/nginx.conf) with
sendfile, and answers Range, If-Range, If-None-Match and If-Modified-Since
itself (ETag, Last-Modified, Content-Length, Content-Range, Accept-Ranges are
nginx's, computed from the same file). Videoflix sets what is policy:
Content-Type, Cache-Control, Vary, CORS and X-Request-ID (nginx's location
copies the last three from the upstream answer: they do not survive an
internal redirect by themselves).

Who may fetch what stays here: the path is built from names the handlers have
validated, and the internal location cannot be requested from outside.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from urllib.parse import quote


@functools.lru_cache(maxsize=4096)  # once per file, not per request (bench/serve.py: ~5 % of an answer)
def location(prefix: str, media_dir: str, root: Path, parts: tuple[str, ...]) -> str:
    """`prefix` + the file's path relative to `media_dir`, percent-encoded.
    ValueError if the file would not be below `media_dir` (it always is: the
    names are validated single components)."""
    base = os.path.normpath(os.path.abspath(media_dir))
    target = os.path.normpath(os.path.abspath(os.path.join(root, *parts)))
    relative = os.path.relpath(target, base)
    if relative.startswith("..") or os.path.isabs(relative) or relative == ".":
        raise ValueError(f"{target} is not below {base}")
    return prefix + quote(relative.replace(os.sep, "/"), safe="/")
