"""The built-in pages and their files (API.md §6): routes, caching, allow-list, size budget."""
from __future__ import annotations

import gzip
import re

import pytest

from videoflix.web.assets import STATIC_DIR, scan_assets

AUTH_PAGES = ["login", "register", "forgot_password", "activate", "confirm_password"]
# Our own HTML + CSS + JS for the catalog (hls.js excluded), uncompressed (issue 10).
CATALOG_BUDGET_BYTES = 100 * 1024


@pytest.mark.gen_test
async def test_root_without_session_redirects_to_login(client):
    response = await client.get("/")
    assert response.status == 302
    assert response.headers["Location"] == "/pages/auth/login.html?next=%2F"


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/watch/12", "/studio"])
async def test_other_app_pages_without_session_redirect_with_next(client, path):
    response = await client.get(path)
    assert response.status == 302
    assert response.headers["Location"].startswith("/pages/auth/login.html?next=%2F")


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/", "/watch/3", "/studio"])
async def test_app_pages_with_session_are_html_no_cache_with_csp(client, make_user, path):
    await make_user()
    response = await client.get(path)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=UTF-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert b"{{" not in response.body  # every placeholder replaced


@pytest.mark.gen_test
@pytest.mark.parametrize("name", AUTH_PAGES)
async def test_auth_pages_answer_at_api_md_paths_without_session(client, name):
    response = await client.get(f"/pages/auth/{name}.html")
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-cache"
    assert b"<form" in response.body or name == "activate"


@pytest.mark.gen_test
async def test_emailed_links_point_at_built_in_pages(client, services, mailbox, config):
    await client.post("/api/register/", {"email": "new@example.com", "password": "long-enough-1",
                                         "confirmed_password": "long-enough-1"})
    await services.mailer.drain()
    text = mailbox.messages[-1].get_body(preferencelist=("plain",)).get_content()
    link = re.search(r"(http\S+/pages/auth/activate\.html)\?uid=", text).group(1)
    assert link == f"{config.public_url}/pages/auth/activate.html"
    assert (await client.get("/pages/auth/activate.html")).status == 200


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/pages/auth/nope.html", "/pages/auth/login.htm", "/pages/index.html",
                                  "/watch/abc", "/watch/0", "/studio/x", "/index.html"])
async def test_unknown_pages_are_json_404(client, path):
    response = await client.get(path)
    assert (response.status, response.json()) == (404, {"detail": "Not found."})


def asset_urls(html: bytes) -> list[str]:
    return re.findall(r'(?:href|src)="(/static/[^"]+)"', html.decode())


@pytest.mark.gen_test
async def test_page_assets_are_versioned_and_immutable(client, app):
    page = await client.get("/pages/auth/login.html")
    urls = asset_urls(page.body)
    version = app.settings["assets"].version
    assert urls and all(url.startswith(f"/static/{version}/") for url in urls)
    for url in urls:
        response = await client.get(url)
        assert response.status == 200, url
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    css = await client.get(f"/static/{version}/css/app.css")
    js = await client.get(f"/static/{version}/js/api.js")
    assert css.headers["Content-Type"] == "text/css; charset=UTF-8"
    assert js.headers["Content-Type"] == "text/javascript; charset=UTF-8"


@pytest.mark.gen_test
async def test_hls_js_is_served_from_node_modules_under_its_version(client, make_user, app):
    await make_user()
    page = await client.get("/watch/1")
    hls_url = re.search(rb'data-hls="([^"]+)"', page.body).group(1).decode()
    assert re.fullmatch(r"/vendor/hls\.js/\d+\.\d+\.\d+/hls\.min\.mjs", hls_url), hls_url
    response = await client.get(hls_url, headers={"Accept-Encoding": "identity"})
    assert response.status == 200
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.headers["Content-Type"] == "text/javascript; charset=UTF-8"
    assert b"export" in response.body and len(response.body) > 100_000


