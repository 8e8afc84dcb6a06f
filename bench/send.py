"""Send throughput: Tally's sendMessage over HTTP against the service layer and the stack's floor.

    .venv/bin/python bench/send.py            # or: make bench-send

One run, each phase on a fresh temporary SQLite database, everything on 127.0.0.1:

1. tally     - `tally serve` (one worker); an account made by `tally create-account`, a
               member with a personal inbox made by the createMember mutation, the member's
               token by createApiToken; then sendMessage over HTTP from P client processes
               x C keep-alive connections (bench/_load.py).
2. service   - services.messaging.send_message from 16 asyncio tasks in one process
               (bench/_direct.py), no HTTP, no GraphQL, no authentication.
3. raw       - bench/raw_send_app.py under uvicorn: the same SQL transaction with raw
               aiosqlite, one connection, an asyncio.Lock, the same PRAGMAs: the floor.
4. ceiling   - the same uvicorn + Starlette process answering GET /ping without the
               database: what the HTTP stack and the load client can do together.
5. inline    - the transaction of (3) with the sqlite3 module, in this process, one loop,
               no thread hops and no HTTP (context only).

Each phase warms up, then counts for a fixed duration; a response that is not a success
is an error. The table at the end compares them, and the goal lines check Tally against
the targets of the issue (>= 1,000 sends/s, p99 < 40 ms, >= 0.7 of the raw endpoint).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PYTHON = sys.executable
TALLY = str(Path(PYTHON).with_name("tally"))
TO = "+14155550100"
BODY = "Your table for 4 is ready. Reply STOP to opt out."
SEND_DOCUMENT = (
    "mutation Send($input: SendMessageInput!) { sendMessage(input: $input) {"
    " message { id status segments credits createdAt }"
    " balance { total subscriptionCredits purchasedCredits }"
    " userErrors { code field message } } }"
)
GOAL_SENDS_PER_SECOND = 1000.0
GOAL_P99_MS = 40.0
GOAL_FRACTION_OF_RAW = 0.7


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass
class Phase:
    name: str
    what: str
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_us: list[int] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    client_cpu: float | None = None  # cores used by the load client(s) over the whole phase
    server_cpu: float | None = None  # cores used by the server during the measured window

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile_ms(self, fraction: float) -> float | None:
        if not self.latencies_us:
            return None
        ordered = sorted(self.latencies_us)
        index = min(len(ordered) - 1, int(fraction * len(ordered)))
        return ordered[index] / 1000

    def merge(self, result: dict[str, Any]) -> None:
        self.ok += result["ok"]
        self.errors += result["errors"]
        self.latencies_us += result["latencies"]
        self.samples += result["samples"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post_json(url: str, payload: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(payload).encode(), headers)
    with urllib.request.urlopen(request, timeout=30) as response:  # loopback only
        data: dict[str, Any] = json.loads(response.read())
        return data


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not start within 30 s:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        if args.synchronous:
            os.environ["BENCH_SQLITE_SYNCHRONOUS"] = args.synchronous

    def database_url(self, name: str) -> str:
        """A fresh SQLite file in the work folder, with --synchronous when given."""
        url = f"sqlite://{self.workdir / name}"
        return f"{url}?synchronous={self.args.synchronous}" if self.args.synchronous else url

    # --- the load client -----------------------------------------------------------------

    def drive(
        self,
        phase: Phase,
        *,
        port: int,
        path: str,
        body: str,
        headers: dict[str, str],
        check: str,
        server_pid: int,
        method: str = "POST",
        warmup: float | None = None,
        duration: float | None = None,
    ) -> Phase:
        """Run the client processes against 127.0.0.1:port and merge what they saw."""
        warmup = self.args.warmup if warmup is None else warmup
        duration = self.args.duration if duration is None else duration
        start_at = time.time() + 1.0  # every client starts together, after its imports
        job = {
            "host": "127.0.0.1",
            "port": port,
            "path": path,
            "method": method,
            "headers": headers,
            "body": body,
            "connections": self.args.connections,
            "start_at": start_at,
            "warmup": warmup,
            "duration": duration,
            "check": check,
        }
        clients = [
            subprocess.Popen(
                [PYTHON, "-m", "bench._load", json.dumps(job)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for _ in range(self.args.processes)
        ]
        # The server's CPU over the measured window only.
        time.sleep(max(0.0, start_at + warmup - time.time()))
        server_before = cpu_seconds(server_pid)
        time.sleep(max(0.0, start_at + warmup + duration - time.time()))
        server_after = cpu_seconds(server_pid)
        phase.server_cpu = (server_after - server_before) / duration
        client_cpu = 0.0
        for client in clients:
            stdout, stderr = client.communicate(timeout=warmup + duration + 60)
            if client.returncode != 0:
                raise RuntimeError(f"load client failed:\n{stderr.decode()}")
            result = json.loads(stdout)
            phase.merge(result)
            client_cpu += result["cpu_seconds"]
        phase.seconds = duration
        phase.client_cpu = client_cpu / (warmup + duration)
        return phase

    # --- 1. Tally over HTTP ----------------------------------------------------------------

    def tally(self) -> Phase:
        phase = Phase("tally", "Tally sendMessage, GraphQL over HTTP (tally serve, 1 worker)")
        env = {
            **os.environ,
            "TALLY_DATABASE_URL": self.database_url("tally.db"),
            "TALLY_SECRET_KEY": "bench-secret",
            "TALLY_WEBHOOK_SECRET": "bench-webhook-secret",
            # One token from one IP on purpose: the rate limits would measure themselves.
            "TALLY_RATE_LIMIT_PER_TOKEN": "1000000000",
            "TALLY_RATE_LIMIT_PER_IP": "1000000000",
        }
        created = json.loads(
            subprocess.run(
                [TALLY, "create-account", "--name", "Bench", "--admin-name", "Admin",
                 "--admin-email", "admin@bench.example", "--monthly-credits", "10000000",
                 "--json"],
                env=env, cwd=self.workdir, check=True, capture_output=True, timeout=60,
            ).stdout
        )  # fmt: skip
        port = free_port()
        log = self.workdir / "tally-serve.log"
        with log.open("wb") as sink:
            server = subprocess.Popen(
                [TALLY, "serve", "--port", str(port), *self.args.serve_arg],
                env=env,
                cwd=self.workdir,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}/graphql"
        try:
            wait_until_up(url, server, log)
            made = post_json(
                url,
                {
                    "query": "mutation($input: CreateMemberInput!) { createMember(input: $input)"
                    " { member { id personalInbox { id } } userErrors { code message } } }",
                    "variables": {
                        "input": {
                            "name": "Sender",
                            "email": "sender@bench.example",
                            "personalPhoneNumber": "(415) 555-0142",
                        }
                    },
                },
                created["token"],
            )["data"]["createMember"]
            if made["userErrors"]:
                raise RuntimeError(f"createMember failed: {made['userErrors']}")
            issued = post_json(
                url,
                {
                    "query": "mutation($input: CreateApiTokenInput!) { createApiToken("
                    "input: $input) { token userErrors { code message } } }",
                    "variables": {"input": {"memberId": made["member"]["id"], "name": "bench"}},
                },
                created["token"],
            )["data"]["createApiToken"]
            if issued["userErrors"]:
                raise RuntimeError(f"createApiToken failed: {issued['userErrors']}")
            body = json.dumps(
                {
                    "query": SEND_DOCUMENT,
                    "variables": {
                        "input": {
                            "inboxId": made["member"]["personalInbox"]["id"],
                            "to": TO,
                            "body": BODY,
                        }
                    },
                }
            )
            headers = {
                "Content-Type": "application/json",
                "Authorization": f"Bearer {issued['token']}",
            }
            profiler = self.start_profiler(server.pid)
            self.drive(
                phase,
                port=port,
                path="/graphql",
                body=body,
                headers=headers,
                check="graphql-send",
                server_pid=server.pid,
            )
            if profiler is not None:
                profiler.wait(self.args.warmup + self.args.duration + 60)
        finally:
            stop(server)
        return phase

    def start_profiler(self, pid: int) -> subprocess.Popen[bytes] | None:
        """py-spy over the measured window, when --py-spy OUTPUT is given."""
        if not self.args.py_spy:
            return None
        py_spy = shutil.which("py-spy") or str(Path(PYTHON).with_name("py-spy"))
        output = Path(self.args.py_spy).resolve()
        form = "speedscope" if output.suffix == ".json" else "flamegraph"
        if output.suffix == ".txt":
            form = "raw"
        # Starts recording about when the clients' warm-up ends (1 s start + warm-up).
        delay = 1.0 + self.args.warmup
        command = (
            f"sleep {delay}; exec {py_spy} record --pid {pid} --rate 250 --format {form}"
            f" --duration {int(self.args.duration)} --output {output} --nonblocking"
        )
        return subprocess.Popen(["sh", "-c", command], stdout=subprocess.DEVNULL)

    # --- 2. the service layer --------------------------------------------------------------

    def service(self) -> Phase:
        phase = Phase("service", "services.messaging.send_message, 16 asyncio tasks, no HTTP")
        job = {
            "database_url": self.database_url("service.db"),
            "tasks": self.args.tasks,
            "warmup": self.args.warmup,
            "duration": self.args.duration,
            "to": TO,
            "body": BODY,
        }
        done = subprocess.run(
            [PYTHON, "-m", "bench._direct"],
            cwd=ROOT,
            input=json.dumps(job).encode(),
            capture_output=True,
            timeout=self.args.warmup + self.args.duration + 120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"service phase failed:\n{done.stderr.decode()}")
        result = json.loads(done.stdout)
        phase.merge(result)
        phase.server_cpu = result["window_cpu_cores"]
        phase.seconds = self.args.duration
        return phase

    # --- 3. and 4. the floor, and the client's ceiling -------------------------------------

    def raw(self) -> tuple[Phase, Phase]:
        from bench._seed import seed

        raw = Phase("raw", "same SQL tx, raw aiosqlite in a plain Starlette endpoint (floor)")
        ceiling = Phase("ceiling", "GET /ping on that uvicorn + Starlette, no database")
        database = self.workdir / "raw.db"
        seeded = asyncio.run(seed(self.database_url("raw.db")))
        with sqlite3.connect(database) as probe:
            from bench.raw_send_app import usage_tables

            statements = 4 + len(usage_tables(probe))
        probe.close()
        raw.what += f"; {statements} statements + BEGIN/COMMIT"
        port = free_port()
        env = {
            **os.environ,
            "BENCH_RAW_DB": str(database),
            "BENCH_RAW_ACCOUNT": str(seeded.account_id),
            "BENCH_RAW_INBOX": str(seeded.inbox_id),
            "BENCH_RAW_SENDER": str(seeded.member_id),
        }
        log = self.workdir / "raw-serve.log"
        with log.open("wb") as sink:
            # The uvicorn options `tally serve` uses (api/cli.py), so only the app differs.
            server = subprocess.Popen(
                [PYTHON, "-m", "uvicorn", "bench.raw_send_app:app", "--host", "127.0.0.1",
                 "--port", str(port), "--timeout-graceful-shutdown", "10", *self.args.raw_arg],
                env=env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_until_up(f"http://127.0.0.1:{port}/ping", server, log)
            self.drive(
                raw,
                port=port,
                path="/send",
                body=json.dumps({"to": TO, "body": BODY}),
                headers={"Content-Type": "application/json"},
                check="ok",
                server_pid=server.pid,
            )
            self.drive(
                ceiling,
                port=port,
                path="/ping",
                method="GET",
                body="",
                headers={},
                check="ok",
                server_pid=server.pid,
                warmup=1.0,
                duration=min(5.0, self.args.duration),
            )
        finally:
            stop(server)
        return raw, ceiling

    # --- 5. the same SQL inline --------------------------------------------------------------

    def inline(self) -> Phase:
        from bench import raw_send_app as floor

        phase = Phase("inline", "same SQL tx, sqlite3 in-process, 1 loop, no hops, no HTTP")
        database = self.workdir / "raw.db"
        if not database.exists():
            from bench._seed import seed

            asyncio.run(seed(self.database_url("raw.db")))
        db = sqlite3.connect(database, isolation_level=None)
        for name, value in floor.PRAGMAS.items():
            db.execute(f"PRAGMA {name}={value}")
        usage = floor.usage_tables(db)
        account_id, inbox_id, sender_id = db.execute(
            "SELECT account_id, id, owner_id FROM inbox WHERE owner_id IS NOT NULL LIMIT 1"
        ).fetchone()
        duration = min(3.0, self.args.duration)
        begin = time.perf_counter() + 0.5
        end = begin + duration
        while (now := time.perf_counter()) < end:
            stamp = datetime.now(UTC).isoformat(" ")
            db.execute("BEGIN IMMEDIATE")
            account = dict(
                zip(
                    floor.ACCOUNT_COLUMNS,
                    db.execute(floor.SELECT_ACCOUNT, (account_id, 2)).fetchall()[0],
                    strict=True,
                )
            )
            subscription = account["subscription_credits"] - 1
            purchased = account["purchased_credits"]
            message_id = db.execute(
                floor.INSERT_MESSAGE,
                ("OUTBOUND", floor.FROM_NUMBER, TO, BODY, "GSM7", 1, 1, "QUEUED", None, stamp,
                 None, account_id, inbox_id, sender_id),
            ).lastrowid  # fmt: skip
            db.execute(
                floor.INSERT_LEDGER_ENTRY,
                ("OUTBOUND_MESSAGE", "SUBSCRIPTION", -1, subscription + purchased, None,
                 account["period_index"], stamp, account_id, message_id),
            )  # fmt: skip
            for table in usage:
                day = stamp[:10] if table == "usage_day" else stamp[:8] + "01"
                db.execute(floor.UPSERT_USAGE[table], (account_id, inbox_id, day, 1, 0, 1, 0))
            db.execute(
                floor.UPDATE_ACCOUNT,
                (subscription, purchased, account["period_index"], account["next_period_at"],
                 account["balance_version"] + 1, account_id),
            )  # fmt: skip
            db.execute("COMMIT")
            if now >= begin:
                phase.ok += 1
                phase.latencies_us.append(int((time.perf_counter() - now) * 1e6))
        db.close()
        phase.seconds = duration
        return phase


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def fmt_cores(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def report(phases: dict[str, Phase], args: argparse.Namespace) -> bool:
    out()
    out(
        f"Results: {args.processes} client processes x {args.connections} connections, "
        f"{args.warmup:g} s warm-up, {args.duration:g} s measured "
        f"(ceiling 5 s, inline 3 s); fresh SQLite databases, "
        f"synchronous={args.synchronous or 'FULL (default)'}"
    )
    header = (
        f"{'phase':<9} {'sends/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
        f"{'srv CPU':>8} {'cli CPU':>8}  what"
    )
    out(header)
    out("-" * len(header))
    for phase in phases.values():
        out(
            f"{phase.name:<9} {phase.rate:>9,.0f} {fmt_ms(phase.percentile_ms(0.50)):>8} "
            f"{fmt_ms(phase.percentile_ms(0.99)):>8} {phase.errors:>7} "
            f"{fmt_cores(phase.server_cpu):>8} {fmt_cores(phase.client_cpu):>8}  {phase.what}"
        )
        for sample in phase.samples[:3]:
            out(f"{'':<9} error sample: {sample}")
    out("srv CPU: cores the server process (service: the bench process) used while counting;")
    out("cli CPU: cores all load-client processes used over warm-up and measurement.")
    passed = all(phase.errors == 0 for phase in phases.values())
    tally = phases.get("tally")
    if tally is None:
        return passed
    out()
    for name in ("service", "raw"):
        if name in phases and phases[name].rate:
            out(f"Tally over HTTP = {tally.rate / phases[name].rate:.2f} of {name}")
    p99 = tally.percentile_ms(0.99)
    checks = [
        (f"errors == 0 ({tally.errors})", tally.errors == 0),
        (
            f"sends/s >= {GOAL_SENDS_PER_SECOND:,.0f} ({tally.rate:,.0f})",
            tally.rate >= GOAL_SENDS_PER_SECOND,
        ),
        (f"p99 < {GOAL_P99_MS:.0f} ms ({fmt_ms(p99)})", p99 is not None and p99 < GOAL_P99_MS),
    ]
    if "raw" in phases and phases["raw"].rate:
        fraction = tally.rate / phases["raw"].rate
        checks.append(
            (f"fraction of raw >= {GOAL_FRACTION_OF_RAW} ({fraction:.2f})",
             fraction >= GOAL_FRACTION_OF_RAW)
        )  # fmt: skip
    for label, ok in checks:
        out(f"goal  {'PASS' if ok else 'MISS'}  {label}")
    if "ceiling" in phases and "raw" in phases:
        headroom = phases["ceiling"].rate / max(phases["raw"].rate, 1)
        out(f"client ceiling: /ping served {headroom:.1f}x the raw endpoint's rate")
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per phase")
    parser.add_argument("--processes", type=int, default=2, help="load client processes")
    parser.add_argument("--connections", type=int, default=8, help="connections per process")
    parser.add_argument("--tasks", type=int, default=16, help="tasks of the service phase")
    parser.add_argument(
        "--phases",
        default="tally,service,raw,inline",
        help="comma-separated subset of tally,service,raw,inline (raw includes the ceiling)",
    )
    parser.add_argument(
        "--synchronous",
        choices=["OFF", "NORMAL", "FULL", "EXTRA"],
        help="SQLite synchronous PRAGMA for every phase (default: models/db.py's, FULL)",
    )
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="extra `tally serve` argument"
    )
    parser.add_argument(
        "--raw-arg", action="append", default=[], help="extra uvicorn argument for the raw app"
    )
    parser.add_argument(
        "--py-spy", metavar="OUTPUT", help="record the tally server with py-spy (.svg/.json/.txt)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    wanted = [p.strip() for p in args.phases.split(",") if p.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="tally-bench-"))
    bench = Bench(args, workdir)
    phases: dict[str, Phase] = {}
    started = time.monotonic()
    try:
        for name in wanted:
            out(f"[{time.monotonic() - started:5.1f} s] phase {name} ...")
            if name == "tally":
                phases["tally"] = bench.tally()
            elif name == "service":
                phases["service"] = bench.service()
            elif name == "raw":
                phases["raw"], phases["ceiling"] = bench.raw()
            elif name == "inline":
                phases["inline"] = bench.inline()
            else:
                parser.error(f"unknown phase {name!r}")
    finally:
        if args.keep:
            out(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    passed = report(phases, args)
    out(f"total {time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    name: {
                        "sends_per_second": p.rate,
                        "p50_ms": p.percentile_ms(0.5),
                        "p99_ms": p.percentile_ms(0.99),
                        "errors": p.errors,
                        "server_cpu_cores": p.server_cpu,
                        "client_cpu_cores": p.client_cpu,
                    }
                    for name, p in phases.items()
                },
                indent=2,
            )
        )
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
