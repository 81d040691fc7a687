"""The web app in a real browser: Debian's Chromium driven by Playwright against a real
`videoflix serve` (its own process) on the suite's PostgreSQL, Redis and SMTP servers.

Every step leaves a screenshot in test-artifacts/browser/<test>/; a test that passes
removes its folder (unless VIDEOFLIX_KEEP_SCREENSHOTS is set), a failing one keeps it. VIDEOFLIX_SCREENSHOTS=<dir> also writes
the README's screenshots there (scripts/screenshots.sh).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import playwright.sync_api as playwright_api
import psycopg2
import pytest
import redis

from videoflix.platform.embedded import free_port

from helpers import PASSWORD
from media import PARK, clip, ffmpeg

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"]
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "browser"
ADMIN_EMAIL = "admin@example.com"
# Waits for things the server does in the background (mail, transcodes on a busy machine).
MAIL_TIMEOUT = 30
TRANSCODE_TIMEOUT_MS = 240_000
STEP_TIMEOUT_MS = 30_000

def _reset_database(dsn: str, redis_url: str) -> None:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")
        tables = [row[0] for row in cur.fetchall()]
        if tables:
            # Triggers off: audit_log (sql/008) refuses TRUNCATE, except to the suite's superuser here.
            cur.execute("SET session_replication_role = replica")
            cur.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
            cur.execute("SET session_replication_role = DEFAULT")
    conn.close()
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def live_server(request, database_url, redis_server, smtp_server, state_dir):
    """`videoflix serve` in its own process, as in production; an admin made by `videoflix createadmin`.
    A test module's LIVE_SERVER_ENV adds settings (tests/test_browser_tokens.py)."""
    _reset_database(database_url, redis_server.url)
    port = free_port()
    var = state_dir / f"browser-{port}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url, "REDIS_URL": redis_server.url,
        "SECRET_KEY": "browser-test-secret-key-long-enough-for-hs256",
        "VIDEOFLIX_HOST": "127.0.0.1", "VIDEOFLIX_PORT": str(port),
        "VIDEOFLIX_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "VIDEOFLIX_VAR_DIR": str(var), "VIDEOFLIX_BCRYPT_ROUNDS": "4",
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_server.port),
        "VIDEOFLIX_X264_PRESET": "ultrafast", "VIDEOFLIX_ADMIN_PASSWORD": PASSWORD,
        "VIDEOFLIX_LOG_LEVEL": "INFO",
        **getattr(request.module, "LIVE_SERVER_ENV", {}),
    }
    for name in ("FRONTEND_URL", "VIDEOFLIX_CORS_ORIGINS", "VIDEOFLIX_MEDIA_DIR"):
        env.pop(name, None)
    command = [sys.executable, "-m", "videoflix"]
    subprocess.run([*command, "createadmin", ADMIN_EMAIL], env=env, cwd=ROOT, check=True, timeout=60,
                   stdin=subprocess.DEVNULL)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "server.log"  # kept: the server's side of any failure
    log = open(log_path, "wb")
    server = subprocess.Popen([*command, "serve"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None, log_path.read_text()
        try:
            with urllib.request.urlopen(f"{base}/api/health/", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, "server did not come up:\n" + log_path.read_text()
        time.sleep(0.1)
    yield base
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    log.close()
    assert server.returncode == 0, log_path.read_text()


@pytest.fixture(scope="module")
def browser():
    # The distribution's Chromium, never a downloaded build: `make test` installs it.
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} missing: run `make test`, which installs it"
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Steps:
    """Numbered screenshots of one test, and the page's console errors."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        self.errors: list[str] = []

    def shot(self, page, name: str, *, full_page: bool = False) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    @property
    def unexpected_errors(self) -> list[str]:
        """Console errors other than the 400s a test provokes on purpose (the browser
        logs every 4xx answer to fetch as a failed resource)."""
        return [e for e in self.errors if "status of 400 (Bad Request)" not in e]

    def watch(self, page) -> None:
        page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))


@pytest.fixture
def steps(request):
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    failed_before = request.session.testsfailed
    recorder = Steps(folder)
    yield recorder
    if request.session.testsfailed == failed_before and not os.environ.get("VIDEOFLIX_KEEP_SCREENSHOTS"):
        shutil.rmtree(folder, ignore_errors=True)  # passed: nothing to look at
    else:
        print(f"\nscreenshots of the failed test: {folder}")


@pytest.fixture
def context(browser, live_server):
    made = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 800})
    made.set_default_timeout(STEP_TIMEOUT_MS)
    yield made
    made.close()


@pytest.fixture
def page(context, steps):
    opened = context.new_page()
    steps.watch(opened)
    return opened


def wait_for_mail(mailbox, to: str, count: int = 1):
    deadline = time.monotonic() + MAIL_TIMEOUT
    while True:
        mails = [m for m in mailbox.messages if to in str(m["To"])]
        if len(mails) >= count:
            return mails[count - 1]
        assert time.monotonic() < deadline, f"no mail for {to}"
        time.sleep(0.1)


def link_in(message) -> str:
    text = message.get_body(preferencelist=("plain",)).get_content()
    match = re.search(r"https?://\S+\?uid=[A-Za-z0-9_-]+&token=[A-Za-z0-9_-]+", text)
    assert match, text
    return match.group(0)


def log_in(page, email: str, password: str = PASSWORD) -> None:
    page.goto("/pages/auth/login.html")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/$"))


def log_out(page) -> None:
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r".*/pages/auth/login\.html"))


def readme_screenshot(page, name: str) -> None:
    """With VIDEOFLIX_SCREENSHOTS=<dir> (scripts/screenshots.sh): the README's pictures."""
    target = os.environ.get("VIDEOFLIX_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / name), type="jpeg", quality=80)


def upload_ready(page, tmp_path: Path, title: str, size: str = "640x360", seconds: int = 6) -> int:
    """A test clip made by ffmpeg, uploaded with the page's session and transcoded: its id once ready."""
    source = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25", "-t", str(seconds), "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(source))
    uploaded = page.request.post("/api/video/", multipart={
        "title": title, "description": "", "category": "Test",
        "file": {"name": "clip.mp4", "mimeType": "video/mp4", "buffer": source.read_bytes()}})
    assert uploaded.status == 201, uploaded.text()
    video_id = uploaded.json()["id"]
    deadline = time.monotonic() + TRANSCODE_TIMEOUT_MS / 1000
    while page.request.get(f"/api/video/{video_id}/").json()["status"] != "ready":
        assert time.monotonic() < deadline, "transcode did not finish"
        time.sleep(0.5)
    return video_id


def current_time(page) -> float:
    return page.eval_on_selector("#video", "v => v.currentTime")


def test_full_flow_sign_up_upload_watch_resume(page, steps, mailbox, live_server):
    expect = playwright_api.expect
    # Not logged in: / is the login page.
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/pages/auth/login\.html\?next=%2F$"))
    steps.shot(page, "login")

    # Sign up; the emailed link lands on the built-in activation page.
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Email").fill("viewer@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_label("I accept the privacy policy").check()
    page.get_by_role("button", name="Sign up").click()
    expect(page.locator("#notice")).to_contain_text("we sent an activation link to viewer@example.com")
    steps.shot(page, "registered")
    link = link_in(wait_for_mail(mailbox, "viewer@example.com"))
    assert link.startswith(f"{live_server}/pages/auth/activate.html?uid=")
    page.goto(link)
    expect(page.locator("#notice")).to_contain_text("Account successfully activated.")
    steps.shot(page, "activated")
    page.get_by_role("link", name="Log in").click()
    page.get_by_label("Email").fill("viewer@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server}/")
    expect(page.get_by_role("heading", name="Nothing to watch yet")).to_be_visible()
    steps.shot(page, "empty-catalog")
    log_out(page)

    # The admin uploads a real clip; the bar reaches 100 %, the status reaches
    # `ready` pushed by the server, without a reload.
    log_in(page, ADMIN_EMAIL)
    page.get_by_role("link", name="Open the Studio").click()  # the empty state points there
    page.wait_for_url(f"{live_server}/studio")
    expect(page.locator("#live")).to_contain_text("Live")
    page.evaluate("""() => {
        window.noReload = true;
        window.seenStatuses = [];
        new MutationObserver(() => document.querySelectorAll('#videos [data-status]').forEach(
            (node) => window.seenStatuses.push(node.dataset.status))).observe(
            document.getElementById('videos'), {subtree: true, childList: true, attributes: true});
    }""")
    page.get_by_label("Drop a video file here, or choose one").set_input_files(str(clip(PARK)))
    page.get_by_label("Title").fill("Park at noon")
    page.get_by_label("Description").fill("Traffic by a park, filmed on a sunny day.")
    page.get_by_label("Category").fill("Nature")
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#progress")).to_have_attribute("value", "100")
    expect(page.locator("#progress-percent")).to_contain_text("100 %")
    steps.shot(page, "uploaded")
    item = page.locator("#videos li").first
    expect(item).to_have_attribute("data-status", "ready", timeout=TRANSCODE_TIMEOUT_MS)
    steps.shot(page, "ready")
    assert page.evaluate("window.noReload") is True
    seen = page.evaluate("window.seenStatuses")
    assert "processing" in seen or "queued" in seen, seen
    video_id = int(item.get_attribute("id").split("-")[1])

    # The catalog shows it, with its poster.
    page.get_by_role("link", name="Home", exact=True).click()
    expect(page.get_by_role("heading", name="Park at noon")).to_be_visible()
    poster = page.locator(f'.card a[href="/watch/{video_id}"] img')
    expect(poster).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=poster.element_handle())
    steps.shot(page, "catalog")

    # The player plays past 3 s; a forced switch to each quality keeps playing.
    poster.click()
    page.wait_for_url(f"{live_server}/watch/{video_id}")
    page.wait_for_function("() => document.getElementById('video').currentTime > 3", timeout=60_000)
    steps.shot(page, "playing")
    readme_screenshot(page, "player.jpg")
    # Seek-bar previews (trick-play): hovering the bar shows the sprite tile of that time,
    # and the sheet loads with the page's cookies.
    scrub = page.locator("#scrub")
    expect(scrub).to_be_visible()
    page.wait_for_function("() => Number(document.getElementById('scrub').dataset.cues) > 0")
    box = scrub.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
    preview = page.locator("#scrub .scrub-preview")
    expect(preview).to_be_visible()
    assert re.fullmatch(r"sprite_001\.jpg#xywh=\d+,0,160,90", preview.get_attribute("data-sprite") or "")
    sheet_width = page.evaluate("""() => new Promise((done) => {
        const style = document.querySelector('#scrub .scrub-image').style.backgroundImage;
        const image = new Image();
        image.onload = () => done(image.naturalWidth);
        image.onerror = () => done(0);
        image.src = style.slice(5, -2);
    })""")
    assert sheet_width == 1600  # 10 tiles of 160 px
    steps.shot(page, "seek-preview")
    page.mouse.move(0, 0)
    qualities = page.eval_on_selector_all("#quality option", "options => options.map(o => o.textContent)")
    assert qualities[0].startswith("Auto (") and qualities[1:] == ["1080p", "720p", "480p"], qualities
    # The clip is 5.8 s: loop it so the switches never run into its end, and count
    # the seconds played at each level (currentTime wraps around at the loop).
    page.evaluate("""() => {
        const v = document.getElementById('video');
        v.loop = true;
        window.played = {};
        let last = v.currentTime;
        v.addEventListener('timeupdate', () => {
            const delta = v.currentTime - last;
            last = v.currentTime;
            if (delta > 0 && delta < 1 && v.dataset.level) {
                window.played[v.dataset.level] = (window.played[v.dataset.level] || 0) + delta;
            }
        });
    }""")
    for name in ("1080p", "720p", "480p"):
        page.evaluate("() => { window.played = {}; }")  # only what plays after the switch counts
        page.get_by_label("Quality").select_option(label=name)
        page.wait_for_function(
            "name => { const v = document.getElementById('video');"
            " return v.dataset.level === name && (window.played[name] || 0) > 1.5 && !v.paused; }",
            arg=name, timeout=90_000)
        steps.shot(page, f"quality-{name}")
    page.get_by_label("Quality").select_option(value="-1")  # back to Auto
    page.evaluate("() => { document.getElementById('video').loop = false; }")
    # Keys: m mutes; the signed stream link for other players.
    page.locator("body").press("m")
    assert page.eval_on_selector("#video", "v => v.muted") is True
    page.locator("body").press("m")
    page.get_by_role("button", name="Copy stream link").click()
    expect(page.locator("#stream-link")).to_contain_text(f"{live_server}/api/stream/")

    # The position is saved on pause, and a reload resumes there.
    page.evaluate("() => { const v = document.getElementById('video'); v.currentTime = 4; }")
    page.wait_for_function("() => document.getElementById('video').currentTime >= 4")
    page.locator("body").press("k")  # the player's key for play/pause
    page.wait_for_function("() => Number(document.getElementById('video').dataset.savedPosition) >= 4")
    saved = float(page.eval_on_selector("#video", "v => v.dataset.savedPosition"))
    page.reload()
    expect(page.locator("#message")).to_contain_text("Resuming at 0:0")
    page.wait_for_function("saved => document.getElementById('video').currentTime >= saved - 0.5", arg=saved)
    # Paused outright, not toggled with "k": a toggle that lands before autoplay starts would
    # start the 5.8 s clip, which could then play past 95 % (finished) before Home is reached.
    page.evaluate("() => document.getElementById('video').pause()")
    page.wait_for_function("() => document.getElementById('video').paused")
    steps.shot(page, "resumed")

    # Continue watching.
    page.get_by_role("link", name="Home", exact=True).click()
    row = page.get_by_role("region", name="Continue watching")
    # (The home page makes several requests before the row shows: a loaded CI machine needs more than 5 s.)
    expect(row.locator(f'a[href="/watch/{video_id}"]')).to_be_visible(timeout=30_000)
    steps.shot(page, "continue-watching")
    readme_screenshot(page, "catalog.jpg")

    # The studio edits (PATCH) and deletes after a confirmation.
    page.get_by_role("link", name="Studio", exact=True).click()
    item = page.locator(f"#video-{video_id}")
    item.get_by_role("button", name="Edit").click()
    item.get_by_label("Title").fill("Park in the afternoon")
    item.get_by_role("button", name="Save").click()
    expect(item.get_by_role("link", name="Park in the afternoon")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    item.get_by_role("button", name="Delete").click()
    expect(page.locator(f"#video-{video_id}")).to_have_count(0)
    steps.shot(page, "deleted")

    # Logout: / is the login page again.
    log_out(page)
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/pages/auth/login\.html"))
    steps.shot(page, "logged-out")
    assert steps.unexpected_errors == [], steps.errors


def test_password_reset_through_the_emailed_page(page, steps, mailbox, live_server):
    expect = playwright_api.expect
    email = "forgetful@example.com"
    page.goto("/pages/auth/register.html")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_label("I accept the privacy policy").check()
    page.get_by_role("button", name="Sign up").click()
    page.goto(link_in(wait_for_mail(mailbox, email)))
    expect(page.locator("#notice")).to_contain_text("Account successfully activated.")

    page.goto("/pages/auth/login.html")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Send the link").click()
    expect(page.locator("#notice")).to_contain_text("An email has been sent to reset your password.")
    steps.shot(page, "reset-requested")
    link = link_in(wait_for_mail(mailbox, email, count=2))
    assert link.startswith(f"{live_server}/pages/auth/confirm_password.html?uid=")
    page.goto(link)
    # The server's own field error first (a mismatch), then the real change.
    page.get_by_label("New password", exact=True).fill("brand-new-pass-7")
    page.get_by_label("Repeat the new password").fill("another-pass-7")
    page.get_by_role("button", name="Save the new password").click()
    expect(page.locator("#confirm_password-error, #new_password-error, .form-error").filter(has_text=re.compile(".+")).first).to_be_visible()
    steps.shot(page, "reset-mismatch")
    page.get_by_label("Repeat the new password").fill("brand-new-pass-7")
    page.get_by_role("button", name="Save the new password").click()
    expect(page.locator("#notice")).to_contain_text("Your Password has been successfully reset.")
    steps.shot(page, "reset-done")
    # The old password no longer works, the new one does; the link is dead.
    page.goto("/pages/auth/login.html")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".form-error")).to_have_text("Invalid email or password.")
    log_in(page, email, "brand-new-pass-7")
    page.goto(link)
    page.get_by_label("New password", exact=True).fill("third-pass-77")
    page.get_by_label("Repeat the new password").fill("third-pass-77")
    page.get_by_role("button", name="Save the new password").click()
    expect(page.locator(".form-error")).to_have_text("Invalid or expired token.")
    assert steps.unexpected_errors == [], steps.errors


