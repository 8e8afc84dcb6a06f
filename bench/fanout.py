"""Live-balance fan-out: 1,000 websocket subscribers of one account, a change every 100 ms.

    .venv/bin/python -m bench.fanout            # or: make bench-fanout

Phases, everything on 127.0.0.1:

1. single   - `tally serve` (one process) on a fresh SQLite file, in-process broker.
2. workers  - `tally serve --workers 4` on a fresh PostgreSQL database (dropped after),
              TALLY_BROADCAST_URL=redis://…
3. soak     - as `single`, for longer (--soak seconds), to show the server's memory over
              time; only when asked (`--phases single,workers,soak`).

In each, an account comes from `tally create-account --json` and a shared inbox from the
createInbox mutation. Client processes (bench/subscribers.py) open the websockets with
the admin's token and subscribe to balanceChanged; once all have their first event, this
process sends one `sendMessage` over HTTP every --interval seconds, with a token of its
own: the sender is another client than the browsers, and sharing theirs would put its
changes behind the per-token rate limit that the 1,000 subscriptions already used most
of. Each subscriber records the delay from each change's commit to its arrival; the
server's RSS (every process) is read every second, its CPU from /proc.

Exits 1 when a change failed, a subscriber saw an error, or a delivery went missing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import (
    PYTHON,
    ROOT,
    Goal,
    Server,
    Verdict,
    below,
    check_redis,
    command_line,
    create_account,
    fresh_postgres,
    issue_token,
    machine,
    migrate,
    ms,
    mutate,
    not_run,
    out,
    parse,
    percentile_ms,
    post_json,
    rss_kb,
    run_phases,
    serving,
    table,
    tally_env,
    tally_serve,
    tree_cpu,
    work_folder,
    write_json,
)
from bench.profile import record

CREATE_INBOX = (
    'mutation { createInbox(input: {name: "Front desk", phoneNumber: "+14155550100"})'
    " { inbox { id } userErrors { code message } } }"
)
SEND = (
    "mutation($input: SendMessageInput!) { sendMessage(input: $input)"
    " { message { id createdAt } userErrors { code } } }"
)
GOAL_P99_MS = 100.0
GOAL_RSS_MB = 150.0
PHASES = ("single", "workers", "soak")


@dataclass
class Result:
    name: str
    what: str
    changes: int = 0
    change_errors: list[str] = field(default_factory=list)
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

    @property
    def missing(self) -> int:
        # Every change is one event with entries for every subscriber.
        return self.changes * self.subscribers - len(self.delays)

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
        return {
            "phase": self.name,
            "changes": self.changes,
            "change_errors": len(self.change_errors),
            "deliveries": len(self.delays),
            "missing": self.missing,
            "re_reads": self.re_reads,
            "client_errors": self.client_errors,
            "p50_ms": percentile_ms(self.delays, 0.50),
            "p90_ms": percentile_ms(self.delays, 0.90),
            "p99_ms": percentile_ms(self.delays, 0.99),
            "max_ms": max(self.delays, default=0) / 1000,
            "rss_start_mb": self.rss[0][1] / 1024 if self.rss else 0.0,
            "rss_peak_mb": max((r for _, r in self.rss), default=0) / 1024,
            "rss_end_mb": self.rss[-1][1] / 1024 if self.rss else 0.0,
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
        self.results: list[Result] = []

    def single(self) -> None:
        result = Result("single", "tally serve, 1 process, SQLite, in-process broker")
        env = tally_env(f"sqlite://{self.workdir / 'single.db'}")
        self.run(result, env, workers=1, duration=self.args.duration)

    def soak(self) -> None:
        result = Result("soak", "as single, for longer: the server's memory over time")
        env = tally_env(f"sqlite://{self.workdir / 'soak.db'}")
        self.run(result, env, workers=1, duration=self.args.soak)

    def workers(self) -> None:
        check_redis(self.args.redis)
        with fresh_postgres(self.args.postgres, "fanout", keep=self.args.keep) as url:
            result = Result("workers", "tally serve --workers 4, PostgreSQL, Redis broker")
            env = tally_env(url, broadcast_url=self.args.redis)
            self.run(result, env, workers=4, duration=self.args.duration)

    def run(self, result: Result, env: dict[str, str], workers: int, duration: float) -> None:
        migrate(env, self.workdir)
        created = create_account(env, self.workdir, "--monthly-credits", "10000000")
        clients: list[subprocess.Popen[str]] = []
        with serving(tally_serve(workers, "--no-migrate"), env, self.workdir) as server:
            try:
                admin = created["token"]
                inbox_id = mutate(server.url, admin, CREATE_INBOX, {})["inbox"]["id"]
                sender = issue_token(server.url, admin, created["memberId"], "sender")
                clients = self.start_clients(server, admin)
                self.measure(result, server, sender, inbox_id, clients, duration)
            finally:
                for client in clients:
                    if client.poll() is None:
                        client.kill()
                        client.wait(10)
        self.results.append(result)
        out(json.dumps(result.summary()))

    def start_clients(self, server: Server, token: str) -> list[subprocess.Popen[str]]:
        per_process, extra = divmod(self.args.subscribers, self.args.processes)
        clients = []
        for n in range(self.args.processes):
            job = {
                "url": f"ws://127.0.0.1:{server.port}/graphql",
                "token": token,
                "connections": per_process + (1 if n < extra else 0),
            }
            clients.append(
                subprocess.Popen(
                    [PYTHON, "-m", "bench.subscribers", json.dumps(job)],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )  # fmt: skip
            )
        for client in clients:
            assert client.stdout is not None
            line = client.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"a subscriber process did not get ready: {line!r}")
        return clients

    def measure(
        self,
        result: Result,
        server: Server,
        token: str,
        inbox_id: str,
        clients: list[subprocess.Popen[str]],
        duration: float,
    ) -> None:
        done = threading.Event()
        started = time.monotonic()
        sampler = threading.Thread(target=self.sample_rss, args=(result, server.pid, started, done))
        sampler.start()
        result.subscribers = self.args.subscribers
        cpu_before, changes_started = tree_cpu(server.pid), time.monotonic()
        profiler = None
        if self.args.py_spy:
            profiler = record(server.pid, Path(self.args.py_spy).resolve(), duration)
        self.make_changes(result, server.url, token, inbox_id, duration)
        elapsed = time.monotonic() - changes_started
        result.server_cpu = (tree_cpu(server.pid) - cpu_before) / elapsed
        if profiler is not None:
            profiler.wait(60)
        time.sleep(2.0)  # the last events reach every subscriber
        done.set()
        sampler.join()
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
                problem = sent.get("errors") or sent["data"]["sendMessage"]["userErrors"]
            except OSError as error:
                problem = repr(error)
            if problem:
                result.change_errors.append(str(problem)[:200])
            else:
                result.changes += 1
            n += 1


def report(results: list[Result]) -> Verdict:
    out()
    out(machine())
    rows = []
    for r in results:
        s = r.summary()
        rows.append([
            s["phase"], f"{s['changes']} (+{s['change_errors']} failed)",
            f"{s['deliveries']:,} ({s['missing']:,})", ms(s["p50_ms"]), ms(s["p90_ms"]),
            ms(s["p99_ms"]), ms(s["max_ms"]), s["re_reads"],
            f"{s['rss_start_mb']:.0f} / {s['rss_peak_mb']:.0f} / {s['rss_end_mb']:.0f}"
            f" ({s['processes']}; {s['largest_process_mb']:.0f})",
            f"{s['rss_slope_kb_per_min']:+.0f}", f"{s['server_cpu_cores']:.2f}",
            f"{s['client_cpu_cores']:.2f}",
        ])  # fmt: skip
    table(["phase", "changes", "deliveries (missing)", "p50 ms", "p90 ms", "p99 ms", "max ms",
           "re-reads", "RSS start/peak/end MB (processes; largest)", "RSS slope KB/min",
           "server CPU", "client CPU"], rows)  # fmt: skip
    verdict = Verdict()
    for r in results:
        s = r.summary()
        # The memory goal is per server process; with workers each process counts alone.
        verdict.goals += [
            below(f"{r.name}: p99 commit to client", s["p99_ms"], GOAL_P99_MS, " ms"),
            below(f"{r.name}: every server process", s["largest_process_mb"], GOAL_RSS_MB, " MB"),
            Goal(f"{r.name}: 0 failed changes ({s['change_errors']})", not r.change_errors),
        ]
        if r.change_errors:
            verdict.fail(f"{r.name}: {len(r.change_errors)} failed changes: {r.change_errors[:2]}")
        if r.client_errors:
            verdict.fail(f"{r.name}: {r.client_errors} subscriber errors: {r.error_samples[:2]}")
        if r.missing:
            verdict.fail(f"{r.name}: {r.missing} deliveries missing")
    return verdict


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__, PHASES, "single,workers")
    add = parser.add_argument
    add("--subscribers", type=int, default=1000)
    add("--processes", type=int, default=4, help="subscriber processes")
    add("--interval", type=float, default=0.1, help="seconds between changes")
    add("--duration", type=float, default=30.0, help="seconds of changes (single, workers)")
    add("--soak", type=float, default=150.0, help="seconds of changes of the soak phase")
    add("--py-spy", help="profile the server into this file (.txt, .svg, .json)")
    args = parse(parser, argv, PHASES)
    with work_folder("fanout", keep=args.keep) as workdir:
        bench = Fanout(args, workdir)
        skipped = run_phases(args.chosen, lambda name: getattr(bench, name)())
    verdict = report(bench.results)
    verdict.goals += not_run(skipped)
    write_json(args.json, [r.summary() for r in bench.results])
    return verdict.exit_status()


if __name__ == "__main__":
    raise SystemExit(main())
