"""The `tally` command: serve, migrate, create-account, seed-demo, import-messages,
export-schema."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Never

import uvicorn
from tqdm import tqdm
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from api.settings import Settings
from models.db import close_database, migrate_database, open_database
from models.enums import WeekStart
from services import accounts, demo, importing
from services.clock import SystemClock
from services.errors import TallyError

log = logging.getLogger("tally")

PUBLIC_URL_VARIABLE = "TALLY_PUBLIC_URL"
# A server listening on every address is reached, from this machine, on loopback.
LOOPBACK_FOR = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
DATABASE_EPILOG = (
    "Configuration comes from TALLY_* environment variables (README.md): the database is "
    "TALLY_DATABASE_URL, sqlite://tally.db in the working folder by default."
)


def _with_database(
    settings: Settings, work: Callable[[], Awaitable[int]], *, migrate: bool = True
) -> int:
    async def run() -> int:
        if migrate:
            await migrate_database(settings.database_url)
        await open_database(settings.database_url)
        try:
            return await work()
        finally:
            await close_database()

    return asyncio.run(run())


def serve(args: argparse.Namespace, settings: Settings) -> int:
    settings.warn_about_defaults()
    try:
        listener = _listen(args.host, args.port)
    except OSError as error:
        reason = error.strerror or error
        sys.stderr.write(f"tally: cannot listen on {args.host}:{args.port}: {reason}\n")
        return 2
    with listener:
        port = listener.getsockname()[1]
        public_url = _follow_public_url(args.host, port)
        if not args.no_migrate:
            _report_migrations(asyncio.run(migrate_database(settings.database_url)))
        if args.seed_demo:
            # Migrated above, unless --no-migrate said not to.
            _with_database(settings, lambda: _seed_and_print(settings, public_url), migrate=False)
        log.info("listening on http://%s:%d", args.host, port)
        config = server_config(args, settings)
        if args.workers > 1:
            Multiprocess(config, sockets=[listener]).run()
            return 0
        server = uvicorn.Server(config)
        server.run(sockets=[listener])
        return 0 if server.started else STARTUP_FAILURE


def _follow_public_url(host: str, port: int) -> str:
    """TALLY_PUBLIC_URL, set from --host and --port when it is not set.

    Export links must name the port the server listens on; the workers read the
    setting from the environment, so it is set there.
    """
    if not os.environ.get(PUBLIC_URL_VARIABLE):
        shown = LOOPBACK_FOR.get(host, host)
        shown = f"[{shown}]" if ":" in shown else shown
        os.environ[PUBLIC_URL_VARIABLE] = f"http://{shown}:{port}"
    return os.environ[PUBLIC_URL_VARIABLE].rstrip("/")


def _report_migrations(applied: list[str]) -> None:
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    else:
        log.info("database is up to date")


def server_config(args: argparse.Namespace, settings: Settings) -> uvicorn.Config:
    """uvicorn's settings for `tally serve`."""
    return uvicorn.Config(
        "api.asgi:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        timeout_graceful_shutdown=10,
        # Tally reads X-Forwarded-For itself, from TALLY_TRUSTED_PROXIES only
        # (api/client_address.py); uvicorn's own reading trusts any local peer's header.
        proxy_headers=False,
        # api/access_log.py writes one line per request, with more in it than uvicorn's.
        access_log=False,
        # The app checks websocket messages too (api/limits.py); uvicorn stops reading
        # an oversized frame before it is buffered whole.
        ws_max_size=settings.max_body_bytes,
        # Ping frames keep idle websockets open through proxies (graphql-transport-ws leaves
        # pings to its clients) and drop peers that stopped answering; docs/live-balances.md.
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        # Balance events are a few hundred bytes: compressing each one for each subscriber
        # doubled the fan-out's delays and held 45 MB per 1,000 sockets (docs/benchmarks.md).
        ws_per_message_deflate=False,
    )


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything starts.

    uvicorn binds only after the app's startup (database, background sweep) and then
    fails half-started, with a traceback from the database thread; binding first makes
    a port in use one clear line. The workers of `--workers N` share this socket.
    """
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on connections accepted from a
    # socket that says it is TCP. Without it Nagle's algorithm held every response's body
    # behind its headers until the client's delayed ACK, about 40 ms per request.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    listener.set_inheritable(True)
    return listener


def migrate(args: argparse.Namespace, settings: Settings) -> int:
    _report_migrations(asyncio.run(migrate_database(settings.database_url)))
    return 0


def create_account(args: argparse.Namespace, settings: Settings) -> int:
    async def work() -> int:
        created = await accounts.create_account(
            name=args.name,
            admin_name=args.admin_name,
            admin_email=args.admin_email,
            timezone=args.timezone,
            week_start=WeekStart(args.week_start),
            plan=accounts.PlanTerms(
                monthly_credits=args.monthly_credits, price_per_credit_cents=args.price_cents
            ),
            clock=SystemClock(),
        )
        ids = {
            "accountId": str(created.account.id),
            "memberId": str(created.admin.id),
            "token": created.token.secret,
        }
        if args.json:
            sys.stdout.write(json.dumps(ids) + "\n")
        else:
            sys.stdout.write(
                f"Account {ids['accountId']} created; admin member {ids['memberId']}.\n"
                f"Admin token (shown once): {ids['token']}\n"
            )
        return 0

    return _with_database(settings, work)


def _progress_bar(total: int) -> Callable[[int], None]:
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        filled = 30 * done // max(total, 1)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done:,}/{total:,} messages")
        if done >= total:
            sys.stderr.write("\n")

    return advance


def seed_load(args: argparse.Namespace, settings: Settings) -> int:
    async def work() -> int:
        loaded = await demo.seed_load_account(
            messages=args.messages,
            days=args.days,
            region=settings.default_region,
            clock=SystemClock(),
            progress=_progress_bar(args.messages),
        )
        ids = {"accountId": str(loaded.account_id), "token": loaded.admin_token}
        if args.json:
            sys.stdout.write(json.dumps({**ids, "messages": loaded.messages}) + "\n")
        else:
            sys.stdout.write(
                f"Account {ids['accountId']} has {loaded.messages:,} messages over {args.days} "
                f"days.\nAdmin token (shown once): {ids['token']}\n"
            )
        return 0

    return _with_database(settings, work)


def seed_demo(args: argparse.Namespace, settings: Settings) -> int:
    if args.messages is not None:
        return seed_load(args, settings)

    return _with_database(settings, lambda: _seed_and_print(settings, settings.public_url))


async def _seed_and_print(settings: Settings, public_url: str) -> int:
    seeded = await demo.seed_demo(region=settings.default_region, clock=SystemClock())
    if not seeded.tokens:
        sys.stdout.write(
            "The database already has accounts, so no demo account was created; "
            "use `tally create-account` for a token.\n"
        )
        return 0
    verb = "Created" if seeded.created else "Found"
    sys.stdout.write(f"{verb} the demo account {seeded.account_name!r}. Tokens (shown once):\n")
    for who, secret in seeded.tokens:
        sys.stdout.write(f"  {who:<32} {secret}\n")
    sys.stdout.write("Send one as 'Authorization: Bearer <token>'.\n")
    admin = next((secret for who, secret in seeded.tokens if who.endswith("(ADMIN)")), None)
    if admin is not None:
        sys.stdout.write(
            f"\nDashboard, signed in as the demo admin: {public_url}/app/#token={admin}\n"
            f"GraphiQL: {public_url}/graphql\n"
        )
    sys.stdout.flush()
    return 0


class _ProgressBars:
    """tqdm bars on stderr, one per pass of an import (importing.ImportProgress)."""

    def __init__(self) -> None:
        self.bar: tqdm[Never] | None = None

    def stage(self, name: str, total_bytes: int) -> None:
        self.close()
        self.bar = tqdm(
            total=total_bytes, desc=name, unit="B", unit_scale=True, file=sys.stderr, leave=True
        )

    def advance(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def import_messages(args: argparse.Namespace, settings: Settings) -> int:
    with contextlib.ExitStack() as stack:
        try:
            path = _readable(args.file, stack)
        except OSError as error:
            sys.stderr.write(f"tally: cannot read {args.file}: {error.strerror or error}\n")
            return 2
        bars = _ProgressBars()
        stack.callback(bars.close)

        async def work() -> int:
            try:
                result = await importing.import_messages(
                    account_id=args.account_id,
                    path=path,
                    region=settings.default_region,
                    clock=SystemClock(),
                    dry_run=args.dry_run,
                    progress=bars,
                )
            except importing.ImportRejected as rejected:
                bars.close()
                for problem in rejected.problems:
                    sys.stderr.write(f"line {problem.line}: {problem.reason}\n")
                if rejected.total > len(rejected.problems):
                    more = rejected.total - len(rejected.problems)
                    sys.stderr.write(f"… and {more:,} more bad line(s)\n")
                sys.stderr.write("tally: nothing was imported\n")
                return 2
            bars.close()
            counts = {"imported": result.imported, "skipped": result.skipped}
            if args.json:
                sys.stdout.write(json.dumps(counts) + "\n")
            else:
                verb = "Would import" if args.dry_run else "Imported"
                sys.stdout.write(
                    f"{verb} {result.imported:,} message(s); skipped {result.skipped:,} "
                    "already there.\n"
                )
            return 0

        return _with_database(settings, work)


def _readable(name: str, stack: contextlib.ExitStack) -> Path:
    """The file to import; stdin (``-``) is copied to a temporary file first, since the
    import reads its input twice (checked whole before anything is written)."""
    if name != "-":
        path = Path(name)
        with path.open("rb"):  # unreadable files fail here, before the database opens
            pass
        return path
    spool = stack.enter_context(tempfile.NamedTemporaryFile(prefix="tally-import-"))
    shutil.copyfileobj(sys.stdin.buffer, spool)
    spool.flush()
    return Path(spool.name)


def export_schema(args: argparse.Namespace, settings: Settings) -> int:
    from schema import schema

    sys.stdout.write(schema.as_str() + "\n")
    return 0


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=summary,
        description=summary,
        epilog=DATABASE_EPILOG,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tally", description=__doc__, epilog=DATABASE_EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(commands, "serve", "Run the HTTP and websocket server.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument(
        "--workers", type=int, default=1,
        help="server processes (more than 1 needs PostgreSQL and TALLY_BROADCAST_URL=redis://…)",
    )  # fmt: skip
    p.add_argument("--no-migrate", action="store_true", help="do not migrate before serving")
    p.add_argument(
        "--seed-demo", action="store_true",
        help="create the demo account when the database has none, and print its tokens and "
        "a link that signs in to the dashboard (what `make run` does)",
    )  # fmt: skip
    p.set_defaults(run=serve)

    _command(commands, "migrate", "Apply pending migrations and name them.").set_defaults(
        run=migrate
    )

    p = _command(commands, "create-account", "Create an account and print its admin token.")
    p.add_argument("--name", required=True, help="the account's name")
    p.add_argument("--admin-name", required=True, help="its first member's (an ADMIN's) name")
    p.add_argument("--admin-email", required=True, help="that member's e-mail")
    p.add_argument("--timezone", default="UTC", help="IANA zone of usage reports' days")
    p.add_argument(
        "--week-start", choices=[w.value for w in WeekStart], default="MONDAY",
        help="first day of WEEK buckets",
    )  # fmt: skip
    p.add_argument(
        "--monthly-credits", type=int, default=accounts.PlanTerms().monthly_credits,
        help="credits granted each subscription month",
    )  # fmt: skip
    p.add_argument(
        "--price-cents", type=int, default=accounts.PlanTerms().price_per_credit_cents,
        help="price of a purchased credit, in cents",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(run=create_account)

    p = _command(commands, "seed-demo", "Create the demo account if missing; print tokens.")
    p.add_argument(
        "--messages",
        type=int,
        help="instead, create a new account with this many messages (20 members, 5 shared "
        "inboxes), written in bulk: for benchmarks",
    )
    p.add_argument("--days", type=int, default=730, help="with --messages: days of history")
    p.add_argument("--json", action="store_true", help="with --messages: print one JSON object")
    p.set_defaults(run=seed_demo)

    p = _command(
        commands, "import-messages", "Import message history from a JSON Lines file (- for stdin)."
    )
    p.add_argument("--account-id", type=int, required=True, help="the account to import into")
    p.add_argument("--dry-run", action="store_true", help="check and count; write nothing")
    p.add_argument("--json", action="store_true", help='print {"imported", "skipped"} on stdout')
    p.add_argument("file", help="JSON Lines, one message a line; - reads stdin")
    p.set_defaults(run=import_messages)

    p = _command(commands, "export-schema", "Print the GraphQL schema (SDL).")
    p.set_defaults(run=export_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # Tortoise logs "Tortoise-ORM shutdown" at INFO each time a command closes the
    # database; its warnings and errors still show.
    logging.getLogger("tortoise").setLevel(logging.WARNING)
    args = _parser().parse_args(argv)
    settings = Settings.from_env()
    try:
        code: int = args.run(args, settings)
    except TallyError as error:
        sys.stderr.write(f"tally: {error.message}\n")
        return 2
    except ValueError as error:  # a configuration that cannot work, e.g. a database URL
        sys.stderr.write(f"tally: {error}\n")
        return 2
    return code
