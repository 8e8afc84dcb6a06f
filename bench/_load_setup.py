"""The account a load run uses, made the way an operator and an admin would.

`tally create-account --json` gives the admin token; then, over GraphQL as that admin:
one member per agent with a personal inbox and a token of its own, a shared inbox every
agent may use, a saved card (tok_visa) for buyCredits, and the runaway script's token.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from bench._load_client import Browser
from bench._load_ops import graphql_body, graphql_data, graphql_headers
from bench._load_plan import agent
from bench._load_run import Team
from bench.send import TALLY

MONTHLY_CREDITS = 1_000_000
PRICE_CENTS = 3
CREATE_MEMBER = (
    "mutation($input: CreateMemberInput!) { createMember(input: $input)"
    " { member { id personalInbox { id phoneNumber } } userErrors { code message } } }"
)
CREATE_TOKEN = (
    "mutation($input: CreateApiTokenInput!) { createApiToken(input: $input)"
    " { token userErrors { code message } } }"
)
CREATE_INBOX = (
    "mutation($input: CreateInboxInput!) { createInbox(input: $input)"
    " { inbox { id phoneNumber } userErrors { code message } } }"
)
SET_CARD = (
    'mutation { setPaymentMethod(input: {token: "tok_visa"})'
    " { paymentMethod { last4 } userErrors { code message } } }"
)
SHARED_LINE = 9999
# Not 127.0.0.1: with Redis, per-IP counters are shared with whatever else runs here.
SETUP_ADDRESS = "127.0.1.1"


def create_account(env: dict[str, str], workdir: Path) -> dict[str, str]:
    """`tally create-account --json`: accountId, memberId (the admin) and token."""
    done = subprocess.run(
        [TALLY, "create-account", "--name", "Load", "--admin-name", "Admin",
         "--admin-email", "admin@load.example", "--monthly-credits", str(MONTHLY_CREDITS),
         "--price-cents", str(PRICE_CENTS), "--json"],
        env=env, cwd=workdir, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    created: dict[str, str] = json.loads(done.stdout)
    return created


def phone_number(line: int) -> str:
    """A valid US number of the load account; no other test or bench uses this block."""
    return f"+1628201{line:04d}"


async def make_team(port: int, created: dict[str, str], agents: int) -> Team:
    http = Browser("127.0.0.1", port, SETUP_ADDRESS)
    admin = created["token"]

    async def call(query: str, field: str, variables: dict[str, Any] | None = None) -> Any:
        status, raw = await http.post(
            "/graphql", graphql_body(query, variables), graphql_headers(admin)
        )
        return graphql_data(status, raw, field)

    async def token_for(member_id: str, name: str) -> str:
        issued = await call(
            CREATE_TOKEN, "createApiToken", {"input": {"memberId": member_id, "name": name}}
        )
        return str(issued["token"])

    tokens, inboxes, member_ids = {}, {}, []
    try:
        for n in range(agents):
            member = (
                await call(
                    CREATE_MEMBER,
                    "createMember",
                    {
                        "input": {
                            "name": f"Agent {n}",
                            "email": f"agent{n}@load.example",
                            "personalPhoneNumber": phone_number(n),
                        }
                    },
                )
            )["member"]
            member_ids.append(member["id"])
            tokens[agent(n)] = await token_for(member["id"], "browser")
            inbox = member["personalInbox"]
            inboxes[agent(n)] = (inbox["id"], inbox["phoneNumber"])
        shared = (
            await call(
                CREATE_INBOX,
                "createInbox",
                {
                    "input": {
                        "name": "Front desk",
                        "phoneNumber": phone_number(SHARED_LINE),
                        "memberIds": member_ids,
                    }
                },
            )
        )["inbox"]
        await call(SET_CARD, "setPaymentMethod")
        runaway = await token_for(created["memberId"], "runaway script")
    finally:
        http.close()
    return Team(
        admin_token=admin,
        runaway_token=runaway,
        agent_tokens=tokens,
        agent_inboxes=inboxes,
        shared_inbox=(shared["id"], shared["phoneNumber"]),
        price_cents=PRICE_CENTS,
    )
