"""The systemd units of a VM install (issue 20 item 6): deploy/videoflix.service
(`videoflix serve`) and deploy/videoflix-worker.service (`videoflix worker`).

`systemd-analyze verify` accepts both, and refuses copies broken on purpose (so the
check can fail); the hardening the README promises is in each; the README's install
steps name the paths the units use.

verify checks that ExecStart='s program exists, and the venv of a real install is
not here: it runs with --root on a temporary root holding the host's own units
(sysinit.target and the rest, which verify loads too), the units under test in
/etc/systemd/system, and an executable stub at the units' ExecStart path. The units
themselves are verified byte for byte as shipped.

verify's exit status alone is not enough: systemd 252 logs an unknown directive or
a bad value ("Unknown key ..., ignoring", "Failed to parse ..., ignoring") and still
exits 0. A unit passes only with exit status 0 and nothing printed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from videoflix.cli import build_parser
from videoflix.platform.config import Config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
UNITS = {"videoflix.service": "serve", "videoflix-worker.service": "worker"}
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
# The host's unit directory (merged /usr on Debian: /lib is a link to /usr/lib).
HOST_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
VENV_VIDEOFLIX = "/opt/videoflix/venv/bin/videoflix"
ENV_FILE = "/etc/videoflix/videoflix.env"
# Tornado's close of idle connections at shutdown (app.serve: close_all_connections).
CLOSE_CONNECTIONS_SECONDS = 10


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """{section: {key: [values in order]}}: enough of systemd's syntax for our files
    (comments, sections, Key=value; no line continuations in them)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"line continuations are not parsed here: {line!r}"
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"a setting before any section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not Key=value: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    return parse_unit((DEPLOY / name).read_text())


def one(service: dict[str, list[str]], key: str) -> str:
    values = service.get(key)
    assert values is not None, f"{key}= missing"
    assert len(values) == 1, f"{key}= set {len(values)} times: {values}"
    return values[0]


def environment(service: dict[str, list[str]]) -> dict[str, str]:
    """The unit's own Environment= assignments (quoted as systemd quotes them)."""
    env: dict[str, str] = {}
    for value in service.get("Environment", []):
        for item in shlex.split(value):
            name, _, setting = item.partition("=")
            env[name] = setting
    return env


# --- systemd-analyze verify -------------------------------------------------------------------


def verify_root(tmp_path: Path, texts: dict[str, str]) -> Path:
    """A --root for verify: the host's units, `texts` as /etc/systemd/system/<name>, and
    an executable stub where ExecStart= points."""
    assert SYSTEMD_ANALYZE is not None, "systemd-analyze missing: run `make test`, which installs it (systemd)"
    host_units = next((d for d in HOST_UNIT_DIRS if (d / "sysinit.target").exists()), None)
    assert host_units is not None, "no systemd unit directory with sysinit.target on this host"
    root = tmp_path / "root"
    shutil.copytree(host_units, root / "usr/lib/systemd/system", ignore_dangling_symlinks=True)
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    for name, text in texts.items():
        (etc / name).write_text(text)
    stub = root / VENV_VIDEOFLIX.lstrip("/")
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    return root


def verify(root: Path, *names: str) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", f"--root={root}", *names],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""},
    )


def accepted(done: subprocess.CompletedProcess[str]) -> bool:
    return done.returncode == 0 and not (done.stdout + done.stderr).strip()


