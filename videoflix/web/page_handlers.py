"""The built-in web app (API.md §6): pages and their static files, from static/ and node_modules/.

Pages are HTML under stable URLs, `no-cache` (revalidated with their ETag); the
CSS, JavaScript and hls.js they load are under versioned URLs and `immutable`
(web/assets.py). Every answer is delivery/answer.py's (ETag, 304, gzip when
Accept-Encoding gives it a non-zero q), as for the media files. The pages talk to the public JSON API only, like any
external frontend. A page that needs a session sends a visitor without any
session cookie to the login page; an expired session is the page's business
(it refreshes the access token, or goes to login itself).
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlencode, urlsplit

import tornado.web

from videoflix.delivery import answer
from videoflix.delivery.answer import NOSNIFF
from videoflix.web.answer_writer import AnswerWriterMixin
from videoflix.web.assets import Asset, AssetNotFound, Assets
from videoflix.web.base import APIError, JSONErrorsMixin, ServicesMixin, public
from videoflix.web.video_handlers import VIDEO_ID

LOGIN_PAGE = "/pages/auth/login.html"
ASSET_CACHE_CONTROL = "public, max-age=31536000, immutable"
# Pages change with the code: always revalidate (a 304 costs nothing).
PAGE_CACHE_CONTROL = "no-cache"
# Every page and asset: no type sniffing (API.md §7).


def content_security_policy(public_url: str) -> str:
    """Only our own origin (and the configured public one, where thumbnails and
    playlists point) for everything; blob: for hls.js's media source and worker;
    media-src data: for the empty `<track src="data:,WEBVTT">` hls.js gives each
    subtitle track (its cues are added by script; a data: track runs no code)."""
    parts = urlsplit(public_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    own = f"'self' {origin}"
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {own} data:",
            f"media-src {own} blob: data:",
            f"connect-src {own}",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


class FileResponseMixin(AnswerWriterMixin, ServicesMixin, JSONErrorsMixin):
    def set_default_headers(self: Any) -> None:
        self.set_header(*NOSNIFF)  # (errors too: they are answered after clear())

    @property
    def assets(self: Any) -> Assets:
        return cast(Assets, self.settings["assets"])

    def write_asset(self: Any, asset: Asset, cache_control: str, *extra: tuple[str, str]) -> None:
        policy = answer.Policy(
            asset.content_type, cache_control, compressible=asset.gzipped is not None, extra=tuple(extra)
        )
        facts = answer.RequestFacts.of(self.request.method, self.request.headers)
        self.write_answer(answer.answer_rendered(facts, policy, asset.body, asset.etag, asset.gzipped))


class PageHandler(FileResponseMixin, tornado.web.RequestHandler):
    def initialize(self, page: str, login_required: bool = False) -> None:
        self.page = page
        self.login_required = login_required

    @public
    async def get(self, *args: str) -> None:
        if self.login_required and not (self.get_cookie("access_token") or self.get_cookie("refresh_token")):
            self.redirect(f"{LOGIN_PAGE}?{urlencode({'next': self.request.uri})}")
            return
        try:
            asset = await self.assets.page(self.services.file_executor, self.page)
        except AssetNotFound:
            raise APIError(404) from None
        self.write_asset(
            asset,
            PAGE_CACHE_CONTROL,
            ("Content-Security-Policy", content_security_policy(self.config.public_url)),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "same-origin"),
        )


class StaticAssetHandler(FileResponseMixin, tornado.web.RequestHandler):
    @public
    async def get(self, version: str, path: str) -> None:
        if version != self.assets.version:
            raise APIError(404)
        try:
            asset = await self.assets.static(self.services.file_executor, path)
        except AssetNotFound:
            raise APIError(404) from None
        self.write_asset(asset, ASSET_CACHE_CONTROL)


class VendorAssetHandler(FileResponseMixin, tornado.web.RequestHandler):
    @public
    async def get(self, path: str) -> None:
        try:
            asset = await self.assets.vendor(self.services.file_executor, path)
        except AssetNotFound:
            raise APIError(404) from None
        self.write_asset(asset, ASSET_CACHE_CONTROL)


AUTH_PAGES = ("login", "register", "forgot_password", "activate", "confirm_password")
ROUTES = [
    (r"/", PageHandler, {"page": "index.html", "login_required": True}),
    (rf"/watch/{VIDEO_ID}", PageHandler, {"page": "watch.html", "login_required": True}),
    (r"/studio", PageHandler, {"page": "studio.html", "login_required": True}),
    (r"/admin", PageHandler, {"page": "admin.html", "login_required": True}),
    *[(rf"/pages/auth/{name}\.html", PageHandler, {"page": f"auth/{name}.html"}) for name in AUTH_PAGES],
    (r"/static/([0-9a-f]{1,64})/(.+)", StaticAssetHandler),
    (r"/vendor/(.+)", VendorAssetHandler),
]
