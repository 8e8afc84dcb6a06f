"""History import: `tally import-messages` of a million JSON lines, its time and peak memory.

    .venv/bin/python -m bench.importing [--database sqlite|postgres|both]   # or: make bench-import

For each database (default: both when PostgreSQL answers at --postgres-url, else SQLite), on
a fresh database made for the run (a temporary SQLite file; a new PostgreSQL database,
dropped afterwards):

1. `tally migrate`, then `tally seed-demo --messages 1000 --days 30 --json`: an account with
   25 inboxes (20 personal, 5 shared) and a little history of its own.
2. Two files are written, streamed: --small lines (default 100,000) and --lines (default
   1,000,000), each line a message of one of the account's inboxes, either way, with one of
   5,000 customers, over the last two years in order, nine in ten with a carrier id, one
   body in ten of its own (the others from eight templates).
3. `tally import-messages --json` of each file, as its own process: wall time and peak RSS
   (the process's ru_maxrss, from wait4). Memory is flat when the million-line import peaks
   about where the small one does.
4. The account's message count and its rollups' message total must both equal what was
   there plus what the imports reported, or the run fails.

Goal (issue 13): a million lines in under a minute on either database, memory flat.
A failed import, or counts that differ, make the exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.harness import (
    TALLY,
    Goal,
    Unavailable,
    Verdict,
    below,
    fresh_postgres,
    machine,
    out,
    table,
    work_folder,
)
from bench.usage import POSTGRES_URL
from services.seeding import BODIES

GOAL_SECONDS = 60.0
CUSTOMERS = [f"+1415555{n:04d}" for n in range(2000, 7000)]
ZONE = ZoneInfo("America/New_York")


@dataclass
class Imported:
    lines: int
    seconds: float
    peak_rss_mib: float
    imported: int
    skipped: int


@dataclass
class DatabaseResult:
    kind: str
    runs: list[Imported] = field(default_factory=list)
    baseline_rss_mib: float = 0.0


def write_file(path: Path, lines: int, inboxes: list[str], prefix: str, seed: int) -> None:
    """``lines`` JSON lines, streamed to ``path`` (never the whole file in memory)."""
    rng = random.Random(seed)
    end = datetime.now(UTC) - timedelta(hours=1)
    start = end - timedelta(days=730)
    step = (end - start) / lines
    with path.open("w", encoding="utf-8") as sink:
        for n in range(lines):
            at = (start + step * n).astimezone(ZONE)
            item: dict[str, str] = {
                "inbox": rng.choice(inboxes),
                "direction": "OUTBOUND" if rng.random() < 0.6 else "INBOUND",
                "peer": rng.choice(CUSTOMERS),
                "body": f"Your code is {n:07d}" if n % 10 == 0 else rng.choice(BODIES),
                "createdAt": at.isoformat(timespec="seconds"),
            }
            if n % 10 != 5:
                item["providerMessageId"] = f"{prefix}-{n}"
            sink.write(json.dumps(item, ensure_ascii=False) + "\n")


class Run:
    def __init__(self, args: argparse.Namespace, kind: str, workdir: Path, url: str) -> None:
        """One database's run; `url` is a fresh database (bench/harness.py's)."""
        self.args = args
        self.kind = kind
        self.workdir = workdir
        self.result = DatabaseResult(kind)
        self.url = url
        self.env = {**os.environ, "TALLY_DATABASE_URL": self.url}

    def tally(self, *args: str) -> tuple[str, float, float]:
        """stdout, wall seconds and peak RSS (MiB) of one `tally` process."""
        began = time.perf_counter()
        process = subprocess.Popen(
            [TALLY, *args], env=self.env, cwd=self.workdir,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert process.stdout is not None
        stdout = process.stdout.read().decode()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - began
        if process.returncode != 0:
            raise RuntimeError(f"tally {args[0]} exited with {process.returncode}")
        # Linux reports ru_maxrss in KiB.
        return stdout, elapsed, usage.ru_maxrss / 1024

    def go(self) -> DatabaseResult:
        _, _, self.result.baseline_rss_mib = self.tally("migrate")
        seeded = json.loads(
            self.tally("seed-demo", "--messages", "1000", "--days", "30", "--json")[0]
        )
        account_id = int(seeded["accountId"])
        inboxes = self.query("SELECT phone_number FROM inbox WHERE account_id = ?", account_id)
        before = self.count(account_id)
        added = 0
        for lines, prefix in ((self.args.small, "S"), (self.args.lines, "L")):
            path = self.workdir / f"history-{lines}.jsonl"
            out(f"{self.kind}: writing {lines:,} lines ...")
            write_file(path, lines, [str(row[0]) for row in inboxes], prefix, seed=lines)
            out(f"{self.kind}: importing {lines:,} lines ...")
            stdout, seconds, rss = self.tally(
                "import-messages", "--account-id", str(account_id), "--json", str(path)
            )
            counts = json.loads(stdout)
            added += counts["imported"]
            self.result.runs.append(
                Imported(lines, seconds, rss, counts["imported"], counts["skipped"])
            )
            path.unlink()
        messages, rolled_up = self.count(account_id)
        if (messages, rolled_up) != (before[0] + added, before[1] + added):
            raise RuntimeError(
                f"{self.kind}: {messages:,} messages and {rolled_up:,} in the rollups, "
                f"expected {before[0] + added:,}"
            )
        return self.result

    def count(self, account_id: int) -> tuple[int, int]:
        (messages,) = self.query("SELECT COUNT(*) FROM message WHERE account_id = ?", account_id)
        (rolled,) = self.query(
            "SELECT SUM(messages_sent + messages_received) FROM usage_account_day "
            "WHERE account_id = ?",
            account_id,
        )
        return int(str(messages[0])), int(str(rolled[0] or 0))

    def query(self, statement: str, *values: object) -> list[tuple[object, ...]]:
        if self.kind == "sqlite":
            with sqlite3.connect(self.workdir / "import.db") as db:
                rows = db.execute(statement, values).fetchall()
            db.close()
            return rows

        async def read() -> list[tuple[object, ...]]:
            import asyncpg

            conn = await asyncpg.connect(self.url, timeout=10)
            try:
                numbered = statement.replace("?", "$1")
                return [tuple(row) for row in await conn.fetch(numbered, *values)]
            finally:
                await conn.close()

        return asyncio.run(read())


def print_report(results: list[DatabaseResult]) -> Verdict:
    out()
    out(machine())
    verdict = Verdict()
    for db in results:
        out(f"== {db.kind} (a `tally migrate` process peaks at {db.baseline_rss_mib:.0f} MiB)")
        table(
            ["lines", "seconds", "lines/s", "peak RSS MiB", "imported", "skipped"],
            [[f"{run.lines:,}", f"{run.seconds:.1f}", f"{run.lines / run.seconds:,.0f}",
              f"{run.peak_rss_mib:.0f}", f"{run.imported:,}", f"{run.skipped:,}"]
             for run in db.runs],
        )  # fmt: skip
        if db.runs:
            big = db.runs[-1]
            label = f"{db.kind}: {big.lines:,} lines"
            verdict.goals.append(below(label, big.seconds, GOAL_SECONDS, " s"))
    return verdict


@contextlib.contextmanager
def database(kind: str, workdir: Path, admin_url: str) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite://{workdir / 'import.db'}"
    else:
        with fresh_postgres(admin_url, "import") as url:
            yield url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgres", "both"],
        help="default: both, SQLite alone when PostgreSQL does not answer",
    )
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    args = parser.parse_args(argv)
    kinds = {"sqlite": ["sqlite"], "postgres": ["postgres"], "both": ["sqlite", "postgres"]}
    load = os.getloadavg()[0]
    if load > 0.5:
        out(f"warning: load average {load:.2f} before the run: other work shares the CPUs")
    results = []
    failures, away = [], []
    for kind in kinds[args.database or "both"]:
        with work_folder(f"import-{kind}", keep=False) as workdir:
            try:
                with database(kind, workdir, args.postgres_url) as url:
                    run = Run(args, kind, workdir, url)
                    try:
                        run.go()
                    except RuntimeError as error:
                        failures.append(str(error))
                    results.append(run.result)
            except Unavailable as error:
                out(f"{kind}: not run, {error}")
                if args.database is not None:
                    away.append(Goal(f"{kind}: not run ({error})", False))
    verdict = print_report(results)
    verdict.goals += away
    verdict.failures += failures
    return verdict.exit_status()


if __name__ == "__main__":
    raise SystemExit(main())
