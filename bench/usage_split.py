"""Where a usage report's time goes, in process: the service call, then GraphQL on top.

Run by `python -m bench.usage` in its own process, with a JSON job on stdin:
{"database_url", "account_id", "token", "cases": [{"key", "variables"}], "runs", "warmup"}.
For each case it times, one call after another on one event loop:

* ``service``: ``services.usage.account_usage`` (the rollup SQL and the Python that builds
  the report), no GraphQL;
* ``graphql``: ``schema.execute`` of bench/usage.py's document with the same variables
  (the service, the schema mapping and graphql-core's execution), no HTTP, no
  authentication query, no JSON encoding.

With ``"forecast": true`` it also times ``services.forecast.account_forecast`` (key
``forecast``, ``service`` only).

Prints {key: {"service": [µs…], "graphql": [µs…]}}. The difference between ``graphql`` and
the end-to-end time over HTTP is the token lookup, the Strawberry view, JSON and uvicorn.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import date
from typing import Any

from api.settings import Settings
from bench.usage_reports import DOCUMENT
from models import Account
from models.db import close_database, open_database
from schema import schema
from schema.context import Context
from services import forecast, tokens, usage
from services.calendar import Granularity
from services.runtime import Runtime
from services.usage import UsageGroupBy


async def timed(runs: int, warmup: int, call: Any) -> list[int]:
    latencies = []
    for n in range(warmup + runs):
        started = time.perf_counter_ns()
        await call()
        if n >= warmup:
            latencies.append((time.perf_counter_ns() - started) // 1000)
    return latencies


async def run(job: dict[str, Any]) -> dict[str, Any]:
    await open_database(job["database_url"])
    try:
        runtime = Runtime()
        actor = await tokens.authenticate(job["token"], cache=runtime.tokens)
        if actor is None:
            raise RuntimeError("the admin token does not authenticate")
        settings = Settings.from_env()
        result: dict[str, Any] = {}
        for case in job["cases"]:
            variables = case["variables"]
            span = variables.get("range")
            days = None if span is None else (
                date.fromisoformat(span["start"]), date.fromisoformat(span["end"])
            )  # fmt: skip

            async def service(days: Any = days, variables: Any = variables) -> None:
                await usage.account_usage(
                    actor=actor,
                    days=days,
                    granularity=Granularity(variables["granularity"]),
                    group_by=UsageGroupBy(variables["groupBy"]),
                    clock=runtime.clock,
                )

            async def graphql(variables: Any = variables) -> None:
                context = Context(
                    request=None,  # type: ignore[arg-type]
                    response=None,  # type: ignore[arg-type]
                    settings=settings,
                    runtime=runtime,
                    principal=actor,
                )
                outcome = await schema.execute(
                    DOCUMENT, variable_values=variables, context_value=context
                )
                if outcome.errors:
                    raise RuntimeError(f"GraphQL errors: {outcome.errors}")

            result[case["key"]] = {
                "service": await timed(job["runs"], job["warmup"], service),
                "graphql": await timed(job["runs"], job["warmup"], graphql),
            }
        if job.get("forecast"):
            account = await Account.get(id=actor.account_id)

            async def forecast_call() -> None:
                await forecast.account_forecast(runtime=runtime, actor=actor, account=account)

            result["forecast"] = {"service": await timed(job["runs"], job["warmup"], forecast_call)}
        return result
    finally:
        await close_database()


def main() -> int:
    job = json.loads(sys.stdin.read())
    sys.stdout.write(json.dumps(asyncio.run(run(job))) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