def test_systemd_analyze_verify_accepts_both_units(tmp_path):
    root = verify_root(tmp_path, {name: (DEPLOY / name).read_text() for name in UNITS})
    done = verify(root, *UNITS)
    assert accepted(done), f"exit {done.returncode}:\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize(
    ("name", "old", "new", "said"),
    [
        # An unknown directive: verify logs it and ignores it (exit status 0).
        ("videoflix.service", "ProtectSystem=strict", "ProtectSytem=strict", "Unknown key"),
        ("videoflix-worker.service", "NoNewPrivileges=yes", "NoNewPrivilege=yes", "Unknown key"),
        # Bad values, as good as absent for systemd.
        ("videoflix.service", "ProtectSystem=strict", "ProtectSystem=strictest", "strictest"),
        ("videoflix.service", "NoNewPrivileges=yes", "NoNewPrivileges=maybe", "maybe"),
        ("videoflix-worker.service", "TimeoutStopSec=20", "TimeoutStopSec=twenty", "twenty"),
        ("videoflix-worker.service", "SystemCallFilter=@system-service", "SystemCallFilter=@system", "@system"),
        ("videoflix.service", "ReadWritePaths=/var/lib/videoflix", "ReadWritePaths=var/lib/videoflix", "not absolute"),
        # A misspelt section: no ExecStart= left, verify exits 1.
        ("videoflix.service", "[Service]", "[Servce]", "Servce"),
        # A program that is not there.
        ("videoflix-worker.service", f"{VENV_VIDEOFLIX} worker", f"{VENV_VIDEOFLIX}x worker", "not executable"),
    ],
)
def test_systemd_analyze_verify_refuses_a_broken_copy(tmp_path, name, old, new, said):
    text = (DEPLOY / name).read_text()
    assert text.count(old) == 1, f"{old!r} is not once in {name}: update this test"
    root = verify_root(tmp_path, {name: text.replace(old, new)})
    done = verify(root, name)
    assert not accepted(done), f"a broken copy ({new}) passed verify"
    assert said in done.stdout + done.stderr


# --- what the units say -----------------------------------------------------------------------

# Every one of these is in both units, with this value.
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "RestrictSUIDSGID": "yes",
    "RestrictRealtime": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
}


@pytest.mark.parametrize("name", UNITS)
def test_unit_is_hardened(name):
    service = unit(name)["Service"]
    for key, value in HARDENING.items():
        assert one(service, key) == value, f"{name}: {key}="
    user = one(service, "User")
    assert user and user not in ("root", "0"), f"{name}: runs as {user!r}"
    assert one(service, "Group") == user
    assert "DynamicUser" not in service  # the README's system user owns the media (and nginx reads it)
    # Only the state and media paths are writable: ReadWritePaths= covers both, and
    # nothing that is neither of them or inside them.
    env = environment(service)
    var_dir, media_dir = PurePosixPath(env["VIDEOFLIX_VAR_DIR"]), PurePosixPath(env["VIDEOFLIX_MEDIA_DIR"])
    writable = [PurePosixPath(p.lstrip("-")) for value in service["ReadWritePaths"] for p in value.split()]
    for path in writable:
        assert path in (var_dir, media_dir), f"{name}: {path} is writable"
    for needed in (var_dir, media_dir):
        assert any(needed == path or path in needed.parents for path in writable), f"{name}: {needed} read-only"
    assert one(service, "WorkingDirectory") == str(var_dir)
    for key in ("StateDirectory", "RuntimeDirectory", "CacheDirectory", "LogsDirectory", "InaccessiblePaths"):
        for value in service.get(key, []):
            assert key == "StateDirectory" and Path("/var/lib", value) == Path(var_dir), f"{name}: {key}={value}"


def test_worker_is_hardened_exactly_as_the_server():
    keys = set(HARDENING) | {
        "User",
        "Group",
        "UMask",
        "ReadWritePaths",
        "StateDirectory",
        "RestrictAddressFamilies",
        "SystemCallFilter",
        "ProtectProc",
        "PrivateIPC",
        "PrivateMounts",
        "ProtectHostname",
    }
    server, worker = unit("videoflix.service")["Service"], unit("videoflix-worker.service")["Service"]
    assert {k: server.get(k) for k in keys} == {k: worker.get(k) for k in keys}
    assert environment(server) == environment(worker)


@pytest.mark.parametrize(("name", "command"), UNITS.items())
def test_unit_runs_the_real_command_with_the_environment_file(name, command):
    sections = unit(name)
    service = sections["Service"]
    program, *args = one(service, "ExecStart").split()
    assert (program, args) == (VENV_VIDEOFLIX, [command])
    assert build_parser().parse_args(args).command == command  # a command cli.py has
    assert one(service, "Type") == "exec"
    assert service["EnvironmentFile"][0] == ENV_FILE  # required (no "-"): no settings, no start
    assert one(service, "Restart") == "on-failure"
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.parametrize("name", UNITS)
def test_unit_stops_gracefully(name):
    """SIGTERM to videoflix alone (it kills its pool and ffmpeg itself, after handing their
    jobs back), and time enough for the requests in flight before systemd's SIGKILL."""
    service = unit(name)["Service"]
    assert one(service, "KillMode") == "mixed"
    assert one(service, "KillSignal") == "SIGTERM"
    stop = int(one(service, "TimeoutStopSec").removesuffix("s"))
    if UNITS[name] == "serve":
        assert stop > Config().shutdown_grace_seconds + CLOSE_CONNECTIONS_SECONDS
    else:
        assert stop >= 10


