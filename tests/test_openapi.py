"""GET /api/openapi.json (API.md §4): valid OpenAPI 3.1, every route in it, and a bounded
schemathesis run against the live server (issue 11, item 1)."""
from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from videoflix.app import collect_routes
from videoflix.web.base import HTTP_METHODS
from videoflix.web.openapi import openapi_document

from helpers import login

# Sample values for path parameters: real shapes, so a route's regex can match them.
SAMPLES = {"id": "7", "uidb64": "MQ", "token": "tok3n", "resolution": "720p",
           "segment": "seg_00001.ts", "name": "7.jpg", "version": "v1", "language": "en"}
# Fuzzing budget inside `make test`; bench/fuzz.py runs the long one.
FUZZ_MAX_EXAMPLES = int(os.environ.get("VIDEOFLIX_FUZZ_EXAMPLES", "12"))
FUZZ_SEED = os.environ.get("VIDEOFLIX_FUZZ_SEED", "20261128")
FUZZ_CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
               "response_schema_conformance")


def sample_path(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLES[m.group(1)], template)


def documented_operations(document: dict) -> list[tuple[str, set[str]]]:
    return [(sample_path(path), {m for m in item if m in HTTP_METHODS})
            for path, item in document["paths"].items()]


def test_document_is_valid_openapi_3_1():
    document = openapi_document("http://127.0.0.1:8000")
    validate(document)  # raises on any schema error
    assert document["openapi"].startswith("3.1")
    schemes = document["components"]["securitySchemes"]
    assert schemes["cookieAuth"] == {"type": "apiKey", "in": "cookie", "name": "access_token",
                                     "description": schemes["cookieAuth"]["description"]}
    assert schemes["bearerAuth"]["scheme"] == "bearer"


def test_every_route_and_method_of_the_application_is_documented():
    operations = documented_operations(openapi_document("http://x"))
    missing = []
    for route in collect_routes():
        pattern, handler = route[0], route[1]
        if handler.__module__ == "videoflix.web.page_handlers":
            continue  # the built-in HTML pages and their files (API.md §6) are not API
        methods = {name for name in HTTP_METHODS if name != "head"
                   and getattr(handler, name) is not getattr(handler.__mro__[-2], name, None)
                   and getattr(getattr(handler, name), "access", None) is not None}
        matched = [ops for path, ops in operations if re.fullmatch(pattern, path)]
        if not matched:
            missing.append(f"{pattern} (no documented path matches it)")
            continue
        undocumented = methods - set().union(*matched)
        if undocumented:
            missing.append(f"{pattern}: {sorted(undocumented)}")
    assert not missing, "routes missing from openapi.py:\n" + "\n".join(missing)


def test_every_documented_path_is_routed():
    routes = [route[0] for route in collect_routes()]
    for path, _ in documented_operations(openapi_document("http://x")):
        assert any(re.fullmatch(pattern, path) for pattern in routes), path


@pytest.mark.gen_test
async def test_openapi_json_is_served_with_the_public_url(client, config):
    response = await client.get("/api/openapi.json")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    document = response.json()
    assert document["servers"] == [{"url": config.public_url}]
    assert "/api/login/" in document["paths"]


@pytest.mark.gen_test(timeout=int(os.environ.get("VIDEOFLIX_FUZZ_TIMEOUT", "600")))
async def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(client, make_user, config, tmp_path):
    """A bounded fuzz of every operation, authenticated as a user (Bearer)."""
    await make_user()
    response = await login(client, "user@example.com")
    access = client.cookies["access_token"]
    assert response.status == 200
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(openapi_document(config.public_url)))
    st = Path(sys.executable).with_name("st")
    proc = await asyncio.create_subprocess_exec(
        str(st), "run", str(schema), "--url", config.public_url,
        "--checks", FUZZ_CHECKS, "--max-examples", str(FUZZ_MAX_EXAMPLES), "--seed", FUZZ_SEED,
        "--phases", "examples,coverage,fuzzing", "--workers", "1", "--no-color",
        "--generation-database", "none", "--request-timeout", "20",
        "--suppress-health-check", "all",
        # An endless stream by design (tests/test_events.py covers it).
        "--exclude-path", "/api/video/events/",
        "-H", f"Authorization: Bearer {access}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
    )
    output, _ = await proc.communicate()
    text = output.decode("utf-8", "replace")
    summary = re.search(r"Test cases:\s*\n\s*(.+)", text)
    print("schemathesis:", summary.group(1) if summary else "no summary", "seed", FUZZ_SEED)
    assert proc.returncode == 0, text[-6000:]
