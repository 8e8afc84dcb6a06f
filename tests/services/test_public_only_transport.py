"""The webhook transport connects only to addresses it has checked, resolving each name once."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator

import httpx
import pytest

from services.url_guard import Address, PublicOnlyTransport, Resolver, UnsafeAddress


@pytest.fixture
async def listener() -> AsyncIterator[tuple[int, list[str]]]:
    """A loopback TCP port that notes every connection made to it."""
    connections: list[str] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(str(writer.get_extra_info("peername")[0]))
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1], connections


def answering(*addresses: str) -> tuple[list[str], Resolver]:
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[Address]:
        asked.append(host)
        return [ipaddress.ip_address(a) for a in addresses]

    return asked, resolver


async def post(transport: PublicOnlyTransport, url: str) -> None:
    async with httpx.AsyncClient(transport=transport) as client:
        await client.post(url, content=b"{}")


async def test_a_name_resolving_to_loopback_is_refused_before_any_connection(
    listener: tuple[int, list[str]],
) -> None:
    port, connections = listener
    asked, resolver = answering("127.0.0.1")
    with pytest.raises(UnsafeAddress, match=r"hooks\.test is, or resolves to"):
        await post(PublicOnlyTransport(resolver=resolver), f"http://hooks.test:{port}/")
    assert asked == ["hooks.test"]
    assert connections == []


async def test_one_private_answer_among_public_ones_refuses_the_name(
    listener: tuple[int, list[str]],
) -> None:
    port, connections = listener
    _, resolver = answering("93.184.215.14", "127.0.0.1")
    with pytest.raises(UnsafeAddress, match=r"\(127\.0\.0\.1\)"):
        await post(PublicOnlyTransport(resolver=resolver), f"http://hooks.test:{port}/")
    assert connections == []


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "localhost"])
async def test_loopback_by_literal_or_by_the_system_resolver_is_refused(
    listener: tuple[int, list[str]], host: str
) -> None:
    port, connections = listener
    with pytest.raises(UnsafeAddress):
        await post(PublicOnlyTransport(), f"http://{host}:{port}/")
    assert connections == []
