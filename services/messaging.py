"""Messages: sending (outbound), receiving (inbound webhooks), delivery status and refunds.

Every message, either way, costs one credit per segment, taken SUBSCRIPTION first.
An outbound send needs the total to cover it (after an auto-recharge, if one
applies); an inbound message is always accepted, and a shortfall makes PURCHASED
negative. The message, its ledger entries and the balance move in one transaction;
the carrier is called after it commits, so no lock is held across the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models import Account, Inbox, LedgerEntry, Message
from models.enums import BudgetMode, CreditBucket, Direction, LedgerEntryKind, MessageStatus
from services import budgets, idempotency
from services.access import Principal
from services.allotments import apply_due_allotments, catch_up, is_due
from services.auto_recharge import below_threshold, maybe_auto_recharge
from services.broadcast import Broker, announce
from services.carrier import Carrier, CarrierRejected
from services.clock import Clock
from services.errors import (
    BodyTooLong,
    EmptyBody,
    Forbidden,
    InsufficientCredits,
    NotFound,
    TallyError,
)
from services.inboxes import may_send_from
from services.ledger import (
    Balance,
    Change,
    Posting,
    balance_from_json,
    balance_to_json,
    debit_split,
    lock_account,
    post,
    save_change,
)
from services.notices import NoticeDraft
from services.payments import PaymentProvider
from services.periods import period_at
from services.phones import to_e164
from services.rollups import count_message
from services.segments import MAX_BODY_CHARACTERS, SegmentCount, count_segments
from services.sql import connection
from services.validation import storable_text

OPERATION = "send_message"
PENDING = (MessageStatus.QUEUED, MessageStatus.SENT)


@dataclass(frozen=True, slots=True)
class Sent:
    message: Message
    balance: Balance


@dataclass(frozen=True, slots=True)
class Received:
    message: Message
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Outbound:
    """A send, checked and priced, ready to be charged."""

    actor: Principal
    inbox: Inbox
    to_number: str
    body: str
    cost: SegmentCount
    key: str | None
    digest: str


def check_body(body: str) -> SegmentCount:
    """The segments of a body that may be sent; EmptyBody or BodyTooLong otherwise."""
    storable_text(body, field="body")
    if not body.strip():
        raise EmptyBody("A message needs some text.", field="body")
    if len(body) > MAX_BODY_CHARACTERS:
        raise BodyTooLong(
            f"A message has at most {MAX_BODY_CHARACTERS:,} characters, not {len(body):,}.",
            field="body",
        )
    return count_segments(body)


async def send_message(
    *,
    actor: Principal,
    inbox_id: int,
    to: str,
    body: str,
    idempotency_key: str | None,
    region: str,
    clock: Clock,
    carrier: Carrier,
    provider: PaymentProvider,
    broker: Broker,
) -> Sent:
    """Charge and send an SMS from one of the actor's inboxes."""
    outbound = await _prepare(actor, inbox_id, to, body, idempotency_key, region)
    stored = await _store_when_payable(outbound, clock=clock, provider=provider, broker=broker)
    if isinstance(stored, Sent):
        return stored
    message, change, account = stored
    await announce(broker, change)
    message, refund = await _hand_to_carrier(message, carrier=carrier, clock=clock, broker=broker)
    latest = None
    if below_threshold(account):
        latest = await maybe_auto_recharge(
            account_id=actor.account_id, clock=clock, provider=provider, broker=broker
        )
    return Sent(message=message, balance=(latest or refund or change).balance)


async def _prepare(
    actor: Principal, inbox_id: int, to: str, body: str, key: str | None, region: str
) -> Outbound:
    inbox = await Inbox.get_or_none(id=inbox_id, account_id=actor.account_id)
    if inbox is None:
        raise NotFound("No such inbox.", field="inbox_id")
    if not await may_send_from(actor, inbox):
        raise Forbidden("You may not send from this inbox.", field="inbox_id")
    to_number = to_e164(to, region=region, field="to")
    cost = check_body(body)
    return Outbound(
        actor=actor,
        inbox=inbox,
        to_number=to_number,
        body=body,
        cost=cost,
        key=None if key is None else idempotency.clean_key(key),
        digest=idempotency.fingerprint({"inbox": inbox.id, "to": to_number, "body": body}),
    )


