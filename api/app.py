"""The ASGI application: routes and lifespan, nothing else."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from api.background import allotment_sweeper, dispatch_rules
from api.dashboard import dashboard_routes
from api.exports import export_routes
from api.graphql import TallyGraphQL
from api.health import health_routes
from api.limits import http_middleware
from api.settings import Settings
from api.static_files import asset_routes
from api.webhooks import webhook_routes
from models.db import close_database, open_database
from services.dispatcher import Dispatcher
from services.runtime import Runtime


def create_app(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    manage_database: bool = True,
) -> Starlette:
    """The Tally app. `manage_database=False` leaves Tortoise and background work to the caller."""
    settings = settings or Settings.from_env()
    runtime = runtime or Runtime.for_broadcast(settings.broadcast_url, settings.redis_namespace)
    graphql = TallyGraphQL(settings=settings, runtime=runtime)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not manage_database:
            yield
            return
        await open_database(settings.database_url)
        try:
            dispatcher = Dispatcher(clock=runtime.clock, rules=dispatch_rules(settings))
            async with runtime.running(), allotment_sweeper(runtime), dispatcher.running():
                _freeze_startup_objects()
                yield
        finally:
            await close_database()

    return Starlette(
        routes=[
            Route("/graphql", graphql),
            WebSocketRoute("/graphql", graphql),
            *webhook_routes(settings, runtime),
            *export_routes(settings, runtime),
            *health_routes(settings),
            *dashboard_routes(),
            *asset_routes(),
        ],
        middleware=http_middleware(settings, runtime.clock),
        lifespan=lifespan,
    )


YOUNG_COLLECTION_THRESHOLD = 50_000


def _freeze_startup_objects() -> None:
    """Leave everything alive at startup out of the cyclic collector's passes, for good.

    A large response (a 731-bucket usage report) allocates enough to trigger full
    collections, and each one walked every module, the schema and the ORM's metadata:
    such a report's p95 was 34-65 ms for a median of 11, and 12-15 ms once frozen
    (docs/benchmarks.md). Those objects live as long as the process anyway. Collecting
    first keeps startup's own garbage out of the frozen set.
    """
    gc.collect()
    gc.freeze()
    # A request allocates a few thousand objects, nearly all freed by reference counting;
    # the default threshold (700) ran the young-generation collector several times per
    # request for the few cycles among them.
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])
