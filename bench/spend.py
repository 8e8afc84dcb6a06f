"""Spend control: what alerts, a budget and an endpoint cost a send; how fast notices go out.

    .venv/bin/python -m bench.spend            # or: make bench-spend

Every phase runs `tally serve` (one worker) on a fresh temporary SQLite database, all on
127.0.0.1, with an account from `tally create-account` and a MEMBER sending from its
personal inbox (as bench/send.py's `tally` phase):

1. plain   - sendMessage load with no alert, no budget and no endpoint.
2. spend   - the same load after setBalanceAlerts (3 thresholds), a SOFT budget on the
             sending inbox and one webhook endpoint. The thresholds sit far below the
             total and the budget far above the load, so nothing is crossed: this is the
             price every send pays to check.
   plain and spend alternate for --rounds rounds, so that drift on a shared machine hits
   both alike; the ratio is of their summed rates.
3. service - services.messaging.send_message from 16 tasks in this process, on one
             database, switching spend control on and off every --window seconds
             (setBalanceAlerts, setInboxBudget, create/deleteWebhookEndpoint through the
             services): on a shared machine, load that drifts hits both sides alike.
4. notices - a receiver in this process and `TALLY_WEBHOOK_ALLOW_PRIVATE=1`; cycles of
             setBalanceAlerts(5 thresholds just under the total) then one 5-credit send,
             which raises 5 notices, paced to --notice-rate notices a second. Latency is
             the receiver's arrival time minus the notice's `createdAt`, which is taken
             before the change commits: the figure overstates the true latency.

Goals (issue 12): spend >= 0.9 x plain (over HTTP, and in the service phase); notices
at p99 <= 100 ms at 100 a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.client import Job, Phase, launch
from bench.harness import (
    Verdict,
    at_least,
    below,
    command_line,
    create_account,
    free_port,
    machine,
    ms,
    mutate,
    out,
    parse,
    run_phases,
    serving,
    table,
    tally_env,
    tally_serve,
    work_folder,
)
from bench.send_direct import seed
from models import Member
from models.db import close_database
from models.enums import BudgetMode, Role
from services import alerts, budgets, messaging, webhook_endpoints
from services.access import Principal
from services.clock import SystemClock
from services.runtime import Runtime

PHASES = ("throughput", "service", "notices")
SEND_DOCUMENT = (
    "mutation Send($input: SendMessageInput!) { sendMessage(input: $input) {"
    " message { id status segments credits createdAt }"
    " balance { total subscriptionCredits purchasedCredits }"
    " userErrors { code field message } } }"
)
GOAL_RATIO = 0.9
GOAL_NOTICE_P99_MS = 100.0
NOTICES_PER_CYCLE = 5
MEMBER = (
    "mutation($input: CreateMemberInput!) { createMember(input: $input)"
    " { member { id personalInbox { id } } userErrors { code message } } }"
)
TOKEN = (
    "mutation($input: CreateApiTokenInput!) { createApiToken(input: $input)"
    " { token userErrors { code message } } }"
)
SET_ALERTS = (
    "mutation($t: [Int!]!) { setBalanceAlerts(input: {thresholds: $t})"
    " { alerts { state } userErrors { code message } } }"
)
SET_BUDGET = (
    "mutation($input: SetInboxBudgetInput!) { setInboxBudget(input: $input)"
    " { inbox { id } userErrors { code message } } }"
)
ENDPOINT = (
    "mutation($url: String!) { createWebhookEndpoint(input: {url: $url})"
    " { endpoint { id } userErrors { code message } } }"
)
SEND = (
    "mutation($input: SendMessageInput!) { sendMessage(input: $input)"
    " { balance { total } userErrors { code message } } }"
)


@dataclass
class Tally:
    """A running `tally serve` with an admin and a member who sends from its own inbox."""

    url: str
    port: int
    pid: int
    admin: str
    member: str
    inbox: str

    def call(self, document: str, token: str, **variables: Any) -> dict[str, Any]:
        return mutate(self.url, token, document, variables)


@contextlib.contextmanager
def tally(workdir: Path, name: str, monthly_credits: int, **settings: str) -> Iterator[Tally]:
    folder = workdir / name
    folder.mkdir()
    env = tally_env(
        f"sqlite://{folder / 'tally.db'}",
        # One token from one IP on purpose: the rate limits would measure themselves.
        rate_limit_per_token="1000000000",
        rate_limit_per_ip="1000000000",
        **settings,
    )
    created = create_account(env, folder, "--monthly-credits", str(monthly_credits))
    with serving(tally_serve(), env, folder) as server:
        admin = created["token"]
        member = mutate(
            server.url,
            admin,
            MEMBER,
            {
                "input": {
                    "name": "Sender",
                    "email": "s@bench.example",
                    "personalPhoneNumber": "(415) 555-0142",
                }
            },
        )["member"]
        variables = {"input": {"memberId": member["id"], "name": "bench"}}
        token = mutate(server.url, admin, TOKEN, variables)["token"]
        inbox = member["personalInbox"]["id"]
        yield Tally(server.url, server.port, server.pid, admin, token, inbox)


def load(args: Any, server: Tally, phase: Phase) -> Phase:
    body = json.dumps(
        {
            "query": SEND_DOCUMENT,
            "variables": {"input": {"inboxId": server.inbox, "to": "+14155550100", "body": "Hi"}},
        }
    )
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {server.member}"}
    job = Job(
        port=server.port, path="/graphql", body=body, headers=headers, check="graphql-send",
        connections=args.connections, start_at=time.time() + 1.0, warmup=args.warmup,
        duration=args.duration,
    )  # fmt: skip
    return launch(phase, job, processes=args.processes, server_pids=[server.pid])


def throughput(args: Any, workdir: Path) -> tuple[list[Phase], list[Phase]]:
    plain, spend = [], []
    for n in range(args.rounds):
        out(f"  round {n + 1}: plain")
        with tally(workdir, f"plain-{n}", 10_000_000) as server:
            plain.append(load(args, server, Phase(name="plain", what="nothing configured")))
        out(f"  round {n + 1}: spend")
        with tally(workdir, f"spend-{n}", 10_000_000, webhook_allow_private="1") as server:
            server.call(SET_ALERTS, server.admin, t=[100, 1_000, 10_000])
            budget = {"inboxId": server.inbox, "monthlyCredits": 1_000_000, "mode": "SOFT"}
            server.call(SET_BUDGET, server.admin, input=budget)
            # Never called: nothing is crossed (port 9 is discard's, on loopback).
            server.call(ENDPOINT, server.admin, url="http://127.0.0.1:9/hook")
            what = "3 alerts, a SOFT budget, 1 endpoint"
            spend.append(load(args, server, Phase(name="spend", what=what)))
    return plain, spend


@dataclass
class Arrivals:
    latencies_ms: list[float]

    async def handle(self, request: Request) -> Response:
        arrived = time.time()
        created = datetime.fromisoformat(json.loads(await request.body())["createdAt"])
        self.latencies_ms.append((arrived - created.timestamp()) * 1000)
        return Response(status_code=204)


@contextlib.asynccontextmanager
async def receiver(arrivals: Arrivals) -> AsyncIterator[str]:
    port = free_port()
    app = Starlette(routes=[Route("/hook", arrivals.handle, methods=["POST"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.should_exit = True
        await task


async def notices(workdir: Path, rate: float, seconds: float) -> tuple[int, list[float], float]:
    """Notices raised, their latencies (ms), and the rate achieved (notices/s)."""
    arrivals = Arrivals([])
    async with receiver(arrivals) as hook:
        with tally(workdir, "notices", 500_000, webhook_allow_private="1") as server:
            server.call(ENDPOINT, server.admin, url=hook)
            raised, achieved = await _raise_notices(server, rate, seconds)
            deadline = time.monotonic() + 10
            # Polling: arrivals are appended by the receiver's requests.
            while len(arrivals.latencies_ms) < raised and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    return raised, arrivals.latencies_ms, achieved


async def _raise_notices(server: Tally, rate: float, seconds: float) -> tuple[int, float]:
    cycle = NOTICES_PER_CYCLE / rate
    body = "x" * (153 * NOTICES_PER_CYCLE)
    send = {"inboxId": server.inbox, "to": "+14155550100", "body": body}
    raised = 0
    async with httpx.AsyncClient(timeout=30) as http:

        async def call(query: str, token: str, **variables: object) -> dict[str, Any]:
            response = await http.post(
                server.url,
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {token}"},
            )
            payload: dict[str, Any] = next(iter(response.json()["data"].values()))
            if payload.get("userErrors"):
                raise RuntimeError(payload["userErrors"])
            return payload

        total = 500_000
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            due = started + (raised // NOTICES_PER_CYCLE) * cycle
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await call(SET_ALERTS, server.admin, t=[total - k for k in range(NOTICES_PER_CYCLE)])
            total = (await call(SEND, server.member, input=send))["balance"]["total"]
            raised += NOTICES_PER_CYCLE
        achieved = raised / (time.monotonic() - started)
    return raised, achieved


@dataclass
class Side:
    """One side of the service phase: sends, wall seconds and this process's CPU seconds."""

    sent: int = 0
    seconds: float = 0.0
    cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        """CPU microseconds per send: what a shared machine's load does not inflate."""
        return self.cpu / self.sent * 1e6 if self.sent else 0.0


