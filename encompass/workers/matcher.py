"""The matcher worker: consumes ``incidents``, matches each child, schedules the notices.

Run it with ``encompass worker matcher`` or ``python -m workers.matcher``.
"""

from __future__ import annotations

from encompass.adapters.broker import Consumer
from encompass.adapters.topology import INCIDENTS
from encompass.bootstrap import Container
from encompass.domain.queued import VersionQueued
from encompass.services.matching.match_incident import MatchIncident, refuse_version
from encompass.workers.runner import decoding, run_consumer


async def start(container: Container) -> Consumer:
    """Load the roster (an in-memory index is built here, before the first message), then
    start consuming; the returned consumer's ``cancel()`` stops it."""
    await container.roster.warm()
    handler = MatchIncident(container.sessions, container.roster, container.clock)
    return await run_consumer(
        container.broker, INCIDENTS, decoding(VersionQueued, handler, refuse_version)
    )
