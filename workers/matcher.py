"""The matcher worker: consumes ``incidents``, matches each child, schedules the notices.

Run it with ``encompass worker matcher`` or ``python -m workers.matcher``.
"""

from __future__ import annotations

import asyncio

from encompass.adapters.broker import Consumer
from encompass.bootstrap import Container
from encompass.services.intake.ingest import INCIDENTS
from encompass.services.matching.match_incident import MatchIncident
from workers.runner import run_consumer


async def start(container: Container) -> Consumer:
    """Load the roster (an in-memory index is built here, before the first message), then
    start consuming; the returned consumer's ``cancel()`` stops it."""
    await container.roster.warm()
    handler = MatchIncident(container.sessions, container.roster, container.clock)
    return await run_consumer(container.broker, INCIDENTS, handler)


if __name__ == "__main__":
    from workers.main import run_workers

    asyncio.run(run_workers(["matcher"]))
