"""Running workers until a signal says stop; shared by the CLI, ``encompass serve`` (the
embedded broker) and ``python -m workers.*``."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence

import structlog

from encompass.adapters.broker import Consumer
from encompass.bootstrap import Container, bootstrap
from encompass.config import load_settings
from encompass.logging import configure_logging
from encompass.workers import dispatcher, intake, matcher

log = structlog.get_logger()


def starters() -> dict[str, Callable[[Container], Awaitable[Consumer]]]:
    """Each worker's ``start``, by the name ``encompass worker NAME`` knows it by."""
    return {"matcher": matcher.start, "dispatcher": dispatcher.start, "intake": intake.start}


async def start_workers(container: Container, names: Sequence[str]) -> list[Consumer]:
    """Start the named workers (``all`` means every one) in this process."""
    available = starters()
    chosen = list(available) if "all" in names else list(names)
    consumers = []
    for name in chosen:
        consumers.append(await available[name](container))
        log.info("worker.started", worker=name, broker=container.broker.kind)
    return consumers


def stop_event() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, so workers finish the message in hand and stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_workers(names: Sequence[str]) -> None:
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    container = await bootstrap(settings)
    try:
        consumers = await start_workers(container, names)
        await stop_event().wait()
        for consumer in consumers:
            await consumer.cancel()
    finally:
        await container.close()
