"""A real `tally serve` process for tests: started on a free loopback port, stopped after."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

TALLY = str(Path(sys.executable).with_name("tally"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    env: dict[str, str]

    async def cli(self, *args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            TALLY,
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        # A timeout, because a command that never exits (a live DB thread) is a bug too.
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        return out.decode()

    async def new_account(self, name: str) -> dict[str, str]:
        out = await self.cli(
            "create-account", "--name", name, "--admin-name", "A", "--admin-email",
            f"a@{name.lower()}.example", "--json",
        )  # fmt: skip
        created: dict[str, str] = json.loads(out)
        return created


@contextlib.asynccontextmanager
async def tally_serve(database_url: str, cwd: Path) -> AsyncIterator[Server]:
    """`tally serve` on `database_url`, answering at Server.url until the block ends."""
    port = free_port()
    env = {
        **os.environ,
        "TALLY_DATABASE_URL": database_url,
        "TALLY_SECRET_KEY": "s",
        "TALLY_WEBHOOK_SECRET": "w",
    }
    # Unset, it follows the port, as export links must.
    env.pop("TALLY_PUBLIC_URL", None)
    process = await asyncio.create_subprocess_exec(
        TALLY, "serve", "--port", str(port), env=env, cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(100):
                try:
                    await http.get(url + "/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("tally serve did not start")
        yield Server(url=url, env=env)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 15)
