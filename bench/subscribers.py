"""balanceChanged subscribers over graphql-transport-ws: what each saw, and when.

A `Subscriber` sends connection_init and subscribes; for every event it keeps the
balance, the entries' ids, and the delay from the last entry's createdAt (stamped by
the server inside the change's transaction, just before it commits) to the moment it
handled the message. An event without entries after the first is a re-read: the
server filled a gap instead of sending what was missed.

`python -m bench.subscribers JOB` is one process of bench/fanout.py's subscribers: N
of them; once every one has its first event it prints "ready", and when a line comes
on stdin it prints one JSON object of what they saw and the CPU it spent.
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


class Subscriber:
    """One browser's balanceChanged subscription: what it saw, and when."""

    def __init__(self, url: str, token: str, source: str, *, offer_deflate: bool = False) -> None:
        self.url, self.token, self.source = url, token, source
        self.offer_deflate = offer_deflate
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
                # Offered as browsers do when asked; `tally serve` declines it.
                compression="deflate" if self.offer_deflate else None,
                open_timeout=60,
                ping_interval=None,
                max_queue=None,
                local_addr=(self.source, 0),
            ) as ws:
                init = {"authorization": f"Bearer {self.token}"}
                await ws.send(json.dumps({"type": "connection_init", "payload": init}))
                await ws.recv()
                subscribe = {"query": QUERY}
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


async def _fan(job: dict[str, Any]) -> dict[str, Any]:
    subscribers = [
        Subscriber(job["url"], job["token"], "127.0.0.1", offer_deflate=True)
        for _ in range(job["connections"])
    ]
    readies = [asyncio.Event() for _ in subscribers]
    tasks = []
    for subscriber, ready in zip(subscribers, readies, strict=True):
        tasks.append(asyncio.create_task(subscriber.run(ready)))
        await asyncio.sleep(0.002)  # a gentle ramp: no accept-queue overflow at the server
    for ready in readies:
        await ready.wait()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    errors = [error for s in subscribers for error in s.errors]
    return {
        "events": sum(s.events for s in subscribers),
        "delays": [delay for s in subscribers for delay in s.delays_us],
        "re_reads": sum(s.re_reads for s in subscribers),
        "errors": errors[:5],
        "error_count": len(errors),
        "cpu_seconds": time.process_time(),
    }


def main() -> int:
    result = asyncio.run(_fan(json.loads(sys.argv[1])))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
