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


async def serve(settings: Settings) -> None:
    configure_logging(settings.log_format, settings.log_level)
    container = await bootstrap(settings)
    runner = web.AppRunner(create_app(container), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
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
