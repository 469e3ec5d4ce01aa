"""One broker fixture, parametrised over both adapters: every contract test runs twice.

The RabbitMQ case uses the real server from the session ``rabbit`` fixture (never a mock),
with a prefix of the run's own plus a per-test suffix, so no test sees another's messages.
Every queue and exchange this run declared is deleted at the end of the session.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from encompass.adapters.broker import Broker
from encompass.adapters.embedded_broker import EmbeddedBroker
from encompass.adapters.rabbit import RabbitBroker
from encompass.adapters.topology import Topology
from tests.cleanup import delete_topologies

if TYPE_CHECKING:
    from tests.conftest import RabbitTarget

_numbers = itertools.count()


@pytest.fixture(scope="session")
def _declared() -> list[tuple[str, Topology]]:
    """The (url, topology) of every RabbitMQ broker the suite made, for the clean-up."""
    return []


@pytest.fixture(scope="session", autouse=True)
async def _delete_rabbit_topologies(_declared: list[tuple[str, Topology]]) -> AsyncIterator[None]:
    yield
    if _declared:
        await delete_topologies(_declared)


@pytest.fixture(params=["embedded", "rabbitmq"])
def rabbit_or_none(request: pytest.FixtureRequest) -> RabbitTarget | None:
    """``None`` for the embedded case. A sync fixture on purpose: the session ``rabbit``
    fixture probes the server with ``asyncio.run``, which cannot run inside the loop."""
    if request.param == "embedded":
        return None
    target: RabbitTarget = request.getfixturevalue("rabbit")
    return target


@pytest.fixture
async def broker(
    rabbit_or_none: RabbitTarget | None, _declared: list[tuple[str, Topology]]
) -> AsyncIterator[Broker]:
    """A started broker on fresh, empty queues; closed after the test."""
    made: Broker
    rabbit = rabbit_or_none
    if rabbit is None:
        made = EmbeddedBroker(Topology("contract."), cancel_grace=1.0)
    else:
        topology = Topology(f"{rabbit.prefix}{next(_numbers)}.")
        _declared.append((rabbit.url, topology))
        made = RabbitBroker(rabbit.url, topology, publish_timeout=5.0, cancel_grace=1.0)
    await made.start()
    try:
        yield made
    finally:
        await made.close()
