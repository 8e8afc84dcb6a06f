"""Ledger and message pages through the schema: the same answer with the fast path on and off.

Their nodes mix plain fields with resolvers (`message`, `inbox`, `sender`): the plain parts
take the fast path, the rest is executed field by field, and the answer must not tell.
"""

from __future__ import annotations

import json

import pytest

from services.access import Principal
from services.payments import set_payment_method
from services.runtime import Runtime
from tests.schema.conftest import Run
from tests.services.conftest import body_of, buy, open_inbox, receive, send

ENTRY = "id kind bucket credits balanceAfter amountCents createdAt"
LEDGER = f"""
query($first: Int) {{ account {{ ledger(first: $first) {{
  edges {{ cursor node {{ {ENTRY} }} }}
  nodes {{ __typename {ENTRY} message {{ id body segments }} }}
  pageInfo {{ hasNextPage endCursor }}
}} }} }}
"""
MESSAGE = "id direction from to body encoding segments credits status providerMessageId createdAt"
MESSAGES = f"""
query($first: Int) {{ account {{ messages(first: $first) {{
  edges {{ cursor node {{ {MESSAGE} }} }}
  nodes {{ id inbox {{ id name phoneNumber kind }} sender {{ id name role }} }}
  pageInfo {{ hasNextPage endCursor }}
}} }} }}
"""

pytestmark = pytest.mark.usefixtures("db")


@pytest.fixture
async def history(admin: Principal, runtime: Runtime) -> None:
    """Sends, receipts and a purchase: entries of several kinds, some with messages."""
    inbox = await open_inbox(admin, runtime.clock)
    await set_payment_method(
        actor=admin, token="tok_visa", provider=runtime.payments, clock=runtime.clock
    )
    for segments in (1, 2, 3):
        await send(runtime, admin, inbox, body_of(segments))
        await receive(runtime, inbox, f"reply {segments}")
    await buy(runtime, admin, 100)


@pytest.mark.usefixtures("history")
@pytest.mark.parametrize("first", [3, 50])
async def test_a_ledger_page_is_the_same_with_and_without_the_fast_path(
    run: Run, first: int
) -> None:
    answers = await run(LEDGER, first=first)
    assert answers.fast == answers.normal
    page = json.loads(answers.fast)["data"]["account"]["ledger"]
    kinds = ["PURCHASE", *["INBOUND_MESSAGE", "OUTBOUND_MESSAGE"] * 3, "ALLOTMENT_GRANT"]
    assert [node["kind"] for node in page["nodes"]] == kinds[:first]
    assert [node["message"] is None for node in page["nodes"]][:2] == [True, False]
    assert page["pageInfo"]["hasNextPage"] is (first < len(kinds))


@pytest.mark.usefixtures("history")
@pytest.mark.parametrize("first", [2, 50])
async def test_a_message_page_is_the_same_with_and_without_the_fast_path(
    run: Run, first: int
) -> None:
    answers = await run(MESSAGES, first=first)
    assert answers.fast == answers.normal
    page = json.loads(answers.fast)["data"]["account"]["messages"]
    assert len(page["edges"]) == min(first, 6)
    assert page["pageInfo"]["hasNextPage"] is (first < 6)
