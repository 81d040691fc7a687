"""GET /api/openapi.json (API.md §4): valid OpenAPI 3.1, assembled from the route table
(every route and method in it, once), and a bounded schemathesis run against the live
server (issue 11, item 1)."""
from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import pytest
import tornado.web
from openapi_spec_validator import validate

from videoflix.app import collect_routes
from videoflix.library import subtitle_formats
from videoflix.library.uploads import FIELD_LIMITS
from videoflix.platform.config import Config
from videoflix.web import requestrules, schemas
from videoflix.web.base import HTTP_METHODS, BaseHandler, public
from videoflix.web.openapi import openapi_document, path_template
from videoflix.web.operation import operation

from helpers import login

# Sample values for path parameters: real shapes, so a route's regex can match them.
SAMPLES = {"id": "7", "uidb64": "MQ", "token": "tok3n", "resolution": "720p",
           "segment": "seg_00001.ts", "name": "7.jpg", "version": "v1", "language": "en",
           "upload_id": "0123456789abcdef0123456789abcdef"}
# Fuzzing budget inside `make test`; bench/fuzz.py runs the long one.
FUZZ_MAX_EXAMPLES = int(os.environ.get("VIDEOFLIX_FUZZ_EXAMPLES", "12"))
FUZZ_SEED = os.environ.get("VIDEOFLIX_FUZZ_SEED", "20261128")
FUZZ_CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
               "response_schema_conformance")


def sample_path(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLES[m.group(1)], template)


def document_of(config: Config | None = None) -> dict:
    return openapi_document(collect_routes(), config or Config(public_url="http://127.0.0.1:8000"))


def documented_operations(document: dict) -> list[tuple[str, set[str]]]:
    return [(sample_path(path), {m for m in item if m in HTTP_METHODS})
            for path, item in document["paths"].items()]


def api_routes() -> list[tuple[str, set[str]]]:
    """Every route but the web app's pages and files, with the methods its handler defines."""
    found = []
    for route in collect_routes():
        pattern, handler = route[0], route[1]
        if handler.__module__ == "videoflix.web.page_handlers":
            continue  # the built-in HTML pages and their files (API.md §6) are not API
        found.append((pattern, {name for name in HTTP_METHODS
                                if getattr(handler, name) is not getattr(tornado.web.RequestHandler, name)}))
    return found


def test_document_is_valid_openapi_3_1():
    document = document_of()
    validate(document)  # raises on any schema error
    assert document["openapi"].startswith("3.1")
    schemes = document["components"]["securitySchemes"]
    assert schemes["cookieAuth"] == {"type": "apiKey", "in": "cookie", "name": "access_token",
                                     "description": schemes["cookieAuth"]["description"]}
    assert schemes["bearerAuth"]["scheme"] == "bearer"


def test_every_route_and_method_of_the_application_is_documented():
    operations = documented_operations(document_of())
    missing = []
    for pattern, methods in api_routes():
        matched = [ops for path, ops in operations if re.fullmatch(pattern, path)]
        if not matched:
            missing.append(f"{pattern} (no documented path matches it)")
            continue
        undocumented = methods - set().union(*matched)
        if undocumented:
            missing.append(f"{pattern}: {sorted(undocumented)}")
    assert not missing, "routes missing from the document:\n" + "\n".join(missing)


def test_every_documented_path_is_routed():
    routes = [route[0] for route in collect_routes()]
    for path, _ in documented_operations(document_of()):
        assert any(re.fullmatch(pattern, path) for pattern in routes), path


def test_each_route_and_method_is_documented_once():
    operations = documented_operations(document_of())
    assert sum(len(methods) for _, methods in operations) == sum(len(methods) for _, methods in api_routes())
    paths = [path for path, _ in operations]
    for twin in ("/api/video/7/v1/720p/seg_00001.ts", "/api/stream/tok3n/7/v1/720p/seg_00001.ts"):
        assert twin in paths


