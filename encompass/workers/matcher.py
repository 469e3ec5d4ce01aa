"""The matcher worker: consumes ``incidents``, matches each child, schedules the notices.

Messages are taken in batches (``ENCOMPASS_BATCH_SIZE``, ``ENCOMPASS_BATCH_WAIT_MS``) and
each batch is committed in one transaction before its messages are acked.

Run it with ``encompass worker matcher`` or ``python -m workers.matcher``.
"""

from __future__ import annotations

from encompass.adapters.broker import Consumer
from encompass.adapters.topology import INCIDENTS
from encompass.bootstrap import Container
from encompass.services.matching.match_incident import MatchIncident
from encompass.workers.runner import run_batch_consumer


async def start(container: Container) -> Consumer:
    """Load the roster (an in-memory index is built here, before the first message), then
    start consuming; the returned consumer's ``cancel()`` stops it."""
    await container.roster.warm()
    handler = MatchIncident(container.sessions, container.roster, container.clock)
    settings = container.settings
    return await run_batch_consumer(
        container.broker,
        INCIDENTS,
        handler.batch,
        batch_size=settings.batch_size,
        batch_wait=settings.batch_wait_ms / 1000,
    )
