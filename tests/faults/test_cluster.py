"""Three RabbitMQ nodes on this machine, clustered, with the service's quorum queues
replicated across them: kill a follower, then the leader, while publishing with confirms,
and every confirmed message is still there.

One node proves crash survival (``test_faults.py``); only this proves replication.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from encompass.adapters.broker import PublishError
from encompass.adapters.rabbit import RabbitBroker
from encompass.adapters.topology import INCIDENTS, Topology
from tests.conftest import RUN_ID
from tests.faults.load import say
from tests.faults.servers import RabbitNode, rabbit_available

pytestmark = [pytest.mark.faults, pytest.mark.integration]

QUEUE = INCIDENTS


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RabbitNode]]:
    """Three nodes of our own (names, ports and data directories), joined into one cluster;
    stopped and removed afterwards."""
    if not rabbit_available():
        pytest.skip(
            "the RabbitMQ server package is not installed: the cluster test starts "
            "three nodes of its own (apt-get install rabbitmq-server)"
        )
    base = Path(tmp_path_factory.mktemp("rabbit-cluster"))
    cookie = secrets.token_hex(20)
    nodes = [RabbitNode(base, name=f"encompass-c{n}-{RUN_ID}", cookie=cookie) for n in (1, 2, 3)]
    try:
        for node in nodes:
            node.start()
        for node in nodes[1:]:
            node.ctl("stop_app")
            node.ctl("reset")
            node.ctl("join_cluster", nodes[0].nodename)
            node.start_app()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def kill_node(node: RabbitNode) -> None:
    """``kill -9`` of the node's whole process group (the Erlang VM and its helpers)."""
    assert node.process is not None
    os.killpg(node.process.pid, signal.SIGKILL)
    node.process.wait(timeout=10)
    node.process = None


def leader_and_members(node: RabbitNode, queue: str) -> tuple[str, list[str]]:
    out = node.ctl("list_queues", "-q", "--no-table-headers", "name", "leader", "members")
    for line in out.splitlines():
        name, _, rest = line.partition("\t")
        if name == queue:
            leader, _, members = rest.partition("\t")
            return leader.strip(), [m.strip(" []") for m in members.split(",") if m.strip()]
    raise AssertionError(f"{queue} not found: {out}")


class Publisher:
    """Publishes numbered messages with confirms through one node, steadily, keeping the
    ids the broker confirmed; a refused or unconfirmed one is retried under the same id."""

    def __init__(self, broker: RabbitBroker, rate: float) -> None:
        self.broker, self.rate = broker, rate
        self.confirmed: set[str] = set()
        self.refused = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    async def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            message_id = f"m{n:06d}"
            try:
                await self.broker.publish(QUEUE, b"{}", message_id=message_id)
                self.confirmed.add(message_id)
                n += 1
            except PublishError:
                self.refused += 1
                await asyncio.sleep(0.2)
            await asyncio.sleep(1 / self.rate)


@pytest.fixture
async def broker(cluster: list[RabbitNode]) -> AsyncIterator[tuple[RabbitBroker, Topology]]:
    topology = Topology(f"c{RUN_ID}.")
    # Through the third node: the test kills the first two (the queue's leader is placed on
    # the node that declared it, the first).
    declarer = RabbitBroker(cluster[0].url, topology)
    await declarer.start()
    await declarer.close()
    publisher = RabbitBroker(cluster[2].url, topology, publish_timeout=5.0)
    await publisher.start()
    yield publisher, topology
    await publisher.close()


async def test_killing_a_follower_then_the_leader_loses_nothing_confirmed(
    cluster: list[RabbitNode], broker: tuple[RabbitBroker, Topology]
) -> None:
    publisher_broker, topology = broker
    real = topology.name(QUEUE)
    leader, members = await asyncio.to_thread(leader_and_members, cluster[2], real)
    assert sorted(members) == sorted(node.nodename for node in cluster), "not replicated"
    by_name = {node.nodename: node for node in cluster}
    follower = next(node for node in cluster[:2] if node.nodename != leader)
    assert leader != cluster[2].nodename, "the leader is on the node we publish through"

    publisher = Publisher(publisher_broker, rate=50)
    publisher.start()
    await asyncio.sleep(2)
    for victim in (follower, by_name[leader]):
        before = len(publisher.confirmed)
        say(f"cluster: kill -9 {victim.nodename} after {before} confirmed")
        await asyncio.to_thread(kill_node, victim)
        await asyncio.sleep(3)  # publishing goes on against the two left
        began = time.monotonic()
        await asyncio.to_thread(victim.start)
        say(f"cluster: {victim.nodename} back in {time.monotonic() - began:.1f}s")
        assert len(publisher.confirmed) > before, "nothing was confirmed with a node down"
    new_leader, _ = await asyncio.to_thread(leader_and_members, cluster[2], real)
    await publisher.stop()

    received: list[str] = []
    while (delivery := await publisher_broker.get(QUEUE, timeout=2.0)) is not None:
        received.append(delivery.message.message_id)
        await delivery.ack()
    say(
        f"cluster: {len(publisher.confirmed)} confirmed, {len(received)} received, "
        f"{publisher.refused} refused; leader {leader} -> {new_leader}"
    )
    assert new_leader != leader
    assert publisher.confirmed <= set(received), "a confirmed message was lost"
    assert set(received) <= publisher.confirmed, "a message nobody published"
