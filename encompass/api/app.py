"""The HTTP application: ``create_app(container)`` for ``encompass serve`` and the tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from encompass.adapters.db.engine import ping
from encompass.adapters.topology import INCIDENTS
from encompass.api import (
    admin_pages,
    admin_routes,
    door,
    inbox_routes,
    police_routes,
    settings_routes,
)
from encompass.api.app_keys import CONTAINER, FORCE_TOKENS, INGEST, METRICS, TOKEN_LOOKUPS
from encompass.api.errors import error_response, json_errors
from encompass.api.openapi import build_openapi
from encompass.bootstrap import Container
from encompass.metrics import Metrics
from encompass.services.access.token_cache import SharedLookups, TokenCache
from encompass.services.admin.figures import read_figures
from encompass.services.intake.ingest_batch import IngestBatcher
from encompass.web import render

log = structlog.get_logger()
MAX_BODY = 256 * 1024  # an incident report is a few kB; anything larger is a mistake


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


READY_TIMEOUT = 2.0  # seconds each dependency has to answer a readiness probe


async def readyz(request: web.Request) -> web.Response:
    """Ready when the database and the broker both answer within ``READY_TIMEOUT``;
    otherwise 503 naming the first that did not (a load balancer stops sending here)."""
    container = request.app[CONTAINER]
    checks: tuple[tuple[str, Callable[[], Awaitable[object]]], ...] = (
        ("database", lambda: _database_answers(container)),
        ("broker", lambda: container.broker.depth(INCIDENTS)),
    )
    for name, check in checks:
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await check()
        except Exception as exc:
            log.warning("readyz.not_ready", dependency=name, error=type(exc).__name__)
            return error_response(503, "not_ready", f"the {name} does not answer")
    return web.json_response({"status": "ready"})


async def _database_answers(container: Container) -> None:
    await ping(container.engine)


async def metrics(request: web.Request) -> web.Response:
    try:
        await admin_routes.refresh_review_metrics(request.app)
    except Exception:
        # A database hiccup must not blind Prometheus to everything else.
        log.warning("metrics.review_refresh_failed", exc_info=True)
    try:
        container = request.app[CONTAINER]
        async with container.sessions() as session:
            figures = await read_figures(session, container.broker)
        request.app[METRICS].database.figures = figures
    except Exception:
        # The last figures read stay; the rest of the metrics are still served.
        log.warning("metrics.figures_refresh_failed", exc_info=True)
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(build_openapi())


def create_app(container: Container, *, metrics_: Metrics | None = None) -> web.Application:
    """The aiohttp application over an already bootstrapped container."""
    app = web.Application(middlewares=[json_errors, door.door], client_max_size=MAX_BODY)
    app[CONTAINER] = container
    door.install(app, container.settings)
    app[METRICS] = metrics_ or Metrics()
    app[FORCE_TOKENS] = TokenCache()
    app[TOKEN_LOOKUPS] = SharedLookups()
    app[INGEST] = IngestBatcher(
        container.sessions,
        container.broker,
        container.clock,
        max_batch=container.settings.batch_size,
        company_wait=container.settings.ingest_wait_ms / 1000,
    )
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    render.install(app)
    app.add_routes(police_routes.routes)
    app.add_routes(settings_routes.routes)
    app.add_routes(admin_routes.routes)
    app.add_routes(inbox_routes.routes)
    app.add_routes(admin_pages.routes)
    return app
