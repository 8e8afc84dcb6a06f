"""Load test: one account's SPA traffic at several times its expected rate, for 60 s.

    .venv/bin/python -m bench.load            # or: make bench-load

Phases, everything on 127.0.0.1, each on a fresh database:

1. sqlite    - `tally serve` (one process) on a new SQLite file.
2. postgres  - `tally serve --workers 2` on a new PostgreSQL database (dropped after),
               with TALLY_BROADCAST_URL=redis://…

Each phase makes an account (bench/load_scenario.py), subscribes every browser to
balanceChanged, and plays the planned mix (bench/load_plan.py): sends, some with
idempotency keys sent twice, typing checks, message pages, usage and billing screens,
purchases double-clicked, inbound messages and delivery reports through the signed
carrier webhooks, and one runaway token polling past its rate limit. Afterwards it
checks the database against every answer (bench/load_check.py) and prints latencies
per operation, throughput, errors by kind, the server's CPU per answered request and
its RSS, and the goal: balanceChanged from commit to client under 250 ms at p99.

Exits 1 on any error other than the runaway token's 429s, on a runaway token that was
never limited, and on any mismatch between the ledger, the answers and the subscribers.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from bench.harness import (
    Verdict,
    check_redis,
    command_line,
    fresh_postgres,
    machine,
    not_run,
    out,
    parse,
    run_phases,
    work_folder,
    write_json,
)
from bench.load_plan import Profile
from bench.load_report import Report
from bench.load_scenario import Scenario, run_scenario

PHASES = ("sqlite", "postgres")


def sqlite(args: argparse.Namespace, workdir: Path) -> Report:
    return run_scenario(scenario(args, "sqlite", f"sqlite://{workdir / 'load.db'}", workdir))


def postgres(args: argparse.Namespace, workdir: Path) -> Report:
    check_redis(args.redis)
    with fresh_postgres(args.postgres, "load", keep=args.keep) as url:
        chosen = scenario(args, "postgres", url, workdir)
        return run_scenario(replace(chosen, workers=args.workers, broadcast_url=args.redis))


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


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__, PHASES, ",".join(PHASES))
    add = parser.add_argument
    add("--duration", type=float, default=60.0, help="seconds of load")
    add("--multiplier", type=float, default=5.0, help="x the expected rate")
    add("--agents", type=int, default=25)
    add("--rate-limit", type=int, default=1200, help="requests/min per token")
    add("--workers", type=int, default=2, help="server processes of the postgres phase")
    add("--seed", type=int, default=1)
    args = parse(parser, argv, PHASES)
    rates = Profile(multiplier=args.multiplier, agents=args.agents).rates()
    out(f"{machine()}; planned requests/s at {args.multiplier:g}x: {json.dumps(rates)}")
    reports: list[Report] = []

    def run(phase: str) -> None:
        report = {"sqlite": sqlite, "postgres": postgres}[phase](args, workdir)
        report.print()
        reports.append(report)

    with work_folder("load", keep=args.keep) as workdir:
        skipped = run_phases(args.chosen, run)
    verdict = Verdict(goals=not_run(skipped))
    for report in reports:
        verdict.goals += report.goals()
        verdict.failures += [f"{report.name}: {failure}" for failure in report.failures()]
    write_json(args.json, [r.summary() for r in reports])
    return verdict.exit_status()


if __name__ == "__main__":
    raise SystemExit(main())
