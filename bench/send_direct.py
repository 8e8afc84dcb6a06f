"""The send benchmark without HTTP: a seeded account, and the service layer alone.

`seed` makes a fresh database with an account whose member owns a personal inbox,
through the services (the floor phases use its ids). `python -m bench.send_direct JOB`
is the service phase: `services.messaging.send_message` from N concurrent asyncio tasks
in one process (no HTTP, no GraphQL, no authentication); it prints the same JSON as a
load process of bench/client.py, plus the process's CPU over the measured window.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass

from bench.client import Counts
from models import Inbox
from models.db import close_database, migrate_database, open_database
from models.enums import MessageStatus, Role
from services import accounts, members, messaging, tokens
from services.access import Principal
from services.errors import TallyError
from services.runtime import Runtime

MONTHLY_CREDITS = 10_000_000
PERSONAL_NUMBER = "(415) 555-0142"


@dataclass(frozen=True, slots=True)
class Seeded:
    account_id: int
    member_id: int
    inbox_id: int
    token_id: int

    @property
    def actor(self) -> Principal:
        return Principal(
            account_id=self.account_id,
            member_id=self.member_id,
            role=Role.MEMBER,
            token_id=self.token_id,
        )


async def seed(database_url: str, runtime: Runtime, *, keep_open: bool = False) -> Seeded:
    """Migrate `database_url` and add the bench account; leave Tortoise open if asked."""
    await migrate_database(database_url)
    await open_database(database_url)
    try:
        created = await accounts.create_account(
            name="Bench",
            admin_name="Admin",
            admin_email="admin@bench.example",
            plan=accounts.PlanTerms(monthly_credits=MONTHLY_CREDITS),
            clock=runtime.clock,
        )
        admin = Principal(
            account_id=created.account.id,
            member_id=created.admin.id,
            role=Role.ADMIN,
            token_id=created.token.token.id,
        )
        member = await members.create_member(
            actor=admin,
            name="Sender",
            email="sender@bench.example",
            role=Role.MEMBER,
            personal_phone_number=PERSONAL_NUMBER,
            region="US",
            clock=runtime.clock,
        )
        issued = await tokens.add_token(member=member, name="bench", now=runtime.clock.now())
        inbox = await Inbox.get(owner_id=member.id)
        return Seeded(created.account.id, member.id, inbox.id, issued.token.id)
    finally:
        if not keep_open:
            await close_database()


@dataclass(frozen=True, slots=True)
class ServiceJob:
    database_url: str
    tasks: int
    warmup: float
    duration: float
    to: str
    body: str


async def _send_once(runtime: Runtime, seeded: Seeded, job: ServiceJob) -> str | None:
    """Why one send failed, or None."""
    try:
        sent = await messaging.send_message(
            runtime=runtime,
            actor=seeded.actor,
            inbox_id=seeded.inbox_id,
            to=job.to,
            body=job.body,
            idempotency_key=None,
            region="US",
        )
    except TallyError as error:
        return f"{error.code}: {error.message}"
    return None if sent.message.status is MessageStatus.SENT else f"{sent.message.status}"


async def service_phase(job: ServiceJob) -> dict[str, object]:
    runtime = Runtime()
    seeded = await seed(job.database_url, runtime, keep_open=True)
    counts = Counts()
    begin = time.time() + job.warmup
    end = begin + job.duration

    async def worker() -> None:
        while time.time() < end:
            sent = time.perf_counter_ns()
            reason = await _send_once(runtime, seeded, job)
            done = time.perf_counter_ns()
            if not begin <= time.time() <= end:
                continue
            if reason is None:
                counts.ok += 1
                counts.latencies_us.append((done - sent) // 1000)
            else:
                counts.error(reason)

    async def cpu_over_window() -> float:
        # This process's CPU (threads included) while the sends are counted.
        await asyncio.sleep(max(0.0, begin - time.time()))
        before = os.times()
        await asyncio.sleep(max(0.0, end - time.time()))
        after = os.times()
        return ((after.user - before.user) + (after.system - before.system)) / job.duration

    try:
        async with runtime.running():
            cores, *_ = await asyncio.gather(
                cpu_over_window(), *(worker() for _ in range(job.tasks))
            )
    finally:
        await close_database()
    return {**counts.__dict__, "window_cpu_cores": cores}


def main() -> int:
    job = ServiceJob(**json.loads(sys.argv[1]))
    sys.stdout.write(json.dumps(asyncio.run(service_phase(job))) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
