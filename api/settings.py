"""Configuration, read once from the environment (TALLY_*)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from api.client_address import Network, trusted_networks
from services.outbox import DEFAULT_RETRY_SCHEDULE, parse_schedule

log = logging.getLogger("tally")

DEV_SECRET = "dev-only-secret-change-me"


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() not in {"0", "false", "no", "off"}


def _int(value: str | None, default: int) -> int:
    return default if value is None or value.strip() == "" else int(value)


def _origins(value: str | None) -> tuple[str, ...]:
    return tuple(o.strip() for o in (value or "").split(",") if o.strip())


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = "sqlite://tally.db"
    broadcast_url: str = "memory://"
    default_region: str = "US"
    secret_key: str = DEV_SECRET
    webhook_secret: str = DEV_SECRET
    allowed_origins: tuple[str, ...] = ()
    graphiql: bool = True
    introspection: bool = True
    redis_namespace: str = ""
    public_url: str = "http://127.0.0.1:8000"
    max_query_depth: int = 15
    max_query_aliases: int = 30
    max_query_tokens: int = 10_000
    max_body_bytes: int = 1024 * 1024
    # Per request: usage reports, and buckets over all their series (services/usage_budget.py).
    # 20,000 fits an analytics screen of two years by day with 20 member groups (15,351).
    max_usage_reports: int = 50
    max_usage_buckets: int = 20_000
    rate_limit_per_token: int = 1200
    rate_limit_per_ip: int = 120
    # Outgoing webhooks (services/dispatcher.py): seconds between attempts, and whether
    # endpoints may be private addresses (development and tests only).
    webhook_retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    webhook_allow_private: bool = False
    # Proxies whose X-Forwarded-For is believed (api/client_address.py); none by default.
    trusted_proxies: tuple[Network, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        defaults = cls()
        return cls(
            database_url=env.get("TALLY_DATABASE_URL") or defaults.database_url,
            broadcast_url=env.get("TALLY_BROADCAST_URL") or defaults.broadcast_url,
            default_region=(env.get("TALLY_DEFAULT_REGION") or defaults.default_region).upper(),
            secret_key=env.get("TALLY_SECRET_KEY") or defaults.secret_key,
            webhook_secret=env.get("TALLY_WEBHOOK_SECRET") or defaults.webhook_secret,
            allowed_origins=_origins(env.get("TALLY_ALLOWED_ORIGINS")),
            graphiql=_flag(env.get("TALLY_GRAPHIQL"), defaults.graphiql),
            introspection=_flag(env.get("TALLY_INTROSPECTION"), defaults.introspection),
            redis_namespace=(env.get("TALLY_REDIS_NAMESPACE") or "").strip(),
            public_url=(env.get("TALLY_PUBLIC_URL") or defaults.public_url).rstrip("/"),
            max_query_depth=_int(env.get("TALLY_MAX_QUERY_DEPTH"), defaults.max_query_depth),
            max_query_aliases=_int(env.get("TALLY_MAX_QUERY_ALIASES"), defaults.max_query_aliases),
            max_query_tokens=_int(env.get("TALLY_MAX_QUERY_TOKENS"), defaults.max_query_tokens),
            max_body_bytes=_int(env.get("TALLY_MAX_BODY_BYTES"), defaults.max_body_bytes),
            max_usage_reports=_int(env.get("TALLY_MAX_USAGE_REPORTS"), defaults.max_usage_reports),
            max_usage_buckets=_int(env.get("TALLY_MAX_USAGE_BUCKETS"), defaults.max_usage_buckets),
            rate_limit_per_token=_int(
                env.get("TALLY_RATE_LIMIT_PER_TOKEN"), defaults.rate_limit_per_token
            ),
            rate_limit_per_ip=_int(env.get("TALLY_RATE_LIMIT_PER_IP"), defaults.rate_limit_per_ip),
            webhook_retry_schedule=parse_schedule(env.get("TALLY_WEBHOOK_RETRY_SCHEDULE")),
            webhook_allow_private=_flag(env.get("TALLY_WEBHOOK_ALLOW_PRIVATE"), False),
            trusted_proxies=trusted_networks(env.get("TALLY_TRUSTED_PROXIES")),
        )

    def warn_about_defaults(self) -> None:
        if DEV_SECRET in (self.secret_key, self.webhook_secret):
            log.warning(
                "TALLY_SECRET_KEY or TALLY_WEBHOOK_SECRET is not set: using a development "
                "secret that anyone can read. Set both in production."
            )
