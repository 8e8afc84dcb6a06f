"""Messages: sending (outbound), receiving (inbound webhooks), delivery status and refunds.

Every message, either way, costs one credit per segment, taken SUBSCRIPTION first.
An outbound send needs the total to cover it (after an auto-recharge, if one
applies); an inbound message is always accepted, and a shortfall makes PURCHASED
negative. The message, its ledger entries and the balance move in one transaction;
the carrier is called after it commits, so no lock is held across the network.

Each of those is a rule run through the ledger's door (services/ledger.py), which
batches, commits, publishes and auto-recharges; the rules here write their rows with
raw statements on the change's connection (`_MESSAGE_COLUMNS`).
"""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q

from models import Inbox, Message
from models.enums import BudgetMode, CreditBucket, Direction, LedgerEntryKind, MessageStatus
from services import budgets, idempotency, ledger, sql
from services.access import Principal
from services.auto_recharge import maybe_auto_recharge
from services.balance import Balance, Posting, balance_from_json, balance_to_json
from services.carrier import CarrierRejected
from services.errors import (
    BodyTooLong,
    EmptyBody,
    Forbidden,
    InsufficientCredits,
    NotFound,
    TallyError,
)
from services.ledger import Tx
from services.periods import period_at
from services.phones import to_e164
from services.rollups import count_message
from services.runtime import Runtime
from services.segments import MAX_BODY_CHARACTERS, SegmentCount, count_segments
from services.spend import Usage
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
    inbox_id: int
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
    runtime: Runtime,
    actor: Principal,
    inbox_id: int,
    to: str,
    body: str,
    idempotency_key: str | None,
    region: str,
) -> Sent:
    """Charge and send an SMS from one of the actor's inboxes."""
    outbound = await _prepare(actor, inbox_id, to, body, idempotency_key, region)
    store = _storing(outbound)
    try:
        committed = await ledger.commit(runtime, actor.account_id, store)
    except InsufficientCredits:
        # A send that the balance cannot pay for triggers auto-recharge first; a second
        # shortfall is final (the recharge may also have been made by another request).
        await maybe_auto_recharge(
            runtime=runtime, account_id=actor.account_id, required=outbound.cost.credits
        )
        committed = await ledger.commit(runtime, actor.account_id, store)
    stored = committed.value
    if isinstance(stored, Sent):
        return stored
    assert committed.balance is not None
    message, refund = await _hand_to_carrier(runtime, stored)
    return Sent(message=message, balance=refund or committed.balance)


async def _prepare(
    actor: Principal, inbox_id: int, to: str, body: str, key: str | None, region: str
) -> Outbound:
    to_number = to_e164(to, region=region, field="to")
    cost = check_body(body)
    return Outbound(
        actor=actor,
        inbox_id=inbox_id,
        to_number=to_number,
        body=body,
        cost=cost,
        key=None if key is None else idempotency.clean_key(key),
        # Only a keyed send is compared with a first one.
        digest=""
        if key is None
        else idempotency.fingerprint({"inbox": inbox_id, "to": to_number, "body": body}),
    )


async def _sending_inbox(tx: Tx, outbound: Outbound) -> str:
    """The number of the inbox the actor sends from, read in the send's change.

    Read there rather than before: one statement on the batch's connection instead of two
    queries of their own, and no way for the inbox to change in between. A HARD budget
    on it is checked here, before the balance (spend control, services/budgets.py).
    """
    actor = outbound.actor
    rows = await sql.fetch(tx.conn, _INBOX, [actor.member_id, outbound.inbox_id, actor.account_id])
    if not rows:
        raise NotFound.unknown("inbox_id")
    phone_number, owner_id, listed, budget_mode = rows[0]
    if not (actor.is_admin or owner_id == actor.member_id or listed):
        raise Forbidden("You may not send from this inbox.", field="inbox_id")
    if budget_mode == BudgetMode.HARD.value:
        await budgets.check_hard_budget(
            tx.conn,
            inbox_id=outbound.inbox_id,
            period_index=tx.account.period_index,
            credits=outbound.cost.credits,
        )
    return str(phone_number)