def test_server_errors_show_next_to_their_field(page, steps, mailbox):
    expect = playwright_api.expect
    page.goto("/pages/auth/register.html")
    page.get_by_label("Email").fill("not-an-email")
    page.get_by_label("Password", exact=True).fill("12345678")
    page.get_by_label("Repeat the password").fill("12345679")
    page.get_by_label("I accept the privacy policy").check()
    page.get_by_role("button", name="Sign up").click()
    email_error = page.locator("#email-error")
    expect(email_error).to_have_text(re.compile(r"valid email", re.I))
    expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#password-error, #confirmed_password-error").filter(has_text=re.compile(".+")).first).to_be_visible()
    steps.shot(page, "register-errors")
    # An address that is taken: the server's message, under the email field.
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(email_error).not_to_be_empty()
    expect(page.locator("#password-error")).to_be_empty()
    steps.shot(page, "email-taken")
    assert steps.unexpected_errors == [], steps.errors


def test_catalog_at_360_px(browser, live_server, steps):
    context = browser.new_context(base_url=live_server, viewport={"width": 360, "height": 740},
                                  device_scale_factor=2, is_mobile=True, has_touch=True)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    try:
        page = context.new_page()
        steps.watch(page)
        log_in(page, ADMIN_EMAIL)
        playwright_api.expect(page.locator("#catalog")).not_to_have_attribute("aria-busy", "true")
        path = steps.shot(page, "catalog-360", full_page=True)
        assert path.stat().st_size > 0
        overflow = page.evaluate("() => document.scrollingElement.scrollWidth - 360")
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px at 360px"
        for url in ("/studio", "/pages/auth/register.html"):
            page.goto(url)
            steps.shot(page, url.strip("/").replace("/", "-") + "-360", full_page=True)
            assert page.evaluate("() => document.scrollingElement.scrollWidth - 360") <= 0, url
        page.goto("/")
        playwright_api.expect(page.locator("#catalog")).not_to_have_attribute("aria-busy", "true")
        readme_screenshot(page, "catalog-360.jpg")
    finally:
        context.close()
    assert steps.unexpected_errors == [], steps.errors


