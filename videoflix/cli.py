"""Command line: videoflix serve | worker | dev | check | migrate | createadmin EMAIL |
users list|show|deactivate|activate|promote|demote|delete | jobs list|retry|cancel|discard |
storage copy."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import fcntl
import getpass
import json
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
from videoflix.console import audit, job_admin, queries, user_admin
from videoflix.platform import preflight
from videoflix.platform.config import Config, ConfigError, env_name
from videoflix.platform.db import cursor
from videoflix.platform.embedded import EmbeddedError, EmbeddedPostgres, EmbeddedRedis, free_port
from videoflix.platform.embedded_s3 import EmbeddedS3
from videoflix.platform.log import setup_logging
from videoflix.platform.migrate import apply_migrations
from videoflix.platform.secretfile import read_or_create_secret
from videoflix.platform.services import create_services
from videoflix.platform.storage import EMBEDDED_S3, StorageError
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
    _require_real_store(config)


def _require_real_store(config: Config) -> None:
    if config.storage_location.kind == EMBEDDED_S3:
        raise CommandError(
            f"{env_name('storage')}: {EMBEDDED_S3} is for `videoflix dev` only; "
            "name a bucket (s3://<bucket>/<prefix>) or leave it unset"
        )


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


# --- the admin console, headless (issue 24): the functions the /api/admin/ routes call ---


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def _cli_actor() -> audit.Actor:
    """The command line as the audit log names it: `cli` and the OS account running it."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = str(os.getuid())
    return audit.Actor(None, f"{audit.CLI_ACTOR}:{who}", audit.CLI_ADDRESS)


async def _users(config: Config, args: argparse.Namespace) -> None:
    services = await create_services(config)
    try:
        if args.action == "list":
            filters = {"search": args.search or "", "active": args.active or "", "admin": args.admin or ""}
            query = user_admin.parse_query({**filters, "limit": str(args.limit), "offset": str(args.offset)})
            page = await user_admin.list_users(services, query)
            if args.json:
                _print_json(page)
                return
            sys.stdout.write(f"{'id':>6}  {'active':6}  {'admin':5}  {'videos':>6}  {'bytes':>14}  email\n")
            for user in page["results"]:
                sys.stdout.write(
                    f"{user['id']:>6}  {'yes' if user['is_active'] else 'no':6}  "
                    f"{'yes' if user['is_admin'] else 'no':5}  {user['video_count']:>6}  "
                    f"{user['bytes_stored']:>14}  {user['email']}\n"
                )
            sys.stdout.write(f"{page['count']} user(s)\n")
            return
        user_id = await user_admin.find_user_id(services, args.user)
        if args.action == "show":
            _print_json(await user_admin.get_user(services, user_id))
        elif args.action == "delete":
            if not args.yes:
                raise CommandError("users delete removes the account and every video of it: add --yes")
            _print_json(await user_admin.delete_user(config, services, _cli_actor(), user_id))
        else:
            field, value = {
                "deactivate": ("is_active", False),
                "activate": ("is_active", True),
                "promote": ("is_admin", True),
                "demote": ("is_admin", False),
            }[args.action]
            _print_json(await user_admin.update_user(services, _cli_actor(), user_id, {field: value}))
    except user_admin.UserNotFound:
        raise CommandError(f"no such user: {args.user}") from None
    except user_admin.LastAdmin:
        raise CommandError("that is the last active admin: make another admin first") from None
    except queries.QueryError as exc:
        raise CommandError(f"bad option: {exc.errors}") from None
    finally:
        await services.close()


async def _jobs(config: Config, args: argparse.Namespace) -> None:
    services = await create_services(config)
    try:
        if args.action == "list":
            _print_json(await job_admin.list_jobs(services))
            return
        job_id = job_admin.parse_job_id(args.job)
        if args.action == "retry":
            _print_json(await job_admin.retry(config, services, _cli_actor(), job_id))
        elif args.action == "cancel":
            _print_json(await job_admin.cancel(services, _cli_actor(), job_id))
        else:
            await job_admin.discard(services, _cli_actor(), job_id)
            _print_json({"discarded": job_id})
    except job_admin.JobNotFound:
        raise CommandError(f"no such job: {args.job}") from None
    except job_admin.JobConflict as exc:
        raise CommandError(str(exc)) from None
    except queries.QueryError:
        raise CommandError(f"bad job id: {args.job}") from None
    finally:
        await services.close()


def cmd_users(config: Config, args: argparse.Namespace) -> None:
    _require(config, "database_url", "redis_url")
    asyncio.run(_users(config, args))


def cmd_jobs(config: Config, args: argparse.Namespace) -> None:
    _require(config, "database_url", "redis_url")
    asyncio.run(_jobs(config, args))


def cmd_storage_copy(config: Config, threads: int | None) -> None:
    """Copy MEDIA_DIR's library into the bucket VIDEOFLIX_STORAGE names (resumable: run it
    again after an interruption)."""
    _require_real_store(config)
    if config.storage_location.is_local:
        raise CommandError(
            f"{env_name('storage')}: name the bucket to copy into (s3://<bucket>/<prefix>); "
            f"the library is read from {env_name('media_dir')} ({config.media_dir})"
        )
    if not Path(config.media_dir).is_dir():
        raise CommandError(f"{env_name('media_dir')}: {config.media_dir} is not a folder")
    from videoflix.library import storage_copy  # botocore: only the commands that use a bucket
    from videoflix.platform.s3store import s3_settings

    try:
        report = storage_copy.copy_library(
            config, s3_settings(config), sys.stdout, threads=threads or storage_copy.DEFAULT_THREADS
        )
    except StorageError as exc:
        raise CommandError(f"the bucket cannot be reached: {exc}") from None
    if report.library.refused:
        raise CommandError(f"storage copy: {len(report.library.refused)} name(s) refused (see refused above)")
    if report.failed:
        raise CommandError(f"storage copy: {len(report.failed)} object(s) failed; run it again to resume")


