"""Spend control's part of every balance change, run by the ledger inside the change.

`notices_of_change` is called once per change, from `ledger._finish`: it fires and
re-arms balance alerts on the new total, counts the change's messages in their
inboxes' months (budget notices), adds the rule's own notices (auto-recharge), and
writes them all, in that order, with their webhook deliveries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from models import Account
from services import alerts, budgets, notices
from services.notices import NoticeDraft, RaisedNotice


@dataclass(frozen=True, slots=True)
class Usage:
    """Credits a change added to one inbox's subscription month (negative: a refund)."""

    inbox_id: int
    period_index: int
    credits: int
    # An outbound send, which a HARD budget refuses; inbound messages pass it.
    outbound_send: bool = False


async def notices_of_change(
    conn: BaseDBAsyncClient,
    *,
    account: Account,
    usage: Sequence[Usage],
    raised: Sequence[NoticeDraft],
    now: datetime,
) -> list[RaisedNotice]:
    """The change's notices, written; `account` (locked, after the change) gets its new
    alert summary, for the change's own write of the account row."""
    drafts = await alerts.notices_for_change(conn, account=account, now=now)
    for counted in usage:
        drafts += await budgets.count_usage(
            conn,
            inbox_id=counted.inbox_id,
            period_index=counted.period_index,
            credits=counted.credits,
            outbound_send=counted.outbound_send,
        )
    drafts += raised
    return await notices.record(conn, account_id=account.id, drafts=drafts, now=now)
