"""Configuration: one frozen dataclass, read once from the environment.

`Config.from_env()` is the only place in the code base that reads `os.environ`.
A bad value raises `ConfigError` whose message names the variable; the CLI
prints that one line and exits.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from videoflix.platform.storage import StorageLocation


class ConfigError(Exception):
    """A configuration value is missing or malformed; the message names it."""


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false")


def _parse_int(value: str) -> int:
    return int(value.strip())


def _parse_positive_int(value: str) -> int:
    number = int(value.strip())
    if number <= 0:
        raise ValueError("must be > 0")
    return number


def _parse_positive_float(value: str) -> float:
    number = float(value.strip())
    if not number > 0 or number == float("inf"):
        raise ValueError("must be a number > 0")
    return number


def _parse_non_negative_int(value: str) -> int:
    number = int(value.strip())
    if number < 0:
        raise ValueError("must be >= 0")
    return number


def _parse_port(value: str) -> int:
    number = int(value.strip())
    if not 0 <= number <= 65535:
        raise ValueError("must be 0-65535")
    return number


def _parse_url(value: str) -> str:
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an absolute http(s) URL")
    return value


def _parse_hosts(value: str) -> tuple[str, ...]:
    """Comma-separated host names or IP addresses ("videos.example.com, 10.0.0.5")."""
    hosts = []
    for item in value.split(","):
        host = item.strip().lower().rstrip(".")
        if not host:
            continue
        if not re.fullmatch(r"[a-z0-9.-]+|\[[0-9a-f:.]+\]", host):
            raise ValueError(f"not a host name: {item.strip()!r} (no scheme, port or path)")
        hosts.append(host)
    return tuple(hosts)


def _parse_origins(value: str) -> tuple[str, ...]:
    return tuple(o.strip().rstrip("/") for o in value.split(",") if o.strip())


def _parse_networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated IP addresses or CIDR blocks ("10.0.0.0/8, ::1")."""
    networks = []
    for item in value.split(","):
        item = item.strip()
        if item:
            networks.append(ipaddress.ip_network(item, strict=False))
    return tuple(networks)


def _parse_str(value: str) -> str:
    return value


def _parse_listen(value: str) -> str:
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:9100")
    return f"{host.strip('[]') or '0.0.0.0'}:{int(port)}"


def _parse_accel_prefix(value: str) -> str:
    """An nginx-internal location prefix: /internal-media/ (a path, / at both ends)."""
    value = value.strip()
    if (
        not (value.startswith("/") and value.endswith("/") and len(value) > 2)
        or any(c in value for c in "?#%\\ \t\r\n")
        or "/../" in value
        or "/./" in value
    ):
        raise ValueError("expected a location prefix like /internal-media/")
    return value


# --- VIDEOFLIX_MEDIA_TOKEN_FORM: where a media token travels (README "Edge delivery") ---
# `path` (the default): in the URL's path, /api/media/<token>/<id>/v<N>/...;
# `query:<name>`: in the query string, /api/media/<id>/v<N>/...?<name>=<token>;
# `header:<name>`: in a request header <name>, the URL /api/media/<id>/v<N>/... bare.
# Names are strict: what a CDN names its token, and nothing nginx or a URL would read
# another way (the shipped site matches a query name literally and reads a header by
# name in njs; nginx ignores header names with "_" by default).
MEDIA_TOKEN_CARRIERS = ("path", "query", "header")
_QUERY_NAME = re.compile(r"[A-Za-z0-9_.~-]{1,64}")  # RFC 3986 unreserved: never percent-encoded
_HEADER_NAME = re.compile(r"[A-Za-z](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?")  # an RFC 9110 token, no "_"
# Headers that already mean something between a player, a CDN, nginx and Videoflix:
# a token there would be read (or dropped, or logged) by someone else.
_RESERVED_HEADERS = frozenset(
    {
        "accept", "accept-encoding", "accept-language", "authorization", "cache-control", "connection",
        "cookie", "expect", "forwarded", "host", "keep-alive", "origin", "pragma", "range", "referer",
        "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "via", "x-real-ip", "x-request-id",
    }
)  # fmt: skip
_RESERVED_HEADER_PREFIXES = ("access-control-", "content-", "if-", "proxy-", "sec-", "x-accel-", "x-forwarded-")


@dataclass(frozen=True)
class MediaTokenForm:
    """Where the master's media tokens travel: `carrier` is path, query or header;
    `name` the query parameter or header that carries it ("" for path)."""

    carrier: str = "path"
    name: str = ""

    def __str__(self) -> str:
        return f"{self.carrier}:{self.name}" if self.name else self.carrier


