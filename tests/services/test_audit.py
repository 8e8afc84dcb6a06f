"""The audit log: one entry per settings change, only what changed, never a secret."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from models import AuditEntry, Inbox, Member
from models.enums import AuditAction, BudgetMode, NoticeKind, Role, WeekStart
from services.access import Principal
from services.accounts import NewAccount, update_account
from services.alerts import set_balance_alerts
from services.auto_recharge import update_auto_recharge
from services.budgets import set_inbox_budget
from services.clock import FrozenClock
from services.errors import TallyError
from services.inboxes import create_shared_inbox
from services.members import create_member
from services.payments import set_payment_method
from services.runtime import Runtime
from services.tokens import create_token, revoke_token
from services.webhook_endpoints import create_endpoint, delete_endpoint
from tests.services.conftest import enable_auto_recharge, send

REGION = "US"


def changes_of(entry: AuditEntry) -> dict[str, tuple[Any, Any]]:
    """field -> (before, after), the JSON text decoded."""
    return {c["field"]: (_decoded(c["before"]), _decoded(c["after"])) for c in entry.changes}


def _decoded(text: str | None) -> Any:
    return None if text is None else json.loads(text)


async def only_entry() -> AuditEntry:
    entries = await AuditEntry.all()
    assert len(entries) == 1, [(e.action, e.changes) for e in entries]
    return entries[0]


@pytest.fixture
def seen_admin(admin: Principal) -> Principal:
    """The admin as the edge hands it over: with the client's address."""
    return replace(admin, ip="203.0.113.7")


async def test_update_account_logs_only_the_fields_that_changed(
    seen_admin: Principal, clock: FrozenClock
) -> None:
    # when the name stays and the zone and week start change
    await update_account(
        actor=seen_admin,
        name="Acme",
        timezone="Europe/Paris",
        week_start=WeekStart.SUNDAY,
        clock=clock,
    )
    # then one entry, by the admin from its address, with the two changes
    entry = await only_entry()
    assert (entry.action, entry.actor_id, entry.target_id, entry.ip, entry.created_at) == (
        AuditAction.ACCOUNT_UPDATED,
        seen_admin.member_id,
        None,
        "203.0.113.7",
        clock.now(),
    )
    assert changes_of(entry) == {
        "timezone": ("America/New_York", "Europe/Paris"),
        "weekStart": ("MONDAY", "SUNDAY"),
    }
    assert entry.changes[0]["after"] == '"Europe/Paris"'


async def test_the_same_values_again_write_no_entry(admin: Principal, clock: FrozenClock) -> None:
    await update_account(actor=admin, name="Acme", timezone="America/New_York", clock=clock)
    await update_account(actor=admin, clock=clock)
    assert await AuditEntry.all().count() == 0


async def test_a_member_with_a_phone_is_one_member_created_entry(
    admin: Principal, clock: FrozenClock
) -> None:
    member = await create_member(
        actor=admin,
        name=" Ben ",
        email="Ben@Acme.example",
        role=Role.MEMBER,
        personal_phone_number="(415) 555-0142",
        region=REGION,
        clock=clock,
    )
    entry = await only_entry()
    assert (entry.action, entry.target_id) == (AuditAction.MEMBER_CREATED, member.id)
    assert changes_of(entry) == {
        "name": (None, "Ben"),
        "email": (None, member.email),
        "role": (None, "MEMBER"),
        "personalPhoneNumber": (None, "+14155550142"),
    }


async def test_a_shared_inbox_is_logged_with_its_members(
    admin: Principal, account: NewAccount, clock: FrozenClock
) -> None:
    inbox = await create_shared_inbox(
        actor=admin,
        name="Desk",
        phone_number="415 555 0100",
        member_ids=[account.admin.id],
        region=REGION,
        clock=clock,
    )
    entry = await only_entry()
    assert (entry.action, entry.target_id) == (AuditAction.INBOX_CREATED, inbox.id)
    assert changes_of(entry) == {
        "name": (None, "Desk"),
        "phoneNumber": (None, "+14155550100"),
        "memberIds": (None, [str(account.admin.id)]),
    }


async def test_a_token_is_its_name_and_member_and_a_second_revoke_writes_nothing(
    admin: Principal, clock: FrozenClock, runtime: Runtime
) -> None:
    issued = await create_token(actor=admin, member_id=admin.member_id, name="CI", clock=clock)
    assert await revoke_token(runtime=runtime, actor=admin, token_id=issued.token.id) is True
    assert await revoke_token(runtime=runtime, actor=admin, token_id=issued.token.id) is False
    created, revoked = await AuditEntry.all().order_by("id")
    member_id = str(admin.member_id)
    assert (created.action, created.target_id) == (AuditAction.API_TOKEN_CREATED, issued.token.id)
    assert changes_of(created) == {"name": (None, "CI"), "memberId": (None, member_id)}
    assert (revoked.action, revoked.target_id) == (AuditAction.API_TOKEN_REVOKED, issued.token.id)
    assert changes_of(revoked) == {"name": ("CI", None), "memberId": (member_id, None)}


