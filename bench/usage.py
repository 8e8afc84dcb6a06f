"""Usage reports: Tally's Account.usage over HTTP against a plain GROUP BY over the messages.

    .venv/bin/python -m bench.usage [--database sqlite|postgres|both]   # or: make bench-usage

For each database (default: both when PostgreSQL answers at --postgres-url, else SQLite),
on a fresh database made for the run (a temporary SQLite file; a new PostgreSQL database,
dropped afterwards), everything on 127.0.0.1:

1. seed     - `tally migrate`, then `tally seed-demo --messages 1000000 --days 730 --json`
              (an account in America/New_York with 20 members with personal inboxes and 5
              shared inboxes); the seed's wall time is reported. PostgreSQL then gets a
              VACUUM ANALYZE (what autovacuum does on its own a minute later) and a
              CHECKPOINT (the load's pages written now, not by the checkpointer while
              reports are timed), timed apart.
2. http     - `tally serve` (one worker); over one keep-alive connection, one request at a
              time: warm-up requests, then --requests timed ones, of each report:
                (a) the last 90 days by DAY,
                (b) all time by MONTH, grouped by MEMBER,
                (c) all time by DAY,
              selecting everything an analytics screen shows (bench/usage_reports.py:
              range, totals, every bucket and every group with all six figures).
              Latency is from writing the request to having read the whole response.
              Every response must be byte-identical to the first of its case.
   compare  - (b) and (c) again, each alternating with the same report that also asks for
              `previous` and every group's `previousTotals`, so both see the same load; the
              comparison must equal a separate report over its range. Then
              `Account.forecast`, timed the same way (with the server's CPU per request).
3. profile  - py-spy records the server while more requests of one report run (not timed;
              (c) unless `--profile-case` says otherwise).
4. split    - in a separate process: the service call alone and schema.execute alone
              (bench/usage_split.py), to show what part of the time is which.
5. group-by - the same reports from one plain GROUP BY over the message table
              (bench/usage_baseline.py says exactly what it does), timed --baseline-runs
              times after one untimed run; every run's result must equal Tally's report,
              bucket by bucket and group by group.

Goals (from the issue): every report's median under 30 ms end to end, at least 25 times
faster than the GROUP BY, and the million messages seeded in under 30 s, on both databases.
Issue 13: (c) with the comparison within 1.3x of (c) without it; the forecast under 5 ms of
server time (the service call alone, in process).
The script exits with 1 when a report differs from the GROUP BY or a request fails; missed
goals are printed as MISS lines, not failed on. The reports are defined in one place,
`CASES` in bench/usage_reports.py.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from bench.harness import (
    Goal,
    Unavailable,
    Verdict,
    at_least,
    below,
    fresh_postgres,
    machine,
    ms,
    out,
    table,
    write_json,
)
from bench.usage_reports import CASES
from bench.usage_run import DatabaseResult, Mismatch, Run

POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/test"
GOAL_MEDIAN_MS = 30.0
GOAL_RATIO = 25.0
GOAL_SEED_SECONDS = 30.0
GOAL_PREVIOUS_RATIO = 1.3
GOAL_FORECAST_MS = 5.0


def print_report(results: list[DatabaseResult], args: argparse.Namespace) -> Verdict:
    out()
    out(machine())
    out(f"{args.requests} timed requests per report after {args.warmup} warm-up, one at a "
        f"time over one keep-alive connection; GROUP BY: median of {args.baseline_runs} runs "
        "after 1 untimed")  # fmt: skip
    verdict = Verdict()
    for db in results:
        out()
        vacuum = "" if db.vacuum_s is None else f", VACUUM ANALYZE + CHECKPOINT {db.vacuum_s:.1f} s"
        out(f"== {db.kind}: {db.messages:,} messages seeded in {db.seed_s:.1f} s "
            f"(migrate {db.migrate_s:.1f} s{vacuum})")  # fmt: skip
        table(
            ["report", "buckets", "KB", "p50 ms", "p95 ms", "server CPU ms", "service ms",
             "execute ms", "GROUP BY ms", "ratio", "same"],
            [[f"({c.key}) {c.title}", c.buckets, f"{c.response_bytes / 1024:.0f}",
              ms(c.median(c.http_us)), ms(c.p95(c.http_us)), ms(c.server_cpu_ms),
              ms(c.median(c.service_us)), ms(c.median(c.graphql_us)),
              ms(c.median(c.group_by_us), 0), f"{ms(c.ratio)}x", "yes" if c.equal else "NO"]
             for c in db.cases],
        )  # fmt: skip
        out("p50/p95: end to end over HTTP; server CPU: per request; service: account_usage"
            " alone, execute: schema.execute alone (medians, in process); GROUP BY: median;"
            " ratio: GROUP BY / p50.")  # fmt: skip
        verdict.goals.append(below(f"{db.kind}: seed", db.seed_s, GOAL_SEED_SECONDS, " s"))
        for c in db.cases:
            verdict.goals += [
                below(f"{db.kind}: ({c.key}) p50", c.median(c.http_us), GOAL_MEDIAN_MS, " ms"),
                at_least(f"{db.kind}: ({c.key}) x the GROUP BY", c.ratio, GOAL_RATIO),
            ]
        verdict.goals += insights(db)
        if args.show_sql:
            for key, statement in db.statements.items():
                out(f"GROUP BY ({key}): {statement}")
                for line in db.plans.get(key, []):
                    out(f"    plan: {line}")
        for line in db.profile:
            out(line)
    return verdict


def insights(db: DatabaseResult) -> list[Goal]:
    """The comparison and the forecast (issue 13): their lines, and their goals."""
    goals = []
    for comparison in db.comparisons:
        out(f"({comparison.key}) with previous and previousTotals, alternated: p50 "
            f"{statistics.median(comparison.previous_us) / 1000:.1f} ms against "
            f"{statistics.median(comparison.plain_us) / 1000:.1f} ms without "
            f"({comparison.ratio:.2f}x)")  # fmt: skip
        if comparison.key == "c":
            goals.append(Goal(f"{db.kind}: (c) with the comparison <= {GOAL_PREVIOUS_RATIO}x"
                              f" ({comparison.ratio:.2f}x)",
                              comparison.ratio <= GOAL_PREVIOUS_RATIO))  # fmt: skip
    forecast = db.forecast
    if forecast.service_us:
        service = statistics.median(forecast.service_us) / 1000
        out(f"forecast: p50 {statistics.median(forecast.http_us) / 1000:.1f} ms over HTTP, "
            f"server CPU {forecast.server_cpu_ms:.1f} ms a request, service alone "
            f"{service:.2f} ms; {forecast.answer}")  # fmt: skip
        goals.append(below(f"{db.kind}: forecast, service alone", service, GOAL_FORECAST_MS, " ms"))
    return goals


@contextlib.contextmanager
def database(kind: str, workdir: Path, args: argparse.Namespace) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite://{workdir / 'usage.db'}"
    else:
        with fresh_postgres(args.postgres_url, "usage", keep=args.keep) as url:
            yield url


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    add = parser.add_argument
    add("--database", choices=["sqlite", "postgres", "both"],
        help="default: both, SQLite alone when PostgreSQL does not answer")  # fmt: skip
    add("--postgres-url", default=POSTGRES_URL,
        help="an existing database to connect to; the run creates its own database next to"
        " it and drops it afterwards")  # fmt: skip
    add("--messages", type=int, default=1_000_000)
    add("--days", type=int, default=730)
    add("--requests", type=int, default=100, help="timed requests per report")
    add("--warmup", type=int, default=20, help="warm-up requests per report")
    add("--baseline-runs", type=int, default=5,
        help="timed GROUP BY runs per report (after 1 untimed)")  # fmt: skip
    add("--profile-seconds", type=float, default=8.0,
        help="py-spy the server over this many seconds of (c); 0: off")  # fmt: skip
    add("--profile-top", type=int, default=10)
    add("--profile-case", choices=[c.key for c in CASES], default="c",
        help="the report py-spy records (default c)")  # fmt: skip
    add("--show-sql", action="store_true", help="print the GROUP BY statements and their plans")
    add("--json", metavar="FILE", help="also write the results as JSON")
    add("--keep", action="store_true", help="keep the work folder and the PostgreSQL database")
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.requests < 1 or args.baseline_runs < 1:
        parser.error("--warmup, --requests and --baseline-runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    kinds = {"sqlite": ["sqlite"], "postgres": ["postgres"], "both": ["sqlite", "postgres"]}
    load = os.getloadavg()[0]
    if load > 0.5:
        out(f"warning: load average {load:.2f} before the run: other work shares the CPUs")
    started = time.monotonic()
    results: list[DatabaseResult] = []
    failures: list[str] = []
    away: list[Goal] = []
    for kind in kinds[args.database or "both"]:
        workdir = Path(tempfile.mkdtemp(prefix=f"tally-bench-usage-{kind}-"))
        try:
            with database(kind, workdir, args) as url:
                run = Run(args, kind, workdir, url)
                try:
                    results.append(run.go(started))
                except Mismatch as error:
                    failures.append(f"{kind}: {error}")
                    results.append(run.result)
                    break
        except Unavailable as error:
            out(f"{kind}: not run, {error}")
            if args.database is not None:
                away.append(Goal(f"{kind}: not run ({error})", False))
        finally:
            if args.keep:
                out(f"kept {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    verdict = print_report(results, args)
    verdict.goals += away
    verdict.failures += failures
    out(f"total {time.monotonic() - started:.0f} s")
    write_json(args.json, [asdict(r) for r in results])
    return verdict.exit_status()


if __name__ == "__main__":
    raise SystemExit(main())
