"""The service layer alone: `services.messaging.send_message` from N concurrent asyncio tasks.

Run by bench/send.py in its own process, with a JSON job (argv[1] or stdin):
{"database_url", "tasks", "warmup", "duration", "to", "body"}. Seeds a fresh database
(migrate_database, then open_database), then every task sends in a loop; sends that
complete inside the measured window count. Prints the same JSON as bench/_load.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from bench._seed import seed
from models.db import close_database
from services import messaging
from services.errors import TallyError
from services.runtime import Runtime


async def run(job: dict[str, Any]) -> dict[str, Any]:
    seeded = await seed(job["database_url"], keep_open=True)
    runtime = Runtime()
    actor = seeded.actor
    result: dict[str, Any] = {"ok": 0, "errors": 0, "samples": [], "latencies": []}
    start = time.time()
    begin = start + job["warmup"]
    end = begin + job["duration"]

    async def worker() -> None:
        while time.time() < end:
            sent = time.perf_counter_ns()
            reason = None
            try:
                outcome = await messaging.send_message(
                    actor=actor,
                    inbox_id=seeded.inbox_id,
                    to=job["to"],
                    body=job["body"],
                    idempotency_key=None,
                    region="US",
                    runtime=runtime,
                )
                if outcome.message.status.value != "SENT":
                    reason = f"status {outcome.message.status}"
            except TallyError as error:
                reason = f"{error.code}: {error.message}"
            done = time.perf_counter_ns()
            if not begin <= time.time() <= end:
                continue
            if reason is None:
                result["ok"] += 1
                result["latencies"].append((done - sent) // 1000)
            else:
                result["errors"] += 1
                if len(result["samples"]) < 5:
                    result["samples"].append(reason)

    async def cpu_over_window() -> None:
        # This process's CPU (threads included) while the sends are counted.
        await asyncio.sleep(max(0.0, begin - time.time()))
        before = os.times()
        await asyncio.sleep(max(0.0, end - time.time()))
        after = os.times()
        used = (after.user - before.user) + (after.system - before.system)
        result["window_cpu_cores"] = used / job["duration"]

    try:
        await asyncio.gather(cpu_over_window(), *(worker() for _ in range(job["tasks"])))
    finally:
        await close_database()
    return result


def main() -> int:
    job = json.loads(sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read())
    sys.stdout.write(json.dumps(asyncio.run(run(job))) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
