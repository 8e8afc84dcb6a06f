"""One load run against a real `tally serve`: set up, drive, measure, verify.

Used by bench/load.py (60 s, on SQLite and on PostgreSQL + Redis) and by
tests/api/test_load.py (shorter): the same code, so the test checks what the bench measures.

The account is made the way an operator and an admin would: `tally create-account
--json` gives the admin token; then, over GraphQL as that admin, one member per agent
with a personal inbox and a token of its own, a shared inbox every agent may use, a
saved card (tok_visa) for buyCredits, and the runaway script's token.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.client import Browser
from bench.harness import create_account, rss_kb, serving, tally_env, tally_serve, tree_cpu
from bench.load_check import live_problems, problems, read
from bench.load_plan import (
    Op,
    Profile,
    agent,
    busiest_token,
    graphql_body,
    graphql_data,
    graphql_headers,
    runaway_rate,
    schedule,
)
from bench.load_report import Report
from bench.load_run import Load, Team

WEBHOOK_SECRET = "load-webhook-secret"
MONTHLY_CREDITS = 1_000_000
PRICE_CENTS = 3
CREATE_MEMBER = (
    "mutation($input: CreateMemberInput!) { createMember(input: $input)"
    " { member { id personalInbox { id phoneNumber } } userErrors { code message } } }"
)
CREATE_TOKEN = (
    "mutation($input: CreateApiTokenInput!) { createApiToken(input: $input)"
    " { token userErrors { code message } } }"
)
CREATE_INBOX = (
    "mutation($input: CreateInboxInput!) { createInbox(input: $input)"
    " { inbox { id phoneNumber } userErrors { code message } } }"
)
SET_CARD = (
    'mutation { setPaymentMethod(input: {token: "tok_visa"})'
    " { paymentMethod { last4 } userErrors { code message } } }"
)
SHARED_LINE = 9999
# Not 127.0.0.1: with Redis, per-IP counters are shared with whatever else runs here.
SETUP_ADDRESS = "127.0.1.1"


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
        return tally_env(
            self.database_url,
            broadcast_url=self.broadcast_url,
            webhook_secret=WEBHOOK_SECRET,
            rate_limit_per_token=str(self.rate_limit),
        )


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
    # `tally serve` migrates the database before it answers; every run has Redis channels
    # of its own (TALLY_REDIS_NAMESPACE), so no other database's account hears its events.
    with serving(tally_serve(scenario.workers), env, scenario.workdir) as server:
        created = create_account(
            env, scenario.workdir, "--monthly-credits", str(MONTHLY_CREDITS),
            "--price-cents", str(PRICE_CENTS),
        )  # fmt: skip
        team = asyncio.run(make_team(server.port, created, scenario.profile.agents))
        load = Load(
            port=server.port, team=team, profile=scenario.profile,
            webhook_secret=WEBHOOK_SECRET, seed=scenario.seed,
        )  # fmt: skip
        measure(report, load, server.pid)
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
    report.server_cpu_seconds = tree_cpu(pid) - cpu
    report.server_cpu = report.server_cpu_seconds / wall
    report.client_cpu = (time.process_time() - client_cpu) / wall
    report.memory = (memory.peak_kb, memory.largest_kb, memory.end_kb)


def phone_number(line: int) -> str:
    """A valid US number of the load account; no other test or bench uses this block."""
    return f"+1628201{line:04d}"


async def make_team(port: int, created: dict[str, str], agents: int) -> Team:
    http = Browser("127.0.0.1", port, SETUP_ADDRESS)
    admin = created["token"]

    async def call(query: str, field: str, variables: dict[str, Any] | None = None) -> Any:
        status, raw = await http.post(
            "/graphql", graphql_body(query, variables), graphql_headers(admin)
        )
        return graphql_data(status, raw, field)

    async def token_for(member_id: str, name: str) -> str:
        issued = await call(
            CREATE_TOKEN, "createApiToken", {"input": {"memberId": member_id, "name": name}}
        )
        return str(issued["token"])

    tokens, inboxes, member_ids = {}, {}, []
    try:
        for n in range(agents):
            member = (
                await call(
                    CREATE_MEMBER,
                    "createMember",
                    {
                        "input": {
                            "name": f"Agent {n}",
                            "email": f"agent{n}@load.example",
                            "personalPhoneNumber": phone_number(n),
                        }
                    },
                )
            )["member"]
            member_ids.append(member["id"])
            tokens[agent(n)] = await token_for(member["id"], "browser")
            inbox = member["personalInbox"]
            inboxes[agent(n)] = (inbox["id"], inbox["phoneNumber"])
        shared = (
            await call(
                CREATE_INBOX,
                "createInbox",
                {
                    "input": {
                        "name": "Front desk",
                        "phoneNumber": phone_number(SHARED_LINE),
                        "memberIds": member_ids,
                    }
                },
            )
        )["inbox"]
        await call(SET_CARD, "setPaymentMethod")
        runaway = await token_for(created["memberId"], "runaway script")
    finally:
        http.close()
    return Team(
        admin_token=admin,
        runaway_token=runaway,
        agent_tokens=tokens,
        agent_inboxes=inboxes,
        shared_inbox=(shared["id"], shared["phoneNumber"]),
        price_cents=PRICE_CENTS,
    )
