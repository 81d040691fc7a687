"""Who the client is: the peer address, or what a trusted reverse proxy says it is.

`X-Forwarded-For` and `X-Real-IP` are set by whoever sends the request, so they
are believed only when the TCP peer is one of `VIDEOFLIX_TRUSTED_PROXIES`
(Config.trusted_proxies). Then the client is the right-most address of
`X-Forwarded-For` that is not itself a trusted proxy: every proxy appends the
address it saw, so entries left of that one were written by the client and prove
nothing. Without `X-Forwarded-For`, a trusted peer's `X-Real-IP` is used.

Pure functions; the handlers pass the peer (`request.remote_ip`, Tornado's
socket peer: the server runs without `xheaders`) and the headers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# A header this long is not a real proxy chain; only its right end is read.
MAX_FORWARDED_ENTRIES = 32


def parse_address(value: str) -> IPAddress | None:
    """An IP address from a header entry or a peer: `1.2.3.4`, `1.2.3.4:5678`,
    `2001:db8::1`, `[2001:db8::1]:5678`; IPv4-mapped IPv6 becomes IPv4. None
    for anything else (`unknown`, obfuscated identifiers, garbage)."""
    value = value.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:  # IPv4 with a port (IPv6 has two colons or more)
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: IPAddress, trusted: Iterable[IPNetwork]) -> bool:
    return any(address.version == network.version and address in network for network in trusted)


def client_address(peer: str, headers: Mapping[str, str], trusted: tuple[IPNetwork, ...]) -> str:
    """The client's address as a string (see the module docstring)."""
    peer_address = parse_address(peer)
    if peer_address is None:
        return peer  # a Unix socket or a test transport: nothing to resolve
    if not trusted or not is_trusted(peer_address, trusted):
        return str(peer_address)
    forwarded = headers.get("X-Forwarded-For")
    if forwarded:
        last_trusted = peer_address
        for entry in reversed(forwarded.split(",")[-MAX_FORWARDED_ENTRIES:]):
            address = parse_address(entry)
            if address is None:
                # A trusted proxy passed on something that is no address: the
                # closest hop we can vouch for stands in for the client.
                return str(last_trusted)
            if not is_trusted(address, trusted):
                return str(address)
            last_trusted = address
        return str(last_trusted)  # every hop is ours: the left-most one
    real_ip = parse_address(headers.get("X-Real-IP", ""))
    return str(real_ip) if real_ip is not None else str(peer_address)


def limit_key(address: str) -> str:
    """The unit a per-address limit counts: the address itself for IPv4, its /64
    for IPv6 (one subscriber usually holds a whole /64 and can pick any address
    in it)."""
    parsed = parse_address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((int(parsed) >> 64 << 64, 64)))
    return str(parsed) if parsed is not None else address
