"""Email addresses are addresses (issue 18 item 5): one plain `local@domain` mailbox
or a 400; budgets count the normalised form; the SMTP envelope is the stored address,
never what a header parses to; links are logged only under `videoflix dev`."""
from __future__ import annotations

import dataclasses
import email.message
import logging
from pathlib import Path

import pytest

from videoflix.accounts import flows
from videoflix.platform.db import cursor
from videoflix.platform.mail import Mailer, _write_eml, plain_mailbox, render_message

from helpers import PASSWORD

REGISTER = "/api/register/"
RESET = "/api/password_reset/"
VICTIM = "victim@example.com"
# Each would make a To header name the victim (or several recipients) if stored as is.
SMUGGLING = [
    "k<victim@example.com",
    "k <victim@example.com>",
    "a,b,c@example.com",
    "attacker@example.com,victim@example.com",
    "x:y;z@example.com",
    "group:victim@example.com;",
    '"victim@example.com"@example.com',
    '"a b"@example.com',
    "a(comment)@example.com",
    "victim@example.com\r\nBcc: other@example.com",
    "victim@example.com\nBcc:other@example.com",
    "a\\@example.com",
    "a@example.com>",
    "<a@example.com>",
    "a@[127.0.0.1]",
    "a..b@example.com",
    ".a@example.com",
    "\u00e9@example.com",
    "a@ex\u00e4mple.com",
    "a" * 65 + "@example.com",
    "a@" + "b" * 250 + ".com",
]


def sign_up(address: str) -> dict:
    return {"email": address, "password": PASSWORD, "confirmed_password": PASSWORD}


@pytest.mark.parametrize("address", SMUGGLING)
def test_only_a_plain_mailbox_is_an_address(address):
    assert plain_mailbox(address) is None


@pytest.mark.parametrize("given, stored", [
    ("Victim@Example.COM", VICTIM), ("  victim@example.com ", VICTIM), ("o'hara+tag@mail.example.org", None),
    ("first.last@sub.example.co.uk", None), ("x@a-b.example", None),
])
def test_plain_mailboxes_are_kept_lower_cased(given, stored):
    assert plain_mailbox(given) == (stored or given.strip().lower())


@pytest.mark.gen_test
@pytest.mark.parametrize("address", SMUGGLING[:12])
async def test_registering_a_smuggling_address_is_400_and_creates_and_mails_nothing(client, services, mailbox,
                                                                                   address):
    response = await client.post(REGISTER, sign_up(address))
    assert (response.status, list(response.json())) == (400, ["email"])
    async with cursor(services.pool) as cur:
        await cur.execute("SELECT count(*) AS n FROM users")
        assert (await cur.fetchone())["n"] == 0
    await services.mailer.drain()
    assert mailbox.messages == []


@pytest.mark.gen_test
@pytest.mark.parametrize("address", SMUGGLING[:12])
async def test_reset_for_a_smuggling_address_is_400_and_mails_nothing(client, make_user, services, mailbox,
                                                                     address):
    await make_user(VICTIM, log_in=False)
    mailbox.clear()
    response = await client.post(RESET, {"email": address})
    assert (response.status, list(response.json())) == (400, ["email"])
    await services.mailer.drain()
    assert mailbox.messages == []


@pytest.mark.gen_test(timeout=60)
async def test_spellings_of_one_address_share_its_mail_budget(new_client, make_user, services, mailbox):
    await make_user(VICTIM, log_in=False)
    mailbox.clear()
    spellings = ["Victim@Example.com", " victim@example.com", "VICTIM@EXAMPLE.COM ", "victim@EXAMPLE.com"]
    for i in range(flows.MAX_MAILS_PER_RECIPIENT + 2):
        await new_client(f"127.0.5.{i + 1}").post(RESET, {"email": spellings[i % len(spellings)]})
    await services.mailer.drain()
    # The activation mail counted too: one budget for every spelling.
    assert len(mailbox.messages) == flows.MAX_MAILS_PER_RECIPIENT - 1
    assert mailbox.envelopes == [[VICTIM]] * len(mailbox.messages)


@pytest.mark.gen_test
async def test_the_envelope_is_the_stored_address_whatever_the_headers_say(config, services, mailbox, http_server):
    mailer = Mailer(config, services.mail_executor, store_executor=services.file_executor)
    await mailer.send("password_reset", VICTIM, {"link": "http://x/reset"})
    await mailer.drain()
    assert mailbox.envelopes == [[VICTIM]]
    with pytest.raises(ValueError):
        await mailer.send("password_reset", "k<other@example.com", {"link": "http://x/reset"})
    with pytest.raises(ValueError):
        await mailer.send("password_reset", "Victim@Example.com", {"link": "http://x/reset"})  # not normalised


@pytest.mark.gen_test
async def test_a_spooled_mail_whose_to_header_names_others_is_set_aside_not_sent(config, services, mailbox,
                                                                              http_server):
    mailer = Mailer(config, services.mail_executor, store_executor=services.file_executor)
    honest = render_message("password_reset", config.default_from_email, VICTIM, {"link": "http://x/1"})
    tampered = render_message("password_reset", config.default_from_email, VICTIM, {"link": "http://x/2"})
    tampered.replace_header("To", "victim@example.com, other@example.com")
    for message in (honest, tampered):
        _write_eml(mailer.spool_dir, message)
    assert await mailer.resume() == 2
    await mailer.drain()
    assert mailbox.envelopes == [[VICTIM]]
    assert [m["To"] for m in mailbox.messages] == [VICTIM]
    assert len(list((Path(config.outbox_dir) / "undelivered").glob("*.eml"))) == 1


@pytest.mark.gen_test
@pytest.mark.parametrize("dev_mode", [False, True])
async def test_mail_links_are_logged_only_under_videoflix_dev(config, services, caplog, dev_mode, http_server):
    outbox_config = dataclasses.replace(config, smtp_host="", dev_mode=dev_mode)  # the outbox folder
    mailer = Mailer(outbox_config, services.mail_executor, store_executor=services.file_executor)
    caplog.set_level(logging.DEBUG)
    link = "http://127.0.0.1/pages/auth/confirm_password.html?uid=MQ&token=secret-reset-token"
    await mailer.send("password_reset", VICTIM, {"link": link})
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert ("secret-reset-token" in logged) == dev_mode
    assert VICTIM in logged


def test_rendered_mail_has_exactly_one_recipient():
    message: email.message.EmailMessage = render_message("activation", "Videoflix <noreply@videoflix.local>", VICTIM,
                                                         {"link": "http://x/a"})
    assert [str(a) for a in message["To"].addresses] == [VICTIM]
