"""Redirects stay home (issue 18 item 6): the login page follows `next` only to its
own origin, whatever a link puts there: resolved with `new URL(next, location.origin)`
in Chromium itself, with the tab, newline, backslash, `//` and encoded tricks a
browser's URL parser forgives."""
from __future__ import annotations

from urllib.parse import quote, urlsplit

import pytest

# The browser tests' real server, browser and page (module fixtures of test_browser).
from test_browser import ADMIN_EMAIL, browser, context, live_server, page, steps  # noqa: F401

from helpers import PASSWORD

# Each names another origin once a browser's URL parser has forgiven it.
ELSEWHERE = [
    "//evil.example/", "///evil.example/", "/\\evil.example/", "\\/evil.example/", "\\\\evil.example/",
    "/\t/evil.example/", "/\n/evil.example/", "/\r\n/evil.example/", "\t//evil.example/", " //evil.example/",
    "https://evil.example/", "http:evil.example", "http:/evil.example", "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>", "//evil.example@127.0.0.1/", "/%09/evil.example/",
]
# Paths on this site: followed as they are.
HOME_PATHS = [("/studio", "/studio"), ("/watch/1?t=3#x", "/watch/1?t=3#x"), ("studio", "/studio")]


def log_in_with_next(page, next_value: str) -> str:
    page.goto(f"/pages/auth/login.html?next={quote(next_value, safe='')}")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/pages/auth/login.html" not in url)
    return page.url


@pytest.mark.parametrize("next_value", ELSEWHERE)
def test_login_never_follows_next_to_another_origin(page, live_server, next_value):
    landed = urlsplit(log_in_with_next(page, next_value))
    assert (landed.scheme, landed.netloc) == tuple(urlsplit(live_server)[:2])


@pytest.mark.parametrize("next_value, path", HOME_PATHS)
def test_login_follows_next_to_a_path_of_its_own_site(page, live_server, next_value, path):
    landed = urlsplit(log_in_with_next(page, next_value))
    assert landed.netloc == urlsplit(live_server).netloc
    assert landed.path + (f"?{landed.query}" if landed.query else "") + (f"#{landed.fragment}" if landed.fragment
                                                                          else "") == path
