"""Each step driven by the test on real PostgreSQL and RabbitMQ, clock included: overdue
escalation to deputies at the day's start and to admins an hour later; stuck deliveries
re-queued and, out of re-queues, failed; notices nobody can receive; withdrawal while a
notice is being sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, update

from encompass.adapters.broker import Consumer
from encompass.adapters.db.tables import Alert, Notice, OutboxEntry, SealedEnvelope
from encompass.adapters.key_files import generate_key_adult_keys
from encompass.adapters.topology import DELIVERIES, Topology
from encompass.adapters.webhook import WebhookSender
from encompass.bootstrap import Container, bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.domain.envelope import open_sealed, parse_envelope
from encompass.domain.queued import DeliveryQueued
from encompass.domain.status import NoticeStatus
from encompass.services.delivery.attempt import DeliverEnvelope, refuse_delivery
from encompass.services.intake.withdraw import withdraw_incident
from encompass.services.receiving.sweep_stuck import SweepPolicy, sweep
from encompass.services.scheduling.notices import transition
from encompass.services.scheduling.outbox import relay_outbox
from encompass.services.scheduling.release_due import release_due
from encompass.workers.runner import decoding, run_consumer
from tests.cleanup import delete_topologies
from tests.conftest import RabbitTarget
from tests.integration.delivery_fixtures import (
    Person,
    Received,
    Receiver,
    add_incident,
    add_setting,
    key_adult_row,
    notice_status,
    own_database,
    receiver,
    settled_queue,
    until,
)

pytestmark = pytest.mark.integration

MORNING = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)  # Monday 07:30 in London (GMT)


@dataclass
class Stack:
    container: Container
    hooks: Receiver
    service_key: Ed25519PrivateKey

    @property
    def clock(self) -> Clock:
        return self.container.clock

    async def release_and_deliver(self) -> None:
        c = self.container
        while (await release_due(c.sessions, c.clock, c.signing_key)).notices:
            pass
        await self.relay()

    async def relay(self) -> None:
        await relay_outbox(self.container.sessions, self.container.broker, self.clock)
        await settled_queue(self.container.broker, DELIVERIES)

    async def sweep(self) -> None:
        c = self.container
        await sweep(c.sessions, c.clock, c.signing_key, policy=SweepPolicy())

    async def alerts(self, notice_id: str) -> list[tuple[str, str]]:
        async with self.container.sessions() as session:
            return [
                (a.kind, a.audience)
                for a in await session.scalars(
                    select(Alert).where(Alert.notice_id == notice_id).order_by(Alert.alert_id)
                )
            ]


@pytest.fixture(scope="module")
async def stack(admin_pg_url: str, rabbit: RabbitTarget) -> AsyncIterator[Stack]:
    async with own_database(admin_pg_url, "sweep") as url, receiver() as hooks:
        settings = load_settings(
            database_url=url, amqp_url=rabbit.url, queue_prefix=f"{rabbit.prefix}sweep."
        )
        key = Ed25519PrivateKey.generate()
        container = await bootstrap(settings, clock=Clock(MORNING), signing_key=key)
        webhook = WebhookSender(timeout=2.0, signing_key=key)
        handler = DeliverEnvelope(
            container.sessions, container.clock, webhook, None, max_attempts=3
        )
        consumer: Consumer = await run_consumer(
            container.broker,
            DELIVERIES,
            decoding(DeliveryQueued, handler, refuse_delivery),
            backoff=lambda _attempt: 0.0,
        )
        try:
            yield Stack(container, hooks, key)
        finally:
            await consumer.cancel()
            await webhook.close()
            await container.close()
            await delete_topologies([(rabbit.url, Topology(settings.queue_prefix))])


async def test_unacknowledged_goes_to_deputies_at_day_start_then_to_admins(stack: Stack) -> None:
    c = stack.container
    stack.clock.set(MORNING)
    # Given a Key Adult on a webhook; the notice is released at 07:30 and delivered
    setting, _ = await add_setting(
        c.sessions, people=[("key_adult", stack.hooks.url("esc"))], day_starts=time(8, 45)
    )
    acked_setting, _ = await add_setting(
        c.sessions, people=[("key_adult", stack.hooks.url("esc-ack"))]
    )
    (notice_id,) = (
        await add_incident(c.sessions, setting_ids=[setting], deliver_at=MORNING)
    ).notice_ids
    (acked_id,) = (
        await add_incident(c.sessions, setting_ids=[acked_setting], deliver_at=MORNING)
    ).notice_ids
    await stack.release_and_deliver()
    assert await notice_status(c.sessions, notice_id) == "delivered"
    await _acknowledge(stack, acked_id)
    # And a deputy who joined after the release, so holds no envelope yet
    deputy = Person(f"{setting}-deputy-late", generate_key_adult_keys(False))
    async with c.sessions.begin() as session:
        session.add(key_adult_row(setting, deputy, "deputy", stack.hooks.url("esc-deputy")))
    # When the day has not started yet, nothing happens
    stack.clock.set(datetime(2026, 3, 2, 8, 44, 30, tzinfo=UTC))
    await stack.sweep()
    assert await stack.alerts(notice_id) == []
    # When the day starts (08:45 London) unacknowledged: overdue, the deputy is sealed in
    stack.clock.set(datetime(2026, 3, 2, 8, 45, 30, tzinfo=UTC))
    await stack.sweep()
    await stack.relay()
    assert await stack.alerts(notice_id) == [("overdue", "deputies")]
    notice = await _notice(stack, notice_id)
    assert notice.overdue_at is not None and notice.admins_alerted_at is None
    assert notice.status == "delivered"  # overdue is a flag, not a status
    (request,) = await until(lambda: _at(stack, "esc-deputy"))
    opened = open_sealed(
        parse_envelope(request.body),
        private_key=deputy.keys.recipient,
        service_public_key=stack.service_key.public_key(),
    )
    assert opened.notice_id == notice_id
    # When 59 minutes pass, not yet the admins
    stack.clock.advance(timedelta(minutes=59))
    await stack.sweep()
    assert await stack.alerts(notice_id) == [("overdue", "deputies")]
    # When an hour has passed, the admins; and only once
    stack.clock.advance(timedelta(minutes=1, seconds=1))
    await stack.sweep()
    await stack.sweep()
    assert await stack.alerts(notice_id) == [("overdue", "deputies"), ("overdue", "admins")]
    assert (await _notice(stack, notice_id)).admins_alerted_at is not None
    # And the acknowledged notice was never escalated
    assert await stack.alerts(acked_id) == []
    assert (await _notice(stack, acked_id)).overdue_at is None


async def test_a_lost_delivery_is_requeued_then_failed_when_out_of_requeues(stack: Stack) -> None:
    c = stack.container
    stack.clock.set(MORNING + timedelta(days=1))
    setting, _ = await add_setting(c.sessions, people=[("key_adult", stack.hooks.url("lost"))])
    recovered, _ = await add_setting(c.sessions, people=[("key_adult", stack.hooks.url("found"))])
    lost_id, found_id = (
        await add_incident(
            c.sessions, setting_ids=[setting, recovered], deliver_at=stack.clock.now()
        )
    ).notice_ids
    await release_due(c.sessions, c.clock, c.signing_key)
    # Given the relay published the entries but the messages were lost
    await _lose_pending(stack, lost_id, found_id)
    # When the sweeper finds them quiet for longer than stuck_after, it re-queues them
    stack.clock.advance(timedelta(minutes=11))
    await stack.sweep()
    assert await _entries(stack, found_id) == 2
    await _lose_pending(stack, lost_id)
    await stack.relay()  # this time found_id's message arrives
    assert await notice_status(c.sessions, found_id) == "delivered"
    # And for the one lost every time, up to the bound, then failed with an alert
    for _ in range(10):
        await _lose_pending(stack, lost_id)
        stack.clock.advance(timedelta(minutes=11))
        await stack.sweep()
    assert await _entries(stack, lost_id) == 1 + SweepPolicy().max_requeues
    assert await notice_status(c.sessions, lost_id) == "failed"
    assert ("delivery_failed", "admins") in await stack.alerts(lost_id)
    assert not stack.hooks.at("lost")


async def _lose_pending(stack: Stack, *notice_ids: str) -> None:
    """As if the relay published these notices' pending entries and the broker lost them."""
    envelopes = select(SealedEnvelope.envelope_id).where(SealedEnvelope.notice_id.in_(notice_ids))
    async with stack.container.sessions.begin() as session:
        await session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.published_at.is_(None), OutboxEntry.envelope_id.in_(envelopes))
            .values(published_at=stack.clock.now())
        )


