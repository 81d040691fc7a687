"""The named executors: one kind of blocking work never waits behind another."""
from __future__ import annotations

import dataclasses
import socket

import pytest

from videoflix.accounts import passwords
from videoflix.platform.db import cursor
from videoflix.platform.mail import Mailer
from videoflix.platform.services import MAIL_THREAD_WORKERS
from videoflix.tables import users

from helpers import PASSWORD, login, threads_inside, wait_until

HANGING_MAILS = 8


@pytest.fixture
def silent_smtp():
    """A port that completes the TCP handshake and never says a word: the kernel
    queues the connections (listen backlog) and nobody accepts them, so an SMTP
    client waits for the greeting until its timeout. Closing it resets them all."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(HANGING_MAILS * 2)
    yield listener
    listener.close()


@pytest.fixture
def config(config, silent_smtp):
    return dataclasses.replace(config, smtp_port=silent_smtp.getsockname()[1])


@pytest.mark.gen_test(timeout=60)
async def test_mail_server_that_never_answers_does_not_delay_a_login(client, new_client, services, config,
                                                                    silent_smtp):
    # No retries: once the server goes away at the end, every mail is spooled at once.
    services.mailer = Mailer(config, services.mail_executor, retry_delays=())
    hashed = await passwords.hash_password(services.cpu_executor, PASSWORD, config.bcrypt_rounds)
    async with cursor(services.pool) as cur:
        await users.insert_user(cur, "reader@example.com", hashed, is_active=True)
    for index in range(HANGING_MAILS):
        response = await new_client().post("/api/register/", {
            "email": f"new{index}@example.com", "password": PASSWORD, "confirmed_password": PASSWORD})
        assert response.status == 201, response.body
    await wait_until(lambda: threads_inside("videoflix-mail", "smtplib.py") == MAIL_THREAD_WORKERS,
                     "every mail thread waiting on the silent server")
    try:
        response = await login(client, "reader@example.com")
        assert response.status == 200
        # Answered while every mail thread still waits for a greeting.
        assert threads_inside("videoflix-mail", "smtplib.py") == MAIL_THREAD_WORKERS
    finally:
        silent_smtp.close()
        await services.mailer.drain()
