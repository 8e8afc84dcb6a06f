"""The outside world the services talk to, and the process's ledger writer: one value,
built once per process by the edge.

Services that touch the outside world (the time, the carrier, the payment provider, the
balance broker) take a `Runtime`; tests build one with a frozen clock and simulators.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from services.broadcast import Broker, LocalBroker, RedisBroker
from services.carrier import Carrier, SimulatedCarrier
from services.clock import Clock, SystemClock
from services.ledger_writer import LedgerWriter
from services.payments import PaymentProvider, SimulatedPaymentProvider
from services.token_cache import TokenCache
from services.token_watch import TokenWatch

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def broker_for(url: str, namespace: str = "") -> Broker:
    """`memory://`: events stay in this process; `redis://…`: they reach every process."""
    if url == "memory://":
        return LocalBroker()
    if url.startswith(REDIS_SCHEMES):
        return RedisBroker(url, namespace=namespace)
    raise ValueError(f"TALLY_BROADCAST_URL must be memory:// or redis://…, not {url!r}")


@dataclass
class Runtime:
    clock: Clock = field(default_factory=SystemClock)
    carrier: Carrier = field(default_factory=SimulatedCarrier)
    payments: PaymentProvider = field(default_factory=SimulatedPaymentProvider)
    broker: Broker = field(default_factory=LocalBroker)
    token_watch: TokenWatch = field(default_factory=TokenWatch)
    ledger: LedgerWriter = field(default_factory=LedgerWriter)
    tokens: TokenCache = field(default_factory=TokenCache)

    def __post_init__(self) -> None:
        self.broker.on_revocation(self.tokens.forget)
        self.broker.on_revocation(self.token_watch.revoked)

    @classmethod
    def for_broadcast(cls, url: str, namespace: str = "") -> Runtime:
        return cls(broker=broker_for(url, namespace))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Connect the broker for the life of a server process."""
        await self.broker.start()
        try:
            yield
        finally:
            await self.ledger.aclose()
            await self.token_watch.aclose()
            await self.broker.stop()
