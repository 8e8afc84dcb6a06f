"""Drive one account through a planned schedule: requests, follow-ups and subscribers.

`Load.run` opens every browser's subscription, fires each planned request at its due
time as a task of its own (open loop), lets the follow-ups finish (retries with a key,
repeated webhooks, delivery reports), then reads the final balance and waits for every
subscriber to show it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.client import BROWSER_CONNECTIONS, Browser
from bench.load_plan import (
    ADMIN,
    BILLING,
    BUY,
    CARRIER,
    FINAL_STATE,
    MESSAGES,
    POLL,
    RUNAWAY,
    SEGMENT_INFO,
    SEND,
    USAGE,
    Acks,
    Op,
    Profile,
    Refused,
    Tally,
    graphql_body,
    graphql_data,
    graphql_headers,
    is_rate_limited,
    signed,
    webhook_answer,
)
from bench.subscribers import Subscriber

CARRIER_CONNECTIONS = 32  # a carrier posts webhooks from a fleet, not from one browser
SETTLE_SECONDS = 15.0  # for every subscriber to show the final balance
BODIES = (
    "Your table for 4 is ready. Reply STOP to opt out.",
    "Hi! Your order #4411 has shipped and should arrive on Thursday between 9 and 12. "
    "Track it at https://example.com/t/4411 or reply HELP for help; STOP to opt out.",
    "Merci ! Votre rendez-vous est confirmé pour demain à 10h 😊",
    "Reminder: the clinic opens at 8:00 tomorrow. Bring your card [ID] and {form} ~ thanks",
)


@dataclass
class Team:
    """The account the run uses: tokens and inboxes, made by `bench.load_scenario`."""

    admin_token: str
    runaway_token: str
    agent_tokens: dict[str, str]  # actor -> token
    agent_inboxes: dict[str, tuple[str, str]]  # actor -> (inbox id, phone number)
    shared_inbox: tuple[str, str]
    price_cents: int


@dataclass
class Outcome:
    tally: Tally = field(default_factory=Tally)
    acks: Acks = field(default_factory=Acks)
    subscribers: list[Subscriber] = field(default_factory=list)
    final_balance: dict[str, Any] = field(default_factory=dict)
    settled: bool = False


class Load:
    def __init__(
        self, *, port: int, team: Team, profile: Profile, webhook_secret: str, seed: int
    ) -> None:
        self.port, self.team, self.profile = port, team, profile
        self.secret = webhook_secret
        self.rng = random.Random(seed)
        self.outcome = Outcome()
        self.browsers: dict[str, Browser] = {}
        self.listening: list[asyncio.Task[None]] = []
        self.serial = 0

    def browser(self, actor: str) -> Browser:
        if actor not in self.browsers:
            # One address per actor from 127.0.0.2 up, none shared with the usual 127.0.0.1.
            source = f"127.0.0.{len(self.browsers) + 2}"
            size = CARRIER_CONNECTIONS if actor == CARRIER else BROWSER_CONNECTIONS
            self.browsers[actor] = Browser("127.0.0.1", self.port, source, size)
        return self.browsers[actor]

    def token(self, actor: str) -> str:
        named = {ADMIN: self.team.admin_token, RUNAWAY: self.team.runaway_token}
        return named.get(actor) or self.team.agent_tokens[actor]

    def next_id(self) -> int:
        self.serial += 1
        return self.serial

    # --- the run -------------------------------------------------------------------------

    async def run(self, ops: list[Op], duration: float) -> Outcome:
        await self.subscribe()
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.2
        tasks = []
        for op in ops:
            await asyncio.sleep(max(0.0, start + op.due - loop.time()))
            tasks.append(asyncio.create_task(self.perform(op, start + op.due)))
        await asyncio.sleep(max(0.0, start + duration - loop.time()))
        await asyncio.gather(*tasks)
        await self.settle()
        for browser in self.browsers.values():
            browser.close()
        return self.outcome

    async def subscribe(self) -> None:
        url = f"ws://127.0.0.1:{self.port}/graphql"
        for actor in [ADMIN, *self.team.agent_tokens]:
            ready = asyncio.Event()
            source = self.browser(actor).source
            subscriber = Subscriber(url, self.token(actor), source)
            self.outcome.subscribers.append(subscriber)
            self.listening.append(asyncio.create_task(subscriber.run(ready)))
            await ready.wait()

    async def settle(self) -> None:
        """Read the final balance, wait for each subscriber to show it, then unsubscribe."""
        status, raw = await self.browser(ADMIN).post(
            "/graphql", graphql_body(FINAL_STATE), graphql_headers(self.team.admin_token)
        )
        account = graphql_data(status, raw)["account"]
        balance = account["balance"]
        newest = [edge["node"]["id"] for edge in account["ledger"]["edges"]]
        deadline = asyncio.get_running_loop().time() + SETTLE_SECONDS
        shown = [
            await s.settle_on(balance, newest[0] if newest else None, deadline)
            for s in self.outcome.subscribers
        ]
        self.outcome.final_balance, self.outcome.settled = balance, all(shown)
        for task in self.listening:
            task.cancel()
        await asyncio.gather(*self.listening, return_exceptions=True)

    async def perform(self, op: Op, due: float) -> None:
        self.outcome.tally.lag_us.append(int((asyncio.get_running_loop().time() - due) * 1e6))
        handler = getattr(self, "do_" + op.kind.replace("-", "_"))
        await self.attempt(op.kind, handler(op.actor, due))

    async def attempt(self, kind: str, work: Awaitable[None]) -> None:
        """Run one request (and what follows it); a failure is counted as an error of `kind`."""
        try:
            await work
        except Refused as refused:
            self.outcome.tally.error(kind, refused.reason, refused.detail)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as error:
            self.outcome.tally.error(kind, type(error).__name__, str(error))

    async def graphql(
        self, kind: str, actor: str, due: float, query: str, variables: dict[str, Any] | None
    ) -> tuple[int, bytes]:
        """POST a GraphQL request; record its latency when it succeeds (HTTP 200)."""
        body, headers = graphql_body(query, variables), graphql_headers(self.token(actor))
        status, raw = await self.browser(actor).post("/graphql", body, headers)
        if status == 200:
            self.record(kind, due)
        return status, raw

    def record(self, kind: str, due: float) -> None:
        elapsed = asyncio.get_running_loop().time() - due
        self.outcome.tally.ok(kind, int(elapsed * 1_000_000))

    # --- the agents ----------------------------------------------------------------------

    async def do_send(self, actor: str, due: float) -> None:
        inbox_id, _ = (
            self.team.shared_inbox if self.rng.random() < 0.25 else self.team.agent_inboxes[actor]
        )
        payload: dict[str, Any] = {
            "inboxId": inbox_id,
            "to": self.customer(),
            "body": self.rng.choice(BODIES),
        }
        keyed = self.rng.random() < self.profile.keyed_sends
        if keyed:
            payload["idempotencyKey"] = f"send-{self.next_id()}"
        first = await self.send(actor, due, payload, "send")
        self.outcome.acks.sent[int(first["id"])] = first["credits"]
        if keyed and self.rng.random() < self.profile.resent_keyed:
            await self.attempt("send-retry", self.resend(actor, payload, first))
        await self.attempt("status", self.report_delivery(first["providerMessageId"]))

    async def resend(self, actor: str, payload: dict[str, Any], first: dict[str, Any]) -> None:
        """The same send again, as after a lost answer: the first message, charged once."""
        again = await self.send(actor, asyncio.get_running_loop().time(), payload, "send-retry")
        if again["id"] != first["id"]:
            raise Refused("retry answered another message", f"{first} vs {again}")

    async def send(
        self, actor: str, due: float, payload: dict[str, Any], kind: str
    ) -> dict[str, Any]:
        status, raw = await self.graphql(kind, actor, due, SEND, {"input": payload})
        message: dict[str, Any] = graphql_data(status, raw, "sendMessage")["message"]
        if message["status"] != "SENT" and kind == "send":
            raise Refused(f"status {message['status']}")
        return message

    async def do_segment_info(self, actor: str, due: float) -> None:
        body = self.rng.choice(BODIES)
        typed = body[: self.rng.randint(1, len(body))]
        status, raw = await self.graphql("segment-info", actor, due, SEGMENT_INFO, {"body": typed})
        graphql_data(status, raw)

    async def do_messages(self, actor: str, due: float) -> None:
        status, raw = await self.graphql("messages", actor, due, MESSAGES, None)
        graphql_data(status, raw)

    def customer(self) -> str:
        return f"+1628301{self.rng.randrange(1000):04d}"

    # --- the admin and the runaway script ------------------------------------------------

    async def do_usage(self, actor: str, due: float) -> None:
        today = datetime.now(UTC).date()
        month = {"start": today.replace(day=1).isoformat(), "end": today.isoformat()}
        status, raw = await self.graphql("usage", actor, due, USAGE, {"range": month})
        graphql_data(status, raw)

    async def do_billing(self, actor: str, due: float) -> None:
        status, raw = await self.graphql("billing", actor, due, BILLING, None)
        graphql_data(status, raw)

    async def do_buy(self, actor: str, due: float) -> None:
        """A double click: the same purchase twice at once; both answers are the one entry."""
        credits = self.rng.randrange(100, 1001)
        variables = {"input": {"credits": credits, "idempotencyKey": f"buy-{self.next_id()}"}}
        answers = await asyncio.gather(
            *(self.graphql("buy", actor, due, BUY, variables) for _ in range(2))
        )
        entries = [graphql_data(status, raw, "buyCredits")["entry"] for status, raw in answers]
        if entries[0] != entries[1]:
            raise Refused("one key answered two entries", str(entries))
        expected = {"credits": credits, "amountCents": credits * self.team.price_cents}
        if {name: entries[0][name] for name in expected} != expected:
            raise Refused("entry differs from the purchase", str(entries[0]))
        self.outcome.acks.bought[int(entries[0]["id"])] = credits

    async def do_runaway(self, actor: str, due: float) -> None:
        status, raw = await self.graphql("runaway", actor, due, POLL, None)
        if is_rate_limited(status, raw):
            self.outcome.tally.limited += 1
            return
        graphql_data(status, raw)

    # --- the carrier ---------------------------------------------------------------------

    async def do_inbound(self, actor: str, due: float) -> None:
        to = self.rng.choice([*self.team.agent_inboxes.values(), self.team.shared_inbox])[1]
        payload = {
            "from": self.customer(),
            "to": to,
            "body": self.rng.choice(BODIES),
            "providerMessageId": f"in-{self.next_id()}",
        }
        first = await self.webhook("inbound", due, "/webhooks/inbound", payload)
        if first.get("duplicate") is not False:
            raise Refused("first delivery marked duplicate", str(first))
        self.outcome.acks.received.add(int(first["id"]))
        if self.rng.random() < self.profile.redelivered_inbound:
            await self.attempt("inbound-again", self.redeliver(payload, first))

    async def redeliver(self, payload: dict[str, str], first: dict[str, Any]) -> None:
        """The carrier repeats a webhook: the same message, marked duplicate, charged once."""
        loop = asyncio.get_running_loop()
        again = await self.webhook("inbound-again", loop.time(), "/webhooks/inbound", payload)
        if again != {"id": first["id"], "duplicate": True}:
            raise Refused("repeated webhook not recognised", str(again))

    async def report_delivery(self, provider_message_id: str) -> None:
        """The carrier's delivery report, a moment after the send."""
        await asyncio.sleep(self.rng.uniform(0.2, 1.0))
        failed = self.rng.random() < self.profile.failed_reports
        payload = {
            "providerMessageId": provider_message_id,
            "status": "failed" if failed else "delivered",
        }
        loop = asyncio.get_running_loop()
        answer = await self.webhook("status", loop.time(), "/webhooks/status", payload)
        if failed:
            self.outcome.acks.refunded.add(int(answer["id"]))

    async def webhook(
        self, kind: str, due: float, path: str, payload: dict[str, str]
    ) -> dict[str, Any]:
        raw, headers = signed(payload, self.secret)
        status, answer = await self.browser(CARRIER).post(path, raw, headers)
        parsed = webhook_answer(status, answer)
        self.record(kind, due)
        return parsed
