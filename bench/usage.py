"""Usage reports: Tally's Account.usage over HTTP against a plain GROUP BY over the messages.

    .venv/bin/python bench/usage.py [--database sqlite|postgres|both]   # or: make bench-usage

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
              selecting everything an analytics screen shows (bench/_usage_shape.py:
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
              (bench/_usage_direct.py), to show what part of the time is which.
5. group-by - the same reports from one plain GROUP BY over the message table
              (bench/_usage_baseline.py says exactly what it does), timed --baseline-runs
              times after one untimed run; every run's result must equal Tally's report,
              bucket by bucket and group by group.

Goals (from the issue): every report's median under 30 ms end to end, at least 25 times
faster than the GROUP BY, and the million messages seeded in under 30 s, on both databases.
Issue 13: (c) with the comparison within 1.3x of (c) without it; the forecast under 5 ms of
server time (the service call alone, in process).
The script exits with 1 when a report differs from the GROUP BY or a request fails; missed
goals are printed, not failed on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._load import build_request, read_response  # noqa: E402
from bench._usage_baseline import STATEMENTS, postgres_report, sqlite_report  # noqa: E402
from bench._usage_profile import summarize  # noqa: E402
from bench._usage_shape import (  # noqa: E402
    CASES,
    DOCUMENT,
    FORECAST_DOCUMENT,
    PREVIOUS_DOCUMENT,
    Case,
    Shape,
    from_graphql,
)
from bench.send import cpu_seconds, free_port, out, stop, wait_until_up  # noqa: E402

PYTHON = sys.executable
TALLY = str(Path(PYTHON).with_name("tally"))
POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/test"
GOAL_MEDIAN_MS = 30.0
GOAL_RATIO = 25.0
GOAL_SEED_SECONDS = 30.0
GOAL_PREVIOUS_RATIO = 1.3
GOAL_FORECAST_MS = 5.0


class Mismatch(Exception):
    """A report differed from the GROUP BY, or a request failed."""


@dataclass
class CaseResult:
    key: str
    title: str
    buckets: int = 0
    groups: int = 0
    response_bytes: int = 0
    http_us: list[int] = field(default_factory=list)
    server_cpu_ms: float = 0.0  # server CPU per timed request
    service_us: list[int] = field(default_factory=list)
    graphql_us: list[int] = field(default_factory=list)
    group_by_us: list[int] = field(default_factory=list)
    equal: bool = False

    def median(self, values: list[int]) -> float | None:
        return statistics.median(values) / 1000 if values else None

    def p95(self, values: list[int]) -> float | None:
        if not values:
            return None
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] / 1000

    @property
    def ratio(self) -> float | None:
        http, base = self.median(self.http_us), self.median(self.group_by_us)
        return base / http if http and base else None


@dataclass
class Comparison:
    """A report timed alternately without and with `previous` and `previousTotals`."""

    key: str
    plain_us: list[int] = field(default_factory=list)
    previous_us: list[int] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return statistics.median(self.previous_us) / statistics.median(self.plain_us)


@dataclass
class ForecastResult:
    http_us: list[int] = field(default_factory=list)
    server_cpu_ms: float = 0.0
    service_us: list[int] = field(default_factory=list)
    answer: dict[str, Any] = field(default_factory=dict)


@dataclass
class DatabaseResult:
    kind: str
    comparisons: list[Comparison] = field(default_factory=list)
    forecast: ForecastResult = field(default_factory=ForecastResult)
    messages: int = 0
    migrate_s: float = 0.0
    seed_s: float = 0.0
    vacuum_s: float | None = None
    cases: list[CaseResult] = field(default_factory=list)
    profile: list[str] = field(default_factory=list)
    statements: dict[str, str] = field(default_factory=dict)
    plans: dict[str, list[str]] = field(default_factory=dict)


# --- the HTTP client: one keep-alive connection, one request at a time ---------------------


class Client:
    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def request(self, variables: dict[str, Any], document: str = DOCUMENT) -> bytes:
        return build_request(
            {
                "host": "127.0.0.1",
                "port": self.port,
                "path": "/graphql",
                "headers": {
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {self.token}",
                },
                "body": json.dumps({"query": document, "variables": variables}),
            }
        )

    async def send(self, request: bytes) -> tuple[int, bytes, int]:
        """(status, body, microseconds from write to the last byte read)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        started = time.perf_counter_ns()
        self.writer.write(request)
        status, body = await asyncio.wait_for(read_response(self.reader), timeout=30)
        return status, body, (time.perf_counter_ns() - started) // 1000

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