async def _store_when_payable(
    outbound: Outbound, *, clock: Clock, provider: PaymentProvider, broker: Broker
) -> Sent | tuple[Message, Change, Account]:
    """Store the send, first granting a due month and, once, auto-recharging a shortfall.

    A month can start, or a recharge complete, between any two attempts (the recharge
    may wait for another request's charge), so each attempt re-checks both. A new month
    is granted at most once per attempt; the second shortfall is final.
    """
    recharged = False
    while True:
        try:
            return await _store(outbound, clock=clock)
        except _AllotmentDue:
            # A new month is a change of its own, announced before the send's.
            change = await catch_up(outbound.actor.account_id, clock=clock)
            if change is not None:
                await announce(broker, change)
        except InsufficientCredits:
            if recharged:
                raise
            recharged = True
            await maybe_auto_recharge(
                account_id=outbound.actor.account_id,
                clock=clock,
                provider=provider,
                broker=broker,
                required=outbound.cost.credits,
            )


class _AllotmentDue(Exception):
    """A subscription month started since the account's last grant: apply it first."""


async def _store(outbound: Outbound, *, clock: Clock) -> Sent | tuple[Message, Change, Account]:
    """The charged, QUEUED message, its change and the account after it; or a key's first result."""
    now = clock.now()
    account_id = outbound.actor.account_id
    async with in_transaction():
        account = await lock_account(account_id)
        if outbound.key is not None:
            first = await idempotency.find_in_transaction(
                account_id=account_id, operation=OPERATION, key=outbound.key, digest=outbound.digest
            )
            if first is not None:
                message = await Message.get(id=first["message_id"])
                return Sent(message=message, balance=balance_from_json(first["balance"]))
        if is_due(account, now):
            raise _AllotmentDue
        if outbound.inbox.budget_mode is BudgetMode.HARD:  # spend control: before the balance
            await budgets.check_hard_budget(
                connection(),
                inbox_id=outbound.inbox.id,
                period_index=account.period_index,
                credits=outbound.cost.credits,
            )
        total = account.subscription_credits + account.purchased_credits
        if total < outbound.cost.credits:
            raise InsufficientCredits.for_cost(balance=total, required=outbound.cost.credits)
        message = await Message.create(
            account_id=account_id,
            inbox_id=outbound.inbox.id,
            direction=Direction.OUTBOUND,
            from_number=outbound.inbox.phone_number,
            to_number=outbound.to_number,
            body=outbound.body,
            encoding=outbound.cost.encoding,
            segments=outbound.cost.segments,
            credits=outbound.cost.credits,
            status=MessageStatus.QUEUED,
            sender_id=outbound.actor.member_id,
            created_at=now,
        )
        entries = await _charge(account, message, LedgerEntryKind.OUTBOUND_MESSAGE, now=now)
        raised = await _count(account, message, sign=1, period_index=account.period_index)
        change = await save_change(account, entries, now=now, raised=raised)
        balance = change.balance
        if outbound.key is not None:
            await idempotency.record_done(
                account_id=account_id,
                operation=OPERATION,
                key=outbound.key,
                digest=outbound.digest,
                result={"message_id": message.id, "balance": balance_to_json(balance)},
                now=now,
            )
    return message, change, account


async def _count(
    account: Account, message: Message, *, sign: int, period_index: int
) -> list[NoticeDraft]:
    """Count (or take back) a message in the usage rollups and its inbox's month."""
    await count_message(account, message, sign=sign)
    return await budgets.count_usage(
        connection(),
        inbox_id=message.inbox_id,
        period_index=period_index,
        credits=sign * message.credits,
        outbound_send=sign > 0 and message.direction is Direction.OUTBOUND,
    )


async def _charge(
    account: Account, message: Message, kind: LedgerEntryKind, *, now: datetime
) -> list[LedgerEntry]:
    split = debit_split(subscription=account.subscription_credits, cost=message.credits)
    postings = [Posting(kind, bucket, credits, message_id=message.id) for bucket, credits in split]
    return await post(account, postings, now=now)


async def _hand_to_carrier(
    message: Message, *, carrier: Carrier, clock: Clock, broker: Broker
) -> tuple[Message, Change | None]:
    """The message after the carrier's answer, and the refund's change if it rejected it."""
    refund = None
    try:
        provider_id = await carrier.send(
            from_number=message.from_number, to_number=message.to_number, body=message.body
        )
    except CarrierRejected:
        refund = await _fail_and_refund(message.id, clock=clock, broker=broker)
    else:
        sent = await Message.filter(id=message.id, status=MessageStatus.QUEUED).update(
            status=MessageStatus.SENT, provider_message_id=provider_id
        )
        if sent:
            message.status, message.provider_message_id = MessageStatus.SENT, provider_id
            return message, None
    return await Message.get(id=message.id), refund