async def _entries(stack: Stack, notice_id: str) -> int:
    async with stack.container.sessions() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(OutboxEntry)
                .join(SealedEnvelope, SealedEnvelope.envelope_id == OutboxEntry.envelope_id)
                .where(SealedEnvelope.notice_id == notice_id)
            )
            or 0
        )


async def _acknowledge(stack: Stack, notice_id: str) -> None:
    # The acknowledgement route is someone else's: what matters here is the status.
    async with stack.container.sessions.begin() as session:
        notice = await session.get(Notice, notice_id)
        assert notice is not None
        transition(session, notice, NoticeStatus.ACKNOWLEDGED, at=stack.clock.now(), cause="test")


async def _notice(stack: Stack, notice_id: str) -> Notice:
    async with stack.container.sessions() as session:
        notice = await session.get(Notice, notice_id)
        assert notice is not None
        return notice


async def _at(stack: Stack, path: str) -> list[Received]:
    return list(stack.hooks.at(path))


async def test_a_notice_nobody_can_receive_stays_scheduled_and_alerts_once(stack: Stack) -> None:
    c = stack.container
    stack.clock.set(MORNING + timedelta(days=2))
    # Given a setting whose only Key Adult is a holiday contact, and a term-time notice
    setting, _ = await add_setting(c.sessions, people=[("holiday_contact", None)])
    (notice_id,) = (
        await add_incident(c.sessions, setting_ids=[setting], deliver_at=stack.clock.now())
    ).notice_ids
    # When it falls due, it cannot be sealed to anyone: held, and the admins told once
    await release_due(c.sessions, c.clock, c.signing_key)
    await release_due(c.sessions, c.clock, c.signing_key)
    assert await notice_status(c.sessions, notice_id) == "scheduled"
    assert await stack.alerts(notice_id) == [("no_recipient", "admins")]
    # When a Key Adult is added, the next recheck releases it and resolves the alert
    person = Person(f"{setting}-added", generate_key_adult_keys(False))
    async with c.sessions.begin() as session:
        session.add(key_adult_row(setting, person, "key_adult", None))
    stack.clock.advance(timedelta(minutes=6))
    released = await release_due(c.sessions, c.clock, c.signing_key)
    assert (released.notices, released.envelopes) == (1, 1)
    assert await notice_status(c.sessions, notice_id) == "sending"
    async with c.sessions() as session:
        alert = (await session.scalars(select(Alert).where(Alert.notice_id == notice_id))).one()
    assert alert.resolved_at is not None


