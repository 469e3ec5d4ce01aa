"""Removing what a test run declared on the shared RabbitMQ."""

from __future__ import annotations

import aio_pika

from encompass.adapters.topology import Topology


async def delete_topologies(declared: list[tuple[str, Topology]]) -> None:
    """Delete the queues and exchanges of these topologies."""
    connection = await aio_pika.connect(declared[0][0], timeout=10)
    try:
        channel = await connection.channel()
        for _, topology in declared:
            for spec in topology.queues:
                # if_unused must be False: quorum queues refuse queue.delete with it set
                # (and RabbitMQ closes the whole connection to say so).
                await channel.queue_delete(
                    topology.name(spec.name), if_unused=False, if_empty=False
                )
            for exchange in topology.exchanges():
                await channel.exchange_delete(exchange.name, if_unused=False)
    finally:
        await connection.close()
