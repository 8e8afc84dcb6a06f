"""`tally import-messages` as a real process, on the test database."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from models import Message
from services.access import Principal
from services.accounts import NewAccount
from services.clock import FrozenClock
from services.inboxes import create_shared_inbox

TALLY = str(Path(sys.executable).with_name("tally"))
GOOD = [
    {"inbox": "+14155550100", "direction": "OUTBOUND", "peer": "+14155550123", "body": "Hi",
     "createdAt": "2025-12-01T09:00:00Z", "providerMessageId": "SM-a"},
    {"inbox": "+14155550100", "direction": "INBOUND", "peer": "+14155550123", "body": "Hey",
     "createdAt": "2025-12-01T09:05:00+01:00"},
]  # fmt: skip


@dataclass
class Ran:
    code: int | None
    out: str
    err: str


async def tally(database: str, *args: str, stdin: bytes = b"") -> Ran:
    env = {**os.environ, "TALLY_DATABASE_URL": database}
    process = await asyncio.create_subprocess_exec(
        TALLY, *args, env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin), 60)
    return Ran(process.returncode, out.decode(), err.decode())


def jsonl(*items: dict[str, str] | str) -> bytes:
    return "".join((i if isinstance(i, str) else json.dumps(i)) + "\n" for i in items).encode()


@pytest.fixture
async def desk(admin: Principal, clock: FrozenClock) -> None:
    await create_shared_inbox(
        actor=admin, name="Desk", phone_number="+14155550100", member_ids=[], region="US",
        clock=clock,
    )  # fmt: skip


@pytest.mark.usefixtures("desk")
async def test_stdin_imports_and_json_is_exactly_the_counts(
    database: str, account: NewAccount
) -> None:
    account_id = str(account.account.id)
    ran = await tally(
        database, "import-messages", "--account-id", account_id, "--json", "-", stdin=jsonl(*GOOD)
    )
    assert (ran.code, json.loads(ran.out)) == (0, {"imported": 2, "skipped": 0})
    assert ran.out.count("\n") == 1
    assert "importing" in ran.err  # the progress bars
    again = await tally(
        database, "import-messages", "--account-id", account_id, "--json", "-", stdin=jsonl(*GOOD)
    )
    assert json.loads(again.out) == {"imported": 1, "skipped": 1}


@pytest.mark.usefixtures("desk")
async def test_a_dry_run_writes_nothing(database: str, account: NewAccount, tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_bytes(jsonl(*GOOD))
    ran = await tally(
        database, "import-messages", "--account-id", str(account.account.id), "--dry-run",
        "--json", str(path),
    )  # fmt: skip
    assert (ran.code, json.loads(ran.out)) == (0, {"imported": 2, "skipped": 0})
    assert await Message.all().count() == 0


@pytest.mark.usefixtures("desk")
async def test_a_bad_line_is_exit_2_with_its_number_and_nothing_imported(
    database: str, account: NewAccount
) -> None:
    bad = {**GOOD[0], "createdAt": "2999-01-01T00:00:00Z"}
    ran = await tally(
        database, "import-messages", "--account-id", str(account.account.id), "-",
        stdin=jsonl(GOOD[0], "", bad),
    )  # fmt: skip
    assert ran.code == 2
    assert "line 3: createdAt: in the future" in ran.err
    assert ran.out == ""
    assert await Message.all().count() == 0


async def test_an_unknown_account_or_an_unreadable_file_is_exit_2(
    database: str, account: NewAccount, tmp_path: Path
) -> None:
    unknown = await tally(database, "import-messages", "--account-id", "987654", "-")
    assert unknown.code == 2
    assert unknown.err.splitlines()[-1] == "tally: No account has the id 987654."
    missing = await tally(
        database, "import-messages", "--account-id", str(account.account.id),
        str(tmp_path / "nope.jsonl"),
    )  # fmt: skip
    assert missing.code == 2
    assert "cannot read" in missing.err