def cmd_storage_create_bucket(config: Config) -> None:
    """Make the bucket VIDEOFLIX_STORAGE names when it does not exist (a store you run,
    e.g. compose's SeaweedFS; on AWS make it with its policy yourself)."""
    _require_real_store(config)
    if config.storage_location.is_local:
        raise CommandError(f"{env_name('storage')}: name the bucket (s3://<bucket>/<prefix>)")
    import botocore.exceptions
    import botocore.session

    from videoflix.platform.s3store import s3_settings

    settings = s3_settings(config)
    client = botocore.session.get_session().create_client("s3", **settings.client_kwargs())
    bucket = settings.location.bucket
    try:
        try:
            client.head_bucket(Bucket=bucket)
            print(f"bucket {bucket} exists")
            return
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) not in ("404", "NoSuchBucket", "NotFound"):
                raise
        client.create_bucket(Bucket=bucket)
        print(f"bucket {bucket} created")
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise CommandError(f"bucket {bucket}: {exc}") from None
    finally:
        client.close()


# The embedded store's bucket (`videoflix dev` with VIDEOFLIX_STORAGE=embedded-s3).
EMBEDDED_BUCKET = "videoflix"


def _start_embedded_s3(var: Path, stack: ExitStack) -> dict[str, str]:
    """A SeaweedFS under var/seaweedfs, its bucket made: the settings that point at it."""
    server = EmbeddedS3(var / "seaweedfs")
    stack.callback(server.stop)
    endpoint = server.start()
    server.ensure_bucket(EMBEDDED_BUCKET)
    return {
        "storage": f"s3://{EMBEDDED_BUCKET}/",
        "s3_endpoint": endpoint,
        "s3_access_key": server.access_key,
        "s3_secret_key": server.secret_key,
        "s3_region": "",
    }


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
            if config.storage_location.kind == EMBEDDED_S3:
                changes.update(_start_embedded_s3(var, stack))
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
    sub.add_parser(
        "dev",
        help="embedded PostgreSQL and Redis under ./var (and SeaweedFS with VIDEOFLIX_STORAGE=embedded-s3), then serve",
    )
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
    people = sub.add_parser("users", help="list, show, (de)activate, promote/demote or delete users")
    people_actions = people.add_subparsers(dest="action", required=True)
    listing = people_actions.add_parser("list", help="users with their videos and bytes stored")
    listing.add_argument("--search", help="part of the email")
    listing.add_argument("--active", choices=("true", "false"))
    listing.add_argument("--admin", choices=("true", "false"))
    listing.add_argument("--limit", type=int, default=user_admin.MAX_PAGE)
    listing.add_argument("--offset", type=int, default=0)
    listing.add_argument("--json", action="store_true", help="print the API's JSON")
    for action, text in (
        ("show", "one user, as JSON"),
        ("deactivate", "end every session of the user and refuse their logins"),
        ("activate", "let a deactivated (or never activated) user log in"),
        ("promote", "make the user an admin"),
        ("demote", "make an admin a plain user (never the last admin)"),
        ("delete", "delete the user and every video of theirs (needs --yes)"),
    ):
        one = people_actions.add_parser(action, help=text)
        one.add_argument("user", help="user id or email")
        if action == "delete":
            one.add_argument("--yes", action="store_true", help="yes, delete it all")
    storage = sub.add_parser("storage", help="object storage: copy a local library into the bucket, make the bucket")
    storage_actions = storage.add_subparsers(dest="action", required=True)
    copy = storage_actions.add_parser(
        "copy",
        help="copy VIDEOFLIX_MEDIA_DIR's library into the bucket VIDEOFLIX_STORAGE names (resumable, verified)",
    )
    # (storage_copy, with botocore, is imported by the command itself: its default is named here)
    copy.add_argument("--threads", type=int, help="objects copied at once (default 4: storage_copy.DEFAULT_THREADS)")
    storage_actions.add_parser(
        "create-bucket", help="make the bucket VIDEOFLIX_STORAGE names if missing (a store you run yourself)"
    )
    jobs = sub.add_parser("jobs", help="the transcode queue: list, retry, cancel, discard dead letters")
    job_actions = jobs.add_subparsers(dest="action", required=True)
    job_actions.add_parser("list", help="queued, running, failed and dead-lettered jobs, as JSON")
    for action, text in (
        ("retry", "run a failed job (a video id) or a dead letter (its id) again"),
        ("cancel", "stop a queued or running job (a video id)"),
        ("discard", "delete a dead letter (its id)"),
    ):
        job_actions.add_parser(action, help=text).add_argument("job", help="video id or dead letter id")
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
        elif args.command == "users":
            cmd_users(config, args)
        elif args.command == "jobs":
            cmd_jobs(config, args)
        elif args.command == "storage" and args.action == "copy":
            cmd_storage_copy(config, args.threads)
        elif args.command == "storage":
            cmd_storage_create_bucket(config)
    except CommandError as exc:
        sys.stderr.write(f"videoflix: {exc}\n")
        return 1
    return 0
