"""The benchmarks' verdict: a failed request makes the exit status 1, a missed goal does not.

Real processes, as the benchmarks run them: `tally migrate` makes an empty database, and
bench/floor.py under uvicorn fails every send there (its account does not exist: a 500,
then uvicorn drops the connection); bench/client.py's load processes count each as a
failed request.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

import pytest

from bench import send
from bench.client import Job, Phase, launch
from bench.harness import PYTHON, ROOT, TALLY, Goal, Verdict, serving

ARGS = argparse.Namespace(connections=2, processes=1, warmup=0.2, duration=1.0, synchronous=None)


def floor_without_account(workdir: Path) -> tuple[list[str], dict[str, str]]:
    database = workdir / "empty.db"
    env = {**os.environ, "TALLY_DATABASE_URL": f"sqlite://{database}"}
    subprocess.run([TALLY, "migrate"], env=env, cwd=workdir, check=True, capture_output=True)
    command = [PYTHON, "-m", "uvicorn", "bench.floor:app", "--app-dir", str(ROOT)]
    return command, {**os.environ, "BENCH_FLOOR_DB": str(database), "BENCH_FLOOR_IDS": "1,1,1"}


def test_a_phase_with_failed_requests_makes_the_send_benchmark_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given the floor app on a database where every send fails
    command, env = floor_without_account(tmp_path)
    with serving(command, env, tmp_path, ready_path="/ping") as server:
        # when the load runs against it
        job = Job(
            port=server.port, path="/send", body='{"to": "+14155550100", "body": "hi"}',
            headers={"Content-Type": "application/json"}, check="ok", connections=2,
            start_at=time.time() + 0.5, warmup=ARGS.warmup, duration=ARGS.duration,
        )  # fmt: skip
        phase = launch(Phase(name="raw"), job, processes=1, server_pids=[server.pid])

    # then every answer counted is a failure, and the verdict says so and exits 1
    assert phase.ok == 0
    assert phase.errors > 0
    assert phase.samples
    assert send.report({"raw": phase}, ARGS).exit_status() == 1
    assert f"FAILED: raw: {phase.errors} failed requests" in capsys.readouterr().out


def test_missed_goals_without_failures_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    # given a run that missed a goal but failed no request
    verdict = Verdict(goals=[Goal("sends/s >= 1,000 (320.00)", False)])

    # when it ends, then the goal prints as MISS and the exit status is 0
    assert verdict.exit_status() == 0
    assert "goal  MISS  sends/s >= 1,000 (320.00)" in capsys.readouterr().out
