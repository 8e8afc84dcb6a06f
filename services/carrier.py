"""The SMS carrier: the interface outbound messages go through, and its simulator."""

from __future__ import annotations

import uuid
from typing import Protocol


class CarrierRejected(Exception):
    """The carrier refused the message (the send is then marked FAILED and refunded)."""


class Carrier(Protocol):
    async def send(self, *, from_number: str, to_number: str, body: str) -> str:
        """Hand a message to the carrier; return its provider message id."""
        ...


class SimulatedCarrier:
    """Accepts every valid number and gives each message a provider id."""

    async def send(self, *, from_number: str, to_number: str, body: str) -> str:
        return f"SM{uuid.uuid4().hex}"