async def service(workdir: Path, windows: int, seconds: float) -> tuple[Side, Side]:
    """Sends with spend control off and on, alternating windows on one database."""
    seeded = await seed(f"sqlite://{workdir / 'service.db'}", Runtime(), keep_open=True)
    try:
        runtime, actor, clock = Runtime(), seeded.actor, SystemClock()
        admin_row = await Member.get(account_id=seeded.account_id, role=Role.ADMIN)
        admin = Principal(seeded.account_id, admin_row.id, Role.ADMIN, 0)

        async def window(side: Side) -> None:
            sent, end, cpu = 0, time.monotonic() + seconds, time.process_time()

            async def sender() -> None:
                nonlocal sent
                while time.monotonic() < end:
                    await messaging.send_message(
                        runtime=runtime, actor=actor, inbox_id=seeded.inbox_id,
                        to="+14155550100", body="Hi", idempotency_key=None, region="US",
                    )  # fmt: skip
                    sent += 1

            await asyncio.gather(*(sender() for _ in range(16)))
            side.sent += sent
            side.seconds += seconds
            side.cpu += time.process_time() - cpu

        async def switch(on: bool) -> None:
            budget = 1_000_000 if on else None
            await alerts.set_balance_alerts(
                actor=admin, thresholds=[100, 1_000, 10_000] if on else [], clock=clock
            )
            await budgets.set_inbox_budget(
                actor=admin, inbox_id=seeded.inbox_id, monthly_credits=budget,
                mode=BudgetMode.SOFT, clock=clock,
            )  # fmt: skip
            if on:
                await webhook_endpoints.create_endpoint(
                    actor=admin, url="http://127.0.0.1:9/hook", events=None, allow_private=True,
                    clock=clock,
                )  # fmt: skip
            else:
                for endpoint in await webhook_endpoints.list_endpoints(account_id=admin.account_id):
                    await webhook_endpoints.delete_endpoint(
                        actor=admin, endpoint_id=endpoint.id, clock=clock
                    )

        await window(Side())  # warm-up
        plain, spend = Side(), Side()
        # off, on, on, off, ...: a drift during the run weighs on both sides alike.
        for on in [False, True, True, False] * (windows // 2):
            await switch(on)
            await window(spend if on else plain)
        return plain, spend
    finally:
        await close_database()


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__, PHASES, ",".join(PHASES))
    add = parser.add_argument
    add("--duration", type=float, default=10.0, help="measured seconds per load")
    add("--warmup", type=float, default=3.0, help="warm-up seconds per load")
    add("--processes", type=int, default=2, help="load client processes")
    add("--connections", type=int, default=16, help="connections in all")
    add("--rounds", type=int, default=2, help="plain/spend pairs")
    add("--notice-rate", type=float, default=100.0, help="notices a second")
    add("--notice-seconds", type=float, default=20.0, help="notice phase length")
    add("--windows", type=int, default=6, help="service phase: on/off pairs (even)")
    add("--window", type=float, default=3.0, help="service phase: seconds each")
    args = parse(parser, argv, PHASES)
    out(machine())
    results: dict[str, Any] = {}
    with work_folder("spend", keep=args.keep) as workdir:

        def run(name: str) -> None:
            if name == "throughput":
                results[name] = throughput(args, workdir)
            elif name == "service":
                results[name] = asyncio.run(service(workdir, args.windows, args.window))
            else:
                results[name] = asyncio.run(notices(workdir, args.notice_rate, args.notice_seconds))

        run_phases(args.chosen, run)
    out(machine())
    return report(results).exit_status()