def test_path_template_names_the_groups_and_keeps_their_patterns():
    template, parameters, trailing_slash = path_template(
        r"/api/stream/([^/]+)/([1-9][0-9]{0,17})/master\.m3u8/?", (schemas.STREAM_TOKEN, schemas.VIDEO_ID))
    assert template == "/api/stream/{token}/{id}/master.m3u8"
    assert [(p["name"], p["schema"]["pattern"]) for p in parameters] == [
        ("token", "^[^/]+$"), ("id", "^[1-9][0-9]{0,17}$")]
    assert trailing_slash
    with pytest.raises(ValueError, match="1 group"):
        path_template(r"/api/video/([^/]+)/", ())
    with pytest.raises(ValueError, match="not a plain path"):
        path_template(r"/api/videos?/", ())


def test_a_handler_method_without_a_declaration_is_refused():
    class HalfDeclaredHandler(BaseHandler):
        @operation("Declared")
        @public
        def get(self) -> None: ...

        @public
        def delete(self) -> None: ...

    with pytest.raises(ValueError, match="HalfDeclaredHandler: no @operation on delete"):
        openapi_document([(r"/api/half/", HalfDeclaredHandler)], Config(public_url="http://x"))


def test_security_and_shared_answers_follow_the_access_marks_and_the_method():
    paths = document_of()["paths"]
    retranscode = paths["/api/video/{id}/retranscode/"]["post"]  # @admin, takes JSON, reads none
    assert retranscode["security"] == [{"cookieAuth": []}, {"bearerAuth": []}]
    assert {"401", "403", "413", "415"} <= set(retranscode["responses"]) and "400" not in retranscode["responses"]
    login = paths["/api/login/"]["post"]  # @public, reads a JSON body
    assert login["security"] == []
    assert {"400", "403", "413", "415"} <= set(login["responses"]) and "401" not in login["responses"]
    delete = paths["/api/video/{id}/"]["delete"]  # no body on DELETE (web/gate.py): no 413, 415
    assert "403" in delete["responses"] and not {"413", "415"} & set(delete["responses"])
    segment = paths["/api/stream/{token}/{id}/{version}/{resolution}/{segment}"]
    assert segment["get"]["security"] == [] and "401" in segment["get"]["responses"]
    assert segment["head"]["responses"].keys() == segment["get"]["responses"].keys()
    assert not any("content" in response for response in segment["head"]["responses"].values())
    assert "206" in segment["get"]["responses"] and "206" not in paths["/api/video/{id}/master.m3u8"]["get"][
        "responses"]  # a rendered master has no ranges


def test_limits_are_read_from_their_owners():
    document = document_of(Config(public_url="http://x", max_upload_bytes=12345, max_concurrent_uploads=3))
    components = document["components"]["schemas"]
    assert components["Upload"]["properties"]["title"]["maxLength"] == FIELD_LIMITS["title"]
    assert components["Subtitle"]["properties"]["label"]["maxLength"] == subtitle_formats.MAX_LABEL_CHARS
    upload = document["paths"]["/api/video/"]["post"]["responses"]
    assert "12345 bytes" in upload["413"]["description"] and "3 uploads" in upload["429"]["description"]
    login = document["paths"]["/api/login/"]["post"]["responses"]
    assert login["413"]["content"]["application/json"]["examples"]["413-0"]["value"] == {
        "detail": requestrules.TOO_LARGE}


@pytest.mark.gen_test
async def test_openapi_json_is_served_with_the_public_url(client, config):
    response = await client.get("/api/openapi.json")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    document = response.json()
    assert document["servers"] == [{"url": config.public_url}]
    # The application's own route table, read back from its router, gives the same document.
    assert document == json.loads(json.dumps(openapi_document(collect_routes(), config)))


@pytest.mark.slow
@pytest.mark.gen_test(timeout=int(os.environ.get("VIDEOFLIX_FUZZ_TIMEOUT", "600")))
async def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(client, make_user, config, tmp_path):
    """A bounded fuzz of every operation, authenticated as a user (Bearer)."""
    await make_user()
    response = await login(client, "user@example.com")
    access = client.cookies["access_token"]
    assert response.status == 200
    schema = tmp_path / "openapi.json"
    schema.write_bytes((await client.get("/api/openapi.json")).body)  # the document served
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
