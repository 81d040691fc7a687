"""Command line: videoflix serve | worker | dev | check | migrate | createadmin EMAIL."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import fcntl
import getpass
import logging
import os
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import dotenv

from videoflix.accounts import flows, passwords, tokens
from videoflix.app import serve
from videoflix.platform import preflight
from videoflix.platform.config import Config, ConfigError, env_name
from videoflix.platform.db import cursor
from videoflix.platform.embedded import EmbeddedError, EmbeddedPostgres, EmbeddedRedis, free_port
from videoflix.platform.log import setup_logging
from videoflix.platform.migrate import apply_migrations
from videoflix.platform.secretfile import read_or_create_secret
from videoflix.platform.services import create_services
from videoflix.tables import users

log = logging.getLogger(__name__)


class CommandError(Exception):
    """A one-line problem to print before exiting with status 1."""


def _require(config: Config, *names: str) -> None:
    missing = [name for name in names if not getattr(config, name)]
    if missing:
        raise CommandError(f"{env_name(missing[0])}: required (or run `videoflix dev` for embedded servers)")


def _run_until_signalled(coro_factory: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await coro_factory(stop)

    asyncio.run(main())


def _require_safe(config: Config) -> None:
    """serve and worker: refuse a missing or short SECRET_KEY, https without Secure cookies."""
    reason = preflight.unsafe_reason(config)
    if reason:
        raise CommandError(reason)
    if config.media_key and config.media_key != tokens.media_key(config.secret_key):
        raise CommandError(
            f"{env_name('media_key')}: not the key of this {env_name('secret_key')} (nginx would refuse every "
            "media token): set it to what `videoflix media-key` prints"
        )
    _require(config, "database_url", "redis_url")


def cmd_serve(config: Config) -> None:
    _require_safe(config)
    _run_until_signalled(lambda stop: serve(config, stop))


def cmd_worker(config: Config) -> None:
    _require_safe(config)
    _run_until_signalled(lambda stop: serve(config, stop, with_http=False))


def cmd_check(config: Config) -> None:
    failures = asyncio.run(preflight.run_check(config, sys.stdout))
    if failures:
        raise CommandError(f"check: {failures} problem(s) found (see FAIL above)")


def cmd_migrate(config: Config) -> None:
    _require(config, "database_url", "redis_url")

    async def main() -> None:
        services = await create_services(config)
        try:
            applied = await apply_migrations(services.pool)
            log.info("%d migration(s) applied", len(applied))
        finally:
            await services.close()

    asyncio.run(main())


async def _ensure_admin(config: Config, email: str, password: str) -> None:
    services = await create_services(config)
    try:
        await apply_migrations(services.pool)
        async with cursor(services.pool) as cur:
            existing = await users.get_user_by_email(cur, flows.normalize_email(email) or "")
        if (
            existing
            and existing["is_admin"]
            and existing["is_active"]
            and await passwords.check_password(services.cpu_executor, password, existing["password_hash"])
        ):
            return
        user_id = await flows.ensure_admin(config, services, email, password)
        log.info("admin account %s (id %s) ready", email, user_id)
    except flows.FieldErrors as exc:
        raise CommandError(f"admin account: {exc.errors}") from None
    finally:
        await services.close()


def cmd_media_key(config: Config) -> None:
    """The key deploy/nginx.conf checks media tokens with: a function of SECRET_KEY alone
    (rotating SECRET_KEY rotates it; nginx needs the new one)."""
    reason = preflight.unsafe_reason(config)
    if reason is not None:
        raise CommandError(reason)
    print(tokens.media_key(config.secret_key))


def cmd_createadmin(config: Config, email: str) -> None:
    _require(config, "database_url", "redis_url")
    password = config.admin_password or getpass.getpass(f"Password for {email}: ")
    asyncio.run(_ensure_admin(config, email, password))


def _lock_var_dir(var: Path, stack: ExitStack) -> None:
    lock_path = var / "dev.lock"
    handle = stack.enter_context(open(lock_path, "a+"))  # noqa: SIM115 (the stack closes it)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        raise CommandError(f"videoflix dev is already running on {var} (pid {pid}); stop it first") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()


def cmd_dev(config: Config) -> None:
    var = Path(config.var_dir).resolve()
    var.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        _lock_var_dir(var, stack)
        changes: dict[str, Any] = {}
        if not config.secret_key:
            changes["secret_key"], _ = read_or_create_secret(var / "secret-key", lambda: secrets.token_urlsafe(48))
        try:
            if not config.database_url:
                postgres = EmbeddedPostgres(var / "postgres", free_port())
                stack.callback(postgres.stop)
                changes["database_url"] = postgres.start()
            if not config.redis_url:
                redis_server = EmbeddedRedis(var / "redis", free_port())
                stack.callback(redis_server.stop)
                changes["redis_url"] = redis_server.start()
        except EmbeddedError as exc:
            raise CommandError(str(exc)) from None
        config = dataclasses.replace(config, **changes, dev_mode=True)
        password = config.admin_password
        if not password:
            password, created = read_or_create_secret(var / "admin-password", lambda: secrets.token_urlsafe(12))
            if created:
                sys.stderr.write(
                    f"\nAdmin account: {config.admin_email}\nPassword (shown once, kept in "
                    f"{var / 'admin-password'}): {password}\n\n"
                )
        asyncio.run(_ensure_admin(config, config.admin_email, password))
        _run_until_signalled(lambda stop: serve(config, stop))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videoflix", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help=f"serve with {env_name('database_url')} and {env_name('redis_url')}")
    sub.add_parser("worker", help="run the transcode consumer only (more hosts, shared media dir)")
    sub.add_parser("dev", help="embedded PostgreSQL and Redis under ./var, then serve")
    sub.add_parser(
        "check", help="print the effective configuration and verify PostgreSQL, Redis, ffmpeg and the media directory"
    )
    sub.add_parser("migrate", help="apply pending SQL migrations")
    sub.add_parser(
        "media-key",
        help="print nginx's media-token key (VIDEOFLIX_MEDIA_KEY, derived from SECRET_KEY; README: Edge delivery)",
    )
    create = sub.add_parser("createadmin", help="create or update an admin account")
    create.add_argument("email")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    dotenv.load_dotenv(Path.cwd() / ".env")
    try:
        config = Config.from_env()
    except ConfigError as exc:
        sys.stderr.write(f"videoflix: {exc}\n")
        return 2
    setup_logging(config.log_level, config.log_format)
    try:
        if args.command == "serve":
            cmd_serve(config)
        elif args.command == "worker":
            cmd_worker(config)
        elif args.command == "dev":
            cmd_dev(config)
        elif args.command == "check":
            cmd_check(config)
        elif args.command == "migrate":
            cmd_migrate(config)
        elif args.command == "media-key":
            cmd_media_key(config)
        elif args.command == "createadmin":
            cmd_createadmin(config, args.email)
    except CommandError as exc:
        sys.stderr.write(f"videoflix: {exc}\n")
        return 1
    return 0
