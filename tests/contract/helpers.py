"""Small waiting helpers shared by the contract tests."""

from __future__ import annotations

import asyncio

from encompass.adapters.broker import Broker, Delivery

WAIT = 5.0  # generous upper bound; every wait returns as soon as its condition holds


class Inbox:
    """A handler that keeps every delivery (unsettled) for the test to inspect."""

    def __init__(self) -> None:
        self.deliveries: asyncio.Queue[Delivery] = asyncio.Queue()

    async def __call__(self, delivery: Delivery) -> None:
        await self.deliveries.put(delivery)

    async def next(self, timeout: float = WAIT) -> Delivery:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            return await self.deliveries.get()


async def must_get(broker: Broker, queue: str, timeout: float = WAIT) -> Delivery:  # noqa: ASYNC109
    """One message from ``queue``; fail the test if none comes within ``timeout``."""
    delivery = await broker.get(queue, timeout=timeout)
    assert delivery is not None, f"nothing arrived on {queue} within {timeout}s"
    return delivery