def _parse_media_token_form(value: str) -> MediaTokenForm:
    carrier, sep, name = value.strip().partition(":")
    if carrier == "path" and not sep:
        return MediaTokenForm()
    if carrier == "query" and _QUERY_NAME.fullmatch(name):
        return MediaTokenForm("query", name)
    if carrier == "header" and _HEADER_NAME.fullmatch(name):
        lowered = name.lower()
        if lowered in _RESERVED_HEADERS or lowered.startswith(_RESERVED_HEADER_PREFIXES):
            raise ValueError(f"{name} is a header that means something else along the way; name another")
        return MediaTokenForm("header", name)
    raise ValueError(
        "expected path, query:<name> (letters, digits, _ . ~ -, at most 64) or header:<name> "
        "(letters, digits and inner -, at most 64)"
    )


# x264's presets (x264 --fullhelp), fastest first: any other name makes ffmpeg fail every job.
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)


def _parse_x264_preset(value: str) -> str:
    value = value.strip().lower()
    if value not in X264_PRESETS:
        raise ValueError("expected one of " + ", ".join(X264_PRESETS))
    return value


# Issue 23 item 4 (transcode/originals.py): keep | replace | remove.
ORIGINALS_POLICIES = ("keep", "replace", "remove")


def _parse_originals(value: str) -> str:
    value = value.strip().lower()
    if value not in ORIGINALS_POLICIES:
        raise ValueError("expected one of " + ", ".join(ORIGINALS_POLICIES))
    return value


def _parse_storage(value: str) -> str:
    """VIDEOFLIX_STORAGE: checked here, read by platform/storage.StorageLocation."""
    StorageLocation.parse(value)
    return value.strip()


def _parse_log_format(value: str) -> str:
    value = value.strip().lower()
    if value not in ("text", "json"):
        raise ValueError("expected text or json")
    return value


