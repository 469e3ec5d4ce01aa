"""``encompass serve``: the HTTP API until a signal says stop.

With the embedded broker (no ``ENCOMPASS_AMQP_URL``) the queue lives in this process, so
the workers run here too; with RabbitMQ they run as their own processes.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from encompass.api.app import create_app
from encompass.bootstrap import bootstrap
from encompass.config import Settings
from encompass.logging import configure_logging
from encompass.workers.main import start_workers, stop_event

log = structlog.get_logger()


class ServeRefused(Exception):
    """Settings that ``encompass serve`` cannot run with; the message says why."""


async def serve(settings: Settings) -> None:
    if settings.http_reuse_port and settings.amqp_url is None:
        raise ServeRefused(
            "ENCOMPASS_HTTP_REUSE_PORT needs RabbitMQ (ENCOMPASS_AMQP_URL): the embedded "
            "broker lives inside one process, so a second one would see none of its queues"
        )
    configure_logging(settings.log_format, settings.log_level)
    container = await bootstrap(settings)
    runner = web.AppRunner(create_app(container), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(
            runner,
            settings.http_host,
            settings.http_port,
            reuse_port=True if settings.http_reuse_port else None,
        )
        await site.start()
        consumers = []
        if container.broker.kind == "embedded":
            consumers = await start_workers(container, ["all"])
        log.info(
            "serve.listening",
            host=settings.http_host,
            port=settings.http_port,
            broker=container.broker.kind,
            database=settings.database_kind,
        )
        await stop_event().wait()
        for consumer in consumers:
            await consumer.cancel()
    finally:
        await runner.cleanup()
        await container.close()
