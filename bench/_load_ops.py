"""The load test's requests: GraphQL documents, signed webhooks, and what the run records.

Every answer is checked: a success is HTTP 200 without `errors` or `userErrors` (for
webhooks, 200 with the expected JSON), and a retry with an idempotency key must return
the first answer. Anything else is an error of its kind, counted in `Tally.errors`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

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
