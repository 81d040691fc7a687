"""Safe configuration (issue 13 item 6): the real CLI in a subprocess.

`videoflix serve` and `worker` refuse a missing or short SECRET_KEY and an https
public URL without Secure cookies, in one line; `videoflix dev` makes its own key;
`videoflix check` prints the configuration with secrets masked and checks the
real PostgreSQL, Redis, ffmpeg and media directory.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from videoflix.platform.embedded import free_port

from helpers import cli_env, stop_process, wait_for_health

GOOD_KEY = "k" * 32
CLI_TIMEOUT = 60


def run_cli(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "videoflix", *args], cwd=tmp_path, env=cli_env(**settings),
                          capture_output=True, text=True, timeout=CLI_TIMEOUT)


@pytest.fixture
def served(database_url, redis_server, tmp_path):
    """Settings that would really start a server, but for what each test changes."""
    return {"DATABASE_URL": database_url, "REDIS_URL": redis_server.url, "SECRET_KEY": GOOD_KEY,
            "VIDEOFLIX_PORT": str(free_port()), "VIDEOFLIX_VAR_DIR": str(tmp_path / "var")}


def assert_refused(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_serve_without_secret_key_refuses_to_start(command, served, tmp_path):
    del served["SECRET_KEY"]
    assert_refused(run_cli(tmp_path, command, **served), "SECRET_KEY", "required")


@pytest.mark.parametrize("command", ["serve", "worker"])
@pytest.mark.parametrize("key", ["short", "x" * 31, "é" * 15, " " * 31])
def test_serve_with_secret_key_under_32_bytes_refuses_to_start(command, key, served, tmp_path):
    served["SECRET_KEY"] = key
    assert_refused(run_cli(tmp_path, command, **served), "SECRET_KEY", "too short")


@pytest.mark.parametrize("command", ["serve", "worker"])
@pytest.mark.parametrize("token", ["secret", "t" * 31, "\u00e9" * 15])
def test_serve_with_a_metrics_token_under_32_bytes_refuses_to_start(command, token, served, tmp_path):
    served["VIDEOFLIX_METRICS_TOKEN"] = token
    done = run_cli(tmp_path, command, **served)
    assert_refused(done, "VIDEOFLIX_METRICS_TOKEN", "too short")
    assert token not in done.stderr


@pytest.mark.parametrize("cookie_secure", [None, "false", "0", "no"])
def test_serve_with_https_url_and_insecure_cookies_refuses_to_start(cookie_secure, served, tmp_path):
    served["VIDEOFLIX_PUBLIC_URL"] = "https://videos.example.com"
    if cookie_secure is not None:
        served["VIDEOFLIX_COOKIE_SECURE"] = cookie_secure
    assert_refused(run_cli(tmp_path, "serve", **served), "VIDEOFLIX_COOKIE_SECURE", "https")


def test_serve_refusal_from_a_dotenv_file(served, tmp_path):
    served.pop("SECRET_KEY")
    (tmp_path / ".env").write_text("SECRET_KEY=tooshort\n")
    assert_refused(run_cli(tmp_path, "serve", **served), "SECRET_KEY", "too short")


def test_multibyte_key_of_32_bytes_passes_the_secret_check(tmp_path):
    # 16 x "é" is 32 bytes: the length rule counts bytes, not characters. With no
    # DATABASE_URL the next thing to fail is that, proving the key was accepted.
    done = run_cli(tmp_path, "serve", SECRET_KEY="é" * 16)
    assert_refused(done, "DATABASE_URL")


def test_https_with_secure_cookies_passes_the_settings_check(tmp_path):
    done = run_cli(tmp_path, "serve", SECRET_KEY=GOOD_KEY, VIDEOFLIX_PUBLIC_URL="https://videos.example.com",
                   VIDEOFLIX_COOKIE_SECURE="true")
    assert_refused(done, "DATABASE_URL")


def test_dev_without_secret_key_generates_one_and_serves(served, tmp_path):
    del served["SECRET_KEY"]
    served["VIDEOFLIX_BCRYPT_ROUNDS"] = "4"
    with open(tmp_path / "dev.log", "wb") as log, subprocess.Popen(
            [sys.executable, "-m", "videoflix", "dev"], cwd=tmp_path, env=cli_env(**served),
            stdout=log, stderr=subprocess.STDOUT) as proc:
        try:
            wait_for_health(int(served["VIDEOFLIX_PORT"]), proc)
        finally:
            assert stop_process(proc) == 0, (tmp_path / "dev.log").read_text()
    key = (tmp_path / "var" / "secret-key").read_text().strip()
    assert len(key.encode()) >= 32


def test_check_prints_configuration_with_secrets_masked_and_passes(served, tmp_path):
    served.update(SECRET_KEY="s3cret-" + "k" * 40, SMTP_PASSWORD="mail-pass-123",
                  VIDEOFLIX_MEDIA_DIR=str(tmp_path / "media"))
    done = run_cli(tmp_path, "check", **served)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for secret in (served["SECRET_KEY"], "mail-pass-123", urlsplit(served["DATABASE_URL"]).password,
                   urlsplit(served["REDIS_URL"]).password):
        assert secret not in out
    assert any(line.split()[:2] == ["SECRET_KEY", "***"] for line in out.splitlines())
    assert any(line.split()[:2] == ["SMTP_PASSWORD", "***"] for line in out.splitlines())
    assert "VIDEOFLIX_MEDIA_DIR" in out and str(tmp_path / "media") in out
    for expected in ("ok    postgresql: PostgreSQL ", "ok    redis: Redis ", "ok    ffmpeg: ffmpeg ",
                     "ok    ffprobe: ffprobe ", "ok    encoders: libx264, aac", "ok    media_dir: "):
        assert expected in out
    assert "FAIL" not in out
    assert list((tmp_path / "media").iterdir()) == []  # the probe file is gone


def test_check_reports_unreachable_redis_and_unwritable_media_dir(served, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    served.update(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", VIDEOFLIX_MEDIA_DIR=str(blocker / "media"))
    done = run_cli(tmp_path, "check", **served)
    assert done.returncode == 1
    assert "ok    postgresql:" in done.stdout
    assert "FAIL  redis:" in done.stdout
    assert "FAIL  media_dir:" in done.stdout
    assert "2 problem(s)" in done.stderr


def test_check_reports_unsafe_settings_and_missing_database(tmp_path):
    done = run_cli(tmp_path, "check", SECRET_KEY="short", VIDEOFLIX_MEDIA_DIR=str(tmp_path / "media"))
    assert done.returncode == 1
    assert "FAIL  settings: SECRET_KEY: too short" in done.stdout
    assert "FAIL  postgresql: DATABASE_URL is not set" in done.stdout
    assert "FAIL  redis: REDIS_URL is not set" in done.stdout
    assert "ok    media_dir:" in done.stdout


def test_check_reaches_the_bucket_and_masks_its_secret(served, tmp_path, s3_server):
    import uuid

    from store_helpers import S3_TEST_BUCKET

    served.update(VIDEOFLIX_MEDIA_DIR=str(tmp_path / "media"),
                  VIDEOFLIX_STORAGE=f"s3://{S3_TEST_BUCKET}/{uuid.uuid4().hex}/",
                  VIDEOFLIX_S3_ENDPOINT=s3_server.endpoint, AWS_ACCESS_KEY_ID=s3_server.access_key,
                  AWS_SECRET_ACCESS_KEY=s3_server.secret_key)
    done = run_cli(tmp_path, "check", **served)
    assert done.returncode == 0, done.stdout + done.stderr
    assert s3_server.secret_key not in done.stdout
    assert any(line.split()[:2] == ["AWS_SECRET_ACCESS_KEY", "***"] for line in done.stdout.splitlines())
    assert f"ok    storage: {served['VIDEOFLIX_STORAGE']} at {s3_server.endpoint}: write, read and delete work" in (
        done.stdout)
    down = run_cli(tmp_path, "check", **{**served, "VIDEOFLIX_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}"})
    assert down.returncode == 1
    assert "FAIL  storage: s3://" in down.stdout and "1 problem(s)" in down.stderr
    embedded = run_cli(tmp_path, "serve", **{**served, "VIDEOFLIX_STORAGE": "embedded-s3"})
    assert_refused(embedded, "VIDEOFLIX_STORAGE", "videoflix dev")
