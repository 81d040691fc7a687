"""Before serving: refuse unsafe settings (`serve`, `worker`) and `videoflix check`.

`unsafe_reason(config)` is pure: the one line that says why a production start
is refused, or None. `run_check(config)` prints the effective configuration
(secrets masked) and verifies every external thing the server needs, one line
each; it returns the number of failures.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio

from videoflix.platform import db
from videoflix.platform.config import ENV_VARS, Config, env_name
from videoflix.platform.storage import EMBEDDED_S3

# HS256 keys: RFC 7518 §3.2 asks for a key at least as long as the hash (32 bytes).
MIN_SECRET_KEY_BYTES = 32
# Fields printed as *** (set) or "" (unset) by `videoflix check`.
SECRET_FIELDS = frozenset(
    {"secret_key", "smtp_password", "admin_password", "metrics_token", "media_key", "s3_secret_key"}
)
# Encoders the transcode pipeline uses (transcode/command.py).
REQUIRED_ENCODERS = ("libx264", "aac")
# Each probe of `videoflix check` gives up after this long.
CHECK_TIMEOUT_SECONDS = 10.0


def unsafe_reason(config: Config) -> str | None:
    """Why `videoflix serve`/`worker` must not start with this configuration, or None."""
    secret = env_name("secret_key")
    if not config.secret_key:
        return f"{secret}: required (at least 32 bytes, e.g. `openssl rand -base64 48`)"
    if len(config.secret_key.encode()) < MIN_SECRET_KEY_BYTES:
        return (
            f"{secret}: too short ({len(config.secret_key.encode())} bytes; at least "
            f"{MIN_SECRET_KEY_BYTES}, e.g. `openssl rand -base64 48`)"
        )
    if config.metrics_token and len(config.metrics_token.encode()) < MIN_SECRET_KEY_BYTES:
        return (
            f"{env_name('metrics_token')}: too short ({len(config.metrics_token.encode())} bytes; at least "
            f"{MIN_SECRET_KEY_BYTES}, e.g. `openssl rand -base64 48`)"
        )
    if urlsplit(config.public_url).scheme == "https" and not config.cookie_secure:
        return (
            f"{env_name('cookie_secure')}: must be true when {env_name('public_url')} is https "
            "(auth cookies would also be sent over plain http)"
        )
    return None


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


def effective_configuration(config: Config) -> list[tuple[str, str]]:
    """(variable, shown value) for every setting, secrets masked."""
    rows = []
    for name, var, _parse, _meaning in ENV_VARS:
        value = getattr(config, name)
        if name in SECRET_FIELDS:
            shown = "***" if value else ""
        elif name in ("database_url", "redis_url"):
            shown = mask_url(value)
        elif isinstance(value, tuple):
            shown = ",".join(value)
        elif isinstance(value, bool):
            shown = "true" if value else "false"
        else:
            shown = str(value)
        rows.append((var, shown))
    return rows


async def _check_postgres(config: Config) -> str:
    pool = await db.create_pool(config.database_url, minsize=1, maxsize=1)
    try:
        async with db.cursor(pool) as cur:
            await cur.execute("SHOW server_version")
            row = await cur.fetchone()
        return f"PostgreSQL {row['server_version']}"
    finally:
        pool.close()
        await pool.wait_closed()


async def _check_redis(config: Config) -> str:
    client = redis.asyncio.Redis.from_url(config.redis_url, decode_responses=True, socket_connect_timeout=5)
    try:
        info = await client.info("server")
        return f"Redis {info['redis_version']}"
    finally:
        await client.aclose()


async def _run(*argv: str) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        raise RuntimeError(f"{argv[0]} not found on PATH (Debian: apt install ffmpeg)") from None
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited with {proc.returncode}")
    return out.decode(errors="replace")


def _version(output: str) -> str:
    match = re.match(r"(\S+) version (\S+)", output)
    return f"{match.group(1)} {match.group(2)}" if match else output.splitlines()[0][:80]


async def _check_ffmpeg(config: Config) -> str:
    return _version(await _run("ffmpeg", "-hide_banner", "-version"))


async def _check_ffprobe(config: Config) -> str:
    return _version(await _run("ffprobe", "-hide_banner", "-version"))


async def _check_encoders(config: Config) -> str:
    listed = await _run("ffmpeg", "-hide_banner", "-encoders")
    # Lines look like " V....D libx264  libx264 H.264 / AVC ...".
    names = {fields[1] for fields in (line.split() for line in listed.splitlines()) if len(fields) > 1}
    missing = [name for name in REQUIRED_ENCODERS if name not in names]
    if missing:
        raise RuntimeError(f"ffmpeg lacks the encoder(s) {', '.join(missing)}")
    return ", ".join(REQUIRED_ENCODERS)


def _write_probe(directory: str) -> str:
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path, prefix=".check-", delete=True) as handle:
        handle.write(b"videoflix")
        handle.flush()
        os.fsync(handle.fileno())
    return f"{path.resolve()} is writable"


async def _check_media_dir(config: Config) -> str:
    return await asyncio.get_running_loop().run_in_executor(None, _write_probe, config.media_dir)


async def _check_storage(config: Config) -> str:
    """Where media objects live; with a bucket: a probe object written, read back and
    deleted under the prefix (the credentials may do what the server does)."""
    location = config.storage_location
    if location.is_local:
        return f"local ({env_name('media_dir')})"
    if location.kind == EMBEDDED_S3:
        return "embedded-s3: a SeaweedFS that `videoflix dev` starts under ./var/seaweedfs"
    import botocore.config
    from aiobotocore.session import get_session

    from videoflix.platform.s3store import s3_settings

    settings = s3_settings(config)
    where = f"s3://{location.bucket}/{location.prefix}"
    key = f"{location.prefix}.videoflix-check-{secrets.token_hex(6)}"
    kwargs = settings.client_kwargs()
    # One attempt each, so an unreachable store is reported within the check's time.
    kwargs["config"] = kwargs["config"].merge(botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=3))
    try:
        async with get_session().create_client("s3", **kwargs) as client:
            await client.put_object(Bucket=location.bucket, Key=key, Body=b"videoflix")
            try:
                answer = await client.get_object(Bucket=location.bucket, Key=key)
                async with answer["Body"] as body:
                    if await body.read() != b"videoflix":
                        raise RuntimeError(f"{where}: a probe object read back other bytes")
            finally:
                await client.delete_object(Bucket=location.bucket, Key=key)
    except RuntimeError:
        raise
    except Exception as exc:  # botocore's errors name the operation and the store's answer, no keys
        raise RuntimeError(f"{where} at {settings.endpoint or 'AWS'}: {exc}") from None
    return f"{where} at {settings.endpoint or 'AWS'}: write, read and delete work"


# (name, the setting it needs or "", check)
CHECKS: tuple[tuple[str, str, Callable[..., Any]], ...] = (
    ("postgresql", "database_url", _check_postgres),
    ("redis", "redis_url", _check_redis),
    ("ffmpeg", "", _check_ffmpeg),
    ("ffprobe", "", _check_ffprobe),
    ("encoders", "", _check_encoders),
    ("media_dir", "", _check_media_dir),
    ("storage", "", _check_storage),
)


async def run_check(config: Config, out: TextIO) -> int:
    """Print the configuration and one ok/FAIL line per check; the number of failures."""
    out.write("Configuration (secrets masked):\n")
    rows = effective_configuration(config)
    width = max(len(var) for var, _ in rows)
    for var, shown in rows:
        out.write(f"  {var:<{width}}  {shown}\n")
    out.write("Checks:\n")
    failures = 0
    unsafe = unsafe_reason(config)
    if unsafe:
        failures += 1
        out.write(f"  FAIL  settings: {unsafe}\n")
    else:
        out.write("  ok    settings: safe for `videoflix serve`\n")
    for name, needs, check in CHECKS:
        if needs and not getattr(config, needs):
            failures += 1
            out.write(f"  FAIL  {name}: {needs.upper()} is not set\n")
            continue
        try:
            detail = await asyncio.wait_for(check(config), CHECK_TIMEOUT_SECONDS)
        except Exception as exc:  # any failure is reported, not raised
            failures += 1
            out.write(f"  FAIL  {name}: {_one_line(exc)}\n")
        else:
            out.write(f"  ok    {name}: {detail}\n")
        out.flush()
    return failures


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
