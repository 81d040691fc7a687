"""Logging set-up and an access log that never records secrets."""
from __future__ import annotations

import logging
import re

import tornado.web

from videoflix import clientaddr

access_log = logging.getLogger("videoflix.access")

# Path parts that carry secrets: email-link tokens and signed stream tokens.
_SECRET_PATHS = (
    (re.compile(r"^(/api/(?:activate|password_confirm)/[^/]+/)[^/]+"), r"\1***"),
    (re.compile(r"^(/api/stream/)[^/]+"), r"\1***"),
)
_SECRET_QUERY = re.compile(r"((?:^|&)(?:token|access|refresh)=)[^&]*")


def scrub_uri(uri: str) -> str:
    path, sep, query = uri.partition("?")
    for pattern, replacement in _SECRET_PATHS:
        path = pattern.sub(replacement, path)
    return path + sep + _SECRET_QUERY.sub(r"\1***", query)


def client_of(handler: tornado.web.RequestHandler) -> str:
    """The client as the login and mail limits see it (clientaddr.py); behind a
    trusted proxy `<client> via <proxy>`."""
    peer = handler.request.remote_ip or ""
    config = handler.settings.get("config")
    trusted = config.trusted_proxies if config is not None else ()
    if not trusted:
        return peer
    client = clientaddr.client_address(peer, handler.request.headers, trusted)
    peer_address = clientaddr.parse_address(peer)
    return client if peer_address is None or client == str(peer_address) else f"{client} via {peer}"


def log_request(handler: tornado.web.RequestHandler) -> None:
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    request = handler.request
    access_log.log(level, "%d %s %s %s %.1fms", status, request.method, scrub_uri(request.uri or ""),
                   client_of(handler), 1000.0 * request.request_time())


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
