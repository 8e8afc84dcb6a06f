"""Fixtures of the API tests that talk to a real uvicorn server over HTTP and websockets."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from api.settings import Settings
from models import Inbox
from services.access import Principal
from services.clock import FrozenClock
from services.inboxes import create_shared_inbox
from services.runtime import Runtime
from tests.api.test_subscriptions import SHARED_NUMBER, Live, serving


@pytest.fixture
async def live(settings: Settings, runtime: Runtime) -> AsyncIterator[Live]:
    async with serving(settings, runtime) as server:
        yield server


@pytest.fixture
async def inbox(admin: Principal, clock: FrozenClock) -> Inbox:
    """A shared inbox no member is listed on: only admins may send from it."""
    return await create_shared_inbox(
        actor=admin, name="Support", phone_number=SHARED_NUMBER, member_ids=[], region="US",
        clock=clock,
    )  # fmt: skip
