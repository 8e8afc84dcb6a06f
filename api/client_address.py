"""The client's address as Tally saw it: the TCP peer, or what trusted proxies forwarded.

RULES.md "Audit log": the peer's address, unless the peer is one of the operator's
``TALLY_TRUSTED_PROXIES``; then the right-most address of ``X-Forwarded-For`` that is not a
trusted proxy. Each proxy appends the address it was connected from, so everything left
of the first untrusted hop (reading from the right) may have been written by the client
and is ignored. With no proxies configured the header is never read, so a forged one
changes nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# The audit log's column (an IPv6 address in text is at most 45 characters).
MAX_LENGTH = 45


def trusted_networks(value: str | None) -> tuple[Network, ...]:
    """TALLY_TRUSTED_PROXIES: comma-separated addresses (or networks, e.g. 10.0.0.0/8)."""
    entries = (part.strip() for part in (value or "").split(","))
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries if entry)


def client_address(scope: Scope, trusted: tuple[Network, ...]) -> str | None:
    """The client's address for a request's (or websocket's) ASGI scope; None when unknown."""
    client = scope.get("client")
    peer = client[0] if client else None
    if peer is None or not _is_trusted(peer, trusted):
        return _shortened(peer)
    for hop in reversed(list(_forwarded_for(scope))):
        if not _is_trusted(hop, trusted):
            return _shortened(hop if _parse(hop) is not None else peer)
    return _shortened(peer)


def _forwarded_for(scope: Scope) -> Iterable[str]:
    """Every X-Forwarded-For hop, in order; several headers read as one list (RFC 9110)."""
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-for":
            for hop in value.decode("latin-1").split(","):
                if hop.strip():
                    yield hop.strip()


def _parse(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    parsed = _parse(address)
    return parsed is not None and any(parsed in network for network in trusted)


def _shortened(address: str | None) -> str | None:
    return None if address is None else address[:MAX_LENGTH]
