"""The load test (`python -m bench.load`) as a test: the same harness against a real `tally serve`.

Shorter than the bench (TALLY_TEST_LOAD_SECONDS, 10 s by default), with 5 agents and a
token limit of 100 requests a minute so that the runaway token passes it within the run,
and with the rare paths made common (every send keyed, half of them re-sent, half of the
inbound webhooks repeated, half of the delivery reports failures). It asserts what the
bench checks, never how fast: no error but the runaway token's 429s, and a ledger, a
database and subscribers that agree with every answer. On the PostgreSQL pass with
Redis (as .ci/run runs it) events go through Redis; one worker keeps the start short
(the bench runs 2, and test_subscriptions_multiprocess.py covers several processes).
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.load_plan import Profile
from bench.load_scenario import Scenario, run_scenario

LOAD_SECONDS = float(os.environ.get("TALLY_TEST_LOAD_SECONDS", "10"))
REDIS_URL = os.environ.get("TALLY_TEST_REDIS_URL", "")
EVERY_KIND = {
    "send", "send-retry", "segment-info", "messages", "usage", "billing", "buy", "runaway",
    "inbound", "inbound-again", "status",
}  # fmt: skip
RARE_PATHS_COMMON = Profile(
    multiplier=5.0,
    agents=5,
    keyed_sends=1.0,
    resent_keyed=0.5,
    redelivered_inbound=0.5,
    failed_reports=0.5,
)


def scenario(database_url: str, workdir: Path) -> Scenario:
    fan_out = database_url.startswith("postgres") and bool(REDIS_URL)
    return Scenario(
        name="test",
        database_url=database_url,
        workdir=workdir,
        profile=RARE_PATHS_COMMON,
        duration=LOAD_SECONDS,
        broadcast_url=REDIS_URL if fan_out else "memory://",
        rate_limit=100,
    )


def test_mixed_load_loses_no_ledger_entry_and_limits_only_the_runaway_token(
    server_database_url: str, tmp_path: Path
) -> None:
    # given an account of 5 agents and an admin, every browser subscribed
    # when its SPA traffic runs at 5x the expected rate, beside a runaway script
    report = run_scenario(scenario(server_database_url, tmp_path))

    # then nothing failed but the runaway token, which was limited
    assert report.failures() == []
    assert report.outcome.tally.limited > 0
    assert EVERY_KIND <= set(report.outcome.tally.latencies_us)
    # and the checks had something to check: each kind of ledger change was made
    acks = report.outcome.acks
    assert acks.sent
    assert acks.received
    assert acks.bought
    assert acks.refunded
    assert report.outcome.settled
