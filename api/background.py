"""Background work of a server process: the monthly allotment sweep, and stalled recharges.

Allotments are applied lazily by the first balance read or write of a new month;
the sweep also applies them for accounts nobody touches, so that expiries and
grants (and their live events) happen on time. Several processes may sweep at
once: the account row lock and the per-period unique key keep every grant
exactly-once. The same loop settles auto-recharges that a stopped process left
between the provider's charge and the ledger entry, for accounts that no later
change would trigger (services/auto_recharge.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from api.settings import Settings
from services import allotments, auto_recharge, ledger
from services.dispatcher import DispatchRules
from services.runtime import Runtime

log = logging.getLogger("tally.background")

SWEEP_INTERVAL_SECONDS = 30.0


async def sweep_due_allotments(runtime: Runtime) -> int:
    """Apply due allotments (a batch per call); the number of accounts changed."""
    changed = 0
    for account_id in await allotments.due_account_ids(clock=runtime.clock):
        # Published, and auto-recharged when the new month leaves the total below the
        # threshold, by the ledger like any other change.
        if await ledger.catch_up(runtime, account_id) is not None:
            changed += 1
    return changed


async def sweep_stalled_recharges(runtime: Runtime) -> int:
    """Settle auto-recharges a stopped process left between charge and ledger entry."""
    return await auto_recharge.complete_all_stalled_recharges(
        runtime=runtime,
    )


async def _sweep_forever(runtime: Runtime, interval: float) -> None:
    while True:
        try:
            await sweep_due_allotments(runtime)
        except Exception:
            log.exception("allotment sweep failed; retrying in %s s", interval)
        try:
            await sweep_stalled_recharges(runtime)
        except Exception:
            log.exception("stalled recharge sweep failed; retrying in %s s", interval)
        await asyncio.sleep(interval)


def dispatch_rules(settings: Settings) -> DispatchRules:
    """How this process's webhook dispatcher sends (services/dispatcher.py)."""
    return DispatchRules(
        retry_schedule=settings.webhook_retry_schedule,
        allow_private=settings.webhook_allow_private,
    )


@contextlib.asynccontextmanager
async def allotment_sweeper(
    runtime: Runtime, interval: float = SWEEP_INTERVAL_SECONDS
) -> AsyncIterator[None]:
    """Run the sweep in the background for the life of the context."""
    task = asyncio.create_task(_sweep_forever(runtime, interval), name="allotment-sweep")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
