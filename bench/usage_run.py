"""One database's run of the usage benchmark: seed, time reports over HTTP, split, GROUP BY.

bench/usage.py says what each step does; this module does it, for one database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from bench.client import build_request, read_response
from bench.harness import (
    PYTHON,
    ROOT,
    TALLY,
    cpu_seconds,
    out,
    serving,
    tally_env,
    tally_serve,
)
from bench.profile import record, summarize
from bench.usage_baseline import STATEMENTS, postgres_report, sqlite_report
from bench.usage_reports import (
    CASES,
    DOCUMENT,
    FORECAST_DOCUMENT,
    PREVIOUS_DOCUMENT,
    Case,
    Shape,
    from_graphql,
)

Baseline = Callable[[Case], Awaitable[Shape]]
Plan = Callable[[str, list[Any]], Awaitable[list[str]]]


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
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        body = json.dumps({"query": document, "variables": variables}).encode()
        return build_request("POST", "127.0.0.1", self.port, "/graphql", headers, body)

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
    def __init__(self, args: argparse.Namespace, kind: str, workdir: Path, url: str) -> None:
        """One database's run; `url` is a fresh database (bench/harness.py's)."""
        self.args = args
        self.kind = kind
        self.workdir = workdir
        self.result = DatabaseResult(kind)
        self.url = url
        # The limiter still runs on every request, but the profile's thousands of requests
        # a minute from one token must not turn into 429s.
        self.env = tally_env(
            url, graphiql="0", rate_limit_per_token="1000000", rate_limit_per_ip="1000000"
        )

    def log(self, started: float, what: str) -> None:
        out(f"[{time.monotonic() - started:6.1f} s] {self.kind}: {what}")

    def go(self, started: float) -> DatabaseResult:
        self.log(started, "migrate + seed-demo ...")
        seeded = self.seed()
        self.log(started, f"seeded {self.result.messages:,} messages in "
                 f"{self.result.seed_s:.1f} s; serving ...")  # fmt: skip
        shapes = self.http(seeded)
        self.log(started, "in-process split ...")
        self.split(seeded, shapes)
        self.log(started, f"GROUP BY x {1 + self.args.baseline_runs} per report ...")
        self.group_by(seeded, shapes)
        return self.result

    # 1. seed

    def tally(self, *command: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [TALLY, *command], env=self.env, cwd=self.workdir, check=True, capture_output=True,
            timeout=600,
        )  # fmt: skip

    def seed(self) -> dict[str, Any]:
        began = time.perf_counter()
        self.tally("migrate")
        self.result.migrate_s = time.perf_counter() - began
        began = time.perf_counter()
        done = self.tally("seed-demo", "--messages", str(self.args.messages), "--days",
                          str(self.args.days), "--json")  # fmt: skip
        self.result.seed_s = time.perf_counter() - began
        seeded: dict[str, Any] = json.loads(done.stdout)
        self.result.messages = seeded["messages"]
        if self.kind == "postgres":
            began = time.perf_counter()
            asyncio.run(self.vacuum())
            self.result.vacuum_s = time.perf_counter() - began
        return seeded

    async def vacuum(self) -> None:
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
        with serving(tally_serve(1, "--no-migrate"), self.env, self.workdir) as server:
            return asyncio.run(self.drive(server.port, seeded["token"], server.pid))

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
                status, body, plain_us = await client.send(plain)
                report_of(status, body)  # raises on a failed request
                status, body, previous_us = await client.send(previous)
                report_of(status, body)
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
            if status != 200 or json.loads(body).get("errors"):
                raise Mismatch(f"forecast: HTTP {status}: {body[:300]!r}")
            result.http_us.append(micros)
        result.server_cpu_ms = 1000 * (cpu_seconds(pid) - cpu_before) / self.args.requests
        result.answer = json.loads(body)["data"]["account"]["forecast"]

    async def profile(self, client: Client, pid: int) -> None:
        output = self.workdir / f"py-spy-{self.kind}.txt"
        seconds = int(self.args.profile_seconds)
        recorder = record(pid, output, seconds)
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
            [PYTHON, "-m", "bench.usage_split"], cwd=ROOT, env=self.env,
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
        asyncio.run(self._group_by(int(seeded["accountId"]), shapes))

    async def _group_by(self, account_id: int, shapes: dict[str, Shape]) -> None:
        async with self._baseline(account_id) as (report_for, plan_of):
            for case, result in zip(CASES, self.result.cases, strict=True):
                runs = []
                for n in range(1 + self.args.baseline_runs):
                    began = time.perf_counter_ns()
                    shape = await report_for(case)
                    elapsed = (time.perf_counter_ns() - began) // 1000
                    self.check(case, shapes[case.key], shape)
                    if n:
                        runs.append(elapsed)
                result.group_by_us, result.equal = runs, True
                query, values = STATEMENTS[case.key]
                self.result.statements[case.key] = query
                self.result.plans[case.key] = await plan_of(query, values)

    @contextlib.asynccontextmanager
    async def _baseline(self, account_id: int) -> AsyncIterator[tuple[Baseline, Plan]]:
        """The GROUP BY of a case, and the plan of a statement, on this run's database."""
        if self.kind == "sqlite":
            db = sqlite3.connect(self.workdir / "usage.db")

            async def sqlite_case(case: Case) -> Shape:
                return sqlite_report(db, account_id, case, self.zone, self.today)

            async def sqlite_plan(query: str, values: list[Any]) -> list[str]:
                return [row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {query}", values)]

            try:
                yield sqlite_case, sqlite_plan
            finally:
                db.close()
            return
        conn = await asyncpg.connect(self.url, timeout=10)

        async def postgres_case(case: Case) -> Shape:
            return await postgres_report(conn, account_id, case, self.zone, self.today)

        async def postgres_plan(query: str, values: list[Any]) -> list[str]:
            return [row[0] for row in await conn.fetch(f"EXPLAIN {query}", *values)]

        try:
            yield postgres_case, postgres_plan
        finally:
            await conn.close()

    @staticmethod
    def check(case: Case, tally: Shape, group_by: Shape) -> None:
        difference = tally.first_difference(group_by)
        if difference is not None:
            raise Mismatch(f"({case.key}) Tally != GROUP BY: {difference}")
