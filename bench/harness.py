"""What every benchmark shares: servers, processes, measurement, and how results are told.

Run the benchmarks as modules from the repository root (`python -m bench.send`); each
starts real processes (`tally serve`, load clients, a floor app) on 127.0.0.1 and
reads their CPU and memory from /proc. Results are told three ways: a markdown table
(to paste into docs/benchmarks.md), one `goal  PASS|MISS  ...` line per goal, and
`FAILED: ...` lines, which make the benchmark exit with status 1. A missed goal is a
measurement; a failed request is not, so only failures change the exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TALLY = str(Path(PYTHON).with_name("tally"))
POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# --- processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """The process and all its children, grandchildren … (uvicorn's workers)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(FileNotFoundError):
                queue += [int(child) for child in task.read_text().split()]
    return found


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its descendants (those still running)."""
    total = 0.0
    for process in descendants(pid):
        with contextlib.suppress(FileNotFoundError):
            total += cpu_seconds(process)
    return total


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


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
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
    raise RuntimeError(f"server did not start within 60 s:\n{log.read_text()}")


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@dataclass(frozen=True, slots=True)
class Server:
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"


@contextlib.contextmanager
def serving(
    command: Sequence[str], env: dict[str, str], workdir: Path, *, ready_path: str = "/healthz"
) -> Iterator[Server]:
    """`command` (given `--port` last) on a free port while the block runs; SIGTERM after.

    Its output goes to a log in `workdir`, shown when it fails to start.
    """
    port = free_port()
    log = workdir / f"serve-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env, cwd=workdir, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until_up(f"http://127.0.0.1:{port}{ready_path}", process, log)
        yield Server(port, process.pid)
    finally:
        stop(process)


def tally_serve(workers: int = 1, *extra: str) -> list[str]:
    return [TALLY, "serve", "--workers", str(workers), *extra]


# --- Tally: environment, accounts, requests --------------------------------------------


def tally_env(database_url: str, **settings: str) -> dict[str, str]:
    """The environment of a `tally` process of a benchmark: `settings` are TALLY_* names."""
    return {
        **os.environ,
        "TALLY_DATABASE_URL": database_url,
        "TALLY_SECRET_KEY": "bench-secret",
        "TALLY_WEBHOOK_SECRET": "bench-webhook-secret",
        # Every run has Redis keys of its own: no other run or test hears its events.
        "TALLY_REDIS_NAMESPACE": f"bench-{uuid.uuid4().hex[:10]}",
        **{f"TALLY_{name.upper()}": value for name, value in settings.items()},
    }


def create_account(env: dict[str, str], workdir: Path, *options: str) -> dict[str, str]:
    """`tally create-account --json`: accountId, memberId (the admin) and token."""
    done = subprocess.run(
        [TALLY, "create-account", "--name", "Bench", "--admin-name", "Admin",
         "--admin-email", "admin@bench.example", *options, "--json"],
        env=env, cwd=workdir, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    created: dict[str, str] = json.loads(done.stdout)
    return created


def migrate(env: dict[str, str], workdir: Path) -> None:
    subprocess.run([TALLY, "migrate"], env=env, cwd=workdir, check=True, timeout=120)


def post_json(url: str, payload: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(payload).encode(), headers)
    with urllib.request.urlopen(request, timeout=30) as response:  # loopback only
        data: dict[str, Any] = json.loads(response.read())
        return data


def mutate(url: str, token: str, document: str, variables: dict[str, Any]) -> dict[str, Any]:
    """A mutation's payload; RuntimeError on errors or userErrors (set-up must not fail)."""
    answer = post_json(url, {"query": document, "variables": variables}, token)
    if answer.get("errors"):
        raise RuntimeError(f"set-up failed: {answer['errors']}")
    payload: dict[str, Any] = next(iter(answer["data"].values()))
    if payload.get("userErrors"):
        raise RuntimeError(f"set-up failed: {payload['userErrors']}")
    return payload


CREATE_TOKEN = (
    "mutation($input: CreateApiTokenInput!) { createApiToken(input: $input)"
    " { token userErrors { code message } } }"
)


def issue_token(url: str, admin_token: str, member_id: str, name: str) -> str:
    payload = mutate(
        url, admin_token, CREATE_TOKEN, {"input": {"memberId": member_id, "name": name}}
    )
    return str(payload["token"])


# --- PostgreSQL and Redis --------------------------------------------------------------


class Unavailable(Exception):
    """PostgreSQL or Redis does not answer: the phase that needs it is not run."""


async def _postgres(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1), timeout=5)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.contextmanager
def fresh_postgres(admin_url: str, label: str, *, keep: bool = False) -> Iterator[str]:
    """A new PostgreSQL database for the run (as tests/conftest.py makes), dropped after."""
    name = f"tally_bench_{label}_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_postgres(admin_url, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as error:
        raise Unavailable(f"PostgreSQL at {admin_url}: {error}") from error
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    finally:
        if not keep:
            asyncio.run(_postgres(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def check_redis(url: str) -> None:
    async def ping() -> None:
        client = aioredis.from_url(url, socket_connect_timeout=2)
        try:
            await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except (OSError, RedisError) as error:
        raise Unavailable(f"Redis at {url}: {error}") from error


# --- numbers and verdicts ----------------------------------------------------------------


def percentile_ms(values_us: Sequence[int], fraction: float) -> float | None:
    """The `fraction` percentile (nearest rank) of microsecond values, in ms."""
    if not values_us:
        return None
    ordered = sorted(values_us)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1000


def ms(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


@dataclass(frozen=True, slots=True)
class Goal:
    label: str
    passed: bool

    def line(self) -> str:
        return f"goal  {'PASS' if self.passed else 'MISS'}  {self.label}"


def below(label: str, value: float | None, limit: float, unit: str = "") -> Goal:
    shown = "not measured" if value is None else f"{value:,.1f}{unit}"
    return Goal(f"{label} < {limit:,g}{unit} ({shown})", value is not None and value < limit)


def at_least(label: str, value: float | None, floor: float, unit: str = "") -> Goal:
    shown = "not measured" if value is None else f"{value:,.2f}{unit}"
    return Goal(f"{label} >= {floor:,g}{unit} ({shown})", value is not None and value >= floor)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A markdown table, as docs/benchmarks.md records results."""
    out("| " + " | ".join(header) + " |")
    out("|" + "---|" * len(header))
    for row in rows:
        out("| " + " | ".join(str(cell) for cell in row) + " |")


@dataclass
class Verdict:
    """The goals and failures of a run; `exit_status` is 1 when anything failed."""

    goals: list[Goal] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def fail(self, what: str) -> None:
        self.failures.append(what)

    def exit_status(self) -> int:
        out()
        for goal in self.goals:
            out(goal.line())
        for failure in self.failures:
            out(f"FAILED: {failure}")
        if self.failures:
            out("exit status 1: a run with failed requests is not a measurement")
        return 1 if self.failures else 0


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"{os.cpu_count()} cores ({model}), load average {load}"


def write_json(path: str | None, data: object) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2, default=str))


# --- a benchmark's command line and phases -----------------------------------------------


def command_line(doc: str | None, phases: Sequence[str], default: str) -> argparse.ArgumentParser:
    """A benchmark's parser, with the options every benchmark has."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    add = parser.add_argument
    add("--phases", default=default, help=f"a comma-separated subset of {', '.join(phases)}")
    add("--postgres", default=POSTGRES_URL, help="a database to connect to; the run creates"
        " its own database beside it and drops it afterwards")  # fmt: skip
    add("--redis", default=REDIS_URL, help="Redis for events between server processes")
    add("--json", metavar="FILE", help="also write the results as JSON")
    add("--keep", action="store_true", help="keep the work folder and PostgreSQL database")
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None, phases: Sequence[str]) -> Any:
    """The arguments, with `chosen`: the phases asked for, in order."""
    args = parser.parse_args(argv)
    args.chosen = [p.strip() for p in args.phases.split(",") if p.strip()]
    if unknown := set(args.chosen) - set(phases):
        parser.error(f"unknown phases {sorted(unknown)}")
    return args


@contextlib.contextmanager
def work_folder(name: str, *, keep: bool) -> Iterator[Path]:
    """A temporary folder for the run's databases and server logs; removed unless kept."""
    folder = Path(tempfile.mkdtemp(prefix=f"tally-bench-{name}-"))
    try:
        yield folder
    finally:
        if keep:
            out(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def run_phases(chosen: Sequence[str], run: Callable[[str], object]) -> dict[str, str]:
    """Run each phase; those whose server is away are skipped: {phase: why}."""
    started = time.monotonic()
    skipped = {}
    for name in chosen:
        out(f"[{time.monotonic() - started:5.1f} s] phase {name} ...")
        try:
            run(name)
        except Unavailable as away:
            out(f"  not run: {away}")
            skipped[name] = str(away)
    out(f"[{time.monotonic() - started:5.1f} s] done")
    return skipped


def not_run(skipped: dict[str, str]) -> list[Goal]:
    """A phase that did not run measured nothing: its goals are missed."""
    return [Goal(f"{name}: not run ({why})", False) for name, why in skipped.items()]
