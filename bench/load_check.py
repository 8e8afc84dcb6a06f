"""After a load run: the database must hold exactly what the server acknowledged.

Read straight from the database (sqlite3 or asyncpg), not through the API under test:

- every acknowledged send and inbound message is stored once, and nothing else is;
- each message's ledger entries take exactly its credits (one entry per bucket touched);
  a message reported failed has REFUND entries giving them back, and no other has any;
- every acknowledged purchase is one PURCHASE entry with its credits and price, and no
  other PURCHASE exists (retries and double clicks added nothing);
- no other entry exists besides the account's monthly allotment;
- each bucket's balance equals the sum of its entries, and every `balance_after` is the
  running total in ledger order;
- every subscriber ended on the stored balance and saw each change's entries once.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench.load_plan import Acks
from bench.subscribers import Subscriber

LEDGER_SQL = (
    "SELECT id, kind, bucket, credits, balance_after, message_id, amount_cents"
    " FROM ledger_entry WHERE account_id = {account} ORDER BY id"
)
MESSAGES_SQL = "SELECT id, direction, credits, status FROM message WHERE account_id = {account}"
ACCOUNT_SQL = (
    "SELECT subscription_credits, purchased_credits, price_per_credit_cents"
    " FROM account WHERE id = {account}"
)
ALLOTMENT = ("ALLOTMENT_GRANT", "ALLOTMENT_EXPIRY")
MESSAGE_KINDS = {"OUTBOUND": "OUTBOUND_MESSAGE", "INBOUND": "INBOUND_MESSAGE"}


@dataclass(frozen=True, slots=True)
class Stored:
    ledger: list[tuple[Any, ...]]
    messages: list[tuple[Any, ...]]
    account: tuple[Any, ...]


async def read(database_url: str, account_id: int) -> Stored:
    """The account's rows; `account_id` is an int, so formatting it into the SQL is safe."""
    queries = [sql.format(account=int(account_id)) for sql in (LEDGER_SQL, MESSAGES_SQL)]
    account_sql = ACCOUNT_SQL.format(account=int(account_id))
    if database_url.startswith("sqlite://"):
        path = database_url.removeprefix("sqlite://").split("?", 1)[0]
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            ledger, messages = (db.execute(sql).fetchall() for sql in queries)
            account = db.execute(account_sql).fetchone()
        db.close()
        return Stored(ledger, messages, account)
    connection = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
    try:
        ledger, messages = [[tuple(row) for row in await connection.fetch(q)] for q in queries]
        account = tuple(await connection.fetchrow(account_sql))
    finally:
        await connection.close()
    return Stored(ledger, messages, account)


def problems(stored: Stored, acks: Acks) -> list[str]:
    """Every way the stored ledger differs from what was acknowledged; empty when none."""
    found: list[str] = []
    found += _messages(stored, acks)
    found += _entries(stored, acks)
    found += _balances(stored)
    return found


def _messages(stored: Stored, acks: Acks) -> list[str]:
    found = []
    by_direction: dict[str, set[int]] = defaultdict(set)
    for message_id, direction, *_ in stored.messages:
        by_direction[direction].add(int(message_id))
    for direction, acked in (("OUTBOUND", set(acks.sent)), ("INBOUND", acks.received)):
        stored_ids = by_direction[direction]
        if lost := acked - stored_ids:
            found.append(f"{len(lost)} acknowledged {direction} messages not stored: {_few(lost)}")
        if extra := stored_ids - acked:
            found.append(f"{len(extra)} {direction} messages never acknowledged: {_few(extra)}")
    return found


