"""Email: Jinja2 rendering (HTML + text) and background delivery.

`Mailer.send()` returns at once; delivery runs as a tracked task. SMTP calls
(smtplib, blocking) and outbox writes run in the thread executor. A failed
delivery is retried with backoff; when every attempt fails the message is
spooled to <var>/outbox/undelivered/ and logged, so it is never lost.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import email.message
import email.utils
import logging
import smtplib
import ssl
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jinja2

from videoflix.config import Config
from videoflix.secretfile import write_secret

log = logging.getLogger(__name__)

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("videoflix", "templates/email"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)
# Seconds to wait before each retry of a failed SMTP delivery.
RETRY_DELAYS = (2.0, 10.0, 60.0)
SMTP_TIMEOUT_SECONDS = 30


def _transfer_encoding(body: str) -> str:
    return "7bit" if body.isascii() and all(len(line) < 990 for line in body.splitlines()) else "quoted-printable"


def render_message(template: str, sender: str, to: str, context: dict) -> email.message.EmailMessage:
    """A multipart/alternative message (text + HTML) from templates/email/<template>.*"""
    context = {**context, "email": to}
    message = email.message.EmailMessage()
    message["Subject"] = TEMPLATES.get_template(f"{template}.subject.txt").render(context).strip()
    message["From"] = sender
    message["To"] = to
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = email.utils.make_msgid(domain="videoflix.local")
    text = TEMPLATES.get_template(f"{template}.txt").render(context)
    html = TEMPLATES.get_template(f"{template}.html").render(context)
    # Plain 7bit keeps links greppable in .eml files; QP only when needed.
    message.set_content(text, cte=_transfer_encoding(text))
    message.add_alternative(html, subtype="html", cte=_transfer_encoding(html))
    return message


def _write_eml(directory: str, message: email.message.EmailMessage) -> Path:
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
    target = path / name
    # Activation and reset links are credentials: 0600 from the first byte, and
    # written under a temporary name, so readers never see a half-written file.
    write_secret(target, bytes(message))
    return target


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    user: str
    password: str
    starttls: bool


def _smtp_send(settings: SmtpSettings, message: email.message.EmailMessage) -> None:
    with smtplib.SMTP(settings.host, settings.port, timeout=SMTP_TIMEOUT_SECONDS) as smtp:
        if settings.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.user:
            smtp.login(settings.user, settings.password)
        smtp.send_message(message)


class Mailer:
    def __init__(self, config: Config, executor: concurrent.futures.Executor,
                 retry_delays: tuple[float, ...] = RETRY_DELAYS) -> None:
        self._config = config
        self._executor = executor
        self._retry_delays = retry_delays
        self._tasks: set[asyncio.Task] = set()
        self._smtp = (
            SmtpSettings(config.smtp_host, config.smtp_port, config.smtp_user,
                         config.smtp_password, config.smtp_starttls)
            if config.smtp_host else None
        )

    def link(self, page: str, uidb64: str, token: str) -> str:
        return f"{self._config.frontend_url}/pages/auth/{page}?uid={uidb64}&token={token}"

    def send(self, template: str, to: str, context: dict) -> None:
        """Render now, deliver in the background; never raises for delivery problems."""
        message = render_message(template, self._config.default_from_email, to, context)
        task = asyncio.get_running_loop().create_task(self._deliver(message, context.get("link", "")))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every message handed to send() is delivered or spooled."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _deliver(self, message: email.message.EmailMessage, link: str) -> None:
        loop = asyncio.get_running_loop()
        if self._smtp is None:
            path = await loop.run_in_executor(self._executor, _write_eml, self._config.outbox_dir, message)
            log.info("mail to %s written to %s; link: %s", message["To"], path, link)
            return
        for attempt, delay in enumerate((0.0, *self._retry_delays), start=1):
            if delay:
                await asyncio.sleep(delay)
            try:
                await loop.run_in_executor(self._executor, _smtp_send, self._smtp, message)
                log.info("mail %r to %s delivered (attempt %d)", message["Subject"], message["To"], attempt)
                return
            except (OSError, smtplib.SMTPException) as exc:
                log.warning("mail to %s failed (attempt %d): %s", message["To"], attempt, exc)
        undelivered = str(Path(self._config.outbox_dir) / "undelivered")
        path = await loop.run_in_executor(self._executor, _write_eml, undelivered, message)
        log.error("mail to %s undeliverable after %d attempts; spooled to %s",
                  message["To"], len(self._retry_delays) + 1, path)
