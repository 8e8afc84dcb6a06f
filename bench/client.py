"""A minimal HTTP/1.1 keep-alive client: the closed-loop load processes, and a browser's pool.

`launch` starts P processes of `python -m bench.client JOB`, each with C connections
that write one prebuilt request, read the status line, the headers and exactly the body
(Content-Length or chunked), and repeat; no pipelining. They all start at the same
instant; a response counts when it completes inside the measured window, and anything
that is not a success (status, body check, a dropped connection) is an error. Each
process prints its counts, the counted successes' latencies (µs) and its own CPU.

`Browser` is the load test's client: keep-alive connections from one source address,
opened on demand and reused, as a browser holds them.

Dependency-free on purpose: httpx spends several times more CPU per request, and the
client must stay far from being the limit (docs/benchmarks.md, "Checking the load client").
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.harness import PYTHON, ROOT, percentile_ms, tree_cpu

MAX_ERROR_SAMPLES = 5
TIMEOUT_SECONDS = 30.0


def build_request(
    method: str, host: str, port: int, path: str, headers: dict[str, str], body: bytes
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, _, header_block = head.partition(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    length = -1
    chunked = False
    for line in header_block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if length >= 0:
        return status, await reader.readexactly(length)
    if not chunked:
        raise ConnectionError("response without Content-Length or chunked body")
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return status, b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


# --- what a success is ---------------------------------------------------------------------


def _graphql_send(body: bytes) -> str | None:
    data = json.loads(body)
    if data.get("errors"):
        return f"errors: {data['errors'][0].get('message')}"
    payload = (data.get("data") or {}).get("sendMessage") or {}
    if payload.get("userErrors"):
        return f"userErrors: {payload['userErrors'][0].get('code')}"
    if (payload.get("message") or {}).get("status") != "SENT":
        return "no SENT message in the payload"
    return None


def _ok(body: bytes) -> str | None:
    return None if json.loads(body).get("ok") is True else "not ok"


CHECKS: dict[str, Callable[[bytes], str | None]] = {"graphql-send": _graphql_send, "ok": _ok}


# --- the closed-loop load ------------------------------------------------------------------


@dataclass
class Counts:
    """Successes (with their latencies, µs) and errors (with a few samples)."""

    ok: int = 0
    errors: int = 0
    latencies_us: list[int] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)

    def error(self, reason: str) -> None:
        self.errors += 1
        if len(self.samples) < MAX_ERROR_SAMPLES:
            self.samples.append(reason)

    def merge(self, other: dict[str, Any]) -> None:
        self.ok += other["ok"]
        self.errors += other["errors"]
        self.latencies_us += other["latencies_us"]
        self.samples = (self.samples + other["samples"])[:MAX_ERROR_SAMPLES]


@dataclass(frozen=True, slots=True)
class Job:
    port: int
    path: str
    body: str
    headers: dict[str, str]
    check: str  # a key of CHECKS
    connections: int
    start_at: float  # unix time every process starts at
    warmup: float
    duration: float
    method: str = "POST"


async def _connection(job: Job, request: bytes, counts: Counts) -> None:
    check = CHECKS[job.check]
    begin = job.start_at + job.warmup
    end = begin + job.duration
    reader, writer = await asyncio.open_connection("127.0.0.1", job.port)
    try:
        while time.time() < end:
            sent = time.perf_counter_ns()
            writer.write(request)
            try:
                status, body = await asyncio.wait_for(read_response(reader), TIMEOUT_SECONDS)
            except (ConnectionError, asyncio.IncompleteReadError, TimeoutError) as error:
                counts.error(f"connection: {error!r}")
                return
            done = time.perf_counter_ns()
            if not begin <= time.time() <= end:
                continue
            reason = check(body) if status == 200 else f"HTTP {status}: {body[:200]!r}"
            if reason is None:
                counts.ok += 1
                counts.latencies_us.append((done - sent) // 1000)
            else:
                counts.error(reason)
    finally:
        writer.close()


async def _load(job: Job) -> dict[str, Any]:
    body = job.body.encode()
    request = build_request(job.method, "127.0.0.1", job.port, job.path, job.headers, body)
    counts = Counts()
    await asyncio.sleep(max(0.0, job.start_at - time.time()))
    before = os.times()
    await asyncio.gather(*(_connection(job, request, counts) for _ in range(job.connections)))
    after = os.times()
    used = (after.user - before.user) + (after.system - before.system)
    return {**counts.__dict__, "cpu_seconds": used}


@dataclass
class Phase(Counts):
    """One measured phase of a closed-loop benchmark."""

    name: str = ""
    what: str = ""
    seconds: float = 0.0
    server_cpu: float | None = None  # cores the server used while counting
    client_cpu: float | None = None  # cores the load processes used, warm-up included

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def p(self, fraction: float) -> float | None:
        return percentile_ms(self.latencies_us, fraction)

    def summary(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "per_second": self.rate,
            "p50_ms": self.p(0.50),
            "p99_ms": self.p(0.99),
            "errors": self.errors,
            "error_samples": self.samples,
            "server_cpu_cores": self.server_cpu,
            "client_cpu_cores": self.client_cpu,
        }


def launch(phase: Phase, job: Job, *, processes: int, server_pids: list[int]) -> Phase:
    """Run the load processes (`job.connections` in all) and merge what they saw into `phase`.

    The servers' CPU (`server_pids`, with their descendants) is read over the window only.
    """
    per_process, extra = divmod(job.connections, processes)
    clients = []
    for n in range(processes):
        share = per_process + (1 if n < extra else 0)
        if share == 0:
            continue
        spec = json.dumps({**asdict(job), "connections": share})
        clients.append(
            subprocess.Popen(
                [PYTHON, "-m", "bench.client", spec],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )  # fmt: skip
        )
    time.sleep(max(0.0, job.start_at + job.warmup - time.time()))
    before = sum(tree_cpu(pid) for pid in server_pids)
    time.sleep(max(0.0, job.start_at + job.warmup + job.duration - time.time()))
    phase.server_cpu = (sum(tree_cpu(pid) for pid in server_pids) - before) / job.duration
    used = 0.0
    for client in clients:
        stdout, stderr = client.communicate(timeout=job.warmup + job.duration + 60)
        if client.returncode != 0:
            raise RuntimeError(f"a load client failed:\n{stderr.decode()}")
        result = json.loads(stdout)
        phase.merge(result)
        used += result["cpu_seconds"]
    phase.seconds = job.duration
    phase.client_cpu = used / (job.warmup + job.duration)
    return phase


# --- a browser's connections ---------------------------------------------------------------

BROWSER_CONNECTIONS = 6  # what browsers open per host at most
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
        request = build_request("POST", self.host, self.port, path, headers, body)
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


def main() -> int:
    job = Job(**json.loads(sys.argv[1]))
    sys.stdout.write(json.dumps(asyncio.run(_load(job))) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
