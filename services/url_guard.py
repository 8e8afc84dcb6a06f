"""Which webhook URLs Tally may call: never a host inside the deployment's own networks.

A URL whose host is, or resolves to, a loopback, private, link-local, multicast or
unspecified address (IPv4, IPv6 and IPv4-mapped IPv6) is refused, when the endpoint
is created and again before every attempt, since DNS answers can change. An attempt's
connection is made by `PublicOnlyTransport`, which resolves the host itself, checks every
address and connects to a checked one: an answer that changes between the check and the
connection (DNS rebinding) is never used.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import SplitResult, urlsplit

import httpcore
import httpx

from services.errors import InvalidValue

MAX_URL_LENGTH = 2048
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[Address]]]
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
    port = parts.port or (443 if parts.scheme == "https" else 80)
    _refuse_non_public(host, await resolve(host, port))


def _refuse_non_public(host: str, addresses: Iterable[Address]) -> None:
    for address in addresses:
        if not is_public(address):
            raise UnsafeAddress(f"{host} is, or resolves to, a non-public address ({address}).")


async def resolve(host: str, port: int) -> list[Address]:
    """The addresses of `host`: itself if it is one, else what the system resolver says."""
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


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections to public addresses only, resolving each host once.

    httpcore hands `connect_tcp` the URL's host name; TLS (SNI and the certificate's
    name) and the Host header still use that name, while the socket goes to an address
    this backend has just checked.
    """

    def __init__(self, resolver: Resolver = resolve) -> None:
        self._resolve = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port)
        _refuse_non_public(host, addresses)
        failure: Exception = httpcore.ConnectError(f"{host} has no address.")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeAddress("A webhook is never sent to a Unix socket.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PublicOnlyTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool whose connections are `PublicOnlyBackend`'s."""

    def __init__(self, *, resolver: Resolver = resolve, max_keepalive_connections: int = 20):
        super().__init__()
        # httpx 0.28 passes no network backend to its pool, so the pool is made here with
        # the same settings and this backend (httpx and httpcore are pinned; tested).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=None,
            max_keepalive_connections=max_keepalive_connections,
            keepalive_expiry=5.0,
            network_backend=PublicOnlyBackend(resolver),
        )