def vm_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("## Installing on a VM (systemd + nginx)", 1)[1].split("\n## ", 1)[0]


def test_readme_installs_what_the_units_expect():
    section = vm_section()
    service = unit("videoflix.service")["Service"]
    for needed in (
        *(f"deploy/{name}" for name in UNITS),
        ENV_FILE,
        VENV_VIDEOFLIX.removesuffix("/bin/videoflix"),
        one(service, "User"),
        "libnginx-mod-http-js",
        "deploy/nginx.conf",
        "/etc/nginx/sites-available/videoflix",
        "SECRET_KEY",
        "DATABASE_URL",
        "REDIS_URL",
    ):
        assert needed in section, f"README's VM section does not mention {needed}"
    # The settings file leaves the paths to the units (a value there would win over theirs).
    settings = section.split("/etc/videoflix/videoflix.env >/dev/null <<END\n", 1)[1].split("\nEND\n", 1)[0]
    names = {line.split("=", 1)[0].lstrip("# ") for line in settings.splitlines() if "=" in line}
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= names
    assert not names & set(environment(service)), "set by the units, not in videoflix.env"
    # The README's one-off commands see what the units see.
    for name, value in environment(service).items():
        if name.startswith("VIDEOFLIX_"):
            assert f"--setenv={name}={value}" in section


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
NJS_MODULE = Path("/usr/lib/nginx/modules/ngx_http_js_module.so")  # libnginx-mod-http-js
KEY_PLACEHOLDER = "${VIDEOFLIX_MEDIA_KEY}"


def readme_site() -> str:
    """deploy/nginx.conf after step 8's sed edits, as the README gives them (sed's rule:
    without g, the first match on each line)."""
    section = vm_section()
    edits = re.findall(r"-e 's\|([^|]+)\|([^|]*)\|(g?)'", section)
    assert len(edits) >= 2, "the sed edits of the nginx site are gone from the README"
    assert f'-e "s|\\{KEY_PLACEHOLDER}|$key|"' in section  # the key, from `vf media-key`
    lines = (DEPLOY / "nginx.conf").read_text().splitlines(keepends=True)
    for old, new, every in edits:
        assert any(old in line for line in lines), f"the README replaces {old!r}, not in deploy/nginx.conf"
        lines = [line.replace(old, new, -1 if every else 1) for line in lines]
    return "".join(lines).replace(KEY_PLACEHOLDER, "0" * 64)


def test_readme_edits_of_the_nginx_site_leave_nothing_of_compose():
    site = readme_site()
    for compose_only in ("web:8000", "/data/", KEY_PLACEHOLDER):
        assert compose_only not in site, f"after the README's edits the site still says {compose_only}"


def test_readme_nginx_steps_give_a_site_nginx_accepts(tmp_path):
    """Step 8 on this machine: the edited site in a main configuration that loads njs as
    Debian's does; the script and the cache directory (step 8 installs both) under
    tmp_path instead of /etc/nginx/njs and /var/cache/nginx."""
    assert NGINX is not None, "nginx missing: run `make test`, which installs it"
    assert NJS_MODULE.exists(), "njs missing: run `make test`, which installs libnginx-mod-http-js"
    section = vm_section()
    assert "sudo install -d /etc/nginx/njs /var/cache/nginx" in section
    assert "deploy/media-token.js /etc/nginx/njs/" in section
    site = readme_site()
    for host_path, here in (
        ("js_path /etc/nginx/njs/;", f"js_path {DEPLOY}/;"),
        ("/var/cache/nginx/", f"{tmp_path}/cache/"),
    ):
        assert host_path in site, host_path
        site = site.replace(host_path, here)
    (tmp_path / "cache").mkdir()
    (tmp_path / "videoflix").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"load_module {NJS_MODULE};\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        f"events {{}}\nhttp {{\n    include {tmp_path}/videoflix;\n}}\n"
    )
    done = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