async def receive_message(
    *,
    from_number: str,
    to_number: str,
    body: str,
    provider_message_id: str,
    region: str,
    clock: Clock,
    provider: PaymentProvider,
    broker: Broker,
) -> Received:
    """Store and charge an inbound message; a repeated provider id is a duplicate, charged once."""
    # Duplicates first: a carrier retrying after the inbox's number changed still gets its answer.
    existing = await Message.get_or_none(provider_message_id=provider_message_id)
    if existing is not None:
        return Received(message=existing, duplicate=True)
    inbox = await Inbox.get_or_none(phone_number=to_e164(to_number, region=region, field="to"))
    if inbox is None:
        raise NotFound("No inbox has this number.", field="to")
    try:
        message, change = await _store_inbound(
            inbox, from_number, body, provider_message_id, region=region, clock=clock
        )
    except IntegrityError:
        # The same webhook, delivered twice at once: the other delivery committed first.
        first = await Message.get_or_none(provider_message_id=provider_message_id)
        if first is None:
            raise
        return Received(message=first, duplicate=True)
    await announce(broker, change)
    await maybe_auto_recharge(
        account_id=inbox.account_id, clock=clock, provider=provider, broker=broker
    )
    return Received(message=message, duplicate=False)


def _sender_number(raw: str, *, region: str) -> str:
    """The sender in E.164 when it is a phone number; short codes and names stay as sent."""
    try:
        return to_e164(raw, region=region, field="from")
    except TallyError:
        return raw.strip()[:32]


async def _store_inbound(
    inbox: Inbox, from_number: str, body: str, provider_id: str, *, region: str, clock: Clock
) -> tuple[Message, Change]:
    now = clock.now()
    cost = count_segments(body)
    async with in_transaction():
        account = await lock_account(inbox.account_id)
        entries = await apply_due_allotments(account, now=now)
        message = await Message.create(
            account_id=inbox.account_id,
            inbox_id=inbox.id,
            direction=Direction.INBOUND,
            from_number=_sender_number(from_number, region=region),
            to_number=inbox.phone_number,
            body=body,
            encoding=cost.encoding,
            segments=cost.segments,
            credits=cost.credits,
            status=MessageStatus.RECEIVED,
            provider_message_id=provider_id,
            created_at=now,
        )
        entries += await _charge(account, message, LedgerEntryKind.INBOUND_MESSAGE, now=now)
        raised = await _count(account, message, sign=1, period_index=account.period_index)
        return message, await save_change(account, entries, now=now, raised=raised)


async def record_delivery_status(
    *,
    provider_message_id: str,
    delivered: bool,
    clock: Clock,
    broker: Broker,
    provider: PaymentProvider,
) -> Message:
    """Apply a delivery report; `failed` refunds. Repeats and late reports change nothing."""
    message = await Message.get_or_none(provider_message_id=provider_message_id)
    if message is None:
        raise NotFound("No message has this provider id.", field="provider_message_id")
    if message.direction is Direction.OUTBOUND and message.status in PENDING:
        if delivered:
            await Message.filter(id=message.id, status__in=PENDING).update(
                status=MessageStatus.DELIVERED
            )
        elif await _fail_and_refund(message.id, clock=clock, broker=broker) is not None:
            # A refund gives credits back, but may still leave the total below the threshold.
            await maybe_auto_recharge(
                account_id=message.account_id, clock=clock, provider=provider, broker=broker
            )
    return await Message.get(id=message.id)


async def _fail_and_refund(message_id: int, *, clock: Clock, broker: Broker) -> Change | None:
    """Mark a pending outbound message FAILED and give its credits back to their buckets.

    Subscription credits of a month that has ended are not given back: they would
    have expired with it.
    """
    now = clock.now()
    message = await Message.get(id=message_id)
    async with in_transaction():
        account = await lock_account(message.account_id)
        failed = await Message.filter(id=message_id, status__in=PENDING).update(
            status=MessageStatus.FAILED, refunded_at=now
        )
        if not failed:
            return None
        # A FAILED message no longer counts as usage (docs/decisions.md), nor in its month.
        month = period_at(account.created_at, message.created_at).index
        raised = await _count(account, message, sign=-1, period_index=month)
        entries = await apply_due_allotments(account, now=now)
        charged = await LedgerEntry.filter(
            message_id=message_id, kind=LedgerEntryKind.OUTBOUND_MESSAGE
        ).order_by("id")
        for charge in charged:
            if (
                charge.bucket is CreditBucket.SUBSCRIPTION
                and charge.period_index < account.period_index
            ):
                continue
            refund = Posting(
                LedgerEntryKind.REFUND, charge.bucket, -charge.credits, message_id=message_id
            )
            # A refund belongs to the month of the charge it returns: that month's usage nets out.
            entries += await post(account, [refund], now=now, period_index=charge.period_index)
        change = await save_change(account, entries, now=now, raised=raised)
    await announce(broker, change)
    return change