# (field name, environment variable, parser, meaning) — also the README's table.
ENV_VARS: tuple[tuple[str, str, Callable[[str], object], str], ...] = (
    (
        "database_url",
        "DATABASE_URL",
        _parse_str,
        "PostgreSQL DSN; unset with `videoflix dev` = embedded cluster in ./var/postgres",
    ),
    (
        "redis_url",
        "REDIS_URL",
        _parse_str,
        "Redis URL; unset with `videoflix dev` = embedded redis-server in ./var/redis",
    ),
    (
        "secret_key",
        "SECRET_KEY",
        _parse_str,
        "HMAC key for JWTs and email/stream tokens; dev generates one into ./var/secret-key",
    ),
    ("host", "VIDEOFLIX_HOST", _parse_str, "address to listen on"),
    ("port", "VIDEOFLIX_PORT", _parse_port, "port to listen on"),
    (
        "public_url",
        "VIDEOFLIX_PUBLIC_URL",
        _parse_url,
        "public base URL of this server (absolute URLs in JSON and emails)",
    ),
    (
        "frontend_url",
        "FRONTEND_URL",
        _parse_url,
        "base of the links in emails; default: the public URL (built-in pages)",
    ),
    (
        "allowed_hosts",
        "VIDEOFLIX_ALLOWED_HOSTS",
        _parse_hosts,
        "more host names requests may name in Host (the public URL's host and 127.0.0.1, localhost, [::1] always may); any other Host is 400 (DNS rebinding)",
    ),
    (
        "cors_origins",
        "VIDEOFLIX_CORS_ORIGINS",
        _parse_origins,
        "comma-separated origins allowed to call the API with credentials",
    ),
    (
        "trusted_proxies",
        "VIDEOFLIX_TRUSTED_PROXIES",
        _parse_networks,
        "comma-separated IPs/CIDRs of reverse proxies whose X-Forwarded-For / X-Real-IP are believed; default none",
    ),
    ("cookie_secure", "VIDEOFLIX_COOKIE_SECURE", _parse_bool, "mark auth cookies Secure (turn on behind HTTPS)"),
    ("access_token_minutes", "VIDEOFLIX_ACCESS_TOKEN_MINUTES", _parse_positive_int, "access JWT lifetime"),
    ("refresh_token_days", "VIDEOFLIX_REFRESH_TOKEN_DAYS", _parse_positive_int, "refresh JWT lifetime"),
    ("bcrypt_rounds", "VIDEOFLIX_BCRYPT_ROUNDS", _parse_positive_int, "bcrypt cost factor"),
    ("var_dir", "VIDEOFLIX_VAR_DIR", _parse_str, "state directory (embedded servers, outbox, secret key)"),
    ("media_dir", "VIDEOFLIX_MEDIA_DIR", _parse_str, "uploaded sources and HLS renditions; default <var>/media"),
    ("smtp_host", "SMTP_HOST", _parse_str, "SMTP server; unset = write each email to <var>/outbox/*.eml"),
    ("smtp_port", "SMTP_PORT", _parse_port, "SMTP port"),
    ("smtp_user", "SMTP_USER", _parse_str, "SMTP login (optional)"),
    ("smtp_password", "SMTP_PASSWORD", _parse_str, "SMTP password (optional)"),
    ("smtp_starttls", "SMTP_STARTTLS", _parse_bool, "use STARTTLS"),
    ("default_from_email", "DEFAULT_FROM_EMAIL", _parse_str, "From: address of outgoing mail"),
    ("admin_email", "VIDEOFLIX_ADMIN_EMAIL", _parse_str, "admin account ensured by `videoflix dev`"),
    (
        "admin_password",
        "VIDEOFLIX_ADMIN_PASSWORD",
        _parse_str,
        "its password; unset = generated once into <var>/admin-password",
    ),
    ("max_upload_bytes", "MAX_UPLOAD_BYTES", _parse_positive_int, "largest accepted upload (413 above)"),
    ("allow_public_user_uploads", "ALLOW_PUBLIC_USER_UPLOADS", _parse_bool, "let non-admin users publish to everyone"),
    (
        "max_concurrent_uploads",
        "VIDEOFLIX_MAX_CONCURRENT_UPLOADS",
        _parse_positive_int,
        "uploads one user may have in flight at once (429 above)",
    ),
    (
        "max_queued_per_user",
        "VIDEOFLIX_MAX_QUEUED_PER_USER",
        _parse_non_negative_int,
        "videos of one user waiting to be transcoded at once; another upload is 429 (admins: no limit; 0: none)",
    ),
    (
        "max_user_bytes",
        "VIDEOFLIX_MAX_USER_BYTES",
        _parse_non_negative_int,
        "bytes of sources one user may store; an upload past it is 413 (admins: no limit; 0: none)",
    ),
    (
        "upload_idle_seconds",
        "VIDEOFLIX_UPLOAD_IDLE_SECONDS",
        _parse_positive_int,
        "an upload that sends nothing this long is cut off",
    ),
    (
        "upload_expiry_seconds",
        "VIDEOFLIX_UPLOAD_EXPIRY_SECONDS",
        _parse_positive_int,
        "a resumable upload without progress this long expires (its file is removed)",
    ),
    (
        "max_open_uploads",
        "VIDEOFLIX_MAX_OPEN_UPLOADS",
        _parse_non_negative_int,
        "unfinished resumable uploads one user may have; another is 429 (admins: no limit; 0: none)",
    ),
    ("transcode_workers", "TRANSCODE_WORKERS", _parse_positive_int, "ffmpeg jobs run at once (process pool size)"),
    (
        "transcode_stall_seconds",
        "TRANSCODE_STALL_SECONDS",
        _parse_positive_int,
        "kill ffmpeg after this long without progress",
    ),
    (
        "transcode_lease_seconds",
        "TRANSCODE_LEASE_SECONDS",
        _parse_positive_int,
        "a job not renewed this long (its worker died) is reclaimed",
    ),
    (
        "version_grace_seconds",
        "VIDEOFLIX_VERSION_GRACE_SECONDS",
        _parse_non_negative_int,
        "how long a replaced version stays on disk (and playable) after a re-transcode published a new one",
    ),
    (
        "transcode_max_file_bytes",
        "TRANSCODE_MAX_FILE_BYTES",
        _parse_positive_int,
        "largest file one ffmpeg run may write (RLIMIT_FSIZE): a runaway job fails instead of filling the disk",
    ),
    (
        "shutdown_grace_seconds",
        "VIDEOFLIX_SHUTDOWN_GRACE_SECONDS",
        _parse_positive_int,
        "on SIGTERM, how long requests in flight get to finish",
    ),
    ("x264_preset", "VIDEOFLIX_X264_PRESET", _parse_x264_preset, "libx264 preset, ultrafast ... placebo"),
    (
        "transcode_copy",
        "VIDEOFLIX_TRANSCODE_COPY",
        _parse_bool,
        "copy a source that already fits into the top rung instead of re-encoding it",
    ),
    (
        "originals",
        "VIDEOFLIX_ORIGINALS",
        _parse_originals,
        "uploaded originals after a successful transcode: keep, replace (by a copied top rung), remove",
    ),
    (
        "max_video_width",
        "MAX_VIDEO_WIDTH",
        _parse_positive_int,
        "widest accepted picture (pixels, as displayed; 400 above)",
    ),
    (
        "max_video_height",
        "MAX_VIDEO_HEIGHT",
        _parse_positive_int,
        "tallest accepted picture (pixels, as displayed; 400 above)",
    ),
    ("max_video_pixels", "MAX_VIDEO_PIXELS", _parse_positive_int, "most pixels per frame (width x height; 400 above)"),
    ("max_video_fps", "MAX_VIDEO_FPS", _parse_positive_float, "highest accepted average frame rate (400 above)"),
    ("max_video_seconds", "MAX_VIDEO_SECONDS", _parse_positive_int, "longest accepted duration in seconds (400 above)"),
    (
        "max_video_streams",
        "MAX_VIDEO_STREAMS",
        _parse_positive_int,
        "most streams (video, audio, subtitles, data) in one file (400 above)",
    ),
    (
        "transcode_memory_mb",
        "TRANSCODE_MEMORY_MB",
        _parse_non_negative_int,
        "address-space limit (MiB) of each ffmpeg run; 0 = sized from the CPU count and frame size",
    ),
    (
        "transcode_cpu_factor",
        "TRANSCODE_CPU_FACTOR",
        _parse_positive_float,
        "CPU-time limit of each ffmpeg run, in CPU-seconds per second of 1080p video (at least 300 s)",
    ),
    ("stream_token_ttl", "STREAM_TOKEN_TTL", _parse_positive_int, "lifetime (s) of signed playback URLs"),
    (
        "media_token_ttl",
        "VIDEOFLIX_MEDIA_TOKEN_TTL",
        _parse_positive_int,
        "lifetime (s) of the media tokens a master playlist hands out (the player reloads the master after it)",
    ),
    (
        "media_key",
        "VIDEOFLIX_MEDIA_KEY",
        _parse_str,
        "nginx's media-token key (deploy/nginx.conf); when set, checked against SECRET_KEY at start: `videoflix media-key` prints it",
    ),
    (
        "media_url",
        "VIDEOFLIX_MEDIA_URL",
        _parse_url,
        "where players fetch tokened media (/api/media/...): a CDN's origin URL, e.g. https://cdn.example.com; unset = the master's own host",
    ),
    (
        "media_token_form",
        "VIDEOFLIX_MEDIA_TOKEN_FORM",
        _parse_media_token_form,
        "where the master's media tokens travel: path (in the URL's path), query:<name> (?<name>=<token>) or header:<name> (a request header); the shipped nginx site must say the same",
    ),
    (
        "storage",
        "VIDEOFLIX_STORAGE",
        _parse_storage,
        "where media objects live: unset = MEDIA_DIR; s3://<bucket>/<prefix> = an S3-compatible bucket (MEDIA_DIR is then this host's scratch); embedded-s3 = a SeaweedFS under ./var (videoflix dev only)",
    ),
    (
        "s3_endpoint",
        "VIDEOFLIX_S3_ENDPOINT",
        _parse_url,
        "the S3 endpoint URL (MinIO, Ceph RGW, Garage, SeaweedFS); unset = AWS",
    ),
    (
        "s3_access_key",
        "AWS_ACCESS_KEY_ID",
        _parse_str,
        "S3 access key; unset = botocore's chain (credentials file, instance role)",
    ),
    ("s3_secret_key", "AWS_SECRET_ACCESS_KEY", _parse_str, "S3 secret key (with AWS_ACCESS_KEY_ID)"),
    ("s3_region", "AWS_REGION", _parse_str, "S3 region (us-east-1 when unset)"),
    (
        "s3_cache_mb",
        "VIDEOFLIX_S3_CACHE_MB",
        _parse_non_negative_int,
        "with object storage: MiB of hot segments and sprites a serving process keeps on local scratch (0 = none)",
    ),
    ("log_level", "VIDEOFLIX_LOG_LEVEL", _parse_str, "logging level"),
    ("log_format", "VIDEOFLIX_LOG_FORMAT", _parse_log_format, "`text`, or `json` for one JSON object per line"),
    (
        "metrics_token",
        "VIDEOFLIX_METRICS_TOKEN",
        _parse_str,
        "bearer token for GET /metrics (Prometheus); unset = /metrics answers 404",
    ),
    (
        "metrics_listen",
        "VIDEOFLIX_METRICS_LISTEN",
        _parse_listen,
        "HOST:PORT of a separate, token-free /metrics listener (also for `videoflix worker`); unset = none",
    ),
    (
        "accel_redirect",
        "VIDEOFLIX_ACCEL_REDIRECT",
        _parse_accel_prefix,
        "behind nginx: answer authorised playlist and segment GETs with X-Accel-Redirect to this internal location (e.g. /internal-media/) so nginx sends the file; unset = Videoflix sends it",
    ),
)


