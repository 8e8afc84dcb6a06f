"""The load test's clients: a browser's HTTP connections, and a balanceChanged subscriber.

Each actor connects from a loopback address of its own (127.0.0.x): like separate
machines, so the per-IP ceiling of the rate limiter (5 x the token limit) applies to
each, not to the whole test at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Any

import websockets

from bench._fanout_client import QUERY as BALANCE_SUBSCRIPTION
from bench._load import read_response

BROWSER_CONNECTIONS = 6  # what browsers open per host at most
CARRIER_CONNECTIONS = 32  # a carrier posts webhooks from a fleet, not from one browser
TIMEOUT_SECONDS = 30.0
# uvicorn closes a keep-alive connection after 5 s idle; reusing one that old could meet
# the close half-way, so it is dropped a second early, as browsers drop theirs.
IDLE_SECONDS = 4.0
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Browser:
    """Keep-alive HTTP/1.1 connections from one address; requests wait when all are busy."""

    def __init__(
        self, host: str, port: int, source: str, connections: int = BROWSER_CONNECTIONS
    ) -> None:
        self.host, self.port, self.source = host, port, source
        self._idle: list[tuple[float, Connection]] = []  # (idle since, connection)
        self._slots = asyncio.Semaphore(connections)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """Status and body; raises OSError, TimeoutError or IncompleteReadError."""
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        async with self._slots:
            reader, writer = await self._connection()
            try:
                writer.write(request)
                answer = await asyncio.wait_for(read_response(reader), TIMEOUT_SECONDS)
            except BaseException:
                writer.close()
                raise
            self._idle.append((time.monotonic(), (reader, writer)))
            return answer

    async def _connection(self) -> Connection:
        while self._idle:
            since, connection = self._idle.pop()
            if time.monotonic() - since < IDLE_SECONDS:
                return connection
            connection[1].close()
        return await asyncio.open_connection(self.host, self.port, local_addr=(self.source, 0))

    def close(self) -> None:
        for _, (_, writer) in self._idle:
            writer.close()
        self._idle.clear()


class Subscriber:
    """One browser's balanceChanged subscription: what it saw, and when."""

    def __init__(self, url: str, token: str, source: str) -> None:
        self.url, self.token, self.source = url, token, source
        self.balance: dict[str, Any] | None = None
        self.entry_ids: list[str] = []
        self.events = 0
        self.re_reads = 0  # events without entries after the first: a gap was filled
        self.re_read_last = False
        self.delays_us: list[int] = []  # commit (entry createdAt) to receipt
        self.errors: list[str] = []
        self.changed = asyncio.Event()

    async def run(self, ready: asyncio.Event) -> None:
        try:
            async with websockets.connect(
                self.url,
                subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
                ping_interval=None,
                max_queue=None,
                local_addr=(self.source, 0),
            ) as ws:
                init = {"authorization": f"Bearer {self.token}"}
                await ws.send(json.dumps({"type": "connection_init", "payload": init}))
                await ws.recv()
                subscribe = {"query": BALANCE_SUBSCRIPTION}
                await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
                self.handle(json.loads(await ws.recv()), first=True)
                ready.set()
                async for raw in ws:
                    self.handle(json.loads(raw), first=False)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # recorded: the run fails on it, the others go on
            self.errors.append(f"{type(error).__name__}: {error}"[:200])
        finally:
            ready.set()

    def handle(self, message: dict[str, Any], *, first: bool) -> None:
        now = time.time()
        if message.get("type") != "next":
            self.errors.append(f"unexpected message: {str(message)[:200]}")
            return
        event = message["payload"]["data"]["balanceChanged"]
        self.events += 1
        self.balance = event["balance"]
        entries = event["entries"]
        self.re_read_last = not entries and not first
        if entries:
            self.entry_ids += [entry["id"] for entry in entries]
            committed = datetime.fromisoformat(entries[-1]["createdAt"]).timestamp()
            self.delays_us.append(int((now - committed) * 1_000_000))
        elif not first:
            self.re_reads += 1
        self.changed.set()

    async def settle_on(
        self, balance: dict[str, Any], newest_entry: str | None, deadline: float
    ) -> bool:
        """Wait (until the loop time `deadline`) for the stream to reach the final state.

        That is the last event showing `balance`, after the newest entry arrived or after
        a re-read (which stands for entries missed): a balance alone can show up earlier,
        when a send and its refund return it to where it was.
        """
        loop = asyncio.get_running_loop()
        while not self.reached(balance, newest_entry):
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                return self.reached(balance, newest_entry)
        return True

    def reached(self, balance: dict[str, Any], newest_entry: str | None) -> bool:
        caught_up = newest_entry is None or newest_entry in self.entry_ids or self.re_read_last
        return caught_up and self.shows(balance)

    def shows(self, balance: dict[str, Any]) -> bool:
        return self.balance is not None and all(
            self.balance.get(name) == value for name, value in balance.items()
        )
