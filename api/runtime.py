"""The outside world the services talk to, built once per process from the settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.broadcast import Broker, LocalBroker
from services.carrier import Carrier, SimulatedCarrier
from services.clock import Clock, SystemClock
from services.payments import PaymentProvider, SimulatedPaymentProvider


@dataclass
class Runtime:
    clock: Clock = field(default_factory=SystemClock)
    carrier: Carrier = field(default_factory=SimulatedCarrier)
    payments: PaymentProvider = field(default_factory=SimulatedPaymentProvider)
    broker: Broker = field(default_factory=LocalBroker)
