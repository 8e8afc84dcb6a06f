"""The load test's workload: one team-texting account's SPA at its expected rate, times N.

The expected rate (multiplier 1) is a busy hour of one account: `agents` members, each
sending a message every `send_every` seconds, asking segmentInfo a few times while typing
each one, and reloading the messages page as often as they send; the customers answering
each message once (inbound, through the carrier webhook, which also reports every
delivery); one admin refreshing the usage and billing screens every half minute and
buying credits every couple of minutes; every browser subscribed to balanceChanged.

The schedule is open-loop: every request has a due time fixed in advance, whatever the
server's speed, so a slow server shows as latency instead of as fewer requests.
Inter-arrival times are `interval` x uniform(0.5, 1.5) from a seeded generator, and
the first of each stream comes within the first half of the run, so even a short run
has every kind of request.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

WINDOW_SECONDS = 60  # the rate limiter's fixed window (api/ratelimit.py)
ADMIN = "admin"
CARRIER = "carrier"
RUNAWAY = "runaway"


@dataclass(frozen=True, slots=True)
class Profile:
    """The expected rate of one account (multiplier 1) and how many times it is run."""

    multiplier: float = 5.0
    agents: int = 25
    send_every: float = 15.0  # seconds between one agent's sends
    typing_checks_per_send: int = 3  # segmentInfo calls while a message is typed
    list_every: float = 15.0  # seconds between one agent's messages-page loads
    replies_per_send: float = 1.0  # inbound messages per outbound one
    usage_every: float = 30.0  # the admin's usage screen
    billing_every: float = 30.0  # the admin's billing screen: overview and a ledger page
    buy_every: float = 120.0  # the admin's buyCredits
    keyed_sends: float = 0.5  # share of sends that carry an idempotency key
    resent_keyed: float = 0.2  # share of keyed sends sent again, as after a lost answer
    redelivered_inbound: float = 0.05  # share of inbound webhooks the carrier repeats
    failed_reports: float = 0.05  # share of delivery reports that are failures (refunds)

    def rates(self) -> dict[str, float]:
        """Scheduled requests a second by kind, at this multiplier (follow-ups excluded)."""
        m = self.multiplier
        return {
            "send": m * self.agents / self.send_every,
            "segment-info": m * self.agents * self.typing_checks_per_send / self.send_every,
            "messages": m * self.agents / self.list_every,
            "inbound": m * self.agents * self.replies_per_send / self.send_every,
            "usage": m / self.usage_every,
            "billing": m / self.billing_every,
            "buy": m / self.buy_every,
        }


@dataclass(frozen=True, slots=True)
class Op:
    due: float  # seconds after the start
    actor: str  # "agent-3", ADMIN, CARRIER or RUNAWAY: whose token and address
    kind: str


def agent(n: int) -> str:
    return f"agent-{n}"


def runaway_rate(rate_limit: int, duration: float) -> float:
    """Requests a second that take the runaway token past its limit in any run.

    Windows are fixed minutes, so a run of d <= 60 s spends at least d/2 in one of them;
    3 x limit / d sends 1.5 x the limit there.
    """
    return 3 * rate_limit / min(duration, WINDOW_SECONDS)


def schedule(profile: Profile, duration: float, *, runaway: float, seed: int) -> list[Op]:
    """Every request of the run, by due time; `runaway` requests a second for RUNAWAY."""
    rng = random.Random(seed)
    m = profile.multiplier
    ops: list[Op] = []

    def stream(actor: str, kind: str, interval: float) -> None:
        due = rng.uniform(0, min(interval, duration / 2))
        while due < duration:
            ops.append(Op(due, actor, kind))
            due += interval * rng.uniform(0.5, 1.5)

    for n in range(profile.agents):
        stream(agent(n), "send", profile.send_every / m)
        typing = profile.send_every / profile.typing_checks_per_send
        stream(agent(n), "segment-info", typing / m)
        stream(agent(n), "messages", profile.list_every / m)
    replies = profile.agents * profile.replies_per_send
    stream(CARRIER, "inbound", profile.send_every / replies / m)
    stream(ADMIN, "usage", profile.usage_every / m)
    stream(ADMIN, "billing", profile.billing_every / m)
    stream(ADMIN, "buy", profile.buy_every / m)
    step = 1 / runaway
    ops += [Op(n * step, RUNAWAY, "runaway") for n in range(int(duration * runaway))]
    return sorted(ops, key=lambda op: op.due)


def busiest_token(ops: list[Op]) -> tuple[str, int]:
    """The well-behaved token with the most requests planned, at most, retries included.

    A run whose planned count reaches the limit would make a normal token's 429 a planning
    error instead of a defect, so the harness refuses it.
    """
    counts: dict[str, int] = {}
    for op in ops:
        if op.actor not in (CARRIER, RUNAWAY):
            # At most one retry each: sends and purchases may be sent twice with their key.
            sent = 2 if op.kind in ("send", "buy") else 1
            counts[op.actor] = counts.get(op.actor, 0) + sent
    actor = max(counts, key=lambda name: counts[name])
    return actor, counts[actor]
