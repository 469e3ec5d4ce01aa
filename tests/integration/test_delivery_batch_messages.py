"""One ``deliveries`` message naming many envelopes, through real PostgreSQL and RabbitMQ:
the relay publishes a batch as one message, the consumer delivers each envelope, a message
in the one-envelope form (from before the list form) is still delivered, and an envelope
that fails goes round again alone while the others of its message are done."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from encompass.adapters.broker import Broker, Consumer
from encompass.adapters.db.tables import DeliveryAttempt, SealedEnvelope
from encompass.adapters.topology import DELIVERIES, Topology
from encompass.bootstrap import Container, bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.domain.queued import DeliveryQueued
from encompass.logging import configure_logging
from encompass.services.delivery.attempt import DeliverEnvelope
from encompass.services.scheduling.outbox import relay_outbox
from encompass.services.scheduling.release_due import release_due
from encompass.workers.runner import DEAD_REASON_HEADER, run_batch_consumer
from tests.cleanup import delete_topologies
from tests.conftest import RabbitTarget
from tests.integration.delivery_fixtures import (
    Receiver,
    add_incident,
    add_setting,
    own_database,
    receiver,
    until,
)

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 3, 7, 30, tzinfo=UTC)  # a Tuesday morning, GMT


@dataclass
class CountingBroker:
    """The real broker, counting what the relay publishes to ``deliveries``."""

    inner: Broker
    bodies: list[bytes] = field(default_factory=list)

    async def publish(
        self, queue: str, body: bytes, *, message_id: str, headers: Mapping[str, Any] | None = None
    ) -> None:
        if queue == DELIVERIES:
            self.bodies.append(body)
        await self.inner.publish(queue, body, message_id=message_id, headers=headers)


@dataclass
class Stack:
    container: Container
    hooks: Receiver
    log: io.StringIO


@pytest.fixture(scope="module")
async def stack(admin_pg_url: str, rabbit: RabbitTarget) -> AsyncIterator[Stack]:
    log = io.StringIO()
    configure_logging("json", "debug", stream=log)
    async with own_database(admin_pg_url, "batchmsg") as url, receiver() as hooks:
        settings = load_settings(
            database_url=url, amqp_url=rabbit.url, queue_prefix=f"{rabbit.prefix}bmsg."
        )
        key = Ed25519PrivateKey.generate()
        container = await bootstrap(settings, clock=Clock(NOW), signing_key=key)
        handler = DeliverEnvelope(
            container.sessions, container.clock, container.webhook, None, max_attempts=4
        )
        # The dispatcher's consumer without its loop: the tests release and relay by hand.
        consumer: Consumer = await run_batch_consumer(
            container.broker,
            DELIVERIES,
            handler.batch,
            batch_size=64,
            batch_wait=0.05,
            concurrency=4,
            max_attempts=250,
            backoff=lambda _attempt: 0.0,
            weight=handler.weight,
        )
        try:
            yield Stack(container, hooks, log)
        finally:
            await consumer.cancel()
            await container.webhook.close()
            await container.close()
            await delete_topologies([(rabbit.url, Topology(settings.queue_prefix))])
            structlog.reset_defaults()


async def release(stack: Stack, *hooks: str | tuple[str, int]) -> list[str]:
    """One notice due now at a setting per webhook (a path, or a path and the status it
    answers first), released; their envelope ids, in the order of ``hooks``."""
    c = stack.container
    settings = []
    for hook in hooks:
        url = stack.hooks.url(hook) if isinstance(hook, str) else stack.hooks.url(*hook)
        settings.append((await add_setting(c.sessions, people=[("key_adult", url)]))[0])
    made = await add_incident(
        c.sessions, setting_ids=settings, deliver_at=c.clock.now() - timedelta(seconds=1)
    )
    while (await release_due(c.sessions, c.clock, c.signing_key)).notices:
        pass
    async with c.sessions() as session:
        by_notice = dict(
            (
                await session.execute(
                    select(SealedEnvelope.notice_id, SealedEnvelope.envelope_id).where(
                        SealedEnvelope.notice_id.in_(made.notice_ids)
                    )
                )
            ).all()
        )
    return [by_notice[n] for n in made.notice_ids]


async def outcomes(stack: Stack, envelope_id: str) -> list[str]:
    async with stack.container.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(DeliveryAttempt.outcome)
                    .where(DeliveryAttempt.envelope_id == envelope_id)
                    .order_by(DeliveryAttempt.attempt_id)
                )
            ).all()
        )


def logged(stack: Stack, event: str, envelope_id: str) -> int:
    return sum(event in line and envelope_id in line for line in stack.log.getvalue().splitlines())


async def test_the_relay_sends_a_batch_as_one_message_and_each_envelope_is_delivered(
    stack: Stack,
) -> None:
    # Given three notices released together, each to its own webhook
    envelopes = await release(stack, "batch-a", "batch-b", "batch-c")
    # When the relay hands them to the broker
    counting = CountingBroker(stack.container.broker)
    relayed = await relay_outbox(
        stack.container.sessions, cast(Broker, counting), stack.container.clock
    )
    # Then one message names all three
    assert relayed == 3
    (body,) = counting.bodies
    message = json.loads(body)
    assert message["channel"] == "webhook"
    assert sorted(message["envelope_ids"]) == sorted(envelopes)
    # And each envelope is posted once and delivered
    assert await until(lambda: _all_are(stack, envelopes, ["delivered"]))
    for hook in ("batch-a", "batch-b", "batch-c"):
        assert len(stack.hooks.at(hook)) == 1


async def _is(stack: Stack, envelope_id: str, wanted: list[str]) -> bool:
    return await outcomes(stack, envelope_id) == wanted


async def _all_are(stack: Stack, envelope_ids: list[str], wanted: list[str]) -> bool:
    return all([await _is(stack, e, wanted) for e in envelope_ids])


async def test_a_message_in_the_one_envelope_form_is_still_delivered(stack: Stack) -> None:
    # Given a released notice whose message was published before the list form existed
    (envelope_id,) = await release(stack, "old-form")
    body = json.dumps({"outbox_id": 1, "envelope_id": envelope_id, "channel": "webhook"})
    # When that message comes off the queue
    await stack.container.broker.publish(DELIVERIES, body.encode(), message_id="outbox-old")
    # Then the envelope is delivered
    assert await until(lambda: _is(stack, envelope_id, ["delivered"]))
    assert len(stack.hooks.at("old-form")) == 1


async def test_one_failing_envelope_of_a_message_goes_round_again_alone(stack: Stack) -> None:
    # Given a message naming three envelopes, one of whose webhooks answers 503 once
    good_a, flaky, good_b = await release(stack, "part-ok-a", ("part-flaky", 503), "part-ok-b")
    body = DeliveryQueued.of([good_a, flaky, good_b], "webhook").to_bytes()
    # When it is consumed
    await stack.container.broker.publish(DELIVERIES, body, message_id="outbox-part")
    # Then the failing envelope is retried and delivered
    assert await until(lambda: _is(stack, flaky, ["retry", "delivered"]))
    assert len(stack.hooks.at("part-flaky")) == 2
    # And the others were delivered once and never even looked at again: the retry copy
    # named the failing envelope alone
    for envelope_id, hook in ((good_a, "part-ok-a"), (good_b, "part-ok-b")):
        assert await outcomes(stack, envelope_id) == ["delivered"]
        assert len(stack.hooks.at(hook)) == 1
        assert logged(stack, "delivery.duplicate", envelope_id) == 0


async def test_an_unknown_envelope_is_dead_lettered_alone(stack: Stack) -> None:
    # Given a message naming a real envelope and one nobody ever sealed
    (real,) = await release(stack, "poison-neighbour")
    unknown = str(uuid.uuid4())
    body = DeliveryQueued.of([real, unknown], "webhook").to_bytes()
    # When it is consumed
    await stack.container.broker.publish(DELIVERIES, body, message_id="outbox-poison")
    # Then the real one is delivered
    assert await until(lambda: _is(stack, real, ["delivered"]))
    # And the dead letter names the unknown envelope only, in the one-envelope form
    broker = stack.container.broker
    for _ in range(100):
        delivery = await broker.get(f"{DELIVERIES}.dead", timeout=0.1)
        if delivery is not None:
            break
    assert delivery is not None
    await delivery.ack()
    assert json.loads(delivery.message.body) == {"envelope_id": unknown, "channel": "webhook"}
    assert delivery.message.headers[DEAD_REASON_HEADER] == "unknown envelope"