async def test_a_payment_method_is_brand_and_last4_and_the_same_card_again_is_nothing(
    admin: Principal, runtime: Runtime, clock: FrozenClock
) -> None:
    for token in ("tok_visa", "tok_mastercard", "tok_mastercard"):
        await set_payment_method(actor=admin, token=token, provider=runtime.payments, clock=clock)
    first, second = await AuditEntry.all().order_by("id")
    visa, mastercard = {"brand": "visa", "last4": "4242"}, {"brand": "mastercard", "last4": "4444"}
    assert first.action is AuditAction.PAYMENT_METHOD_SET
    assert changes_of(first) == {"paymentMethod": (None, visa)}
    assert changes_of(second) == {"paymentMethod": (visa, mastercard)}


async def test_auto_recharge_logs_the_rules_that_changed(
    admin: Principal, runtime: Runtime, card: object
) -> None:
    await AuditEntry.all().delete()  # the card's own entry
    await update_auto_recharge(
        actor=admin, enabled=True, threshold_credits=100, recharge_credits=800, clock=runtime.clock
    )
    entry = await only_entry()
    assert entry.action is AuditAction.AUTO_RECHARGE_UPDATED
    assert changes_of(entry) == {"enabled": (False, True), "rechargeCredits": (500, 800)}


async def test_the_third_decline_logs_auto_recharge_disabled_by_the_server(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime
) -> None:
    # given auto-recharge on with a card that declines
    await set_payment_method(
        actor=admin, token="tok_chargeDeclined", provider=runtime.payments, clock=runtime.clock
    )
    await enable_auto_recharge(admin, runtime, threshold=1000, max_per_period=10)
    # when three recharges decline (and a fourth send triggers nothing)
    for _ in range(4):
        await send(runtime, admin, inbox, "Hello")
    # then one AUTO_RECHARGE_DISABLED, with no actor and no address
    disabled = await AuditEntry.filter(action=AuditAction.AUTO_RECHARGE_DISABLED)
    assert len(disabled) == 1
    assert (disabled[0].actor_id, disabled[0].ip, disabled[0].target_id) == (None, None, None)
    assert changes_of(disabled[0]) == {"enabled": (True, False)}


def _refusals(
    admin: Principal, member: Principal, runtime: Runtime
) -> dict[str, Callable[[], Awaitable[object]]]:
    clock = runtime.clock
    return {
        "unknown zone": lambda: update_account(
            actor=admin, name="New", timezone="Mars/Olympus", clock=clock
        ),
        "member changes the account": lambda: update_account(
            actor=member, name="Hijacked", clock=clock
        ),
        "e-mail taken": lambda: create_member(
            actor=admin,
            name="Twin",
            email="ada@acme.example",
            role=Role.MEMBER,
            personal_phone_number=None,
            region=REGION,
            clock=clock,
        ),
        "bad personal number": lambda: create_member(
            actor=admin,
            name="Cy",
            email="cy@acme.example",
            role=Role.MEMBER,
            personal_phone_number="not a number",
            region=REGION,
            clock=clock,
        ),
        "member's token for another": lambda: create_token(
            actor=member, member_id=admin.member_id, name="x", clock=clock
        ),
        "member revokes the admin's token": lambda: revoke_token(
            runtime=runtime, actor=member, token_id=admin.token_id
        ),
        "unknown card token": lambda: set_payment_method(
            actor=admin, token="tok_unknown", provider=runtime.payments, clock=clock
        ),
        "auto-recharge without a card": lambda: update_auto_recharge(
            actor=admin, enabled=True, clock=clock
        ),
        "auto-recharge out of range": lambda: update_auto_recharge(
            actor=admin, enabled=False, threshold_credits=-1, clock=clock
        ),
    }


REFUSALS = [
    "unknown zone",
    "member changes the account",
    "e-mail taken",
    "bad personal number",
    "member's token for another",
    "member revokes the admin's token",
    "unknown card token",
    "auto-recharge without a card",
    "auto-recharge out of range",
]


@pytest.mark.parametrize("refusal", REFUSALS)
async def test_a_refused_mutation_writes_no_entry(
    refusal: str, admin: Principal, runtime: Runtime, clock: FrozenClock
) -> None:
    ben = await create_member(
        actor=admin,
        name="Ben",
        email="ben@acme.example",
        role=Role.MEMBER,
        personal_phone_number=None,
        region=REGION,
        clock=clock,
    )
    await AuditEntry.all().delete()
    member = Principal(admin.account_id, ben.id, Role.MEMBER, token_id=0)
    refusals = _refusals(admin, member, runtime)
    assert set(refusals) == set(REFUSALS)
    with pytest.raises(TallyError):
        await refusals[refusal]()
    assert await AuditEntry.all().count() == 0
    assert await Member.filter(account_id=admin.account_id).count() == 2


