"""Who is acting: the principal behind a token, and what its role allows."""

from __future__ import annotations

from dataclasses import dataclass

from models.enums import Role
from services.errors import Forbidden


@dataclass(frozen=True, slots=True)
class Principal:
    account_id: int
    member_id: int
    role: Role
    token_id: int
    # The client's address as the edge saw it (api/client_address.py), for the audit log.
    ip: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


def require_admin(actor: Principal, action: str) -> None:
    """Raise Forbidden unless the actor is an ADMIN; `action` completes "Only an admin may …"."""
    if not actor.is_admin:
        raise Forbidden(f"Only an admin may {action}.")
