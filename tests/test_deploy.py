"""Deployment files (issue 13 items 1 and 2): the compose file against the Compose
Specification schema, .env.example against the README and config.py, the
Dockerfile's shape, and the shipped nginx configuration in front of the real app.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from videoflix.config import ENV_VARS, Config, ConfigError

ROOT = Path(__file__).resolve().parents[1]
ENV_LINE = re.compile(r"^#?\s?([A-Z][A-Z0-9_]*)=(.*)$")
README_ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \|")
# Defaults derived from other settings: .env.example leaves them empty and says so.
DERIVED = {"VIDEOFLIX_VAR_DIR", "VIDEOFLIX_MEDIA_DIR", "FRONTEND_URL"}


def env_example() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = ENV_LINE.match(line)
        if match:
            assert match.group(1) not in found, f"{match.group(1)} twice in .env.example"
            found[match.group(1)] = match.group(2)
    return found


def readme_variables() -> set[str]:
    return {m.group(1) for line in (ROOT / "README.md").read_text().splitlines() if (m := README_ROW.match(line))}


# --- docker-compose.yml -------------------------------------------------------------------

def check_jsonschema(*args: str) -> subprocess.CompletedProcess:
    binary = Path(sys.executable).with_name("check-jsonschema")
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120)


def test_compose_file_validates_against_the_compose_specification():
    done = check_jsonschema("--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("breakage", [
    ('command: ["videoflix", "worker"]', 'commands: ["videoflix", "worker"]'),  # unknown key
    ('      test: ["CMD", "redis-cli", "ping"]', '      tset: ["CMD", "redis-cli", "ping"]'),
    ("        condition: service_healthy", "        condition: when_ready"),  # not in the enum
    ("  pgdata:\n", "  pgdata: [1, 2]\n"),  # a volume is a mapping
])
def test_compose_schema_check_catches_a_broken_file(breakage, tmp_path):
    """The validation above can fail: the same check refuses a subtly broken copy."""
    text = (ROOT / "docker-compose.yml").read_text()
    assert breakage[0] in text
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(breakage[0], breakage[1], 1))
    done = check_jsonschema("--builtin-schema", "vendor.compose-spec", str(broken))
    assert done.returncode == 1, done.stdout


def test_compose_takes_every_interpolated_setting_from_env_and_documents_it():
    compose = (ROOT / "docker-compose.yml").read_text()
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose))
    assert interpolated, "no ${VAR} in docker-compose.yml"
    assert interpolated - set(env_example()) == set()
    assert "env_file: .env" in compose  # and every application setting reaches the containers


def test_compose_has_the_services_volumes_and_checks_operations_rely_on():
    compose = (ROOT / "docker-compose.yml").read_text()
    for needle in ("image: postgres:16", "image: redis:7", '"--appendonly", "yes"', "pg_isready",
                   '"redis-cli", "ping"', 'command: ["videoflix", "serve"]', 'command: ["videoflix", "worker"]',
                   "condition: service_healthy", "pgdata:/var/lib/postgresql/data", "redisdata:/data",
                   "media:/data", "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro"):
        assert needle in compose, needle
    # Scalable: no fixed container name or host port on the worker.
    assert "container_name" not in compose


# --- .env.example ---------------------------------------------------------------------------

def test_env_example_and_readme_table_name_the_same_variables():
    documented = env_example()
    assert set(documented) == readme_variables()


def test_env_example_lists_every_application_setting():
    assert {var for _, var, _, _ in ENV_VARS} - set(env_example()) == set()


@pytest.mark.parametrize("name, var, parse", [(name, var, parse) for name, var, parse, _ in ENV_VARS],
                         ids=[var for _, var, _, _ in ENV_VARS])
def test_env_example_states_the_real_default(name, var, parse):
    value = env_example()[var]
    default = getattr(Config(host="127.0.0.1", port=8000), name)
    if value == "":
        assert var in DERIVED or not default, f"{var}: .env.example leaves it empty, default is {default!r}"
        return
    try:
        assert parse(value) == default, f"{var}={value} in .env.example, default is {default!r}"
    except (ValueError, ConfigError) as exc:
        pytest.fail(f"{var}={value} in .env.example does not parse: {exc}")


def test_env_example_sets_nothing_but_the_required_blanks():
    # Uncommented lines would override defaults for everyone who copies the file.
    set_lines = [line for line in (ROOT / ".env.example").read_text().splitlines()
                 if ENV_LINE.match(line) and not line.startswith("#")]
    assert set_lines == ["SECRET_KEY=", "POSTGRES_PASSWORD="]


# --- Dockerfile -----------------------------------------------------------------------------

def dockerfile_stages() -> list[list[str]]:
    stages: list[list[str]] = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_final_stage_is_slim_non_root_with_ffmpeg_and_a_health_check():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    final = "\n".join(stages[-1])
    assert stages[-1][0].startswith("FROM python:3.11-slim-bookworm")
    assert "apt-get install -y --no-install-recommends ffmpeg" in final
    for tool in ("build-essential", "gcc", "g++", "make ", "pip install", "npm "):
        assert tool not in final, tool
    users = re.findall(r"^USER (\S+)", final, re.M)
    assert users and users[-1] not in ("root", "0")
    assert "HEALTHCHECK" in final and "/api/health/" in final
    assert 'VOLUME ["/data"]' in final
    assert final.rstrip().endswith('CMD ["videoflix", "serve"]')


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image():
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for entry in (".git", ".venv", "var", ".env", "node_modules"):
        assert entry in ignored


# --- nginx in front of the real application ---------------------------------------------------

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


@pytest.fixture
def nginx_front(http_port, tmp_path):
    """The shipped deploy/nginx.conf, pointed at this test's server instead of `web`."""
    assert NGINX is not None, "nginx missing: run `make test`, which installs it"
    from videoflix.embedded import free_port

    port = free_port()
    server_block = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "server web:8000;" in server_block and "listen 80;" in server_block
    server_block = (server_block.replace("server web:8000;", f"server 127.0.0.1:{http_port};")
                    .replace("listen 80;", f"listen 127.0.0.1:{port};"))
    temp = tmp_path / "nginx"
    temp.mkdir()
    (temp / "nginx.conf").write_text(f"""
        daemon off;
        pid {temp}/nginx.pid;
        error_log {temp}/error.log warn;
        events {{ worker_connections 64; }}
        http {{
            access_log off;
            client_body_temp_path {temp}/body;
            proxy_temp_path {temp}/proxy;
            fastcgi_temp_path {temp}/fastcgi;
            uwsgi_temp_path {temp}/uwsgi;
            scgi_temp_path {temp}/scgi;
            {server_block}
        }}
    """)
    temp.chmod(0o777)
    proc = subprocess.Popen([NGINX, "-p", str(temp), "-c", str(temp / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    yield f"http://127.0.0.1:{port}", proc
    proc.terminate()
    proc.wait(timeout=10)
    proc.stderr.close()


@pytest.mark.gen_test
async def test_shipped_nginx_config_proxies_to_the_app_and_keeps_the_request_id(nginx_front, http_client):
    import tornado.httpclient

    base, proc = nginx_front

    async def get(path: str, **headers: str) -> tornado.httpclient.HTTPResponse:
        loop_deadline = 100
        for _ in range(loop_deadline):  # nginx is ready once it accepts
            try:
                return await http_client.fetch(base + path, headers=headers, raise_error=False)
            except ConnectionRefusedError:
                assert proc.poll() is None, proc.stderr.read().decode()
                import asyncio
                await asyncio.sleep(0.05)
        raise AssertionError("nginx did not start")

    health = await get("/api/health/")
    assert health.code == 200 and b'"database":"ok"' in health.body
    kept = await get("/api/health/", **{"X-Request-ID": "via-nginx-1"})
    assert kept.headers["X-Request-ID"] == "via-nginx-1"
    made = await get("/api/health/")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])  # nginx's $request_id
    missing = await get("/api/video/1/")
    assert missing.code == 401 and missing.headers["Content-Type"].startswith("application/json")