def _entries(stored: Stored, acks: Acks) -> list[str]:
    found = []
    by_message: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    purchases: dict[int, tuple[int, int | None]] = {}
    for entry_id, kind, _, credits, _, message_id, cents in stored.ledger:
        if message_id is not None:
            by_message[int(message_id)].append((kind, credits))
        elif kind == "PURCHASE":
            purchases[int(entry_id)] = (credits, cents)
        elif kind not in ALLOTMENT:
            found.append(f"unexpected {kind} entry {entry_id}")
    for message_id, direction, credits, status in stored.messages:
        entries = by_message.pop(int(message_id), [])
        found += _message_entries(int(message_id), direction, credits, status, entries, acks)
    if by_message:
        found.append(f"entries of messages not in the account: {_few(set(by_message))}")
    if set(purchases) != set(acks.bought):
        found.append(f"PURCHASE entries {_few(set(purchases))} != bought {_few(set(acks.bought))}")
    price = stored.account[2]
    for entry_id, credits in acks.bought.items():
        if entry_id in purchases and purchases[entry_id] != (credits, credits * price):
            found.append(f"purchase {entry_id}: {purchases[entry_id]}, bought {credits}")
    return found


def _message_entries(
    message_id: int,
    direction: str,
    credits: int,
    status: str,
    entries: list[tuple[Any, ...]],
    acks: Acks,
) -> list[str]:
    charges = [c for kind, c in entries if kind == MESSAGE_KINDS[direction]]
    refunds = [c for kind, c in entries if kind == "REFUND"]
    found = []
    if len(charges) + len(refunds) != len(entries) or not 1 <= len(charges) <= 2:
        found.append(f"message {message_id}: entries {entries}")
    if sum(charges) != -credits or acks.sent.get(message_id, credits) != credits:
        found.append(f"message {message_id} ({credits} credits) charged {charges}")
    refunded = message_id in acks.refunded
    if refunded and (sum(refunds) != credits or status != "FAILED"):
        found.append(f"message {message_id} reported failed: {status}, refunds {refunds}")
    if not refunded and refunds:
        found.append(f"message {message_id} refunded without a failure report: {refunds}")
    return found


def _balances(stored: Stored) -> list[str]:
    found = []
    sums: dict[str, int] = defaultdict(int)
    for entry_id, _, bucket, credits, balance_after, *_ in stored.ledger:
        sums[bucket] += credits
        if balance_after != sum(sums.values()):
            found.append(f"entry {entry_id}: balance_after {balance_after} != {sum(sums.values())}")
    subscription, purchased, _ = stored.account
    if (subscription, purchased) != (sums["SUBSCRIPTION"], sums["PURCHASED"]):
        found.append(
            f"balance ({subscription}, {purchased}) != ledger sums"
            f" ({sums['SUBSCRIPTION']}, {sums['PURCHASED']})"
        )
    return found


def _few(ids: set[int]) -> str:
    return ", ".join(str(i) for i in sorted(ids)[:5]) + (" …" if len(ids) > 5 else "")


def live_problems(stored: Stored, final: dict[str, Any], seen: list[Subscriber]) -> list[str]:
    """Subscribers against the database: the final balance, and every change once.

    A subscriber may miss a change's entries only if it was told so: an event without
    entries (a re-read after a gap or lag) stands for what was missed.
    """
    subscription, purchased, _ = stored.account
    stored_balance = {
        "total": subscription + purchased,
        "subscriptionCredits": subscription,
        "purchasedCredits": purchased,
    }
    found = []
    if final != stored_balance:
        found.append(f"final balance read over HTTP {final} != stored {stored_balance}")
    changes = {str(entry[0]) for entry in stored.ledger if entry[1] not in ALLOTMENT}
    for n, subscriber in enumerate(seen):
        name = f"subscriber {n}"
        if not subscriber.shows(stored_balance):
            found.append(f"{name} ended on {subscriber.balance}, not {stored_balance}")
        if len(set(subscriber.entry_ids)) != len(subscriber.entry_ids):
            found.append(f"{name} saw an entry twice")
        if unknown := set(subscriber.entry_ids) - changes:
            found.append(f"{name} saw entries that are not stored: {sorted(unknown)[:5]}")
        missed = changes - set(subscriber.entry_ids)
        if missed and not subscriber.re_reads:
            found.append(f"{name} missed {len(missed)} entries without a re-read")
        found += [f"{name}: {error}" for error in subscriber.errors]
    return found