def report_of(status: int, body: bytes) -> dict[str, Any]:
    if status != 200:
        raise Mismatch(f"HTTP {status}: {body[:300]!r}")
    data = json.loads(body)
    if data.get("errors"):
        raise Mismatch(f"GraphQL errors: {data['errors']}")
    report: dict[str, Any] = data["data"]["account"]["usage"]
    return report


# --- one database ------------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace, kind: str, workdir: Path) -> None:
        self.args = args
        self.kind = kind
        self.workdir = workdir
        self.result = DatabaseResult(kind)
        self.pg_name = f"tally_bench_usage_{os.getpid()}"
        if kind == "sqlite":
            self.url = f"sqlite://{workdir / 'usage.db'}"
        else:
            self.url = urlunsplit(urlsplit(args.postgres_url)._replace(path=f"/{self.pg_name}"))
        self.env = {
            **os.environ,
            "TALLY_DATABASE_URL": self.url,
            "TALLY_SECRET_KEY": "bench-secret",
            "TALLY_WEBHOOK_SECRET": "bench-webhook-secret",
            "TALLY_GRAPHIQL": "0",
            # The limiter still runs on every request, but the profile's thousands of
            # requests a minute from one token must not turn into 429s.
            "TALLY_RATE_LIMIT_PER_TOKEN": "1000000",
            "TALLY_RATE_LIMIT_PER_IP": "1000000",
        }

    def log(self, started: float, what: str) -> None:
        out(f"[{time.monotonic() - started:6.1f} s] {self.kind}: {what}")

    async def admin(self, *statements: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.args.postgres_url, timeout=10)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    def go(self, started: float) -> DatabaseResult:
        if self.kind == "postgres":
            asyncio.run(self.admin(
                f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)',
                f'CREATE DATABASE "{self.pg_name}"',
            ))  # fmt: skip
        try:
            self.log(started, "migrate + seed-demo ...")
            seeded = self.seed()
            self.log(started, f"seeded {self.result.messages:,} messages in "
                     f"{self.result.seed_s:.1f} s; serving ...")  # fmt: skip
            shapes = self.http(seeded)
            self.log(started, "in-process split ...")
            self.split(seeded, shapes)
            self.log(started, f"GROUP BY x {1 + self.args.baseline_runs} per report ...")
            self.group_by(seeded, shapes)
        finally:
            if self.kind == "postgres" and not self.args.keep:
                asyncio.run(self.admin(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)'))
        return self.result

    # 1. seed

    def seed(self) -> dict[str, Any]:
        run = {"env": self.env, "cwd": self.workdir, "check": True, "capture_output": True}
        began = time.perf_counter()
        subprocess.run([TALLY, "migrate"], timeout=120, **run)  # type: ignore[call-overload]
        self.result.migrate_s = time.perf_counter() - began
        began = time.perf_counter()
        done = subprocess.run(
            [TALLY, "seed-demo", "--messages", str(self.args.messages), "--days",
             str(self.args.days), "--json"],
            timeout=600, **run,  # type: ignore[call-overload]
        )  # fmt: skip
        self.result.seed_s = time.perf_counter() - began
        seeded: dict[str, Any] = json.loads(done.stdout)
        self.result.messages = seeded["messages"]
        if self.kind == "postgres":
            began = time.perf_counter()
            asyncio.run(self.vacuum())
            self.result.vacuum_s = time.perf_counter() - began
        return seeded

    async def vacuum(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.url, timeout=10)
        try:
            await conn.execute("VACUUM ANALYZE", timeout=300)
            await conn.execute("CHECKPOINT", timeout=300)
        finally:
            await conn.close()

    def zone_and_today(self, seeded: dict[str, Any]) -> tuple[ZoneInfo, date]:
        if self.kind == "sqlite":
            with sqlite3.connect(self.workdir / "usage.db") as db:
                (name,) = db.execute(
                    "SELECT timezone FROM account WHERE id = ?", (int(seeded["accountId"]),)
                ).fetchone()
            db.close()
        else:

            async def read() -> str:
                import asyncpg

                conn = await asyncpg.connect(self.url, timeout=10)
                try:
                    value: str = await conn.fetchval(
                        "SELECT timezone FROM account WHERE id = $1", int(seeded["accountId"])
                    )
                    return value
                finally:
                    await conn.close()

            name = asyncio.run(read())
        zone = ZoneInfo(name)
        return zone, datetime.now(zone).date()

    # 2. and 3. over HTTP

    def http(self, seeded: dict[str, Any]) -> dict[str, Shape]:
        self.zone, self.today = self.zone_and_today(seeded)
        port = free_port()
        log = self.workdir / f"serve-{self.kind}.log"
        with log.open("wb") as sink:
            server = subprocess.Popen(
                [TALLY, "serve", "--port", str(port), "--no-migrate"],
                env=self.env, cwd=self.workdir, stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_until_up(f"http://127.0.0.1:{port}/graphql", server, log)
            return asyncio.run(self.drive(port, seeded["token"], server.pid))
        finally:
            stop(server)

    async def drive(self, port: int, token: str, pid: int) -> dict[str, Shape]:
        client = Client(port, token)
        shapes: dict[str, Shape] = {}
        try:
            for case in CASES:
                result = CaseResult(case.key, case.title)
                self.result.cases.append(result)
                request = client.request(case.variables(self.today))
                first = b""
                for n in range(self.args.warmup):
                    status, body, _ = await client.send(request)
                    report = report_of(status, body)
                    if n == 0:
                        first = body
                        shapes[case.key] = from_graphql(report)
                        result.buckets = len(report["series"])
                        result.groups = len(report["groups"])
                        result.response_bytes = len(body)
                cpu_before = cpu_seconds(pid)
                for _ in range(self.args.requests):
                    status, body, micros = await client.send(request)
                    if body != first:
                        report_of(status, body)  # raises on an error
                        raise Mismatch(f"({case.key}) a response differs from the first one "
                                       "(did the local day change during the run?)")  # fmt: skip
                    result.http_us.append(micros)
                result.server_cpu_ms = (
                    1000 * (cpu_seconds(pid) - cpu_before) / max(1, self.args.requests)
                )
                end = shapes[case.key].end
                if end != self.today.isoformat():
                    raise Mismatch(f"({case.key}) report ends {end}, today is {self.today}")
            await self.compare(client, shapes)
            await self.time_forecast(client, pid)
            if self.args.profile_seconds > 0:
                await self.profile(client, pid)
        finally:
            await client.close()
        return shapes

    async def compare(self, client: Client, shapes: dict[str, Shape]) -> None:
        """(b) and (c), each alternating with itself plus the period-over-period comparison."""
        for case in (c for c in CASES if c.key in ("b", "c")):
            variables = case.variables(self.today)
            plain = client.request(variables)
            previous = client.request(variables, PREVIOUS_DOCUMENT)
            result = Comparison(case.key)
            self.result.comparisons.append(result)
            for n in range(self.args.warmup + self.args.requests):
                _, _, plain_us = await client.send(plain)
                status, body, previous_us = await client.send(previous)
                if n >= self.args.warmup:
                    result.plain_us.append(plain_us)
                    result.previous_us.append(previous_us)
            report = report_of(status, body)
            if from_graphql(report) != shapes[case.key]:
                raise Mismatch(f"({case.key}) with the comparison, the report itself differs")
            await self.check_previous(client, report)

    async def check_previous(self, client: Client, report: dict[str, Any]) -> None:
        """The comparison must equal a separate report over its range, groups included."""
        span = report["previous"]
        variables = {
            "range": {"start": span["start"], "end": span["end"]},
            "granularity": "ALL",
            "groupBy": "MEMBER" if report["groups"] else "NONE",
        }
        alone = report_of(*(await client.send(client.request(variables)))[:2])
        expected = [span["totals"]] + [g["totals"] for g in alone["groups"]]
        got = [alone["totals"]] + [g["previousTotals"] for g in report["groups"]]
        if expected != got:
            raise Mismatch(f"the comparison {span['start']}..{span['end']} != its own report")

    async def time_forecast(self, client: Client, pid: int) -> None:
        request = client.request({}, FORECAST_DOCUMENT)
        result = self.result.forecast
        for _ in range(self.args.warmup):
            await client.send(request)
        cpu_before = cpu_seconds(pid)
        for _ in range(self.args.requests):
            status, body, micros = await client.send(request)
            result.http_us.append(micros)
        result.server_cpu_ms = 1000 * (cpu_seconds(pid) - cpu_before) / self.args.requests
        data = json.loads(body)
        if status != 200 or data.get("errors"):
            raise Mismatch(f"forecast: HTTP {status}: {body[:300]!r}")
        result.answer = data["data"]["account"]["forecast"]

    def start_recorder(self, pid: int, output: Path, seconds: int) -> subprocess.Popen[bytes]:
        py_spy = shutil.which("py-spy") or str(Path(PYTHON).with_name("py-spy"))
        return subprocess.Popen(
            [py_spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
             "--duration", str(seconds), "--output", str(output), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    async def profile(self, client: Client, pid: int) -> None:
        output = self.workdir / f"py-spy-{self.kind}.txt"
        seconds = int(self.args.profile_seconds)
        recorder = self.start_recorder(pid, output, seconds)
        case = next(c for c in CASES if c.key == self.args.profile_case)
        request = client.request(case.variables(self.today))
        deadline = time.monotonic() + seconds + 20
        requests = 0
        while recorder.poll() is None and time.monotonic() < deadline:
            status, body, _ = await client.send(request)
            report_of(status, body)  # raises on an error: a profile of refusals is no use
            requests += 1
        try:
            recorder.wait(20)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait(5)
        if recorder.returncode != 0 or not output.exists():
            error = (recorder.stderr.read() if recorder.stderr else b"").decode()[-300:]
            self.result.profile = [f"py-spy failed ({recorder.returncode}): {error.strip()}"]
            return
        self.result.profile = [
            f"py-spy, 250 Hz, {seconds} s of ({case.key}) requests one at a time "
            f"({requests} requests):",
            *summarize(output).lines(self.args.profile_top),
        ]
        if self.args.keep:
            self.result.profile.append(f"raw profile kept in {output}")

    # 4. the split, in process

    def split(self, seeded: dict[str, Any], shapes: dict[str, Shape]) -> None:
        job = {
            "database_url": self.url,
            "account_id": int(seeded["accountId"]),
            "token": seeded["token"],
            "cases": [{"key": c.key, "variables": c.variables(self.today)} for c in CASES],
            "runs": self.args.requests,
            "warmup": 3,
            "forecast": True,
        }
        done = subprocess.run(
            [PYTHON, "-m", "bench._usage_direct"], cwd=ROOT, env=self.env,
            input=json.dumps(job).encode(), capture_output=True, timeout=300,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"split failed:\n{done.stderr.decode()[-2000:]}")
        timings = json.loads(done.stdout)
        for result in self.result.cases:
            result.service_us = timings[result.key]["service"]
            result.graphql_us = timings[result.key]["graphql"]
        self.result.forecast.service_us = timings["forecast"]["service"]

    # 5. the GROUP BY

    def group_by(self, seeded: dict[str, Any], shapes: dict[str, Shape]) -> None:
        account_id = int(seeded["accountId"])
        if self.kind == "sqlite":
            db = sqlite3.connect(self.workdir / "usage.db")
            try:
                for case, result in zip(CASES, self.result.cases, strict=True):
                    runs = []
                    for n in range(1 + self.args.baseline_runs):
                        began = time.perf_counter_ns()
                        shape = sqlite_report(db, account_id, case, self.zone, self.today)
                        elapsed = (time.perf_counter_ns() - began) // 1000
                        self.check(case, shapes[case.key], shape)
                        if n:
                            runs.append(elapsed)
                    result.group_by_us, result.equal = runs, True
                    query, values = STATEMENTS[case.key]
                    self.result.statements[case.key] = query
                    self.result.plans[case.key] = [
                        row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {query}", values)
                    ]
            finally:
                db.close()
        else:
            asyncio.run(self.postgres_group_by(account_id, shapes))

    async def postgres_group_by(self, account_id: int, shapes: dict[str, Shape]) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.url, timeout=10)
        try:
            for case, result in zip(CASES, self.result.cases, strict=True):
                runs = []
                for n in range(1 + self.args.baseline_runs):
                    began = time.perf_counter_ns()
                    shape = await postgres_report(conn, account_id, case, self.zone, self.today)
                    elapsed = (time.perf_counter_ns() - began) // 1000
                    self.check(case, shapes[case.key], shape)
                    if n:
                        runs.append(elapsed)
                result.group_by_us, result.equal = runs, True
                query, values = STATEMENTS[case.key]
                self.result.statements[case.key] = query
                plan = await conn.fetch(f"EXPLAIN {query}", *values)
                self.result.plans[case.key] = [row[0] for row in plan]
        finally:
            await conn.close()

    @staticmethod
    def check(case: Case, tally: Shape, group_by: Shape) -> None:
        difference = tally.first_difference(group_by)
        if difference is not None:
            raise Mismatch(f"({case.key}) Tally != GROUP BY: {difference}")


# --- the report ----------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def machine() -> str:
    model = "?"
    memory = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({model}), {memory} RAM, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}"
    )


def print_report(results: list[DatabaseResult], args: argparse.Namespace) -> list[bool]:
    out()
    out(f"machine: {machine()}; load average now {os.getloadavg()[0]:.2f}")
    out(f"{args.requests} timed requests per report after {args.warmup} warm-up, one at a "
        f"time over one keep-alive connection; GROUP BY: median of {args.baseline_runs} runs "
        "after 1 untimed")  # fmt: skip
    checks: list[bool] = []
    for db in results:
        out()
        vacuum = (
            ""
            if db.vacuum_s is None
            else f", then VACUUM ANALYZE and CHECKPOINT {db.vacuum_s:.1f} s"
        )
        out(f"== {db.kind}: {db.messages:,} messages seeded in {db.seed_s:.1f} s "
            f"(migrate {db.migrate_s:.1f} s{vacuum})")  # fmt: skip
        header = (
            f"{'report':<36} {'buckets':>7} {'KB':>5} {'p50 ms':>7} {'p95 ms':>7} "
            f"{'srv CPU':>7} {'service':>7} {'execute':>7} {'GROUP BY':>9} {'ratio':>6}  same"
        )
        out(header)
        out("-" * len(header))
        for c in db.cases:
            out(
                f"({c.key}) {c.title:<32} {c.buckets:>7} {c.response_bytes / 1024:>5.0f} "
                f"{fmt(c.median(c.http_us)):>7} {fmt(c.p95(c.http_us)):>7} "
                f"{fmt(c.server_cpu_ms):>7} {fmt(c.median(c.service_us)):>7} "
                f"{fmt(c.median(c.graphql_us)):>7} {fmt(c.median(c.group_by_us), 0):>9} "
                f"{fmt(c.ratio):>5}x  {'yes' if c.equal else 'NO'}"
            )
        out("p50/p95: end to end over HTTP; srv CPU: server CPU ms per request; service: "
            "account_usage alone, execute: schema.execute alone (medians, in process); "
            "GROUP BY: median ms; ratio: GROUP BY / p50.")  # fmt: skip
        goals = [
            (f"seed < {GOAL_SEED_SECONDS:.0f} s ({db.seed_s:.1f} s)", db.seed_s < GOAL_SEED_SECONDS)
        ]
        for c in db.cases:
            median = c.median(c.http_us)
            goals.append((f"({c.key}) p50 < {GOAL_MEDIAN_MS:.0f} ms ({fmt(median)} ms)",
                          median is not None and median < GOAL_MEDIAN_MS))  # fmt: skip
            goals.append((f"({c.key}) >= {GOAL_RATIO:.0f}x the GROUP BY ({fmt(c.ratio)}x)",
                          c.ratio is not None and c.ratio >= GOAL_RATIO))  # fmt: skip
        for comparison in db.comparisons:
            out(f"({comparison.key}) with previous and previousTotals, alternated: p50 "
                f"{statistics.median(comparison.previous_us) / 1000:.1f} ms against "
                f"{statistics.median(comparison.plain_us) / 1000:.1f} ms without "
                f"({comparison.ratio:.2f}x)")  # fmt: skip
            if comparison.key == "c":
                goals.append((f"(c) with the comparison <= {GOAL_PREVIOUS_RATIO}x "
                              f"({comparison.ratio:.2f}x)",
                              comparison.ratio <= GOAL_PREVIOUS_RATIO))  # fmt: skip
        forecast = db.forecast
        if forecast.service_us:
            service = statistics.median(forecast.service_us) / 1000
            out(f"forecast: p50 {statistics.median(forecast.http_us) / 1000:.1f} ms over HTTP, "
                f"server CPU {forecast.server_cpu_ms:.1f} ms a request, service alone "
                f"{service:.2f} ms; {forecast.answer}")  # fmt: skip
            goals.append((f"forecast < {GOAL_FORECAST_MS:.0f} ms of server time "
                          f"(service {service:.2f} ms)", service < GOAL_FORECAST_MS))  # fmt: skip
        for label, ok in goals:
            out(f"goal  {'PASS' if ok else 'MISS'}  {db.kind}: {label}")
            checks.append(ok)
        if args.show_sql:
            for key, statement in db.statements.items():
                out(f"GROUP BY ({key}): {statement}")
                for line in db.plans.get(key, []):
                    out(f"    plan: {line}")
        for line in db.profile:
            out(line)
    return checks


def postgres_reachable(url: str) -> bool:
    async def probe() -> bool:
        import asyncpg

        try:
            conn = await asyncpg.connect(url, timeout=3)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgres", "both"],
        help="default: both when PostgreSQL answers at --postgres-url, else sqlite",
    )
    parser.add_argument("--postgres-url", default=POSTGRES_URL,
                        help="an existing database to connect to; the run creates its own "
                        "database next to it and drops it afterwards")  # fmt: skip
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--requests", type=int, default=100, help="timed requests per report")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up requests per report")
    parser.add_argument("--baseline-runs", type=int, default=5,
                        help="timed GROUP BY runs per report (after 1 untimed)")  # fmt: skip
    parser.add_argument("--profile-seconds", type=float, default=8.0,
                        help="py-spy the server over this many seconds of (c); 0: off")  # fmt: skip
    parser.add_argument("--profile-top", type=int, default=10)
    parser.add_argument("--profile-case", choices=[c.key for c in CASES], default="c",
                        help="the report py-spy records (default c)")  # fmt: skip
    parser.add_argument("--show-sql", action="store_true",
                        help="print the GROUP BY statements and their plans")  # fmt: skip
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder and the PostgreSQL database")  # fmt: skip
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.requests < 1 or args.baseline_runs < 1:
        parser.error("--warmup, --requests and --baseline-runs must be at least 1")
    kinds = {"sqlite": ["sqlite"], "postgres": ["postgres"], "both": ["sqlite", "postgres"]}
    if args.database is None:
        reachable = postgres_reachable(args.postgres_url)
        args.database = "both" if reachable else "sqlite"
        if not reachable:
            out(f"PostgreSQL does not answer at {args.postgres_url}: SQLite only")
    elif "postgres" in kinds[args.database] and not postgres_reachable(args.postgres_url):
        parser.error(f"PostgreSQL does not answer at {args.postgres_url}")
    load = os.getloadavg()[0]
    if load > 0.5:
        out(f"warning: load average {load:.2f} before the run: other work shares the CPUs")
    started = time.monotonic()
    results: list[DatabaseResult] = []
    failure: str | None = None
    for kind in kinds[args.database]:
        workdir = Path(tempfile.mkdtemp(prefix=f"tally-bench-usage-{kind}-"))
        run = Run(args, kind, workdir)
        try:
            results.append(run.go(started))
        except Mismatch as error:
            failure = f"{kind}: {error}"
            results.append(run.result)
            break
        finally:
            if args.keep:
                out(f"kept {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    print_report(results, args)
    out(f"total {time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
    if failure:
        out(f"FAILED: {failure}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
