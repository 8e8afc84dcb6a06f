"""Send throughput: Tally's sendMessage over HTTP against the service layer and the stack's floors.

    .venv/bin/python -m bench.send            # or: make bench-send

One run, each phase on a fresh database, everything on 127.0.0.1, the same closed-loop
load (16 keep-alive connections in all, from 2 processes) for the HTTP phases:

1. tally     - `tally serve` (one process) on SQLite (synchronous=FULL): an account from
               `tally create-account`, a member with a personal inbox from createMember,
               its token from createApiToken; then sendMessage over HTTP.
2. service   - services.messaging.send_message from 16 asyncio tasks in one process
               (bench/send_direct.py): no HTTP, no GraphQL, no authentication.
3. raw       - bench/floor.py's /send under uvicorn: the same SQL transaction with raw
               aiosqlite, one fsync per send.
4. ceiling   - GET /ping on that uvicorn + Starlette: what HTTP and the client can do.
5. batched   - bench/floor.py's /send-batched: the same SQL, concurrent requests
               committed together in one transaction with one fsync.
6. inline    - the transaction with sqlite3 in this process, no hops, no HTTP (context).
7. postgres  - `tally serve --workers 2` on a fresh PostgreSQL database (dropped after),
               with Redis for events between the workers; the load of (1).

A response that is not a success is an error, and any error makes the exit status 1.
The goals (issue 11) are printed as PASS/MISS lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from bench import floor
from bench.client import Job, Phase, launch
from bench.harness import (
    PYTHON,
    ROOT,
    Goal,
    Server,
    Verdict,
    at_least,
    below,
    check_redis,
    command_line,
    create_account,
    fresh_postgres,
    issue_token,
    machine,
    ms,
    mutate,
    not_run,
    out,
    parse,
    run_phases,
    serving,
    table,
    tally_env,
    tally_serve,
    work_folder,
    write_json,
)
from bench.profile import record
from bench.send_direct import seed
from services.runtime import Runtime

TO = "+14155550100"
BODY = "Your table for 4 is ready. Reply STOP to opt out."
SEND = (
    "mutation Send($input: SendMessageInput!) { sendMessage(input: $input) {"
    " message { id status segments credits createdAt }"
    " balance { total subscriptionCredits purchasedCredits }"
    " userErrors { code field message } } }"
)
CREATE_MEMBER = (
    "mutation($input: CreateMemberInput!) { createMember(input: $input)"
    " { member { id personalInbox { id } } userErrors { code message } } }"
)
GOAL_SENDS_PER_SECOND = 1000.0
GOAL_P99_MS = 40.0
GOAL_TIMES_RAW = 2.0
GOAL_POSTGRES_SHARE = 0.6
PHASES = ("tally", "service", "raw", "batched", "inline", "postgres")


class SendBench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.phases: dict[str, Phase] = {}

    def sqlite_url(self, name: str) -> str:
        url = f"sqlite://{self.workdir / name}"
        return f"{url}?synchronous={self.args.synchronous}" if self.args.synchronous else url

    def job(self, server: Server, path: str, body: str, headers: dict[str, str], check: str,
            *, method: str = "POST", duration: float | None = None) -> Job:  # fmt: skip
        return Job(
            port=server.port,
            path=path,
            body=body,
            headers=headers,
            check=check,
            connections=self.args.connections,
            start_at=time.time() + 1.0,  # every process starts together, after its imports
            warmup=self.args.warmup if duration is None else 1.0,
            duration=self.args.duration if duration is None else duration,
            method=method,
        )

    def measure(self, name: str, what: str, server: Server, job: Job) -> Phase:
        phase = Phase(name=name, what=what)
        self.phases[name] = launch(
            phase, job, processes=self.args.processes, server_pids=[server.pid]
        )
        return phase

    # --- Tally over HTTP, on SQLite and on PostgreSQL -----------------------------------

    def tally(self) -> None:
        env = tally_env(self.sqlite_url("tally.db"), **self.unlimited())
        what = "sendMessage over HTTP, tally serve (1 process), SQLite"
        self.over_http("tally", what, env, workers=1, profile=bool(self.args.py_spy))

    def postgres(self) -> None:
        check_redis(self.args.redis)
        with fresh_postgres(self.args.postgres, "send", keep=self.args.keep) as url:
            env = tally_env(url, broadcast_url=self.args.redis, **self.unlimited())
            what = f"sendMessage over HTTP, tally serve --workers {self.args.workers}, PostgreSQL"
            self.over_http("postgres", what, env, workers=self.args.workers, profile=False)

    @staticmethod
    def unlimited() -> dict[str, str]:
        # One token from one address on purpose: the rate limits would measure themselves.
        return {"rate_limit_per_token": "1000000000", "rate_limit_per_ip": "1000000000"}

    def over_http(
        self, name: str, what: str, env: dict[str, str], *, workers: int, profile: bool
    ) -> None:
        created = create_account(env, self.workdir, "--monthly-credits", "10000000")
        command = tally_serve(workers, *self.args.serve_arg)
        with serving(command, env, self.workdir) as server:
            member = mutate(server.url, created["token"], CREATE_MEMBER, {"input": {
                "name": "Sender", "email": "sender@bench.example",
                "personalPhoneNumber": "(415) 555-0142"}})["member"]  # fmt: skip
            token = issue_token(server.url, created["token"], member["id"], "bench")
            variables = {
                "input": {"inboxId": member["personalInbox"]["id"], "to": TO, "body": BODY}
            }
            body = json.dumps({"query": SEND, "variables": variables})
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
            job = self.job(server, "/graphql", body, headers, "graphql-send")
            profiler = None
            if profile:
                output = Path(self.args.py_spy).resolve()
                profiler = record(server.pid, output, job.duration, delay=1.0 + job.warmup)
            self.measure(name, what, server, job)
            if profiler is not None:
                profiler.wait(60)

    # --- the service layer -------------------------------------------------------------

    def service(self) -> None:
        spec = {"database_url": self.sqlite_url("service.db"), "tasks": self.args.tasks,
                "warmup": self.args.warmup, "duration": self.args.duration, "to": TO,
                "body": BODY}  # fmt: skip
        done = subprocess.run(
            [PYTHON, "-m", "bench.send_direct", json.dumps(spec)],
            cwd=ROOT, capture_output=True, timeout=self.args.warmup + self.args.duration + 120,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"the service phase failed:\n{done.stderr.decode()}")
        result = json.loads(done.stdout)
        phase = Phase(name="service", what=f"send_message, {self.args.tasks} tasks, no HTTP")
        phase.merge(result)
        phase.server_cpu = result["window_cpu_cores"]
        phase.seconds = self.args.duration
        self.phases["service"] = phase

    # --- the floors ----------------------------------------------------------------------

    @contextlib.contextmanager
    def floor_server(self, name: str) -> Iterator[Server]:
        """bench/floor.py under uvicorn, on a fresh database seeded through the services."""
        seeded = asyncio.run(seed(self.sqlite_url(name), Runtime()))
        env = {
            **os.environ,
            "BENCH_FLOOR_DB": str(self.workdir / name),
            "BENCH_FLOOR_IDS": f"{seeded.account_id},{seeded.inbox_id},{seeded.member_id}",
        }
        if self.args.synchronous:
            env["BENCH_SQLITE_SYNCHRONOUS"] = self.args.synchronous
        # The uvicorn options `tally serve` uses (api/cli.py), so only the app differs.
        command = [PYTHON, "-m", "uvicorn", "bench.floor:app", "--app-dir", str(ROOT),
                   "--host", "127.0.0.1", "--timeout-graceful-shutdown", "10",
                   *self.args.floor_arg]  # fmt: skip
        with serving(command, env, self.workdir, ready_path="/ping") as server:
            yield server

    def raw(self) -> None:
        body = json.dumps({"to": TO, "body": BODY})
        headers = {"Content-Type": "application/json"}
        with self.floor_server("raw.db") as server:
            what = "the same SQL, raw aiosqlite, one fsync per send (floor)"
            self.measure("raw", what, server, self.job(server, "/send", body, headers, "ok"))
            ping = self.job(server, "/ping", "", {}, "ok", method="GET", duration=5.0)
            self.measure("ceiling", "GET /ping on that uvicorn + Starlette, no database",
                         server, ping)  # fmt: skip

    def batched(self) -> None:
        body = json.dumps({"to": TO, "body": BODY})
        headers = {"Content-Type": "application/json"}
        with self.floor_server("batched.db") as server:
            what = "the same SQL, concurrent sends in one transaction, one fsync (floor)"
            job = self.job(server, "/send-batched", body, headers, "ok")
            self.measure("batched", what, server, job)

    def inline(self) -> None:
        seeded = asyncio.run(seed(self.sqlite_url("inline.db"), Runtime()))
        ids = floor.Ids(seeded.account_id, seeded.inbox_id, seeded.member_id)
        seconds = min(3.0, self.args.duration)
        phase = Phase(name="inline", what="the same SQL, sqlite3 in process, no hops, no HTTP")
        phase.latencies_us = floor.inline(str(self.workdir / "inline.db"), ids, TO, BODY, seconds)
        phase.ok, phase.seconds = len(phase.latencies_us), seconds
        self.phases["inline"] = phase


# --- the report -------------------------------------------------------------------------


def report(phases: dict[str, Phase], args: argparse.Namespace) -> Verdict:
    out()
    out(f"{machine()}; {args.connections} connections from {args.processes} processes,"
        f" {args.warmup:g} s warm-up, {args.duration:g} s measured (ceiling 5 s, inline 3 s);"
        f" SQLite synchronous={args.synchronous or 'FULL'}")  # fmt: skip
    rows = [
        [p.name, f"{p.rate:,.0f}", ms(p.p(0.50)), ms(p.p(0.99)), p.errors,
         ms(p.server_cpu, 2), ms(p.client_cpu, 2), p.what]
        for p in phases.values()
    ]  # fmt: skip
    table(["phase", "per s", "p50 ms", "p99 ms", "errors", "server CPU", "client CPU", "what"],
          rows)  # fmt: skip
    out("server CPU: cores the server (all its processes; service: the bench process) used"
        " while counting; client CPU: cores of the load processes.")  # fmt: skip
    verdict = Verdict()
    for phase in phases.values():
        if phase.errors:
            verdict.fail(f"{phase.name}: {phase.errors} failed requests, e.g. {phase.samples[:2]}")
    tally, raw, pg = phases.get("tally"), phases.get("raw"), phases.get("postgres")
    if "ceiling" in phases and raw is not None and raw.rate:
        out(f"client ceiling: /ping served {phases['ceiling'].rate / raw.rate:.1f}x raw's rate")
    if tally is not None:
        verdict.goals += [
            Goal(f"tally: 0 errors ({tally.errors})", tally.errors == 0),
            at_least("tally: sends/s", tally.rate, GOAL_SENDS_PER_SECOND),
            below("tally: p99", tally.p(0.99), GOAL_P99_MS, " ms"),
        ]
        if raw is not None:
            times = tally.rate / raw.rate if raw.rate else None
            verdict.goals.append(at_least("tally: x the raw floor", times, GOAL_TIMES_RAW))
    if pg is not None:
        verdict.goals.append(Goal(f"postgres: 0 errors ({pg.errors})", pg.errors == 0))
        if tally is not None:
            share = pg.rate / tally.rate if tally.rate else None
            verdict.goals.append(at_least("postgres: share of tally", share, GOAL_POSTGRES_SHARE))
    return verdict


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__, PHASES, ",".join(PHASES))
    add = parser.add_argument
    add("--duration", type=float, default=10.0, help="measured seconds per phase")
    add("--warmup", type=float, default=3.0, help="warm-up seconds per phase")
    add("--connections", type=int, default=16, help="keep-alive connections in all")
    add("--processes", type=int, default=2, help="load processes sharing the connections")
    add("--tasks", type=int, default=16, help="asyncio tasks of the service phase")
    add("--synchronous", choices=["OFF", "NORMAL", "FULL", "EXTRA"],
        help="SQLite synchronous PRAGMA of every phase (default FULL, models/db.py)")  # fmt: skip
    add("--workers", type=int, default=2, help="server processes of the postgres phase")
    add("--serve-arg", action="append", default=[], help="extra `tally serve` argument")
    add("--floor-arg", action="append", default=[], help="extra uvicorn argument (floors)")
    add("--py-spy", metavar="OUTPUT", help="record the tally phase's server (.svg/.json/.txt)")
    args = parse(parser, argv, PHASES)
    with work_folder("send", keep=args.keep) as workdir:
        bench = SendBench(args, workdir)
        skipped = run_phases(args.chosen, lambda name: getattr(bench, name)())
    verdict = report(bench.phases, args)
    verdict.goals += not_run(skipped)
    write_json(args.json, {name: p.summary() for name, p in bench.phases.items()})
    return verdict.exit_status()


if __name__ == "__main__":
    raise SystemExit(main())