def _storing(outbound: Outbound) -> ledger.Rule[Sent | Message]:
    """The send's own rule: the charged, QUEUED message; or a key's first result."""

    async def store(tx: Tx) -> Sent | Message:
        account_id = outbound.actor.account_id
        if outbound.key is not None:
            first = await idempotency.find_in_change(
                tx.conn,
                account_id=account_id,
                operation=OPERATION,
                key=outbound.key,
                digest=outbound.digest,
            )
            if first is not None:
                message = await _message(tx.conn, first["message_id"])
                return Sent(message=message, balance=balance_from_json(first["balance"]))
        from_number = await _sending_inbox(tx, outbound)
        if tx.total < outbound.cost.credits:
            raise InsufficientCredits.for_cost(balance=tx.total, required=outbound.cost.credits)
        message = await _insert_message(
            tx,
            inbox_id=outbound.inbox_id,
            direction=Direction.OUTBOUND,
            from_number=from_number,
            to_number=outbound.to_number,
            body=outbound.body,
            cost=outbound.cost,
            status=MessageStatus.QUEUED,
            sender_id=outbound.actor.member_id,
        )
        await tx.debit(LedgerEntryKind.OUTBOUND_MESSAGE, message.credits, message_id=message.id)
        await count_message(tx.conn, tx.account, message, sign=1)
        tx.usage.append(_usage(tx, message, sign=1))
        if outbound.key is not None:
            await idempotency.record_in_change(
                tx.conn,
                account_id=account_id,
                operation=OPERATION,
                key=outbound.key,
                digest=outbound.digest,
                result={"message_id": message.id, "balance": balance_to_json(tx.balance_after())},
                now=tx.now,
            )
        return message

    return store


async def _hand_to_carrier(runtime: Runtime, message: Message) -> tuple[Message, Balance | None]:
    """The message after the carrier's answer, and the balance after a refund if it rejected it."""
    try:
        provider_id = await runtime.carrier.send(
            from_number=message.from_number, to_number=message.to_number, body=message.body
        )
    except CarrierRejected:
        refund = await _fail_and_refund(runtime, message)
        return await Message.get(id=message.id), refund

    async def mark_sent(tx: Tx) -> int:
        return await sql.affected(
            tx.conn, _MARK_SENT, [MessageStatus.SENT, provider_id, message.id, MessageStatus.QUEUED]
        )

    if await ledger.record(runtime, message.account_id, mark_sent):
        message.status, message.provider_message_id = MessageStatus.SENT, provider_id
        return message, None
    return await Message.get(id=message.id), None


async def receive_message(
    *,
    runtime: Runtime,
    from_number: str,
    to_number: str,
    body: str,
    provider_message_id: str,
    region: str,
) -> Received:
    """Store and charge an inbound message; a provider id the receiving account already has
    (imported or not) is a duplicate, charged once."""
    number = to_e164(to_number, region=region, field="to")
    # A carrier retrying to a number that has since moved still gets its answer.
    existing = await Message.filter(
        provider_message_id=provider_message_id, direction=Direction.INBOUND, to_number=number
    ).first()
    if existing is not None:
        return Received(message=existing, duplicate=True)
    inbox = await Inbox.get_or_none(phone_number=number)
    if inbox is None:
        raise NotFound("No inbox has this number.", field="to")
    # Carrier ids are unique per account (RULES.md): any message of the receiving account with
    # this id, imported ones included, makes this a duplicate.
    existing = await Message.get_or_none(
        account_id=inbox.account_id, provider_message_id=provider_message_id
    )
    if existing is not None:
        return Received(message=existing, duplicate=True)
    cost = count_segments(body)
    sender = _sender_number(from_number, region=region)

    async def store(tx: Tx) -> Message:
        message = await _insert_message(
            tx,
            inbox_id=inbox.id,
            direction=Direction.INBOUND,
            from_number=sender,
            to_number=inbox.phone_number,
            body=body,
            cost=cost,
            status=MessageStatus.RECEIVED,
            provider_message_id=provider_message_id,
        )
        await tx.debit(LedgerEntryKind.INBOUND_MESSAGE, message.credits, message_id=message.id)
        await count_message(tx.conn, tx.account, message, sign=1)
        tx.usage.append(_usage(tx, message, sign=1))
        return message

    try:
        committed = await ledger.commit(runtime, inbox.account_id, store)
    except IntegrityError:
        # The same webhook, delivered twice at once: the other delivery committed first.
        first = await Message.get_or_none(
            account_id=inbox.account_id, provider_message_id=provider_message_id
        )
        if first is None:
            raise
        return Received(message=first, duplicate=True)
    return Received(message=committed.value, duplicate=False)


def _sender_number(raw: str, *, region: str) -> str:
    """The sender in E.164 when it is a phone number; short codes and names stay as sent."""
    try:
        return to_e164(raw, region=region, field="from")
    except TallyError:
        return raw.strip()[:32]


