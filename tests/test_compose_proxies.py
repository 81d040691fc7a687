"""The compose file trusts its own nginx (issue 18 item 11): VIDEOFLIX_TRUSTED_PROXIES is
nginx's fixed address, inside the network's subnet, so clients are seen as themselves."""
from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import yaml

from videoflix.platform.config import Config

ROOT = Path(__file__).resolve().parents[1]


def default(value: str) -> str:
    """'${NAME:-default}' -> 'default' (what compose uses when .env does not set it)."""
    match = re.fullmatch(r"\$\{[A-Z_]+:-([^}]*)\}", value)
    assert match, value
    return match.group(1)


def test_compose_trusts_exactly_its_nginx_inside_its_subnet():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    trusted = default(compose["x-videoflix"]["environment"]["VIDEOFLIX_TRUSTED_PROXIES"])
    nginx = default(compose["services"]["nginx"]["networks"]["default"]["ipv4_address"])
    subnet = default(compose["networks"]["default"]["ipam"]["config"][0]["subnet"])
    assert trusted == nginx
    assert ipaddress.ip_address(nginx) in ipaddress.ip_network(subnet)
    # The value parses as the server will read it, and names one address, not a network.
    config = Config.from_env({"VIDEOFLIX_TRUSTED_PROXIES": trusted})
    assert [network.num_addresses for network in config.trusted_proxies] == [1]
    for name in ("web", "worker"):  # both take the shared environment (YAML merge key)
        assert compose["services"][name]["environment"]["VIDEOFLIX_TRUSTED_PROXIES"] == "${NGINX_ADDRESS:-%s}" % nginx