@pytest.mark.gen_test
async def test_assets_are_gzipped_when_accepted_and_revalidate_with_304(client, app):
    version = app.settings["assets"].version
    url = f"/static/{version}/css/app.css"
    plain = await client.get(url)
    zipped = await client.get(url, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers.get("Content-Encoding") == "gzip" or zipped.body == plain.body
    assert zipped.headers["Vary"] == "Accept-Encoding"
    again = await client.get(url, headers={"If-None-Match": plain.headers["ETag"]})
    assert (again.status, again.body) == (304, b"")
    page = await client.get("/pages/auth/login.html")
    assert (await client.get("/pages/auth/login.html", headers={"If-None-Match": page.headers["ETag"]})).status == 304
    # tornado's client decompresses; the raw bytes are gzip of the same content.
    assert gzip.decompress(gzip.compress(plain.body)) == plain.body


@pytest.mark.gen_test
@pytest.mark.parametrize("accept, gzipped", [
    ("gzip", True), ("gzip;q=0", False), ("deflate, gzip;q=0", False), ("*, gzip;q=0", False),
    ("br, *;q=0", False), ("identity", False), ("*", True),
])
async def test_pages_and_assets_are_gzipped_only_for_a_non_zero_q(client, app, accept, gzipped):
    """`gzip;q=0` refuses gzip (RFC 9110 §12.5.3); pages used to take the word alone for a yes."""
    for path in (f"/static/{app.settings['assets'].version}/css/app.css", "/pages/auth/login.html"):
        identity = await client.http.fetch(client.base_url + path, decompress_response=False)
        response = await client.http.fetch(client.base_url + path, headers={"Accept-Encoding": accept},
                                           decompress_response=False)
        assert response.code == 200 and response.headers["Vary"] == "Accept-Encoding"
        assert (response.headers.get("Content-Encoding") == "gzip") is gzipped, (path, accept)
        assert (gzip.decompress(response.body) if gzipped else response.body) == identity.body
        # The gzip coding is another representation: its own ETag, as for playlists (RFC 9110 §8.8.3).
        assert (response.headers["Etag"] == identity.headers["Etag"]) is not gzipped


@pytest.mark.gen_test
@pytest.mark.parametrize("suffix", [
    "css/../../videoflix/app.py", "css/%2e%2e/%2e%2e/setup.cfg", "..%2f..%2fsetup.cfg", "pages/index.html",
    "pages/auth/login.html", "css/missing.css", "js/", "", "/etc/passwd", "css/app.css/",
])
async def test_asset_requests_outside_the_allow_list_are_404(client, app, suffix):
    version = app.settings["assets"].version
    response = await client.get(f"/static/{version}/{suffix}")
    assert response.status == 404, suffix


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/static/000000000000/css/app.css", "/static/css/app.css",
                                  "/vendor/hls.js/0.0.1/hls.min.mjs", "/vendor/hls.js/../package.json",
                                  "/vendor/hls.js/1.0.0/../../package.json"])
async def test_stale_versions_and_other_vendor_files_are_404(client, path):
    assert (await client.get(path)).status == 404


def test_catalog_page_stays_under_its_size_budget():
    """index.html, the CSS it links and every JS module it loads (imports followed)."""
    html = (STATIC_DIR / "pages" / "index.html").read_text()
    files = {STATIC_DIR / url.split("/", 1)[1] for url in re.findall(r'(?:href|src)="(\{\{static\}\}/[^"]+)"', html)}
    pending = [f for f in files if f.suffix == ".js"]
    while pending:
        module = pending.pop()
        for name in re.findall(r"from '\./([^']+)'", module.read_text()):
            imported = module.parent / name
            if imported not in files:
                files.add(imported)
                pending.append(imported)
    total = len(html.encode()) + sum(f.stat().st_size for f in files)
    assert any(f.suffix == ".css" for f in files) and any(f.suffix == ".js" for f in files)
    assert total < CATALOG_BUDGET_BYTES, f"{total} bytes"


def test_scan_lists_pages_and_assets_but_no_html_as_asset():
    assets = scan_assets()
    assert {"index.html", "watch.html", "studio.html"} <= set(assets.pages)
    assert {f"auth/{name}.html" for name in AUTH_PAGES} <= set(assets.pages)
    assert "css/app.css" in assets.static_files
    assert not [path for path in assets.static_files if path.endswith(".html")]
    assert re.fullmatch(r"[0-9a-f]{12}", assets.version)


def test_scan_without_node_modules_still_serves_pages(tmp_path):
    assets = scan_assets(node_modules=tmp_path / "missing")
    assert assets.vendor_urls == {"hls.js": "", "tus": ""} and assets.vendor_files == {}
    assert "index.html" in assets.pages