def env_name(field_name: str) -> str:
    """The environment variable that sets Config.`field_name` (KeyError if none does)."""
    return _ENV_NAMES[field_name]


_ENV_NAMES = {name: var for name, var, _parse, _meaning in ENV_VARS}


def _default_var_dir() -> str:
    return str(Path.cwd() / "var")


@dataclass(frozen=True)
class Config:
    database_url: str = ""
    redis_url: str = ""
    secret_key: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = ""
    frontend_url: str = ""
    # Host names besides the public URL's and the loopback names (web/gate.py).
    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ("http://127.0.0.1:5500", "http://localhost:5500")
    # Only a peer in these networks may name the client (clientaddr.py).
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    cookie_secure: bool = False
    access_token_minutes: int = 30
    refresh_token_days: int = 7
    bcrypt_rounds: int = 12
    var_dir: str = field(default_factory=_default_var_dir)
    media_dir: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    default_from_email: str = "Videoflix <noreply@videoflix.local>"
    admin_email: str = "admin@videoflix.local"
    admin_password: str = ""
    max_upload_bytes: int = 20 * 1024**3
    allow_public_user_uploads: bool = False
    max_concurrent_uploads: int = 2
    # Per-user quotas (library/lifecycle.check_quota); admins are exempt, 0 = no limit.
    max_queued_per_user: int = 10
    max_user_bytes: int = 100 * 1024**3
    upload_idle_seconds: int = 60
    # Resumable uploads (library/resumable.py): abandoned after a day without progress,
    # as tusd's default; a handful open per user (admins exempt, 0 = no limit).
    upload_expiry_seconds: int = 24 * 3600
    max_open_uploads: int = 5
    transcode_workers: int = 1
    transcode_stall_seconds: int = 60
    transcode_lease_seconds: int = 60
    transcode_max_file_bytes: int = 4 * 1024**3
    version_grace_seconds: int = 6 * 3600
    shutdown_grace_seconds: int = 10
    x264_preset: str = "veryfast"
    transcode_copy: bool = True  # issue 23: transcode/copyfit.py
    originals: str = "keep"  # issue 23: transcode/originals.py
    # Media caps and resource limits (videoflix/transcode/limits.py explains the defaults).
    max_video_width: int = 7680
    max_video_height: int = 7680
    max_video_pixels: int = 7680 * 4320
    max_video_fps: float = 120.0
    max_video_seconds: int = 12 * 3600
    max_video_streams: int = 16
    transcode_memory_mb: int = 0
    transcode_cpu_factor: float = 30.0
    stream_token_ttl: int = 6 * 3600
    media_token_ttl: int = 4 * 3600
    media_key: str = ""
    media_url: str = ""
    media_token_form: MediaTokenForm = MediaTokenForm()
    # Object storage (issue 21, platform/storage.py and platform/s3store.py).
    storage: str = ""
    s3_endpoint: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_region: str = ""
    s3_cache_mb: int = 512
    log_level: str = "INFO"
    log_format: str = "text"
    metrics_token: str = ""
    metrics_listen: str = ""
    accel_redirect: str = ""
    # Set by `videoflix dev` alone (no variable): a developer's machine, where mail
    # links may be logged for following from the terminal.
    dev_mode: bool = False

    def __post_init__(self) -> None:
        # Derived defaults: computed once so every reader sees the same value.
        if not self.public_url:
            object.__setattr__(self, "public_url", f"http://{self.host}:{self.port}")
        if not self.frontend_url:
            object.__setattr__(self, "frontend_url", self.public_url)
        if not self.media_dir:
            object.__setattr__(self, "media_dir", str(Path(self.var_dir) / "media"))

    @property
    def storage_location(self) -> StorageLocation:
        return StorageLocation.parse(self.storage)

    @property
    def outbox_dir(self) -> str:
        return str(Path(self.var_dir) / "outbox")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, var, parse, _meaning in ENV_VARS:
            raw = environ.get(var)
            if raw is None or raw == "":
                continue
            try:
                values[name] = parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{var}: invalid value {raw!r} ({exc})") from None
        return cls(**values)  # type: ignore[arg-type]