async def test_no_secret_appears_in_any_entry(
    admin: Principal, runtime: Runtime, clock: FrozenClock
) -> None:
    # given every audited mutation, with the secrets each handled
    secrets = ["tok_visa", "tok_chargeDeclined", "pm_sim_"]
    issued = await create_token(actor=admin, member_id=admin.member_id, name="CI", clock=clock)
    secrets += [issued.secret, issued.token.secret_hash]
    await revoke_token(runtime=runtime, actor=admin, token_id=issued.token.id)
    for token in ("tok_visa", "tok_chargeDeclined"):
        await set_payment_method(actor=admin, token=token, provider=runtime.payments, clock=clock)
    await update_auto_recharge(actor=admin, enabled=True, clock=clock)
    await update_account(actor=admin, name="Acme 2", clock=clock)
    # then no entry holds any of them
    text = json.dumps([entry.changes for entry in await AuditEntry.all()])
    assert await AuditEntry.all().count() == 6
    assert [secret for secret in secrets if secret in text] == []


async def test_balance_alerts_log_the_thresholds_before_and_after(
    admin: Principal, clock: FrozenClock
) -> None:
    await set_balance_alerts(actor=admin, thresholds=[500, 100], clock=clock)
    await set_balance_alerts(actor=admin, thresholds=[100, 500], clock=clock)
    await set_balance_alerts(actor=admin, thresholds=[], clock=clock)
    first, removed = await AuditEntry.all().order_by("id")
    assert (first.action, first.target_id) == (AuditAction.BALANCE_ALERTS_SET, None)
    assert changes_of(first) == {"thresholds": ([], [100, 500])}
    assert changes_of(removed) == {"thresholds": ([100, 500], [])}


async def test_an_inbox_budget_is_logged_on_its_inbox_and_removing_none_writes_nothing(
    admin: Principal, clock: FrozenClock
) -> None:
    inbox = await create_shared_inbox(
        actor=admin, name="Desk", phone_number="+14155550177", member_ids=[], region=REGION,
        clock=clock,
    )  # fmt: skip
    await AuditEntry.all().delete()
    for credits, mode in ((300, BudgetMode.HARD), (None, BudgetMode.SOFT), (None, BudgetMode.SOFT)):
        await set_inbox_budget(
            actor=admin, inbox_id=inbox.id, monthly_credits=credits, mode=mode, clock=clock
        )
    set_, removed = await AuditEntry.all().order_by("id")
    assert (set_.action, set_.target_id) == (AuditAction.INBOX_BUDGET_SET, inbox.id)
    budget = {"monthlyCredits": 300, "mode": "HARD"}
    assert changes_of(set_) == {"monthlyCredits": (None, 300), "mode": (None, "HARD")}
    assert changes_of(removed) == {name: (value, None) for name, value in budget.items()}


async def test_a_webhook_endpoint_is_logged_without_its_secret_when_made_and_deleted(
    admin: Principal, clock: FrozenClock
) -> None:
    url = "http://127.0.0.1:9/hook"
    endpoint, secret = await create_endpoint(
        actor=admin, url=url, events=[NoticeKind.BUDGET_REACHED], allow_private=True, clock=clock
    )
    await delete_endpoint(actor=admin, endpoint_id=endpoint.id, clock=clock)
    created, deleted = await AuditEntry.all().order_by("id")
    fields = {"url": url, "events": ["BUDGET_REACHED"]}
    assert (created.action, created.target_id) == (
        AuditAction.WEBHOOK_ENDPOINT_CREATED,
        endpoint.id,
    )
    assert changes_of(created) == {name: (None, value) for name, value in fields.items()}
    assert (deleted.action, deleted.target_id) == (
        AuditAction.WEBHOOK_ENDPOINT_DELETED,
        endpoint.id,
    )
    assert changes_of(deleted) == {name: (value, None) for name, value in fields.items()}
    assert secret not in json.dumps([created.changes, deleted.changes])


async def test_refused_spend_settings_write_no_entry(admin: Principal, clock: FrozenClock) -> None:
    with pytest.raises(TallyError):
        await set_balance_alerts(actor=admin, thresholds=[-1], clock=clock)
    with pytest.raises(TallyError):
        await set_inbox_budget(
            actor=admin, inbox_id=10**9, monthly_credits=5, mode=BudgetMode.SOFT, clock=clock
        )
    with pytest.raises(TallyError):
        await delete_endpoint(actor=admin, endpoint_id=10**9, clock=clock)
    assert await AuditEntry.all().count() == 0
