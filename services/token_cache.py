"""Principals of recently seen tokens, so that authenticating a request costs no query.

A token's principal (member, role, account) never changes; only a revocation ends it.
Revocations reach every process through the broker (`Broker.on_revocation`): the
revoking process forgets the token before it answers, the others as soon as Redis
relays it, and a process whose Redis connection dropped forgets every token when it
reconnects (it may have missed some). An entry also expires after `ttl` seconds, a
bound on what any lost message could cost.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from services.access import Principal

TTL_SECONDS = 60.0
SIZE = 10_000


class TokenCache:
    def __init__(self, *, ttl: float = TTL_SECONDS, size: int = SIZE) -> None:
        self._ttl = ttl
        self._size = size
        self._entries: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def get(self, secret_hash: str) -> Principal | None:
        entry = self._entries.get(secret_hash)
        if entry is None:
            return None
        principal, expires = entry
        if expires < time.monotonic():
            del self._entries[secret_hash]
            return None
        return principal

    def put(self, secret_hash: str, principal: Principal) -> None:
        self._entries[secret_hash] = (principal, time.monotonic() + self._ttl)
        self._entries.move_to_end(secret_hash)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def forget(self, token_id: int | None) -> None:
        """Forget a revoked token; None: every token."""
        if token_id is None:
            self._entries.clear()
            return
        for key in [k for k, (p, _) in self._entries.items() if p.token_id == token_id]:
            del self._entries[key]
