"""Live-balance fan-out: 1,000 websocket subscribers of one account, a change every 100 ms.

    .venv/bin/python bench/fanout.py            # or: make bench-fanout

Phases, everything on 127.0.0.1:

1. single   - `tally serve` (one worker) on a fresh SQLite file.
2. workers  - `tally serve --workers 4` on a fresh PostgreSQL database, with
              TALLY_BROADCAST_URL=redis://… (skipped with --phases single,soak).
3. soak     - as `single`, for longer, to show the server's memory over time.

In each, an account comes from `tally create-account --json` and a shared inbox from
the createInbox mutation. Client processes (bench/_fanout_client.py) open the
websockets, send connection_init and subscribe to balanceChanged; once all of them have
their first event, this process sends one `sendMessage` over HTTP every --interval
seconds. Each subscriber records, per event, the delay from its ledger entry's
createdAt (stamped inside the transaction, just before the commit) to the moment it
handled the message. The server's RSS (VmRSS of the server and its worker processes)
is read every second, its CPU from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from redis.exceptions import RedisError  # noqa: E402

from bench.send import TALLY, cpu_seconds, free_port, post_json, stop, wait_until_up  # noqa: E402

PYTHON = sys.executable
CREATE_INBOX = (
    'mutation { createInbox(input: {name: "Front desk", phoneNumber: "+14155550100"})'
    " { inbox { id } userErrors { code message } } }"
)
SEND = (
    "mutation($input: SendMessageInput!) { sendMessage(input: $input)"
    " { message { id createdAt } userErrors { code } } }"
)
GOAL_P99_MS = 250.0
GOAL_RSS_MB = 300.0


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def descendants(pid: int) -> list[int]:
    """The process and all its children, grandchildren … (uvicorn's workers)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            queue += [int(child) for child in task.read_text().split()]
    return found


def rss_kb(pid: int) -> list[int]:
    """VmRSS of the process and of each of its descendants, in kB."""
    sizes = []
    for process in descendants(pid):
        try:
            status = Path(f"/proc/{process}/status").read_text()
        except FileNotFoundError:
            continue
        sizes.append(int(status.split("VmRSS:")[1].split()[0]))
    return sizes


def tree_cpu(pid: int) -> float:
    total = 0.0
    for process in descendants(pid):
        try:
            total += cpu_seconds(process)
        except FileNotFoundError:
            continue
    return total


def percentile(ordered: list[int], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1000 if ordered else 0.0


@dataclass
class Result:
    name: str
    what: str
    changes: int = 0
    change_errors: int = 0
    delays: list[int] = field(default_factory=list)
    events: int = 0
    re_reads: int = 0
    client_errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds, kB, all processes)
    largest_kb: int = 0  # the largest single process seen
    processes: int = 0
    subscribers: int = 0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    seconds: float = 0.0

    def rss_slope_kb_per_min(self) -> float:
        """Least-squares slope of the RSS over the second half of the run."""
        points = self.rss[len(self.rss) // 2 :]
        if len(points) < 3:
            return 0.0
        mean_t = sum(t for t, _ in points) / len(points)
        mean_r = sum(r for _, r in points) / len(points)
        num = sum((t - mean_t) * (r - mean_r) for t, r in points)
        den = sum((t - mean_t) ** 2 for t, _ in points)
        return 60 * num / den if den else 0.0

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.delays)
        peak = max((r for _, r in self.rss), default=0)
        return {
            "phase": self.name,
            "changes": self.changes,
            "change_errors": self.change_errors,
            "deliveries": len(self.delays),
            # Every change is one event with entries for every subscriber.
            "missing": self.changes * self.subscribers - len(self.delays),
            "re_reads": self.re_reads,
            "client_errors": self.client_errors,
            "p50_ms": percentile(ordered, 0.50),
            "p90_ms": percentile(ordered, 0.90),
            "p99_ms": percentile(ordered, 0.99),
            "max_ms": ordered[-1] / 1000 if ordered else 0.0,
            "rss_start_mb": (self.rss[0][1] / 1024) if self.rss else 0.0,
            "rss_peak_mb": peak / 1024,
            "rss_end_mb": (self.rss[-1][1] / 1024) if self.rss else 0.0,
            "processes": self.processes,
            "largest_process_mb": self.largest_kb / 1024,
            "rss_slope_kb_per_min": self.rss_slope_kb_per_min(),
            "server_cpu_cores": self.server_cpu,
            "client_cpu_cores": self.client_cpu,
        }


class Fanout:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir

    def env(self, database_url: str, broadcast_url: str = "memory://") -> dict[str, str]:
        return {
            **os.environ,
            "TALLY_DATABASE_URL": database_url,
            "TALLY_BROADCAST_URL": broadcast_url,
            "TALLY_SECRET_KEY": "bench-secret",
            "TALLY_WEBHOOK_SECRET": "bench-webhook-secret",
        }

    def run(self, result: Result, env: dict[str, str], workers: int, duration: float) -> Result:
        created = json.loads(
            subprocess.run(
                [TALLY, "create-account", "--name", "Fanout", "--admin-name", "Admin",
                 "--admin-email", "admin@fanout.example", "--monthly-credits", "10000000",
                 "--json"],
                env=env, cwd=self.workdir, check=True, capture_output=True, timeout=120,
            ).stdout
        )  # fmt: skip
        port = free_port()
        log = self.workdir / f"{result.name}.log"
        with log.open("wb") as sink:
            server = subprocess.Popen(
                [TALLY, "serve", "--port", str(port), "--workers", str(workers), "--no-migrate"],
                env=env, cwd=self.workdir, stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        url = f"http://127.0.0.1:{port}/graphql"
        clients: list[subprocess.Popen[str]] = []
        try:
            wait_until_up(url, server, log)
            made = post_json(url, {"query": CREATE_INBOX}, created["token"])
            inbox_id = made["data"]["createInbox"]["inbox"]["id"]
            clients = self.start_clients(port, created["token"])
            self.measure(result, server.pid, url, created["token"], inbox_id, clients, duration)
        finally:
            for client in clients:
                if client.poll() is None:
                    client.kill()
                    client.wait(10)
            stop(server)
        return result

    def start_clients(self, port: int, token: str) -> list[subprocess.Popen[str]]:
        per_process, extra = divmod(self.args.subscribers, self.args.processes)
        clients = []
        for n in range(self.args.processes):
            job = {
                "url": f"ws://127.0.0.1:{port}/graphql",
                "token": token,
                "connections": per_process + (1 if n < extra else 0),
            }
            clients.append(
                subprocess.Popen(
                    [PYTHON, "-m", "bench._fanout_client", json.dumps(job)],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for client in clients:
            assert client.stdout is not None
            line = client.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"a client did not get ready: {line!r}")
        return clients

    def measure(
        self,
        result: Result,
        pid: int,
        url: str,
        token: str,
        inbox_id: str,
        clients: list[subprocess.Popen[str]],
        duration: float,
    ) -> None:
        done = threading.Event()
        started = time.monotonic()
        sampler = threading.Thread(target=self.sample_rss, args=(result, pid, started, done))
        sampler.start()
        result.subscribers = self.args.subscribers
        cpu_before, changes_started = tree_cpu(pid), time.monotonic()
        profiler = self.start_profiler(pid, duration)
        self.make_changes(result, url, token, inbox_id, duration)
        result.server_cpu = (tree_cpu(pid) - cpu_before) / (time.monotonic() - changes_started)
        if profiler is not None:
            profiler.wait(60)
        time.sleep(2.0)  # the last events reach every subscriber
        done.set()
        sampler.join()
        result.seconds = duration
        for client in clients:
            stdout, _ = client.communicate("stop\n", timeout=120)
            report = json.loads(stdout.strip().splitlines()[-1])
            result.delays += report["delays"]
            result.events += report["events"]
            result.re_reads += report["re_reads"]
            result.client_errors += report["error_count"]
            result.error_samples += report["errors"]
            result.client_cpu += report["cpu_seconds"]
        result.client_cpu /= time.monotonic() - started

    def start_profiler(self, pid: int, duration: float) -> subprocess.Popen[bytes] | None:
        """py-spy over the measured window, when --py-spy OUTPUT(.txt|.svg|.json) is given."""
        if not self.args.py_spy:
            return None
        output = Path(self.args.py_spy).resolve()
        form = {".json": "speedscope", ".txt": "raw"}.get(output.suffix, "flamegraph")
        return subprocess.Popen(
            [str(Path(PYTHON).with_name("py-spy")), "record", "--pid", str(pid), "--subprocesses",
             "--rate", "250", "--format", form, "--duration", str(int(duration)),
             "--output", str(output), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def sample_rss(self, result: Result, pid: int, started: float, done: threading.Event) -> None:
        while not done.is_set():
            sizes = rss_kb(pid)
            result.rss.append((time.monotonic() - started, sum(sizes)))
            result.largest_kb = max(result.largest_kb, *sizes)
            result.processes = len(sizes)
            if len(result.rss) % 10 == 1:
                out(f"  {result.rss[-1][0]:6.0f} s  server RSS {result.rss[-1][1] / 1024:7.1f} MB")
            done.wait(1.0)

    def make_changes(
        self, result: Result, url: str, token: str, inbox_id: str, duration: float
    ) -> None:
        """One sendMessage every --interval seconds, on a fixed schedule, for `duration`."""
        start = time.monotonic()
        n = 0
        while (due := start + n * self.args.interval) < start + duration:
            time.sleep(max(0.0, due - time.monotonic()))
            variables = {"input": {"inboxId": inbox_id, "to": "+14155550123", "body": f"#{n}"}}
            try:
                sent = post_json(url, {"query": SEND, "variables": variables}, token)
                ok = not sent.get("errors") and not sent["data"]["sendMessage"]["userErrors"]
            except OSError:
                ok = False
            result.changes += ok
            result.change_errors += not ok
            n += 1

    # --- phases ------------------------------------------------------------------------

    def single(self) -> Result:
        result = Result("single", "tally serve, 1 worker, SQLite, in-process broker")
        env = self.env(f"sqlite://{self.workdir / 'single.db'}")
        self.migrate(env)
        return self.run(result, env, workers=1, duration=self.args.duration)

    def soak(self) -> Result:
        result = Result("soak", "as single, for longer: the server's memory over time")
        env = self.env(f"sqlite://{self.workdir / 'soak.db'}")
        self.migrate(env)
        return self.run(result, env, workers=1, duration=self.args.soak)

    def workers(self) -> Result | None:
        result = Result("workers", "tally serve --workers 4, PostgreSQL, Redis broker")
        name = f"tally_fanout_{uuid.uuid4().hex[:10]}"
        admin = self.args.postgres
        try:
            asyncio.run(self.redis_answers(self.args.redis))
            asyncio.run(self.postgres(admin, f'CREATE DATABASE "{name}"'))
        except (OSError, RedisError) as error:
            out(f"  skipped: PostgreSQL ({admin}) or Redis ({self.args.redis}) is away: {error}")
            return None
        try:
            database = admin.rsplit("/", 1)[0] + "/" + name
            env = self.env(database, self.args.redis)
            self.migrate(env)
            return self.run(result, env, workers=4, duration=self.args.duration)
        finally:
            asyncio.run(self.postgres(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    @staticmethod
    async def redis_answers(url: str) -> None:
        import redis.asyncio as aioredis

        client = aioredis.from_url(url, socket_connect_timeout=2)
        try:
            await client.ping()
        finally:
            await client.aclose()

    @staticmethod
    async def postgres(url: str, sql: str) -> None:
        import asyncpg

        connection = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    def migrate(self, env: dict[str, str]) -> None:
        subprocess.run([TALLY, "migrate"], env=env, cwd=self.workdir, check=True, timeout=120)


def report(results: list[Result]) -> None:
    out()
    out("| phase | changes | deliveries (missing) | p50 ms | p90 ms | p99 ms | max ms | re-reads "
        "| RSS start/peak/end MB (processes; largest) | RSS slope KB/min | server CPU "
        "| client CPU |")  # fmt: skip
    out("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for result in results:
        s = result.summary()
        out(
            f"| {s['phase']} | {s['changes']} (+{s['change_errors']} failed)"
            f" | {s['deliveries']:,} ({s['missing']:,})"
            f" | {s['p50_ms']:.1f} | {s['p90_ms']:.1f} | {s['p99_ms']:.1f} | {s['max_ms']:.1f}"
            f" | {s['re_reads']} | {s['rss_start_mb']:.0f} / {s['rss_peak_mb']:.0f} /"
            f" {s['rss_end_mb']:.0f} ({s['processes']}; {s['largest_process_mb']:.0f})"
            f" | {s['rss_slope_kb_per_min']:+.0f} | {s['server_cpu_cores']:.2f}"
            f" | {s['client_cpu_cores']:.2f} |"
        )
        if result.client_errors:
            out(f"  {result.client_errors} client errors, e.g. {result.error_samples[:2]}")
    out()
    for result in results:
        s = result.summary()
        # The memory goal is for one server process; with workers each process is reported.
        memory = s["largest_process_mb"] < GOAL_RSS_MB
        verdict = "met" if s["p99_ms"] < GOAL_P99_MS and memory else "NOT met"
        out(
            f"goal for {s['phase']} (p99 < {GOAL_P99_MS:.0f} ms, every server process"
            f" < {GOAL_RSS_MB:.0f} MB): {verdict}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phases", default="single,workers,soak")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between changes")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--soak", type=float, default=150.0, help="seconds of the soak phase")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--py-spy", help="profile the server into this file (.txt, .svg, .json)")
    parser.add_argument("--json", help="write the summaries to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tally-fanout-"))
    bench = Fanout(args, workdir)
    results = []
    for phase in args.phases.split(","):
        out(f"== {phase}")
        result = getattr(bench, phase)()
        if result is not None:
            results.append(result)
            out(json.dumps(result.summary()))
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps([r.summary() for r in results], indent=2))
    if not args.keep:
        subprocess.run(["rm", "-rf", str(workdir)], check=False)
    clean = all(r.change_errors == r.client_errors == r.summary()["missing"] == 0 for r in results)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
