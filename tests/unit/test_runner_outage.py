"""An outage of the database or the broker is not the message's fault: the runner puts the
message back without counting an attempt, however long the outage lasts, so nothing is
dead-lettered for it (a handler's own failures still are, after ``max_attempts``)."""

from __future__ import annotations

import pytest

from encompass.adapters.broker import Message
from encompass.adapters.embedded_broker import EmbeddedBroker
from encompass.adapters.topology import Topology
from encompass.workers import runner
from encompass.workers.runner import ATTEMPTS_HEADER, attempts_of, run_consumer
from tests.unit.test_unavailable import raised_in


async def test_an_outage_longer_than_max_attempts_dead_letters_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner, "UNAVAILABLE_PAUSE", 0.0)
    broker = EmbeddedBroker(Topology("unit."))
    await broker.start()
    seen: list[int] = []

    async def handler(message: Message) -> None:
        seen.append(attempts_of(message))
        if len(seen) <= 6:  # the database refuses six times in a row
            raise raised_in("asyncpg.connect_utils", ConnectionRefusedError(111, "refused"))

    consumer = await run_consumer(
        broker, "incidents", handler, max_attempts=3, backoff=lambda _: 0.0
    )
    await broker.publish("incidents", b"{}", message_id="outage-1", headers={ATTEMPTS_HEADER: 1})
    await broker.join("incidents")
    await consumer.cancel()

    assert seen == [1] * 7  # never counted: the one earlier failure is all it carries
    assert await broker.get("incidents.dead", timeout=0) is None
    await broker.close()
