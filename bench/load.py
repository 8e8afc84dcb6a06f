"""Load test: one account's SPA traffic at several times its expected rate, for 60 s.

    .venv/bin/python bench/load.py            # or: make bench-load

Phases, everything on 127.0.0.1, each on a fresh database:

1. sqlite    - `tally serve` (one worker) on a new SQLite file.
2. postgres  - `tally serve --workers 2` on a new PostgreSQL database (tally_load_<pid>,
               created through --postgres and dropped WITH (FORCE) after), with
               TALLY_BROADCAST_URL=redis://…; skipped when either does not answer.

Each phase makes an account (bench/_load_setup.py), subscribes every browser to
balanceChanged, and plays the planned mix (bench/_load_plan.py): sends, some with
idempotency keys sent twice, typing checks, message pages, usage and billing screens,
purchases double-clicked, inbound messages and delivery reports through the signed
carrier webhooks, and one runaway token polling past its rate limit. Afterwards it
checks the database against every answer (bench/_load_check.py) and prints latencies
per operation, throughput, errors by kind, and the server's CPU and RSS.

Exits 1 on any error other than the runaway token's 429s, on a runaway token that was
never limited, and on any mismatch between the ledger, the answers and the subscribers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from redis.exceptions import RedisError  # noqa: E402

from bench._load_plan import Profile  # noqa: E402
from bench._load_report import Report, out  # noqa: E402
from bench._load_scenario import Scenario, run_scenario  # noqa: E402
from bench.fanout import Fanout  # noqa: E402


def machine() -> str:
    model = next(
        line.split(":", 1)[1].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    )
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"{os.cpu_count()} cores ({model}), load average {load}"


def sqlite(args: argparse.Namespace, workdir: Path) -> Report:
    return run_scenario(scenario(args, "sqlite", f"sqlite://{workdir / 'load.db'}", workdir))


def postgres(args: argparse.Namespace, workdir: Path) -> Report | None:
    name = f"tally_load_{os.getpid()}"
    try:
        asyncio.run(Fanout.redis_answers(args.redis))
        asyncio.run(Fanout.postgres(args.postgres, f'CREATE DATABASE "{name}"'))
    except (OSError, RedisError) as error:
        out(f"  skipped: PostgreSQL ({args.postgres}) or Redis ({args.redis}) is away: {error}")
        return None
    database = args.postgres.rsplit("/", 1)[0] + "/" + name
    try:
        chosen = scenario(args, "postgres", database, workdir)
        return run_scenario(replace(chosen, workers=args.workers, broadcast_url=args.redis))
    finally:
        asyncio.run(
            Fanout.postgres(args.postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        )


def scenario(args: argparse.Namespace, name: str, database: str, workdir: Path) -> Scenario:
    return Scenario(
        name=name,
        database_url=database,
        workdir=workdir / name,
        profile=Profile(multiplier=args.multiplier, agents=args.agents),
        duration=args.duration,
        rate_limit=args.rate_limit,
        seed=args.seed,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phases", default="sqlite,postgres")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--multiplier", type=float, default=5.0, help="x the expected rate")
    parser.add_argument("--agents", type=int, default=25)
    parser.add_argument("--rate-limit", type=int, default=1200, help="requests/min per token")
    parser.add_argument("--workers", type=int, default=2, help="for the postgres phase")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write the summaries to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tally-load-"))
    rates = Profile(multiplier=args.multiplier, agents=args.agents).rates()
    out(f"planned requests/s at {args.multiplier:g}x: {json.dumps(rates)}")
    reports = []
    for phase in args.phases.split(","):
        out(f"== {phase}: {machine()}")
        report = {"sqlite": sqlite, "postgres": postgres}[phase](args, workdir)
        if report is not None:
            report.print()
            reports.append(report)
    if args.json:
        Path(args.json).write_text(json.dumps([r.summary() for r in reports], indent=2))
    if not args.keep:
        subprocess.run(["rm", "-rf", str(workdir)], check=False)
    return 0 if all(report.passed for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
