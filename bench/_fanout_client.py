"""Light websocket subscribers for bench/fanout.py: one process, N graphql-transport-ws clients.

Run by bench/fanout.py, several processes at once, each given a JSON job (argv[1]):

    {"url", "token", "connections"}

Each connection sends connection_init and subscribes to balanceChanged; once every
connection has its first event the process prints "ready" on a line of its own. Then,
for every event with entries, it records the delay from the last entry's createdAt
(stamped by the server inside the change's transaction, just before it commits) to the
moment this process handled the message. When a line comes on stdin it prints one JSON object:
events, delays (microseconds), re-reads (events without entries after the first),
errors, and the CPU seconds this process spent.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime
from typing import Any

import websockets

QUERY = (
    "subscription { balanceChanged {"
    " balance { total subscriptionCredits purchasedCredits periodStart periodEnd }"
    " entries { id kind bucket credits balanceAfter amountCents createdAt } } }"
)


class Tally:
    def __init__(self) -> None:
        self.delays: list[int] = []
        self.events = 0
        self.re_reads = 0
        self.errors: list[str] = []


async def subscriber(job: dict[str, Any], tally: Tally, ready: asyncio.Event) -> None:
    try:
        async with websockets.connect(
            job["url"],
            subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
            # Offered, as browsers do; `tally serve` declines it.
            compression="deflate",
            open_timeout=60,
            ping_interval=None,
            max_queue=None,
        ) as ws:
            init = {"authorization": f"Bearer {job['token']}"}
            await ws.send(json.dumps({"type": "connection_init", "payload": init}))
            await ws.recv()
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": QUERY}}))
            await ws.recv()  # the current balance
            ready.set()
            while True:
                message = json.loads(await ws.recv())
                now = time.time()
                if message.get("type") != "next":
                    tally.errors.append(str(message)[:200])
                    continue
                entries = message["payload"]["data"]["balanceChanged"]["entries"]
                tally.events += 1
                if not entries:
                    tally.re_reads += 1
                    continue
                committed = datetime.fromisoformat(entries[-1]["createdAt"]).timestamp()
                tally.delays.append(int((now - committed) * 1_000_000))
    except asyncio.CancelledError:
        raise
    except Exception as error:  # reported, not raised: the others go on
        tally.errors.append(f"{type(error).__name__}: {error}"[:200])
        ready.set()


async def main(job: dict[str, Any]) -> None:
    tally = Tally()
    readies = [asyncio.Event() for _ in range(job["connections"])]
    tasks = []
    for ready in readies:
        tasks.append(asyncio.create_task(subscriber(job, tally, ready)))
        await asyncio.sleep(0.002)  # a gentle ramp: no accept-queue overflow at the server
    for ready in readies:
        await ready.wait()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    usage = time.process_time()
    result = {
        "events": tally.events,
        "delays": tally.delays,
        "re_reads": tally.re_reads,
        "errors": tally.errors[:5],
        "error_count": len(tally.errors),
        "cpu_seconds": usage,
    }
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
