"""`tally` as real processes: the CLI, and `tally serve` over HTTP and websockets."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
import websockets

from api import cli
from api.settings import Settings
from tests.live_server import TALLY, Server, tally_serve

TRANSPORT_WS = websockets.Subprotocol("graphql-transport-ws")
LEGACY_WS = websockets.Subprotocol("graphql-ws")


@pytest.fixture(scope="module")
async def server(
    server_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    async with tally_serve(server_database_url, tmp_path_factory.mktemp("serve")) as running:
        yield running


async def query(server: Server, token: str, document: str, variables: dict[str, object]) -> dict:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            server.url + "/graphql",
            json={"query": document, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 200
    body: dict = response.json()
    return body


async def test_cli_account_answers_over_http(server: Server) -> None:
    created = await server.new_account("Http")
    body = await query(server, created["token"], "{ viewer { id } account { id } }", {})
    assert body["data"] == {
        "viewer": {"id": created["memberId"]},
        "account": {"id": created["accountId"]},
    }


async def test_websocket_authenticates_in_connection_init(server: Server) -> None:
    created = await server.new_account("Ws")
    ws_url = server.url.replace("http", "ws") + "/graphql"
    async with websockets.connect(ws_url, subprotocols=[TRANSPORT_WS]) as ws:
        init = {"authorization": f"Bearer {created['token']}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{ viewer { id } }"}})
        )
        answer = json.loads(await ws.recv())
        assert answer["payload"]["data"] == {"viewer": {"id": created["memberId"]}}


@pytest.mark.parametrize("payload", [{}, {"authorization": "Bearer tly_wrong"}])
async def test_websocket_without_a_valid_token_is_closed_4403(
    server: Server, payload: dict[str, str]
) -> None:
    ws_url = server.url.replace("http", "ws") + "/graphql"
    async with websockets.connect(ws_url, subprotocols=[TRANSPORT_WS]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403


async def test_concurrent_writes_from_the_server_and_the_cli_all_succeed(server: Server) -> None:
    created = await server.new_account("Busy")
    mutation = """mutation($input: CreateMemberInput!) {
        createMember(input: $input) { member { id } userErrors { code } } }"""
    http_writes = [
        query(
            server,
            created["token"],
            mutation,
            {"input": {"name": f"M{i}", "email": f"m{i}@b.example"}},
        )
        for i in range(40)
    ]
    cli_writes = [server.new_account(f"Cli{i}") for i in range(4)]
    results = await asyncio.gather(*http_writes, *cli_writes)
    for body in results[:40]:
        assert body["data"]["createMember"]["userErrors"] == [], body
    members = await query(server, created["token"], "{ account { members { id } } }", {})
    assert len(members["data"]["account"]["members"]) == 41


async def test_legacy_graphql_ws_protocol_authenticates_too(server: Server) -> None:
    created = await server.new_account("Legacy")
    ws_url = server.url.replace("http", "ws") + "/graphql"
    async with websockets.connect(ws_url, subprotocols=[LEGACY_WS]) as ws:
        init = {"authorization": f"Bearer {created['token']}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"


async def test_legacy_graphql_ws_without_a_token_is_refused(server: Server) -> None:
    ws_url = server.url.replace("http", "ws") + "/graphql"
    async with websockets.connect(ws_url, subprotocols=[LEGACY_WS]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        refusal = json.loads(await ws.recv())
        assert refusal["type"] == "connection_error"
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()


async def test_seed_demo_fills_only_an_empty_database(server: Server, tmp_path: Path) -> None:
    empty = Server(
        url=server.url, env={**server.env, "TALLY_DATABASE_URL": f"sqlite://{tmp_path}/d.db"}
    )
    await empty.cli("migrate")
    first = await empty.cli("seed-demo")
    again = await empty.cli("seed-demo")
    assert "Created the demo account" in first
    assert "Found the demo account" in again
    listed = [line for line in again.splitlines() if line.startswith("  tly_") or "  tly_" in line]
    assert len(listed) == 3
    # and a link that signs in to the dashboard as the demo admin
    admin_token = next(line.split()[-1] for line in listed if "(ADMIN)" in line)
    assert f"/app/#token={admin_token}" in again
    # A database with any account of its own is left alone.
    await server.cli(
        "create-account", "--name", "Busy", "--admin-name", "B", "--admin-email", "b@busy.example"
    )
    busy = await server.cli("seed-demo")
    assert "already has accounts" in busy
    assert "tly_" not in busy


async def test_a_sqlite_database_in_a_missing_folder_is_refused_not_hung(
    server: Server, tmp_path: Path
) -> None:
    env = {**server.env, "TALLY_DATABASE_URL": f"sqlite://{tmp_path}/missing/tally.db"}
    process = await asyncio.create_subprocess_exec(
        TALLY, "migrate", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert "does not exist" in err.decode()


async def test_serve_on_a_port_in_use_exits_with_one_line_and_no_traceback(server: Server) -> None:
    # given the module's server listening on its port
    port = server.url.rsplit(":", 1)[1]
    # when a second server is started on that port
    process = await asyncio.create_subprocess_exec(
        TALLY, "serve", "--port", port, env=server.env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    # then it says why in one line and exits with an error status, having started nothing
    assert process.returncode == 2
    assert err.decode() == f"tally: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    assert out == b""


async def test_a_four_slash_sqlite_url_is_an_absolute_path(server: Server, tmp_path: Path) -> None:
    # the CLI runs in the project folder, where a relative reading would miss the folder
    absolute = Server(
        url=server.url, env={**server.env, "TALLY_DATABASE_URL": f"sqlite:///{tmp_path}/abs.db"}
    )
    await absolute.cli("migrate")
    assert (tmp_path / "abs.db").is_file()


async def test_connections_to_tally_serve_s_socket_send_without_nagle_delay() -> None:
    # asyncio turns Nagle's algorithm off only for sockets that say they are TCP; with
    # it on, a response's body waited for the client's delayed ACK (about 40 ms).
    listener = cli._listen("127.0.0.1", 0)
    nodelay: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        nodelay.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(accepted, sock=listener)
    async with server:
        _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        assert await asyncio.wait_for(nodelay, 5) != 0
        writer.close()


async def run_tally(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        TALLY, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_migrate_names_the_migrations_it_applied(server: Server, tmp_path: Path) -> None:
    env = {**server.env, "TALLY_DATABASE_URL": f"sqlite://{tmp_path}/m.db"}
    _, _, first = await run_tally(env, "migrate")
    _, _, again = await run_tally(env, "migrate")
    assert "applied migrations: 0001_initial, 0002_credits_and_messages" in first
    assert "database is up to date" not in first
    assert "database is up to date" in again
    assert "applied migrations" not in again
    # and Tortoise's own shutdown lines stay out of the default log
    assert "Tortoise-ORM shutdown" not in first + again


async def test_serve_on_a_port_in_use_stops_before_migrating_or_seeding(
    server: Server, tmp_path: Path
) -> None:
    port = server.url.rsplit(":", 1)[1]
    env = {**server.env, "TALLY_DATABASE_URL": f"sqlite://{tmp_path}/never.db"}
    status, out, _ = await run_tally(env, "serve", "--port", port, "--seed-demo")
    assert status == 2
    assert out == ""
    assert not (tmp_path / "never.db").exists()


async def test_export_links_name_the_port_the_server_listens_on(server: Server) -> None:
    created = await server.new_account("Links")
    made = await query(
        server,
        created["token"],
        "mutation { createUsageExport(input: {}) { export { url } } }",
        {},
    )
    assert made["data"]["createUsageExport"]["export"]["url"].startswith(server.url + "/exports/")


def test_every_option_of_every_command_is_described_with_its_default() -> None:
    parser = cli._parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in commands.choices.items():
        text = command.format_help()
        for action in command._actions:
            if action.dest == "help":
                continue
            assert action.help, f"tally {name} {action.option_strings} has no description"
            if action.default is not None and not action.required:
                assert f"(default: {action.default})" in " ".join(text.split()), (name, action.dest)


def test_uvicorn_writes_no_access_line_of_its_own() -> None:
    # api/access_log.py writes one line per request; uvicorn's would be a second.
    args = cli._parser().parse_args(["serve"])
    assert cli.server_config(args, Settings()).access_log is False


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8001"),
        ("0.0.0.0", "http://127.0.0.1:8001"),
        ("::", "http://[::1]:8001"),
        ("tally.internal", "http://tally.internal:8001"),
    ],
)
def test_the_public_url_follows_host_and_port_when_unset(
    monkeypatch: pytest.MonkeyPatch, host: str, url: str
) -> None:
    monkeypatch.delenv("TALLY_PUBLIC_URL", raising=False)
    assert cli._follow_public_url(host, 8001) == url
    # the workers read it from the environment
    assert os.environ["TALLY_PUBLIC_URL"] == url


def test_a_public_url_that_is_set_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALLY_PUBLIC_URL", "https://sms.example/")
    assert cli._follow_public_url("0.0.0.0", 8001) == "https://sms.example"


@pytest.mark.parametrize(("no_migrate", "migrations"), [(False, 1), (True, 0)])
def test_serve_with_seed_demo_migrates_once_or_as_told_not_at_all(
    monkeypatch: pytest.MonkeyPatch, no_migrate: bool, migrations: int
) -> None:
    migrated: list[str] = []

    async def migrate(url: str) -> list[str]:
        migrated.append(url)
        return []

    async def seeded(settings: Settings, public_url: str) -> int:
        return 0

    class Served:
        started = True

        def __init__(self, config: object) -> None:
            pass

        def run(self, sockets: object) -> None:
            pass

    async def nothing(*args: object) -> None:
        return None

    monkeypatch.setattr(cli, "migrate_database", migrate)
    # The test's own database stays as it is: no second Tortoise on another loop.
    monkeypatch.setattr(cli, "open_database", nothing)
    monkeypatch.setattr(cli, "close_database", nothing)
    monkeypatch.setattr(cli, "_seed_and_print", seeded)
    monkeypatch.setattr(uvicorn, "Server", Served)
    args = argparse.Namespace(
        host="127.0.0.1", port=0, workers=1, no_migrate=no_migrate, seed_demo=True
    )
    settings = Settings(database_url="sqlite://:memory:", secret_key="s", webhook_secret="w")

    assert cli.serve(args, settings) == 0
    assert len(migrated) == migrations
