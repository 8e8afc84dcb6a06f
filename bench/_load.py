"""A minimal HTTP/1.1 keep-alive load client: one process, N connections, one request shape.

Run by bench/send.py, several processes at once, each given a JSON job (argv[1] or stdin):

    {"host", "port", "path", "method", "headers": {..}, "body": str, "connections",
     "start_at": unix time, "warmup": s, "duration": s, "check": "graphql-send" | "ok" | "none"}

Each connection writes the request bytes, reads the status line and headers, then exactly
Content-Length bytes of body (chunked bodies are read too), and repeats; no pipelining.
A response counts when it completes inside [start_at + warmup, start_at + warmup + duration];
anything that is not a success (status, body check, a dropped connection) is an error.
It prints one JSON object: ok, errors, error samples, latencies (microseconds, of the
counted successes), and the CPU seconds this process spent, so the caller can tell
whether the client was the bottleneck.

Dependency-free on purpose: httpx tops out near 1,450 requests/s per core on this
kind of machine, well below what the raw endpoint serves.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

MAX_ERROR_SAMPLES = 5


def build_request(job: dict[str, Any]) -> bytes:
    body: bytes = str(job["body"]).encode()
    lines = [
        f"{job.get('method', 'POST')} {job['path']} HTTP/1.1",
        f"Host: {job['host']}:{job['port']}",
        *(f"{name}: {value}" for name, value in job.get("headers", {}).items()),
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def checker(kind: str) -> Any:
    """A function from a 200 body to None (success) or a short reason."""

    def graphql_send(body: bytes) -> str | None:
        data = json.loads(body)
        if data.get("errors"):
            return f"errors: {data['errors'][0].get('message')}"
        payload = (data.get("data") or {}).get("sendMessage") or {}
        if payload.get("userErrors"):
            return f"userErrors: {payload['userErrors'][0].get('code')}"
        if (payload.get("message") or {}).get("status") != "SENT":
            return "no SENT message in the payload"
        return None

    def ok(body: bytes) -> str | None:
        return None if json.loads(body).get("ok") is True else "not ok"

    def none(body: bytes) -> str | None:
        return None

    return {"graphql-send": graphql_send, "ok": ok, "none": none}[kind]


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


async def connection(
    job: dict[str, Any], request: bytes, result: dict[str, Any], window: tuple[float, float]
) -> None:
    check = checker(job.get("check", "none"))
    begin, end = window
    latencies: list[int] = result["latencies"]
    reader, writer = await asyncio.open_connection(job["host"], job["port"])
    try:
        while time.time() < end:
            sent = time.perf_counter_ns()
            writer.write(request)
            try:
                status, body = await asyncio.wait_for(read_response(reader), timeout=30)
            except (ConnectionError, asyncio.IncompleteReadError, TimeoutError) as error:
                result["errors"] += 1
                if len(result["samples"]) < MAX_ERROR_SAMPLES:
                    result["samples"].append(f"connection: {error!r}")
                return
            done = time.perf_counter_ns()
            now = time.time()
            counted = begin <= now <= end
            reason = check(body) if status == 200 else f"HTTP {status}: {body[:200]!r}"
            if not counted:
                continue
            if reason is None:
                result["ok"] += 1
                latencies.append((done - sent) // 1000)
            else:
                result["errors"] += 1
                if len(result["samples"]) < MAX_ERROR_SAMPLES:
                    result["samples"].append(reason)
    finally:
        writer.close()


async def run(job: dict[str, Any]) -> dict[str, Any]:
    request = build_request(job)
    begin = job["start_at"] + job["warmup"]
    window = (begin, begin + job["duration"])
    result: dict[str, Any] = {"ok": 0, "errors": 0, "samples": [], "latencies": []}
    await asyncio.sleep(max(0.0, job["start_at"] - time.time()))
    cpu_start = os.times()
    await asyncio.gather(
        *(connection(job, request, result, window) for _ in range(job["connections"]))
    )
    cpu_end = os.times()
    result["cpu_seconds"] = (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system)
    result["wall_seconds"] = time.time() - job["start_at"]
    return result


def main() -> int:
    job = json.loads(sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read())
    sys.stdout.write(json.dumps(asyncio.run(run(job))) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
