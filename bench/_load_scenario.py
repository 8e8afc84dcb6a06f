"""One load run against a real `tally serve`: set up, drive, measure, verify.

Used by bench/load.py (60 s, on SQLite and on PostgreSQL + Redis) and by
tests/api/test_load.py (shorter): the same code, so the test checks what the bench measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench._load_check import live_problems, problems, read
from bench._load_plan import Op, Profile, busiest_token, runaway_rate, schedule
from bench._load_report import Report
from bench._load_run import Load
from bench._load_setup import create_account, make_team
from bench.fanout import rss_kb, tree_cpu
from bench.send import TALLY, free_port, stop, wait_until_up

WEBHOOK_SECRET = "load-webhook-secret"


@dataclass(frozen=True)
class Scenario:
    name: str
    database_url: str
    workdir: Path
    profile: Profile = field(default_factory=Profile)
    duration: float = 60.0
    workers: int = 1
    broadcast_url: str = "memory://"
    rate_limit: int = 1200  # TALLY_RATE_LIMIT_PER_TOKEN, requests a minute
    seed: int = 1

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "TALLY_DATABASE_URL": self.database_url,
            "TALLY_BROADCAST_URL": self.broadcast_url,
            "TALLY_SECRET_KEY": "load-secret",
            "TALLY_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "TALLY_RATE_LIMIT_PER_TOKEN": str(self.rate_limit),
        }


@dataclass
class Memory:
    """The server's RSS (all its processes), sampled every half second from another thread."""

    peak_kb: int = 0
    largest_kb: int = 0
    end_kb: int = 0
    stopped: threading.Event = field(default_factory=threading.Event)

    def sample(self, pid: int) -> None:
        while not self.stopped.is_set():
            sizes = rss_kb(pid)
            self.end_kb = sum(sizes)
            self.peak_kb = max(self.peak_kb, self.end_kb)
            self.largest_kb = max(self.largest_kb, *sizes)
            self.stopped.wait(0.5)


def run_scenario(scenario: Scenario) -> Report:
    """Serve, set up, run the schedule, stop, and check the database against the answers."""
    env = scenario.env()
    scenario.workdir.mkdir(parents=True, exist_ok=True)
    report = Report(
        scenario.name, scenario.duration, scenario.profile, scenario.workers, plan(scenario)
    )
    # `tally serve` migrates the database before it answers.
    with serving(env, scenario.workers, scenario.workdir) as (port, pid):
        if scenario.broadcast_url.startswith("redis://"):
            asyncio.run(spread_account_ids(scenario.database_url))
        created = create_account(env, scenario.workdir)
        team = asyncio.run(make_team(port, created, scenario.profile.agents))
        load = Load(
            port=port, team=team, profile=scenario.profile, webhook_secret=WEBHOOK_SECRET,
            seed=scenario.seed,
        )  # fmt: skip
        measure(report, load, pid)
    stored = asyncio.run(read(scenario.database_url, int(created["accountId"])))
    outcome = report.outcome
    report.problems = problems(stored, outcome.acks)
    report.problems += live_problems(stored, outcome.final_balance, outcome.subscribers)
    report.entries = len(stored.ledger)
    return report


def plan(scenario: Scenario) -> list[Op]:
    """The run's schedule; refused when a well-behaved token could reach the rate limit."""
    runaway = runaway_rate(scenario.rate_limit, scenario.duration)
    ops = schedule(scenario.profile, scenario.duration, runaway=runaway, seed=scenario.seed)
    actor, planned = busiest_token(ops)
    if planned >= scenario.rate_limit // 2:
        limit = scenario.rate_limit
        raise ValueError(f"{actor} plans {planned} requests: the limit {limit} is too low")
    return ops


def measure(report: Report, load: Load, pid: int) -> None:
    """Run the load; the server's CPU and memory and the harness's CPU meanwhile."""
    memory = Memory()
    sampler = threading.Thread(target=memory.sample, args=(pid,))
    sampler.start()
    cpu, client_cpu, started = tree_cpu(pid), time.process_time(), time.monotonic()
    try:
        report.outcome = asyncio.run(load.run(report.ops, report.duration))
    finally:
        memory.stopped.set()
        sampler.join()
    wall = time.monotonic() - started
    report.server_cpu = (tree_cpu(pid) - cpu) / wall
    report.client_cpu = (time.process_time() - client_cpu) / wall
    report.memory = (memory.peak_kb, memory.largest_kb, memory.end_kb)


async def spread_account_ids(database_url: str) -> None:
    """Give the next account an id far from every other database's.

    Redis channels are named by account id alone, so this database's account 1 would hear
    the events of any other database's account 1 sharing the Redis (other runs, tests).
    """
    start = random.randrange(10**9, 2 * 10**9)
    connection = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
    try:
        await connection.execute(
            "SELECT setval(pg_get_serial_sequence('account', 'id'), GREATEST($1,"
            " (SELECT COALESCE(MAX(id), 0) FROM account)))",
            start,
        )
    finally:
        await connection.close()


@contextlib.contextmanager
def serving(env: dict[str, str], workers: int, workdir: Path) -> Iterator[tuple[int, int]]:
    """`tally serve` on a free port: (port, pid) while it runs; stopped with SIGTERM after."""
    port = free_port()
    log = workdir / f"serve-{port}.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [TALLY, "serve", "--port", str(port), "--workers", str(workers)],
            env=env, cwd=workdir, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", server, log)
        yield port, server.pid
    finally:
        stop(server)
