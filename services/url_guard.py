"""Which webhook URLs Tally may call: never a host inside the deployment's own networks.

A URL whose host is, or resolves to, a loopback, private, link-local, multicast or
unspecified address (IPv4, IPv6 and IPv4-mapped IPv6) is refused, when the endpoint
is created and again before every attempt, since DNS answers can change.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

from services.errors import InvalidValue

MAX_URL_LENGTH = 2048
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# Carrier-grade NAT space (RFC 6598): not "private" to Python, but never a public host.
_SHARED = ipaddress.ip_network("100.64.0.0/10")


class UnsafeAddress(Exception):
    """The URL's host is, or resolves to, an address Tally never calls."""


def checked_url(url: str) -> SplitResult:
    """`url` split, if it is an http(s) URL with a host and no credentials; InvalidValue else."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidValue(f"A URL has at most {MAX_URL_LENGTH:,} characters.", field="url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise InvalidValue("This is not a valid URL.", field="url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidValue("Use an http:// or https:// URL with a host.", field="url")
    if parts.username is not None or parts.password is not None:
        raise InvalidValue("A webhook URL carries no user or password.", field="url")
    return parts


def is_public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or address in _SHARED
    )


async def ensure_public(parts: SplitResult) -> None:
    """Raise UnsafeAddress unless every address the host resolves to is public."""
    host = parts.hostname or ""
    for address in await _addresses(host, parts.port or (443 if parts.scheme == "https" else 80)):
        if not is_public(address):
            raise UnsafeAddress(f"{host} is, or resolves to, a non-public address ({address}).")


async def _addresses(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise UnsafeAddress(f"{host} does not resolve: {error}") from None
    # Scope ids ("fe80::1%eth0") are not part of the address.
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
