"""The load test's workload: one team-texting account's SPA at its expected rate, times N,
and what each of its requests is and must be answered with.

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

Every answer is checked: a success is HTTP 200 without `errors` or `userErrors` (for
webhooks, 200 with the expected JSON), and a retry with an idempotency key must return
the first answer. Anything else is an error of its kind, counted in `Tally.errors`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

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


# --- the requests, and what their answers must be ------------------------------------------

SEND = (
    "mutation Send($input: SendMessageInput!) { sendMessage(input: $input) {"
    " message { id status credits segments providerMessageId }"
    " balance { total } userErrors { code message } } }"
)
SEGMENT_INFO = (
    "query Typing($body: String!) { segmentInfo(body: $body)"
    " { encoding units segments remainingInSegment credits } }"
)
MESSAGES = (
    "query Messages { account { messages(first: 20) { nodes { id direction from to body"
    " status credits createdAt inbox { id name } } pageInfo { hasNextPage endCursor } } } }"
)
USAGE = (
    "query Usage($range: DateRangeInput!) { account { usage(range: $range, granularity: DAY,"
    " groupBy: MEMBER) { totals { segments messages } series { start figures { segments"
    " messagesSent messagesReceived } } groups { member { id name } totals { segments"
    " messages } } } } }"
)
BILLING = (
    "query Billing { account { billingOverview { balance { total } creditsUsedThisPeriod"
    " creditsPurchasedThisPeriod spentThisPeriodCents recentEntries { id kind credits } }"
    " ledger(first: 20) { nodes { id kind bucket credits balanceAfter createdAt }"
    " pageInfo { hasNextPage endCursor } } } }"
)
BUY = (
    "mutation Buy($input: BuyCreditsInput!) { buyCredits(input: $input) {"
    " entry { id credits amountCents } balance { total } userErrors { code message } } }"
)
POLL = "query Poll { account { balance { total } } }"
# The final state subscribers must reach: the balance, and the newest ledger entry (a
# balance alone can recur: a send and its refund end where they started).
FINAL_STATE = (
    "query { account { balance { total subscriptionCredits purchasedCredits }"
    " ledger(first: 1) { edges { node { id } } } } }"
)
RATE_LIMITED = "RATE_LIMITED"


@dataclass
class Acks:
    """What the server acknowledged: the ledger must hold exactly this, no more, no less."""

    sent: dict[int, int] = field(default_factory=dict)  # message id -> credits answered
    received: set[int] = field(default_factory=set)  # inbound message ids
    bought: dict[int, int] = field(default_factory=dict)  # PURCHASE entry id -> credits
    refunded: set[int] = field(default_factory=set)  # message ids reported failed


@dataclass
class Tally:
    """Latencies (microseconds, from the due time to the whole answer) and errors by kind."""

    latencies_us: dict[str, list[int]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    limited: int = 0  # 429s of the runaway token: expected
    lag_us: list[int] = field(default_factory=list)  # how late the client started requests

    def ok(self, kind: str, latency_us: int) -> None:
        self.latencies_us.setdefault(kind, []).append(latency_us)

    def error(self, kind: str, reason: str, detail: str = "") -> None:
        self.errors[f"{kind}: {reason}"] += 1
        if len(self.samples) < 10:
            self.samples.append(f"{kind}: {reason} {detail}"[:300])


class Refused(Exception):
    """An answer that is not a success; `reason` is the error's kind."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def graphql_body(query: str, variables: dict[str, Any] | None = None) -> bytes:
    return json.dumps({"query": query, "variables": variables or {}}).encode()


def graphql_headers(token: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}


def graphql_data(status: int, raw: bytes, field_name: str | None = None) -> dict[str, Any]:
    """The `data` of a successful answer (or its mutation payload); Refused otherwise."""
    if status == 429:
        raise Refused("HTTP 429", raw[:200].decode(errors="replace"))
    if status != 200:
        raise Refused(f"HTTP {status}", raw[:200].decode(errors="replace"))
    answer = json.loads(raw)
    if answer.get("errors"):
        error = answer["errors"][0]
        code = (error.get("extensions") or {}).get("code", "error")
        raise Refused(f"GraphQL {code}", str(error.get("message"))[:200])
    data: dict[str, Any] = answer["data"]
    if field_name is None:
        return data
    payload: dict[str, Any] = data[field_name]
    if payload.get("userErrors"):
        raise Refused(f"userError {payload['userErrors'][0]['code']}", str(payload)[:200])
    return payload


def is_rate_limited(status: int, raw: bytes) -> bool:
    if status != 429:
        return False
    errors = json.loads(raw).get("errors") or [{}]
    return bool((errors[0].get("extensions") or {}).get("code") == RATE_LIMITED)


def signed(payload: dict[str, str], secret: str) -> tuple[bytes, dict[str, str]]:
    """A carrier webhook's raw body and headers, with its X-Tally-Signature."""
    raw = json.dumps(payload).encode()
    digest = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"Content-Type": "application/json", "X-Tally-Signature": f"sha256={digest}"}


def webhook_answer(status: int, raw: bytes) -> dict[str, Any]:
    if status != 200:
        raise Refused(f"HTTP {status}", raw[:200].decode(errors="replace"))
    answer: dict[str, Any] = json.loads(raw)
    return answer
