"""Email: Jinja2 rendering (HTML + text) and background delivery.

`await Mailer.send()` returns once the message is durable: written and fsynced
to <var>/outbox/spool/ (SMTP) or, without SMTP, to <var>/outbox/ itself. So an
answer that promises a mail (a 201 after registering) is never sent for a mail a
crash can lose. Delivery then runs as a tracked task and removes the spooled
copy once the SMTP server took it; `resume()` (at start-up) delivers what a
crashed process left in the spool (at least once: a crash between the SMTP
server's "250" and the removal sends it again). SMTP calls (smtplib, blocking)
and file writes run in the thread executor. A failed delivery is retried with
backoff; when every attempt fails the message moves to <var>/outbox/undelivered/
and is logged, so it is never lost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.errors
import email.headerregistry
import email.message
import email.parser
import email.policy
import email.utils
import functools
import logging
import os
import re
import smtplib
import ssl
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videoflix.platform.config import Config
from videoflix.platform.secretfile import write_secret

if TYPE_CHECKING:
    import jinja2

log = logging.getLogger(__name__)


@functools.cache
def templates() -> jinja2.Environment:
    """The mail templates, loaded when the first mail is rendered (jinja2 is a twentieth
    of a process's start-up imports, and most processes never send a mail)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("videoflix", "templates/email"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


# Seconds to wait before each retry of a failed SMTP delivery.
RETRY_DELAYS = (2.0, 10.0, 60.0)
SMTP_TIMEOUT_SECONDS = 30


# An address we mail: one plain `local@domain` mailbox, lower-cased, at most 254
# characters (RFC 5321 §4.5.3.1.3). The local part is a dot-atom of RFC 5322 §3.2.3
# atext, so no display name, group, comma, angle bracket, colon, quote or space can
# turn a To header into several recipients or another one (`k<victim@x`, `a,b@x`,
# `x:y;z@x`: CWE-93, header smuggling); the domain is LDH labels with a dot.
MAX_ADDRESS_LENGTH = 254
_ATEXT = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_PLAIN_MAILBOX = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*@{_LABEL}(?:\.{_LABEL})+")
MAX_LOCAL_PART_LENGTH = 64


def plain_mailbox(value: object) -> str | None:
    """`value` as the one plain mailbox it names (stripped, lower-cased), or None.

    Accepted only when it round-trips through `email.headerregistry.Address`
    unchanged: what we store is exactly what a To header and the SMTP envelope say."""
    if not isinstance(value, str):
        return None
    address = value.strip().lower()
    if len(address) > MAX_ADDRESS_LENGTH or not _PLAIN_MAILBOX.fullmatch(address):
        return None
    if len(address.partition("@")[0]) > MAX_LOCAL_PART_LENGTH:
        return None
    try:
        parsed = email.headerregistry.Address(addr_spec=address)
    except (ValueError, email.errors.MessageError):
        return None
    return address if str(parsed) == address and parsed.display_name == "" else None


def _transfer_encoding(body: str) -> str:
    return "7bit" if body.isascii() and all(len(line) < 990 for line in body.splitlines()) else "quoted-printable"


def render_message(template: str, sender: str, to: str, context: dict[str, Any]) -> email.message.EmailMessage:
    """A multipart/alternative message (text + HTML) from templates/email/<template>.*"""
    context = {**context, "email": to}
    message = email.message.EmailMessage()
    message["Subject"] = templates().get_template(f"{template}.subject.txt").render(context).strip()
    message["From"] = sender
    message["To"] = to
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = email.utils.make_msgid(domain="videoflix.local")
    text = templates().get_template(f"{template}.txt").render(context)
    html = templates().get_template(f"{template}.html").render(context)
    # Plain 7bit keeps links greppable in .eml files; QP only when needed.
    message.set_content(text, cte=_transfer_encoding(text))
    message.add_alternative(html, subtype="html", cte=_transfer_encoding(html))
    return message


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_eml(directory: str, message: email.message.EmailMessage) -> Path:
    """Write `message` as a new .eml in `directory`, durably (fsync file and folder)."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
    target = path / name
    # Activation and reset links are credentials: 0600 from the first byte, and
    # written under a temporary name, so readers never see a half-written file;
    # write_secret fsyncs the file, the folder's fsync makes the new name durable.
    write_secret(target, bytes(message))
    _fsync_dir(path)
    return target


def _move(path: Path, directory: str) -> Path:
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    moved = target / path.name
    path.rename(moved)
    _fsync_dir(target)
    return moved


def _spooled(directory: str) -> list[tuple[Path, email.message.EmailMessage]]:
    """The complete messages left in the spool, oldest first (temporary files skipped)."""
    path = Path(directory)
    if not path.is_dir():
        return []
    found = []
    for item in sorted(path.glob("*.eml")):
        message = email.parser.BytesParser(policy=email.policy.default).parsebytes(item.read_bytes())
        found.append((item, message))
    return found


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    user: str
    password: str
    starttls: bool


def _smtp_send(settings: SmtpSettings, message: email.message.EmailMessage, recipient: str) -> None:
    """Deliver to `recipient` alone: the envelope is ours, never read from the
    message's headers (smtplib's default would take every address in To/Cc/Bcc)."""
    with smtplib.SMTP(settings.host, settings.port, timeout=SMTP_TIMEOUT_SECONDS) as smtp:
        if settings.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.user:
            smtp.login(settings.user, settings.password)
        smtp.send_message(message, to_addrs=[recipient])


class Mailer:
    def __init__(
        self,
        config: Config,
        executor: concurrent.futures.Executor,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        store_executor: concurrent.futures.Executor | None = None,
    ) -> None:
        self._config = config
        self._executor = executor
        # Spool and outbox writes: not behind SMTP calls that may hang for
        # SMTP_TIMEOUT_SECONDS (None: the loop's default executor).
        self._store_executor = store_executor
        self._retry_delays = retry_delays
        self._tasks: set[asyncio.Task[Any]] = set()
        self._smtp = (
            SmtpSettings(
                config.smtp_host, config.smtp_port, config.smtp_user, config.smtp_password, config.smtp_starttls
            )
            if config.smtp_host
            else None
        )

    def link(self, page: str, uidb64: str, token: str) -> str:
        return f"{self._config.frontend_url}/pages/auth/{page}?uid={uidb64}&token={token}"

    @property
    def spool_dir(self) -> str:
        return str(Path(self._config.outbox_dir) / "spool")

    def _shown(self, link: str) -> str:
        """A mail's link for a log line: only under `videoflix dev`, where the developer
        follows it from the terminal; elsewhere a link is a credential (CWE-532)."""
        return link if self._config.dev_mode and link else "(not logged)"

    async def send(self, template: str, to: str, context: dict[str, Any]) -> None:
        """Render and store durably now; deliver in the background. Raises only when
        the message could not be stored (the disk), never for delivery problems.
        `to` is the stored address; ValueError unless it is a plain mailbox."""
        recipient = plain_mailbox(to)
        if recipient is None or recipient != to:
            raise ValueError("mail: not a plain mailbox address")
        loop = asyncio.get_running_loop()
        # In the executor: the first mail imports jinja2 and compiles its templates.
        message = await loop.run_in_executor(
            self._store_executor, render_message, template, self._config.default_from_email, recipient, context
        )
        link = context.get("link", "")
        if self._smtp is None:
            path = await loop.run_in_executor(self._store_executor, _write_eml, self._config.outbox_dir, message)
            log.info("mail to %s written to %s; link: %s", recipient, path, self._shown(link))
            return
        spooled = await loop.run_in_executor(self._store_executor, _write_eml, self.spool_dir, message)
        self._start(message, spooled, recipient, link)

    async def resume(self) -> int:
        """Deliver the messages a previous process spooled but did not deliver. We wrote
        their To header from a plain mailbox; one that is not exactly that is set aside."""
        if self._smtp is None:
            return 0
        loop = asyncio.get_running_loop()
        left = await loop.run_in_executor(self._store_executor, _spooled, self.spool_dir)
        undelivered = str(Path(self._config.outbox_dir) / "undelivered")
        for path, message in left:
            to = str(message.get("To", ""))
            if plain_mailbox(to) != to:
                moved = await loop.run_in_executor(self._store_executor, _move, path, undelivered)
                log.error("mail: %s names no plain recipient; kept in %s", path.name, moved)
                continue
            self._start(message, path, to, "")
        if left:
            log.warning("mail: delivering %d message(s) left in %s by an earlier run", len(left), self.spool_dir)
        return len(left)

    def _start(self, message: email.message.EmailMessage, spooled: Path, recipient: str, link: str) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(message, spooled, recipient, link))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every message handed to send() is delivered or set aside."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _deliver(self, message: email.message.EmailMessage, spooled: Path, recipient: str, link: str) -> None:
        loop = asyncio.get_running_loop()
        assert self._smtp is not None
        for attempt, delay in enumerate((0.0, *self._retry_delays), start=1):
            if delay:
                await asyncio.sleep(delay)
            try:
                await loop.run_in_executor(self._executor, _smtp_send, self._smtp, message, recipient)
                await loop.run_in_executor(self._store_executor, spooled.unlink, True)
                log.info("mail %r to %s delivered (attempt %d)", message["Subject"], recipient, attempt)
                return
            except (OSError, smtplib.SMTPException) as exc:
                log.warning("mail to %s failed (attempt %d): %s", recipient, attempt, exc)
        undelivered = str(Path(self._config.outbox_dir) / "undelivered")
        path = await loop.run_in_executor(self._store_executor, _move, spooled, undelivered)
        log.error(
            "mail to %s undeliverable after %d attempts; kept in %s (link: %s)",
            recipient,
            len(self._retry_delays) + 1,
            path,
            self._shown(link),
        )
