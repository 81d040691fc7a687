"""The built-in pages' files (API.md §6): pages under stable URLs, assets under versioned ones.

    static/pages/**.html    the pages, rendered once: {{static}}, {{hls}}, {{tus}} become the URLs below
    static/**  (not .html)  our CSS, JavaScript modules and images at /static/<version>/<path>;
                            <version> hashes every such file, so a changed file is a new URL
    node_modules/hls.js     its ES module at /vendor/hls.js/<package version>/hls.min.mjs
    node_modules/tus-js-client  its browser build (window.tus) at /vendor/tus/<version>/tus.min.js

Only files found by the scan at start-up are served (a fixed allow-list: no path from
a request ever reaches the file system). Contents are read, and text gzipped, in the
file executor on first use and then kept in memory: the whole set is well under 1 MB.
Their ETags are delivery/answer.py's for bytes in memory (content_etag).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from videoflix.delivery import answer

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
STATIC_DIR = ROOT / "static"
NODE_MODULES_DIR = ROOT / "node_modules"
PAGES_SUBDIR = "pages"
# Browser libraries from npm (package.json): URL name -> (package, file inside it).
VENDOR_FILES = {"hls.js": ("hls.js", "dist/hls.min.mjs"), "tus": ("tus-js-client", "dist/tus.min.js")}
# What a page loses without one (the studio falls back to the multipart upload).
MISSING_VENDOR = {"hls.js": "the player page cannot play", "tus": "the studio uploads in one request, not resumably"}
CONTENT_TYPES = {
    ".css": "text/css; charset=UTF-8",
    ".js": "text/javascript; charset=UTF-8",
    ".mjs": "text/javascript; charset=UTF-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".html": "text/html; charset=UTF-8",
}
# Worth compressing: text. Images and fonts are compressed already.
GZIP_SUFFIXES = (".css", ".js", ".mjs", ".svg", ".html")
# Characters of the content hash in asset URLs (48 bits: no accidental reuse).
VERSION_CHARS = 12


class AssetNotFound(Exception):
    pass


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str


@dataclass
class Assets:
    """The allow-list of servable files and their URLs; contents cached once read."""

    version: str
    static_files: dict[str, Path]  # path under /static/<version>/ -> file
    vendor_files: dict[str, Path]  # path under /vendor/ -> file
    pages: dict[str, Path]  # page name (e.g. "auth/login.html") -> file
    vendor_urls: dict[str, str]  # library name -> its URL ("" if not installed)
    _cache: dict[str, Asset] = field(default_factory=dict)

    @property
    def static_url(self) -> str:
        return f"/static/{self.version}"

    async def static(self, executor: concurrent.futures.Executor, path: str) -> Asset:
        if path not in self.static_files:
            raise AssetNotFound(path)
        return await self._load(executor, f"static:{path}", self.static_files[path], None)

    async def vendor(self, executor: concurrent.futures.Executor, path: str) -> Asset:
        if path not in self.vendor_files:
            raise AssetNotFound(path)
        return await self._load(executor, f"vendor:{path}", self.vendor_files[path], None)

    async def page(self, executor: concurrent.futures.Executor, name: str) -> Asset:
        if name not in self.pages:
            raise AssetNotFound(name)
        replacements = {
            "{{static}}": self.static_url,
            "{{hls}}": self.vendor_urls.get("hls.js", ""),
            "{{tus}}": self.vendor_urls.get("tus", ""),
        }
        return await self._load(executor, f"page:{name}", self.pages[name], replacements)

    async def _load(
        self, executor: concurrent.futures.Executor, key: str, path: Path, replacements: dict[str, str] | None
    ) -> Asset:
        cached = self._cache.get(key)
        if cached is None:
            loop = asyncio.get_running_loop()
            cached = await loop.run_in_executor(executor, _read_asset, path, replacements)
            self._cache[key] = cached
        return cached


def _read_asset(path: Path, replacements: dict[str, str] | None) -> Asset:
    body = path.read_bytes()
    if replacements:
        text = body.decode("utf-8")
        for placeholder, value in replacements.items():
            text = text.replace(placeholder, value)
        body = text.encode("utf-8")
    gzipped = gzip.compress(body, answer.GZIP_LEVEL, mtime=0) if path.suffix in GZIP_SUFFIXES else None
    if gzipped is not None and len(gzipped) >= len(body):
        gzipped = None
    return Asset(body, gzipped, CONTENT_TYPES.get(path.suffix, "application/octet-stream"), answer.content_etag(body))


def scan_assets(static_dir: Path = STATIC_DIR, node_modules: Path = NODE_MODULES_DIR) -> Assets:
    """Walk static/ and the vendor packages once (at start-up: a few dozen small files)."""
    static_files: dict[str, Path] = {}
    pages: dict[str, Path] = {}
    digest = hashlib.sha256()
    if static_dir.is_dir():
        for path in sorted(p for p in static_dir.rglob("*") if p.is_file() and not p.is_symlink()):
            relative = path.relative_to(static_dir).as_posix()
            if path.suffix == ".html":
                if relative.startswith(PAGES_SUBDIR + "/"):
                    pages[relative[len(PAGES_SUBDIR) + 1 :]] = path
                continue
            if path.suffix not in CONTENT_TYPES or relative.startswith("."):
                continue
            static_files[relative] = path
            digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
    vendor_files: dict[str, Path] = {}
    vendor_urls: dict[str, str] = {}
    for name, (package, inner) in VENDOR_FILES.items():
        try:
            version = json.loads((node_modules / package / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            log.warning("%s is not installed (run `npm ci`): %s", package, MISSING_VENDOR[name])
            vendor_urls[name] = ""
            continue
        url_path = f"{name}/{version}/{Path(inner).name}"
        vendor_files[url_path] = node_modules / package / inner
        vendor_urls[name] = f"/vendor/{url_path}"
    return Assets(
        version=digest.hexdigest()[:VERSION_CHARS],
        static_files=static_files,
        vendor_files=vendor_files,
        pages=pages,
        vendor_urls=vendor_urls,
    )