async def test_a_holiday_notice_goes_to_the_holiday_contact_only(stack: Stack) -> None:
    c = stack.container
    stack.clock.set(MORNING + timedelta(days=3))
    setting, (_, contact) = await add_setting(
        c.sessions, people=[("key_adult", None), ("holiday_contact", None)]
    )
    (notice_id,) = (
        await add_incident(
            c.sessions,
            setting_ids=[setting],
            deliver_at=stack.clock.now(),
            recipient="holiday_contact",
        )
    ).notice_ids
    await release_due(c.sessions, c.clock, c.signing_key)
    async with c.sessions() as session:
        holders = (
            await session.scalars(
                select(SealedEnvelope.key_adult_id).where(SealedEnvelope.notice_id == notice_id)
            )
        ).all()
    assert list(holders) == [contact.key_adult_id]


async def test_withdrawal_while_sending_cancels_and_retracts_what_may_be_in_flight(
    stack: Stack,
) -> None:
    c = stack.container
    stack.clock.set(MORNING + timedelta(days=4))
    # Given a notice released (sending) whose deliveries have not gone out yet
    setting, (key_adult, _) = await add_setting(
        c.sessions, people=[("key_adult", stack.hooks.url("inflight")), ("deputy", None)]
    )
    made = await add_incident(c.sessions, setting_ids=[setting], deliver_at=stack.clock.now())
    (notice_id,) = made.notice_ids
    await release_due(c.sessions, c.clock, c.signing_key)
    assert await notice_status(c.sessions, notice_id) == "sending"
    # When the force withdraws it
    summary = await withdraw_incident(
        c.sessions, c.clock, c.signing_key, made.force_id, made.incident_id
    )
    assert (summary["cancelled"], summary["retracted"], summary["retractions_sealed"]) == (1, 0, 1)
    assert await notice_status(c.sessions, notice_id) == "cancelled"
    await stack.relay()
    # Then the notice itself never goes out; the webhook gets the retraction only
    kinds = [r.headers["X-Encompass-Envelope-Kind"] for r in stack.hooks.at("inflight")]
    assert kinds == ["retraction"]
    content = open_sealed(
        parse_envelope(stack.hooks.at("inflight")[0].body),
        private_key=key_adult.keys.recipient,
        service_public_key=stack.service_key.public_key(),
    )
    assert content.kind == "retraction"
