"""The admin console page (/admin, issue 24) in Debian's Chromium against a real
`videoflix serve`: an admin deactivates a user and retries a failed job from the page,
the page follows the queue live; a user opening /admin sees nothing of it."""
from __future__ import annotations

import re
import time

import playwright.sync_api as playwright_api
import psycopg2

# The browser tests' real server, browser and helpers (module fixtures of test_browser).
from test_browser import (  # noqa: F401
    ADMIN_EMAIL, STEP_TIMEOUT_MS, TRANSCODE_TIMEOUT_MS, browser, link_in, live_server, log_in, steps, wait_for_mail,
)

from helpers import PASSWORD
from media import ffmpeg

USER_EMAIL = "spammer@example.com"


def new_page(browser, live_server, recorder):
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    recorder.watch(page)
    return context, page


def sign_up(page, mailbox, email: str) -> None:
    """Register and activate through the API and the emailed link, as a visitor would."""
    response = page.request.post("/api/register/", data={"email": email, "password": PASSWORD,
                                                         "confirmed_password": PASSWORD})
    assert response.status == 201, response.text()
    token_link = link_in(wait_for_mail(mailbox, email))
    uid, token = re.search(r"uid=([^&]+)&token=(\S+)", token_link).groups()
    assert page.request.get(f"/api/activate/{uid}/{token}/").status == 200


def test_admin_deactivates_a_user_and_retries_a_failed_job_and_users_see_nothing(
        browser, live_server, steps, mailbox, database_url, tmp_path):
    expect = playwright_api.expect
    from test_browser import Steps

    user_steps = Steps(steps.folder)  # the user's console errors, apart: one 403 is expected there
    user_context, user_page = new_page(browser, live_server, user_steps)
    admin_context, page = new_page(browser, live_server, steps)
    try:
        # A user, logged in: the console is not theirs.
        sign_up(user_page, mailbox, USER_EMAIL)
        log_in(user_page, USER_EMAIL)
        user_page.goto("/admin")
        expect(user_page.locator("#gate")).to_have_text("Admins only.")
        expect(user_page.locator("#console")).to_be_hidden()
        assert user_page.locator("#console").inner_html() == ""
        assert user_page.locator("table").count() == 0
        assert [e for e in user_steps.unexpected_errors if "403 (Forbidden)" not in e] == []
        steps.shot(user_page, "user-sees-nothing")

        # A video whose transcode failed (the row as the runner leaves it after a refusal).
        log_in(page, ADMIN_EMAIL)
        source = tmp_path / "clip.mp4"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-t", "2", "-c:v", "libx264",
               "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(source))
        uploaded = page.request.post("/api/video/", multipart={
            "title": "Broken upload", "file": {"name": "clip.mp4", "mimeType": "video/mp4",
                                                "buffer": source.read_bytes()}})
        assert uploaded.status == 201, uploaded.text()
        video_id = uploaded.json()["id"]
        deadline = time.monotonic() + TRANSCODE_TIMEOUT_MS / 1000
        while page.request.get(f"/api/video/{video_id}/").json()["status"] != "ready":
            assert time.monotonic() < deadline, "transcode did not finish"
            time.sleep(0.5)
        with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
            cur.execute("UPDATE videos SET status = 'failed', error = 'ffmpeg stopped: test' WHERE id = %s",
                        (video_id,))
        conn.close()

        # The admin's console: the studio links to it.
        page.goto("/studio")
        page.get_by_role("link", name="Admin").click()
        page.wait_for_url(re.compile(r".*/admin$"))
        expect(page.locator("#gate")).to_be_hidden()
        user_row = page.locator(f'tr[data-user="{USER_EMAIL}"]')
        expect(user_row).to_contain_text("yes")
        failed_row = page.locator(f'#jobs-table tr[data-job="{video_id}"]')
        expect(failed_row).to_contain_text("ffmpeg stopped: test")
        steps.shot(page, "console", full_page=True)

        # Deactivate the user: the row says so, the audit log shows it, their session is over.
        user_row.get_by_role("button", name="Deactivate").click()
        expect(page.locator("#console > [role=alert]")).to_contain_text(f"Deactivate {USER_EMAIL}: done.")
        expect(user_row.locator("td").nth(3)).to_have_text("no")
        expect(page.locator("#audit-table")).to_contain_text("user.deactivate")
        expect(page.locator("#audit-table")).to_contain_text(USER_EMAIL)
        assert user_page.request.get("/api/video/").status == 401
        steps.shot(page, "deactivated", full_page=True)

        # Retry the failed job: it leaves the failed list and runs to ready, the page following live.
        failed_row.get_by_role("button", name="Retry").click()
        expect(page.locator("#console > [role=alert]")).to_contain_text(f"Retry job {video_id}: done.")
        expect(page.locator(f'#videos-table tr[data-video="{video_id}"]')).to_contain_text(
            "ready", timeout=TRANSCODE_TIMEOUT_MS)
        expect(page.locator(f'#jobs-table tr[data-job="{video_id}"]')).to_have_count(0)
        expect(page.locator("#audit-table")).to_contain_text("job.retry")
        steps.shot(page, "retried", full_page=True)
        assert not steps.unexpected_errors, steps.unexpected_errors
    finally:
        admin_context.close()
        user_context.close()
