"""The shipped nginx site (deploy/nginx.conf + deploy/media-token.js) made runnable
here: pointed at a test's (or a bench's) server and media folder, its media-token key
filled in, its cache under a temporary prefix, in a main configuration that loads
njs as Debian's package does. Used by tests/test_deploy.py, tests/test_media_tokens.py
and bench/serve.py, so all of them run the very file operators install.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
NJS_MODULE = Path("/usr/lib/nginx/modules/ngx_http_js_module.so")  # libnginx-mod-http-js

MAIN = """\
load_module {njs};
worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{http}
}}
"""


def render_site(*, upstream_port: int, listen_port: int, media_dir: str, media_key: str, prefix: Path,
                accel_media_dir: str | None = None, token_form: str = "path",
                s3: dict[str, str] | None = None) -> str:
    """deploy/nginx.conf with the compose names replaced by this machine's (each
    replacement checked: a renamed line in the shipped file fails here, not silently).
    `s3`: media from a bucket, the app's settings (storage, endpoint, region,
    access_key, secret_key); None: from `media_dir`."""
    s3 = s3 or {}
    site = SITE.read_text()
    media = media_dir.rstrip("/") + "/"
    replacements = [
        ("server web:8000;", f"server 127.0.0.1:{upstream_port};"),
        ("listen 80;", f"listen 127.0.0.1:{listen_port};"),
        ("alias /data/media/;", f"alias {(accel_media_dir or media_dir).rstrip('/')}/;"),
        ("alias /data/media/$vf_id", f"alias {media}$vf_id"),
        ("from=/data/media/;", f"from={media};"),
        ("js_path /etc/nginx/njs/;", f"js_path {ROOT / 'deploy'}/;"),
        ("/var/cache/nginx/videoflix-media", str(prefix / "media-cache")),
        ("/var/cache/nginx/videoflix-s3", str(prefix / "s3-cache")),
        ("${VIDEOFLIX_MEDIA_KEY}", media_key),
        ("${VIDEOFLIX_MEDIA_TOKEN_FORM}", token_form),
        ("${VIDEOFLIX_STORAGE}", s3.get("storage", "")),
        ("${VIDEOFLIX_S3_ENDPOINT}", s3.get("endpoint", "")),
        ("${VIDEOFLIX_S3_REGION}", s3.get("region", "")),
        ("${VIDEOFLIX_S3_ACCESS_KEY_ID}", s3.get("access_key", "")),
        ("${VIDEOFLIX_S3_SECRET_ACCESS_KEY}", s3.get("secret_key", "")),
    ]
    site = site.replace("/var/run/nginx-videoflix-media.sock", str(prefix / "verdict.sock"))  # (twice)
    for needle, replacement in replacements:
        assert needle in site, needle
        site = site.replace(needle, replacement)
    return site


def start(prefix: Path, *, upstream_port: int, listen_port: int, media_dir: str, media_key: str,
          workers: str = "1", accel_media_dir: str | None = None, token_form: str = "path",
          s3: dict[str, str] | None = None) -> subprocess.Popen:
    """nginx running the shipped site (not yet accepting: callers wait for the port)."""
    assert NGINX is not None, "nginx missing: run `make test`, which installs it"
    assert NJS_MODULE.exists(), "njs missing: run `make test`, which installs libnginx-mod-http-js"
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "media-cache").mkdir(exist_ok=True)
    (prefix / "media-cache").chmod(0o777)  # nginx's workers (another user) write the checks' cache
    (prefix / "s3-cache").mkdir(exist_ok=True)
    (prefix / "s3-cache").chmod(0o777)  # and the bucket's slices
    site = render_site(upstream_port=upstream_port, listen_port=listen_port, media_dir=media_dir,
                       media_key=media_key, prefix=prefix, accel_media_dir=accel_media_dir,
                       token_form=token_form, s3=s3)
    conf = prefix / "nginx.conf"
    conf.write_text(MAIN.format(njs=NJS_MODULE, workers=workers, prefix=prefix, http=site))
    prefix.chmod(0o777)
    return subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=10)
    if proc.stderr is not None:
        proc.stderr.close()