async def record_delivery_status(
    *, runtime: Runtime, provider_message_id: str, delivered: bool
) -> Message:
    """Apply a delivery report; `failed` refunds. Repeats and late reports change nothing."""
    # Imported history (no sender, RULES.md "Importing history") takes no delivery reports; its
    # carrier ids may even repeat across accounts, so the message Tally sent comes first.
    message = (
        await Message.filter(
            Q(direction=Direction.INBOUND) | Q(sender_id__isnull=False),
            provider_message_id=provider_message_id,
        )
        .order_by("-direction", "id")
        .first()
    )
    if message is None:
        raise NotFound("No message has this provider id.", field="provider_message_id")
    if message.direction is Direction.OUTBOUND and message.status in PENDING:
        if delivered:
            await Message.filter(id=message.id, status__in=PENDING).update(
                status=MessageStatus.DELIVERED
            )
        else:
            await _fail_and_refund(runtime, message)
    return await Message.get(id=message.id)


async def _fail_and_refund(runtime: Runtime, message: Message) -> Balance | None:
    """Mark a pending outbound message FAILED and give its credits back to their buckets.

    Subscription credits of a month that has ended are not given back: they would
    have expired with it. The balance after the refund, or None when it was no longer
    pending.
    """

    async def refund(tx: Tx) -> bool:
        failed = await sql.affected(
            tx.conn,
            _MARK_FAILED,
            [MessageStatus.FAILED, tx.now, message.id, *PENDING],
        )
        if not failed:
            return False
        # A FAILED message no longer counts as usage (docs/decisions.md).
        await count_message(tx.conn, tx.account, message, sign=-1)
        tx.usage.append(_usage(tx, message, sign=-1))
        for bucket, credits, period_index in await sql.fetch(tx.conn, _CHARGES, [message.id]):
            bucket = CreditBucket(bucket)
            if bucket is CreditBucket.SUBSCRIPTION and period_index < tx.account.period_index:
                continue
            posting = Posting(LedgerEntryKind.REFUND, bucket, -credits, message_id=message.id)
            # A refund belongs to the month of the charge it returns: that month's usage nets out.
            await tx.post(posting, period_index=period_index)
        return True

    committed = await ledger.commit(runtime, message.account_id, refund)
    return committed.balance if committed.value else None


def _usage(tx: Tx, message: Message, *, sign: int) -> Usage:
    """What a message (`sign=1`) or its refund (`-1`) adds to its inbox's month: the
    month the message was sent in, so a refund nets out where its charge counted."""
    # A new message is the change's own: the current month, applied before the rule ran.
    month = (
        tx.account.period_index
        if sign > 0
        else period_at(tx.account.created_at, message.created_at).index
    )
    outbound = sign > 0 and message.direction is Direction.OUTBOUND
    return Usage(message.inbox_id, month, sign * message.credits, outbound_send=outbound)


async def _insert_message(
    tx: Tx,
    *,
    inbox_id: int,
    direction: Direction,
    from_number: str,
    to_number: str,
    body: str,
    cost: SegmentCount,
    status: MessageStatus,
    sender_id: int | None = None,
    provider_message_id: str | None = None,
) -> Message:
    values = {
        "account_id": tx.account_id,
        "inbox_id": inbox_id,
        "direction": direction,
        "from_number": from_number,
        "to_number": to_number,
        "body": body,
        "encoding": cost.encoding,
        "segments": cost.segments,
        "credits": cost.credits,
        "status": status,
        "sender_id": sender_id,
        "provider_message_id": provider_message_id,
        "created_at": tx.now,
        "refunded_at": None,
    }
    message_id = await sql.returning_id(tx.conn, _INSERT_MESSAGE, list(values.values()))
    return Message._init_from_db(id=message_id, **values)


async def _message(conn: BaseDBAsyncClient, message_id: int) -> Message:
    rows = await sql.fetch_dicts(conn, _SELECT_MESSAGE, [message_id])
    return Message._init_from_db(**rows[0])


_INBOX = (
    "SELECT i.phone_number, i.owner_id, EXISTS (SELECT 1 FROM inbox_access a"
    " WHERE a.inbox_id = i.id AND a.member_id = ?), i.budget_mode"
    " FROM inbox i WHERE i.id = ? AND i.account_id = ?"
)
_MESSAGE_COLUMNS = (
    "account_id, inbox_id, direction, from_number, to_number, body, encoding, segments,"
    " credits, status, sender_id, provider_message_id, created_at, refunded_at"
)
_INSERT_MESSAGE = (
    f"INSERT INTO message ({_MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " RETURNING id"
)
_SELECT_MESSAGE = f"SELECT id, {_MESSAGE_COLUMNS} FROM message WHERE id = ?"
_MARK_SENT = "UPDATE message SET status = ?, provider_message_id = ? WHERE id = ? AND status = ?"
_MARK_FAILED = "UPDATE message SET status = ?, refunded_at = ? WHERE id = ? AND status IN (?, ?)"
_CHARGES = (
    "SELECT bucket, credits, period_index FROM ledger_entry"
    " WHERE message_id = ? AND kind = 'OUTBOUND_MESSAGE' ORDER BY id"
)