def report(results: dict[str, Any]) -> Verdict:
    verdict = Verdict()
    if "throughput" in results:
        plain, spend = results["throughput"]
        pairs = [p for pair in zip(plain, spend, strict=True) for p in pair]
        table(
            ["phase", "sends/s", "p50 ms", "p99 ms", "errors"],
            [[p.name, f"{p.rate:.0f}", ms(p.p(0.5)), ms(p.p(0.99)), p.errors] for p in pairs],
        )
        ratio = sum(p.rate for p in spend) / max(1e-9, sum(p.rate for p in plain))
        verdict.goals.append(at_least("throughput: spend / plain over HTTP", ratio, GOAL_RATIO))
        for phase in pairs:
            if phase.errors:
                verdict.fail(f"{phase.name}: {phase.errors} failed sends, e.g. {phase.samples[:1]}")
    if "service" in results:
        off, on = results["service"]
        # CPU per send decides: wall-clock rates on a shared machine follow its load.
        out(
            f"service: plain {off.rate:.0f}/s at {off.cpu_us:.0f} us CPU a send,"
            f" spend {on.rate:.0f}/s at {on.cpu_us:.0f} us"
        )
        ratio = off.cpu_us / max(1e-9, on.cpu_us)
        verdict.goals.append(at_least("service: CPU a send, plain / spend", ratio, GOAL_RATIO))
    if "notices" in results:
        raised, latencies, achieved = results["notices"]
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        out(
            f"notices: {raised} raised at {achieved:.0f}/s, {len(latencies)} received;"
            f" latency p50 {ms(p50)} ms, p99 {ms(p99)} ms,"
            f" max {ms(max(latencies, default=None))} ms"
        )
        verdict.goals.append(
            below("notices: p99 commit to receiver", p99, GOAL_NOTICE_P99_MS, " ms")
        )
        verdict.goals.append(at_least("notices: raised a second", achieved, 95.0))
        if len(latencies) != raised:
            verdict.fail(f"notices: {raised} raised, {len(latencies)} received")
    return verdict


if __name__ == "__main__":
    raise SystemExit(main())
