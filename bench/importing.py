"""History import: `tally import-messages` of a million JSON lines, its time and peak memory.

    .venv/bin/python bench/importing.py [--database sqlite|postgres|both]   # or: make bench-import

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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.send import out  # noqa: E402
from bench.usage import POSTGRES_URL, machine, postgres_reachable  # noqa: E402
from services.seeding import BODIES  # noqa: E402

TALLY = str(Path(sys.executable).with_name("tally"))
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
    def __init__(self, args: argparse.Namespace, kind: str, workdir: Path) -> None:
        self.args = args
        self.kind = kind
        self.workdir = workdir
        self.result = DatabaseResult(kind)
        self.pg_name = f"tally_bench_import_{os.getpid()}"
        if kind == "sqlite":
            self.url = f"sqlite://{workdir / 'import.db'}"
        else:
            self.url = urlunsplit(urlsplit(args.postgres_url)._replace(path=f"/{self.pg_name}"))
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
        if self.kind == "postgres":
            self.admin(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)',
                       f'CREATE DATABASE "{self.pg_name}"')  # fmt: skip
        try:
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
        finally:
            if self.kind == "postgres":
                self.admin(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
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

    def admin(self, *statements: str) -> None:
        async def run() -> None:
            import asyncpg

            conn = await asyncpg.connect(self.args.postgres_url, timeout=10)
            try:
                for statement in statements:
                    await conn.execute(statement)
            finally:
                await conn.close()

        asyncio.run(run())


def print_report(results: list[DatabaseResult]) -> None:
    out()
    out(f"machine: {machine()}; load average now {os.getloadavg()[0]:.2f}")
    for db in results:
        out(f"== {db.kind} (a `tally migrate` process peaks at {db.baseline_rss_mib:.0f} MiB)")
        out(f"{'lines':>10} {'seconds':>8} {'lines/s':>9} {'peak RSS':>9} {'imported':>9} "
            f"{'skipped':>8}")  # fmt: skip
        for run in db.runs:
            out(f"{run.lines:>10,} {run.seconds:>8.1f} {run.lines / run.seconds:>9,.0f} "
                f"{run.peak_rss_mib:>5.0f} MiB {run.imported:>9,} {run.skipped:>8,}")  # fmt: skip
        big = db.runs[-1]
        ok = big.seconds < GOAL_SECONDS
        out(f"goal  {'PASS' if ok else 'MISS'}  {db.kind}: {big.lines:,} lines < "
            f"{GOAL_SECONDS:.0f} s ({big.seconds:.1f} s)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"])
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    args = parser.parse_args(argv)
    kinds = {"sqlite": ["sqlite"], "postgres": ["postgres"], "both": ["sqlite", "postgres"]}
    if args.database is None:
        args.database = "both" if postgres_reachable(args.postgres_url) else "sqlite"
    load = os.getloadavg()[0]
    if load > 0.5:
        out(f"warning: load average {load:.2f} before the run: other work shares the CPUs")
    results = []
    for kind in kinds[args.database]:
        workdir = Path(tempfile.mkdtemp(prefix=f"tally-bench-import-{kind}-"))
        try:
            results.append(Run(args, kind, workdir).go())
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    print_report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
