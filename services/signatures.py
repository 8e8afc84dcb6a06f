"""Signatures of outgoing webhooks, in Stripe's form: `t=<unix seconds>,v1=<hex HMAC>`."""

from __future__ import annotations

import hashlib
import hmac
import secrets

HEADER = "Tally-Signature"
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A signing secret for one endpoint (192 random bits)."""
    return SECRET_PREFIX + secrets.token_hex(24)


def sign(secret: str, *, timestamp: int, body: str) -> str:
    """The header value for `body` sent at `timestamp` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"
