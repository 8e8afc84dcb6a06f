from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from models import Account, Inbox, LedgerEntry
from models.enums import CreditBucket, LedgerEntryKind
from services.access import Principal
from services.accounts import NewAccount
from services.clock import FrozenClock
from services.messaging import record_delivery_status
from services.payments import SimulatedPaymentProvider
from services.runtime import Runtime
from tests.api.test_accounts_api import errors_of, member_token
from tests.api.test_messages_api import MESSAGES, open_shared_inbox, received, sent_directly
from tests.conftest import Api

BALANCE = (
    "{ account { balance { total subscriptionCredits purchasedCredits periodStart periodEnd } } }"
)
SET_PAYMENT_METHOD = """
mutation($input: SetPaymentMethodInput!) {
  setPaymentMethod(input: $input) {
    paymentMethod { brand last4 }
    userErrors { code field message }
  }
}
"""
BUY = """
mutation($input: BuyCreditsInput!) {
  buyCredits(input: $input) {
    entry { id kind bucket credits balanceAfter amountCents message { id } createdAt }
    balance { total subscriptionCredits purchasedCredits }
    userErrors { code field message }
  }
}
"""
UPDATE_AUTO_RECHARGE = """
mutation($input: UpdateAutoRechargeInput!) {
  updateAutoRecharge(input: $input) {
    autoRecharge {
      enabled thresholdCredits rechargeCredits maxRechargesPerPeriod rechargesThisPeriod lastFailure
    }
    userErrors { code field message }
  }
}
"""
LEDGER = """
query($first: Int, $after: String, $range: DateRangeInput, $kinds: [LedgerEntryKind!]) {
  account {
    ledger(first: $first, after: $after, range: $range, kinds: $kinds) {
      edges { cursor node { id kind bucket credits balanceAfter amountCents message { body } } }
      nodes { id }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""
OVERVIEW = """
query($first: Int) {
  account {
    billingOverview {
      balance { total subscriptionCredits purchasedCredits }
      plan { monthlyCredits pricePerCreditCents }
      autoRecharge { enabled }
      creditsUsedThisPeriod creditsPurchasedThisPeriod spentThisPeriodCents
      recentEntries(first: $first) { kind credits }
    }
  }
}
"""
ADMIN_FIELDS = {
    "autoRecharge": "{ account { autoRecharge { enabled } } }",
    "paymentMethod": "{ account { paymentMethod { brand } } }",
    "ledger": "{ account { ledger { nodes { id } } } }",
    "billingOverview": "{ account { billingOverview { creditsUsedThisPeriod } } }",
}


@pytest.fixture
async def shared_inbox(admin: Principal, clock: FrozenClock) -> Inbox:
    return await open_shared_inbox(admin, clock)


async def save_card(api: Api, account: NewAccount, token: str = "tok_visa") -> dict[str, Any]:
    return await api(SET_PAYMENT_METHOD, {"input": {"token": token}}, token=account.token.secret)


async def buy(api: Api, token: str, credits: int = 500, key: str = "buy-1") -> dict[str, Any]:
    return await api(BUY, {"input": {"credits": credits, "idempotencyKey": key}}, token=token)


async def entries(account: NewAccount) -> list[LedgerEntry]:
    return await LedgerEntry.filter(account_id=account.account.id).order_by("id")


@pytest.mark.parametrize(
    ("token", "card"),
    [
        ("tok_visa", {"brand": "visa", "last4": "4242"}),
        ("tok_mastercard", {"brand": "mastercard", "last4": "4444"}),
        ("tok_chargeDeclined", {"brand": "visa", "last4": "0002"}),
    ],
)
async def test_set_payment_method_saves_the_card(
    api: Api, account: NewAccount, token: str, card: dict[str, str]
) -> None:
    # when
    body = await save_card(api, account, token)

    # then
    assert body["data"]["setPaymentMethod"] == {"paymentMethod": card, "userErrors": []}
    shown = await api(ADMIN_FIELDS["paymentMethod"], token=account.token.secret)
    assert shown["data"]["account"]["paymentMethod"] == {"brand": card["brand"]}
    row = await Account.get(id=account.account.id)
    assert (row.payment_brand, row.payment_last4) == (card["brand"], card["last4"])


async def test_an_unknown_payment_token_is_invalid_and_saves_nothing(
    api: Api, account: NewAccount
) -> None:
    [error] = errors_of(await save_card(api, account, "4242424242424242"), "setPaymentMethod")
    assert (error["code"], error["field"]) == ("INVALID_VALUE", ["input", "token"])
    shown = await api(ADMIN_FIELDS["paymentMethod"], token=account.token.secret)
    assert shown["data"]["account"]["paymentMethod"] is None
    assert (await Account.get(id=account.account.id)).payment_reference is None


async def test_buy_credits_charges_the_card_and_adds_purchased_credits(
    api: Api, account: NewAccount, payments: SimulatedPaymentProvider
) -> None:
    # given
    await save_card(api, account)

    # when
    body = await buy(api, account.token.secret, 500)

    # then
    payload = body["data"]["buyCredits"]
    assert payload["userErrors"] == []
    entry = payload["entry"]
    assert {k: v for k, v in entry.items() if k not in ("id",)} == {
        "kind": "PURCHASE",
        "bucket": "PURCHASED",
        "credits": 500,
        "balanceAfter": 1500,
        "amountCents": 500 * 2,
        "message": None,
        "createdAt": "2026-01-15T12:00:00+00:00",
    }
    assert payload["balance"] == {
        "total": 1500,
        "subscriptionCredits": 1000,
        "purchasedCredits": 500,
    }
    [charge] = payments.charges.values()
    assert (charge.amount_cents, charge.currency) == (1000, "USD")
    row = await Account.get(id=account.account.id)
    assert row.purchased_credits == 500
    assert (await entries(account))[-1].id == int(entry["id"])


@pytest.mark.parametrize("credits", [100, 1_000_000])
async def test_buy_credits_accepts_100_to_1000000(
    api: Api, account: NewAccount, credits: int
) -> None:
    await save_card(api, account)
    body = await buy(api, account.token.secret, credits)
    assert body["data"]["buyCredits"]["balance"]["purchasedCredits"] == credits


@pytest.mark.parametrize("credits", [0, 99, 1_000_001])
async def test_buy_credits_outside_100_to_1000000_is_invalid_and_charges_nothing(
    api: Api, account: NewAccount, payments: SimulatedPaymentProvider, credits: int
) -> None:
    await save_card(api, account)
    [error] = errors_of(await buy(api, account.token.secret, credits), "buyCredits")
    assert (error["code"], error["field"]) == ("INVALID_VALUE", ["input", "credits"])
    assert payments.charges == {}
    assert len(await entries(account)) == 1


async def test_buy_credits_without_a_payment_method_is_refused(
    api: Api, account: NewAccount, payments: SimulatedPaymentProvider
) -> None:
    [error] = errors_of(await buy(api, account.token.secret), "buyCredits")
    assert (error["code"], error["field"]) == ("PAYMENT_METHOD_REQUIRED", None)
    assert payments.charges == {}
    assert len(await entries(account)) == 1


async def test_a_declined_purchase_adds_nothing(
    api: Api, account: NewAccount, payments: SimulatedPaymentProvider
) -> None:
    # given
    await save_card(api, account, "tok_chargeDeclined")

    # when
    [error] = errors_of(await buy(api, account.token.secret), "buyCredits")

    # then
    assert error["code"] == "PAYMENT_DECLINED"
    assert payments.charges == {}
    assert [e.kind for e in await entries(account)] == [LedgerEntryKind.ALLOTMENT_GRANT]
    assert (await Account.get(id=account.account.id)).purchased_credits == 0


async def test_the_same_purchase_key_twice_charges_once(
    api: Api, account: NewAccount, payments: SimulatedPaymentProvider
) -> None:
    await save_card(api, account)
    first = await buy(api, account.token.secret, 500, key="k")
    again = await buy(api, account.token.secret, 500, key="k")
    assert again["data"]["buyCredits"] == first["data"]["buyCredits"]
    assert len(payments.charges) == 1
    assert (await Account.get(id=account.account.id)).purchased_credits == 500


async def test_a_purchase_key_reused_for_other_credits_is_a_conflict(
    api: Api, account: NewAccount, payments: SimulatedPaymentProvider
) -> None:
    await save_card(api, account)
    await buy(api, account.token.secret, 500, key="k")
    [error] = errors_of(await buy(api, account.token.secret, 600, key="k"), "buyCredits")
    assert (error["code"], error["field"]) == ("IDEMPOTENCY_CONFLICT", ["input", "idempotencyKey"])
    assert len(payments.charges) == 1
    assert (await Account.get(id=account.account.id)).purchased_credits == 500


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"thresholdCredits": -1}, "thresholdCredits"),
        ({"thresholdCredits": 1_000_001}, "thresholdCredits"),
        ({"rechargeCredits": 99}, "rechargeCredits"),
        ({"rechargeCredits": 1_000_001}, "rechargeCredits"),
        ({"maxRechargesPerPeriod": 0}, "maxRechargesPerPeriod"),
        ({"maxRechargesPerPeriod": 101}, "maxRechargesPerPeriod"),
    ],
)
async def test_update_auto_recharge_checks_its_ranges(
    api: Api, account: NewAccount, fields: dict[str, int], path: str
) -> None:
    # given
    await save_card(api, account)

    # when
    variables = {"input": {"enabled": True, **fields}}
    body = await api(UPDATE_AUTO_RECHARGE, variables, token=account.token.secret)

    # then
    [error] = errors_of(body, "updateAutoRecharge")
    assert (error["code"], error["field"]) == ("INVALID_VALUE", ["input", path])
    assert (await Account.get(id=account.account.id)).auto_recharge_enabled is False


async def test_turning_auto_recharge_on_needs_a_payment_method(
    api: Api, account: NewAccount
) -> None:
    body = await api(UPDATE_AUTO_RECHARGE, {"input": {"enabled": True}}, token=account.token.secret)
    [error] = errors_of(body, "updateAutoRecharge")
    assert (error["code"], error["field"]) == ("PAYMENT_METHOD_REQUIRED", ["input", "enabled"])
    assert (await Account.get(id=account.account.id)).auto_recharge_enabled is False


async def test_update_auto_recharge_sets_its_rules(api: Api, account: NewAccount) -> None:
    # given
    await save_card(api, account)
    rules = {"thresholdCredits": 0, "rechargeCredits": 100, "maxRechargesPerPeriod": 100}

    # when
    body = await api(
        UPDATE_AUTO_RECHARGE, {"input": {"enabled": True, **rules}}, token=account.token.secret
    )

    # then
    assert body["data"]["updateAutoRecharge"] == {
        "autoRecharge": {
            "enabled": True,
            **rules,
            "rechargesThisPeriod": 0,
            "lastFailure": None,
        },
        "userErrors": [],
    }
    row = await Account.get(id=account.account.id)
    assert (row.auto_recharge_enabled, row.auto_recharge_credits) == (True, 100)


async def test_a_member_gets_forbidden_errors_from_admin_mutations(
    api: Api, account: NewAccount, payments: SimulatedPaymentProvider
) -> None:
    # given
    await save_card(api, account)
    token = await member_token(api, account)

    # when
    attempts = [
        (SET_PAYMENT_METHOD, {"token": "tok_mastercard"}, "setPaymentMethod"),
        (BUY, {"credits": 500, "idempotencyKey": "m"}, "buyCredits"),
        (UPDATE_AUTO_RECHARGE, {"enabled": True}, "updateAutoRecharge"),
    ]

    # then
    for query, fields, name in attempts:
        body = await api(query, {"input": fields}, token=token)
        [error] = body["errors"]
        assert (error["extensions"]["code"], error["path"]) == ("FORBIDDEN", [name])
        assert body["data"] is None
    row = await Account.get(id=account.account.id)
    assert (row.payment_brand, row.purchased_credits, row.auto_recharge_enabled) == (
        "visa",
        0,
        False,
    )
    assert payments.charges == {}


@pytest.mark.parametrize("field", sorted(ADMIN_FIELDS))
async def test_a_member_reading_an_admin_field_gets_forbidden(
    api: Api, account: NewAccount, field: str
) -> None:
    token = await member_token(api, account)
    body = await api(ADMIN_FIELDS[field], token=token)
    [error] = body["errors"]
    assert (error["extensions"]["code"], error["path"]) == ("FORBIDDEN", ["account", field])
    # A nullable field is null; a non-null one takes its non-null parents with it.
    assert body["data"] is None or body["data"]["account"][field] is None


async def test_a_member_reads_the_balance(api: Api, account: NewAccount) -> None:
    token = await member_token(api, account)
    body = await api(BALANCE, token=token)
    assert body["data"]["account"]["balance"] == {
        "total": 1000,
        "subscriptionCredits": 1000,
        "purchasedCredits": 0,
        "periodStart": "2026-01-15T12:00:00+00:00",
        "periodEnd": "2026-02-15T12:00:00+00:00",
    }


async def test_reading_the_balance_in_a_new_month_applies_its_allotment(
    api: Api, account: NewAccount, admin: Principal, shared_inbox: Inbox, runtime: Runtime
) -> None:
    # given 1 credit used in the first month
    await sent_directly(runtime, admin, shared_inbox, "Hello")
    clock = runtime.clock
    assert isinstance(clock, FrozenClock)

    # when 40 days later
    clock.advance(timedelta(days=40))
    body = await api(BALANCE, token=account.token.secret)

    # then the 999 left expired and a fresh 1000 were granted, once
    assert body["data"]["account"]["balance"] == {
        "total": 1000,
        "subscriptionCredits": 1000,
        "purchasedCredits": 0,
        "periodStart": "2026-02-15T12:00:00+00:00",
        "periodEnd": "2026-03-15T12:00:00+00:00",
    }
    await api(BALANCE, token=account.token.secret)
    kinds = [(e.kind, e.credits) for e in await entries(account)][-2:]
    assert kinds == [
        (LedgerEntryKind.ALLOTMENT_EXPIRY, -999),
        (LedgerEntryKind.ALLOTMENT_GRANT, 1000),
    ]
    assert (await Account.get(id=account.account.id)).period_index == 1


async def test_billing_overview_sums_the_current_month(
    api: Api, account: NewAccount, admin: Principal, shared_inbox: Inbox, runtime: Runtime
) -> None:
    # given a month with 3 credits sent, 1 received, 500 bought, and a 2-credit send refunded
    await sent_directly(runtime, admin, shared_inbox, "Hello")
    refunded = await sent_directly(runtime, admin, shared_inbox, "a" * 200)
    await received(runtime, shared_inbox, "Hi back", "in-1")
    await save_card(api, account)
    await buy(api, account.token.secret, 500)
    assert refunded.provider_message_id is not None
    await record_delivery_status(
        provider_message_id=refunded.provider_message_id,
        delivered=False,
        runtime=runtime,
    )

    # when
    body = await api(OVERVIEW, {"first": 3}, token=account.token.secret)

    # then
    overview = body["data"]["account"]["billingOverview"]
    assert overview == {
        "balance": {"total": 1498, "subscriptionCredits": 998, "purchasedCredits": 500},
        "plan": {"monthlyCredits": 1000, "pricePerCreditCents": 2},
        "autoRecharge": {"enabled": False},
        "creditsUsedThisPeriod": 1 + 2 + 1 - 2,
        "creditsPurchasedThisPeriod": 500,
        "spentThisPeriodCents": 1000,
        "recentEntries": [
            {"kind": "REFUND", "credits": 2},
            {"kind": "PURCHASE", "credits": 500},
            {"kind": "INBOUND_MESSAGE", "credits": -1},
        ],
    }


async def test_billing_overview_starts_afresh_each_month(
    api: Api, account: NewAccount, admin: Principal, shared_inbox: Inbox, runtime: Runtime
) -> None:
    # given a month with usage and a purchase
    await sent_directly(runtime, admin, shared_inbox, "Hello")
    await save_card(api, account)
    await buy(api, account.token.secret, 500)
    clock = runtime.clock
    assert isinstance(clock, FrozenClock)

    # when the next month has begun
    clock.advance(timedelta(days=31))
    body = await api(OVERVIEW, token=account.token.secret)

    # then
    overview = body["data"]["account"]["billingOverview"]
    assert (
        overview["creditsUsedThisPeriod"],
        overview["creditsPurchasedThisPeriod"],
        overview["spentThisPeriodCents"],
    ) == (0, 0, 0)
    assert overview["balance"] == {
        "total": 1500,
        "subscriptionCredits": 1000,
        "purchasedCredits": 500,
    }
    assert [e["kind"] for e in overview["recentEntries"]][:2] == [
        "ALLOTMENT_GRANT",
        "ALLOTMENT_EXPIRY",
    ]


async def test_ledger_pages_walk_every_entry_once_newest_first(
    api: Api, account: NewAccount, admin: Principal, shared_inbox: Inbox, runtime: Runtime
) -> None:
    # given 7 entries: the grant and 6 sends
    for n in range(6):
        await sent_directly(runtime, admin, shared_inbox, f"message {n}")
    expected = [str(e.id) for e in reversed(await entries(account))]

    # when
    seen: list[str] = []
    after = None
    while True:
        body = await api(LEDGER, {"first": 3, "after": after}, token=account.token.secret)
        page = body["data"]["account"]["ledger"]
        seen += [node["id"] for node in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]

    # then
    assert seen == expected
    assert len(expected) == 7


async def test_ledger_entries_show_their_message_and_filter_by_kind(
    api: Api, account: NewAccount, admin: Principal, shared_inbox: Inbox, runtime: Runtime
) -> None:
    # given
    await sent_directly(runtime, admin, shared_inbox, "Hello")

    # when
    body = await api(LEDGER, {"kinds": ["OUTBOUND_MESSAGE"]}, token=account.token.secret)

    # then
    [edge] = body["data"]["account"]["ledger"]["edges"]
    assert edge["node"] | {"id": None} == {
        "id": None,
        "kind": "OUTBOUND_MESSAGE",
        "bucket": CreditBucket.SUBSCRIPTION.value,
        "credits": -1,
        "balanceAfter": 999,
        "amountCents": None,
        "message": {"body": "Hello"},
    }


async def test_ledger_range_selects_local_days(
    api: Api, account: NewAccount, admin: Principal, shared_inbox: Inbox, runtime: Runtime
) -> None:
    # given a send on Jan 17 (New York), after the grant of Jan 15
    clock = runtime.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(timedelta(days=2))
    await sent_directly(runtime, admin, shared_inbox, "Hello")

    # when
    days = {"start": "2026-01-16", "end": "2026-01-17"}
    body = await api(LEDGER, {"range": days}, token=account.token.secret)

    # then
    assert [e["node"]["kind"] for e in body["data"]["account"]["ledger"]["edges"]] == [
        "OUTBOUND_MESSAGE"
    ]


async def test_a_message_cursor_is_not_a_ledger_cursor(
    api: Api, account: NewAccount, admin: Principal, shared_inbox: Inbox, runtime: Runtime
) -> None:
    # given
    for n in range(2):
        await sent_directly(runtime, admin, shared_inbox, f"m{n}")
    messages = await api(MESSAGES, {"first": 1}, token=account.token.secret)
    cursor = messages["data"]["account"]["messages"]["pageInfo"]["endCursor"]

    # when
    body = await api(LEDGER, {"after": cursor}, token=account.token.secret)

    # then
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "'after'" in error["message"]


@pytest.mark.parametrize("first", [0, 101])
async def test_ledger_and_recent_entries_take_1_to_100(
    api: Api, account: NewAccount, first: int
) -> None:
    for query in (LEDGER, OVERVIEW):
        [error] = (await api(query, {"first": first}, token=account.token.secret))["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "'first'" in error["message"]
