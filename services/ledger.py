"""The credit ledger: the one door every balance change goes through.

    committed = await ledger.commit(runtime, account_id, rule)

`rule(tx)` is the caller's own rule (a send's price check, a purchase's credits): it
posts entries through `tx` and may write its own rows on `tx.conn`. The door does the
rest, once, for every change: it runs the rule in the process's next batch
(services/ledger_writer.py) under the account's lock, first applying a subscription
month that has started as a change of its own; keeps each bucket's balance equal to the
sum of its entries and `balance_after` in commit order; writes the account's buckets;
commits; and then, in `_after_commit`, wakes the webhook dispatcher for notices,
publishes each change's balance event and runs auto-recharge. A rule that must hold for
every change belongs in `_finish` (inside the transaction) or `_after_commit` (after
it), and nowhere else.

Rules run inside the batch's transaction: they must not use the ORM, and must not wait
on anything but the database (services/ledger_writer.py says why).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Generic, TypeVar, cast

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from models import Account, LedgerEntry
from models.enums import LedgerEntryKind
from services import allotments, outbox, spend, sql
from services.balance import SUBSCRIPTION, Balance, Change, Posting, balance_of, debit_split
from services.broadcast import announce
from services.ledger_writer import savepoint
from services.notices import NoticeDraft
from services.runtime import Runtime

T = TypeVar("T")
Rule = Callable[["Tx"], Awaitable[T]]


@dataclass(eq=False)
class Tx:
    """A change in progress: the locked account, moved by each posting as it is written."""

    conn: BaseDBAsyncClient
    account: Account
    now: datetime
    entries: list[LedgerEntry] = field(default_factory=list)
    # Spend control (issue 12): the inbox months the change's messages count in, and the
    # notices its rule raised itself; `_finish` turns them into notices.
    usage: list[spend.Usage] = field(default_factory=list)
    raised: list[NoticeDraft] = field(default_factory=list)

    @property
    def account_id(self) -> int:
        account_id: int = self.account.id
        return account_id

    @property
    def total(self) -> int:
        return self.account.subscription_credits + self.account.purchased_credits

    async def post(self, posting: Posting, *, period_index: int | None = None) -> LedgerEntry:
        """Append one entry and move its bucket; `period_index` defaults to the current month."""
        account = self.account
        if posting.bucket is SUBSCRIPTION:
            account.subscription_credits += posting.credits
        else:
            account.purchased_credits += posting.credits
        if account.subscription_credits < 0:
            raise AssertionError(f"subscription credits of account {account.id} went negative")
        values = {
            "account_id": account.id,
            "kind": posting.kind,
            "bucket": posting.bucket,
            "credits": posting.credits,
            "balance_after": self.total,
            "amount_cents": posting.amount_cents,
            "message_id": posting.message_id,
            "period_index": account.period_index if period_index is None else period_index,
            "created_at": self.now,
        }
        entry_id = await sql.returning_id(self.conn, _INSERT_ENTRY, list(values.values()))
        entry = LedgerEntry._init_from_db(id=entry_id, **values)
        self.entries.append(entry)
        return entry

    def balance_after(self) -> Balance:
        """The balance this change commits with, as its event will carry it (next version)."""
        balance = balance_of(self.account)
        return replace(balance, version=balance.version + 1)

    async def debit(
        self, kind: LedgerEntryKind, credits: int, *, message_id: int
    ) -> list[LedgerEntry]:
        """Take `credits` for a message, SUBSCRIPTION first; PURCHASED may go negative."""
        split = debit_split(subscription=self.account.subscription_credits, cost=credits)
        return [
            await self.post(Posting(kind, bucket, part, message_id=message_id))
            for bucket, part in split
        ]


@dataclass(frozen=True, slots=True)
class Committed(Generic[T]):
    """What a rule returned, and the changes committed for it, in commit order.

    A month that started before the change is a change of its own, before the rule's.
    """

    value: T
    changes: Sequence[Change]

    @property
    def balance(self) -> Balance | None:
        return self.changes[-1].balance if self.changes else None


@dataclass(frozen=True, slots=True)
class _Outcome(Generic[T]):
    value: T | None
    changes: list[Change]
    recharge_due: bool
    # The rule's own failure: the month applied before it still commits.
    error: Exception | None = None


async def commit(runtime: Runtime, account_id: int, rule: Rule[T]) -> Committed[T]:
    """Run `rule` as one change of the account, commit it durably, then the after-commit rules.

    The committed changes include an auto-recharge the change triggered, last. When
    the rule raises, its change is rolled back and its exception raised here, once a
    month applied before it has committed and been published.
    """

    async def work(conn: BaseDBAsyncClient, account: Account) -> _Outcome[T]:
        now = runtime.clock.now()
        month = await _apply_due_months(conn, account, now)
        tx = Tx(conn, account, now)
        if month is None:
            value, change = await _run(rule, tx)
            changes = [] if change is None else [change]
            # A change with no entry (a declined recharge's notices) triggers nothing.
            return _Outcome(value, changes, bool(tx.entries) and _recharge_due(account, tx.entries))
        # The month commits even when the rule fails: it is a change of its own.
        try:
            async with savepoint(conn, account, "rule"):
                value, change = await _run(rule, tx)
        except Exception as error:
            return _Outcome(None, [month], _recharge_due(account, ()), error)
        changes = [month] if change is None else [month, change]
        # The newest change is the trigger: the month's own when the rule made none, and
        # none when the rule's has no entry (a decline answers the low balance until the
        # next change, so the card is not asked again at once).
        due = (change is None or bool(tx.entries)) and _recharge_due(account, tx.entries)
        return _Outcome(value, changes, due)

    async def then(outcome: _Outcome[T]) -> Committed[T]:
        recharge = await _after_commit(runtime, account_id, outcome)
        if outcome.error is not None:
            raise outcome.error
        changes = outcome.changes if recharge is None else [*outcome.changes, recharge]
        return Committed(cast(T, outcome.value), changes)

    return await runtime.ledger.submit(account_id, work, then)


async def record(runtime: Runtime, account_id: int, write: Rule[T]) -> T:
    """A write of the account's rows that changes no balance (a message's carrier status),
    committed with the next batch of changes: durable, and no publishing to follow.

    `write` may not post: a balance changes only through `commit`.
    """

    async def work(conn: BaseDBAsyncClient, account: Account) -> T:
        tx = Tx(conn, account, runtime.clock.now())
        value = await write(tx)
        if tx.entries:
            raise AssertionError("ledger.record may not post entries: use ledger.commit")
        return value

    return await runtime.ledger.write(account_id, work)


async def balance_now(runtime: Runtime, account_id: int) -> Change:
    """The account's balance now; a month that has started is applied first, as a change
    (which, like any other, may trigger auto-recharge)."""
    account = await Account.get(id=account_id)
    if allotments.is_due(account, runtime.clock.now()):
        committed = await commit(runtime, account_id, _nothing)
        if committed.changes:
            return committed.changes[-1]
        account = await Account.get(id=account_id)
    return Change(balance=balance_of(account))


async def catch_up(runtime: Runtime, account_id: int) -> Change | None:
    """Apply a month that has started (the background sweep); its change, or None."""
    committed = await commit(runtime, account_id, _nothing)
    return committed.changes[0] if committed.changes else None


async def open_account(account: Account, conn: BaseDBAsyncClient) -> Change:
    """Grant a new account's first month, inside the transaction that creates it.

    The account is not yet visible to anyone else, so no lock or batch is needed; the
    caller commits, and nobody can subscribe to an account that does not exist yet.
    """
    tx = Tx(conn, account, account.created_at)
    await allotments.grant_first_month(tx)
    return await _finish(tx)


@asynccontextmanager
async def exclusive(account_id: int) -> AsyncIterator[Account]:
    """A transaction in which no change of the account can commit: for rewriting what
    changes depend on (a new time zone's usage, a seeded history). Yields the account."""
    async with in_transaction():
        yield await _lock_account(account_id)


async def _lock_account(account_id: int) -> Account:
    """The account row, locked until the surrounding transaction ends.

    PostgreSQL takes a row lock (FOR UPDATE), as every batch does on the accounts it
    changes. SQLite ignores FOR UPDATE, but every write transaction there starts with
    BEGIN IMMEDIATE and so already holds the database's write lock.
    """
    return await Account.select_for_update().get(id=account_id)


async def _apply_due_months(
    conn: BaseDBAsyncClient, account: Account, now: datetime
) -> Change | None:
    if not allotments.is_due(account, now):
        return None
    tx = Tx(conn, account, now)
    await allotments.apply_due_months(tx)
    return await _finish(tx)


async def _run(rule: Rule[T], tx: Tx) -> tuple[T, Change | None]:
    """The rule's value, and its change when it posted anything or raised a notice."""
    value = await rule(tx)
    return value, (await _finish(tx) if tx.entries or tx.raised else None)


async def _nothing(tx: Tx) -> None:
    return None


async def _finish(tx: Tx) -> Change:
    """Every change's own end, inside its transaction: its notices (alerts, budgets, the
    rule's own, with their webhook deliveries), then the buckets, with a new version."""
    account = tx.account
    raised = await spend.notices_of_change(
        tx.conn, account=account, usage=tx.usage, raised=tx.raised, now=tx.now
    )
    account.balance_version += 1
    await sql.run(
        tx.conn,
        _SAVE_BALANCE,
        [
            account.subscription_credits,
            account.purchased_credits,
            account.period_index,
            account.next_period_at,
            account.balance_version,
            account.alert_fire_below,
            account.alert_recover_at,
            account.id,
        ],
    )
    return Change(balance=balance_of(account), entries=tuple(tx.entries), notices=tuple(raised))


def _recharge_due(account: Account, entries: Sequence[LedgerEntry]) -> bool:
    """Whether the change may trigger auto-recharge: a first filter, read in the change."""
    if any(entry.kind is LedgerEntryKind.AUTO_RECHARGE for entry in entries):
        # A recharge is never itself the trigger of another.
        return False
    total = account.subscription_credits + account.purchased_credits
    return (
        account.auto_recharge_enabled
        and account.payment_reference is not None
        and total < account.auto_recharge_threshold
    )


async def _after_commit(runtime: Runtime, account_id: int, outcome: _Outcome[T]) -> Change | None:
    """Publish the changes, then auto-recharge when one is due; the recharge's change."""
    for change in outcome.changes:
        if change.notices:
            # Their webhook deliveries are committed and due now.
            outbox.ring()
        await announce(runtime.broker, change)
    if not outcome.recharge_due:
        return None
    # Imported here: auto-recharge commits its credits through this module.
    from services.auto_recharge import maybe_auto_recharge

    return await maybe_auto_recharge(runtime=runtime, account_id=account_id)


_INSERT_ENTRY = (
    "INSERT INTO ledger_entry (account_id, kind, bucket, credits, balance_after, amount_cents,"
    " message_id, period_index, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
_SAVE_BALANCE = (
    "UPDATE account SET subscription_credits = ?, purchased_credits = ?, period_index = ?,"
    " next_period_at = ?, balance_version = ?, alert_fire_below = ?, alert_recover_at = ?"
    " WHERE id = ?"
)
