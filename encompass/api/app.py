"""The HTTP application: ``create_app(container)`` for ``encompass serve`` and the tests."""

from __future__ import annotations

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from encompass.api import admin_routes, door, police, settings_routes
from encompass.api.errors import json_errors
from encompass.api.keys import CONTAINER, METRICS
from encompass.api.openapi import build_openapi
from encompass.bootstrap import Container
from encompass.metrics import Metrics

log = structlog.get_logger()
MAX_BODY = 256 * 1024  # an incident report is a few kB; anything larger is a mistake


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    try:
        await admin_routes.refresh_review_metrics(request.app)
    except Exception:
        # A database hiccup must not blind Prometheus to everything else.
        log.warning("metrics.review_refresh_failed", exc_info=True)
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
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    app.add_routes(police.routes)
    app.add_routes(settings_routes.routes)
    app.add_routes(admin_routes.routes)
    return app
