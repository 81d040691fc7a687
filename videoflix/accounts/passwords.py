"""bcrypt hashing, always off the event loop, and the password policy."""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets

import bcrypt

MIN_LENGTH = 8
# bcrypt only reads the first 72 bytes of its input (and bcrypt>=5 raises past
# them): longer passwords are refused instead of silently truncated.
MAX_BYTES = 72


def password_problems(password: object) -> list[str]:
    """Policy messages for `password`; empty when it is acceptable."""
    if not isinstance(password, str) or password == "":
        return ["This field is required."]
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"This password is too short. It must contain at least {MIN_LENGTH} characters.")
    if password.isdigit():
        problems.append("This password is entirely numeric.")
    if len(password.encode("utf-8")) > MAX_BYTES:
        problems.append(f"This password is too long. It must be at most {MAX_BYTES} bytes in UTF-8.")
    return problems


def _hash(password: str, rounds: int) -> str:
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")


def _check(password: str, hashed: str) -> bool:
    encoded = password.encode("utf-8")
    if len(encoded) > MAX_BYTES:
        return False
    try:
        return bcrypt.checkpw(encoded, hashed.encode("ascii"))
    except ValueError:
        return False


async def hash_password(executor: concurrent.futures.Executor, password: str, rounds: int) -> str:
    return await asyncio.get_running_loop().run_in_executor(executor, _hash, password, rounds)


async def check_password(executor: concurrent.futures.Executor, password: str, hashed: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(executor, _check, password, hashed)


# A real bcrypt hash per cost, checked for unknown emails so a login for an
# unknown address takes as long as one with a wrong password (CWE-208). Random
# and never stored: the same for every server sharing this process.
_DUMMY_HASHES: dict[int, str] = {}


async def dummy_hash(executor: concurrent.futures.Executor, rounds: int) -> str:
    if rounds not in _DUMMY_HASHES:
        _DUMMY_HASHES[rounds] = await hash_password(executor, secrets.token_urlsafe(16), rounds)
    return _DUMMY_HASHES[rounds]