# --- watch while it transcodes (issue 12) ---------------------------------------------

def _encoders_of(live_server: str) -> list[int]:
    """Pids of the ffmpeg encoding for this module's server (its media dir is in the argv)."""
    marker = f"browser-{live_server.rsplit(':', 1)[1]}/media/".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"ffmpeg") and any(marker in arg for arg in argv) and b"tee" in argv:
            found.append(int(entry))
    return found


def _signal_all(pids: list[int], number: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, number)
        except ProcessLookupError:
            pass


def test_playback_starts_while_transcoding_and_keeps_playing_across_the_switch_to_vod(
        page, steps, live_server, park_17s):
    """hls.js in Chromium plays the building version's EVENT playlists from the studio's
    link, and plays on to the end after the run finished and the playlists became VOD.
    The moment "playable but still transcoding" is held by stopping the run's ffmpeg."""
    expect = playwright_api.expect
    log_in(page, ADMIN_EMAIL)
    page.goto("/studio")
    expect(page.locator("#live")).to_contain_text("Live")
    page.get_by_label("Drop a video file here, or choose one").set_input_files(str(park_17s))
    page.get_by_label("Title").fill("Park, three times")
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#progress")).to_have_attribute("value", "100")
    item = page.locator("#videos li").first
    expect(item).to_have_attribute("data-status", re.compile("queued|processing"))
    video_id = int(item.get_attribute("id").split("-")[1])

    # Let the encode run in short steps until the API says playable, then hold it.
    deadline = time.monotonic() + TRANSCODE_TIMEOUT_MS / 1000
    encoders: list[int] = []
    while True:
        assert time.monotonic() < deadline, "never playable while transcoding"
        if not encoders:
            encoders = _encoders_of(live_server)
            _signal_all(encoders, signal.SIGSTOP)
        detail = page.request.get(f"/api/video/{video_id}/").json()
        assert detail["status"] != "ready", "the run ended before it could be held"
        if encoders and detail["playable"]:
            break
        if encoders:
            _signal_all(encoders, signal.SIGCONT)
            time.sleep(0.15)
            _signal_all(encoders, signal.SIGSTOP)
        else:
            time.sleep(0.02)
    try:
        # The studio shows it watchable (pushed over SSE) and links the player.
        expect(item).to_have_attribute("data-playable", "true")
        expect(item).to_have_attribute("data-status", "processing")
        steps.shot(page, "studio-watchable")
        item.get_by_role("link", name="Park, three times").click()
        page.wait_for_url(f"{live_server}/watch/{video_id}")
        page.wait_for_function("() => document.getElementById('video').currentTime > 1", timeout=60_000)
        # hls.js plays a live (EVENT, no ENDLIST) playlist of version 1 while ffmpeg is stopped.
        assert page.evaluate("() => { const h = window.videoflixHls; return h.levels[h.currentLevel >= 0 ?"
                             " h.currentLevel : h.loadLevel].details.live; }") is True
        assert page.request.get(f"/api/video/{video_id}/").json()["status"] == "processing"
        steps.shot(page, "playing-while-transcoding")
    finally:
        _signal_all(encoders, signal.SIGCONT)

    # The run finishes (VOD playlists, version published) while the player plays on to the end.
    page.evaluate("""() => {
        window.fatal = [];
        window.videoflixHls.on('hlsError', (_, data) => { if (data.fatal) window.fatal.push(data.details); });
    }""")
    while page.request.get(f"/api/video/{video_id}/").json()["status"] != "ready":
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.2)
    page.wait_for_function("() => document.getElementById('video').ended", timeout=120_000)
    steps.shot(page, "ended")
    # All 17.4 s were played: nothing was skipped at the live edge or at the switch.
    played = page.evaluate("() => { const p = document.getElementById('video').played; let total = 0;"
                           " for (let i = 0; i < p.length; i++) total += p.end(i) - p.start(i); return total; }")
    assert played > 16.0, played
    assert page.evaluate("window.fatal") == []
    # The playlist hls.js holds is finished now (ENDLIST): no longer live.
    assert page.evaluate("() => window.videoflixHls.levels.some(l => l.details && !l.details.live)") is True
    assert steps.unexpected_errors == []
