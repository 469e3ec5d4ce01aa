"""Releasing a batch with its envelopes sealed in worker processes (``ENCOMPASS_SEAL_WORKERS``),
on real PostgreSQL: the same rows as sealing in the process, each envelope opening with its
recipient's key, signed by the service, hashed as acknowledgements expect; and a worker
that dies costs nothing but the pool's restart."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from encompass.adapters.db.tables import OutboxEntry, SealedEnvelope
from encompass.bootstrap import Container, bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.domain.envelope import envelope_hash, open_sealed, parse_envelope
from encompass.services.delivery.seal_pool import MIN_POOLED, SealPool
from encompass.services.scheduling.release_due import release_due
from tests.conftest import RabbitTarget
from tests.integration.delivery_fixtures import Person, add_incident, add_setting, own_database

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 3, 7, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
async def container(admin_pg_url: str, rabbit: RabbitTarget) -> AsyncIterator[Container]:
    async with own_database(admin_pg_url, "sealpool") as url:
        settings = load_settings(
            database_url=url, amqp_url=rabbit.url, queue_prefix=f"{rabbit.prefix}spool."
        )
        made = await bootstrap(settings, clock=Clock(NOW), signing_key=Ed25519PrivateKey.generate())
        try:
            yield made
        finally:
            await made.close()


@pytest.fixture(scope="module")
async def pool(container: Container) -> AsyncIterator[SealPool]:
    made = SealPool(2, container.signing_key)
    try:
        yield made
    finally:
        await made.close()


async def due_notices(c: Container, count: int) -> tuple[list[str], dict[str, Person]]:
    """``count`` notices due now, each at its own setting with one Key Adult on a webhook;
    their ids and the Key Adults by id."""
    settings: list[str] = []
    people: dict[str, Person] = {}
    for n in range(count):
        setting, (person,) = await add_setting(
            c.sessions, people=[("key_adult", f"http://127.0.0.1:9/hook/{n}")]
        )
        settings.append(setting)
        people[person.key_adult_id] = person
    made = await add_incident(
        c.sessions, setting_ids=settings, deliver_at=c.clock.now() - timedelta(seconds=1)
    )
    return made.notice_ids, people


async def test_a_large_batch_sealed_in_workers_opens_verifies_and_is_queued(
    container: Container, pool: SealPool
) -> None:
    c = container
    # Given more notices due than the pool's threshold
    notice_ids, people = await due_notices(c, MIN_POOLED + 4)
    # When they are released with the pool
    released = await release_due(c.sessions, c.clock, c.signing_key, sealer=pool)
    # Then each has its envelope, which only its Key Adult opens, signed by the service
    assert (released.notices, released.envelopes) == (len(notice_ids), len(notice_ids))
    async with c.sessions() as session:
        rows = (
            await session.execute(
                select(
                    SealedEnvelope.envelope_id,
                    SealedEnvelope.notice_id,
                    SealedEnvelope.key_adult_id,
                    SealedEnvelope.body,
                    SealedEnvelope.envelope_hash,
                ).where(SealedEnvelope.notice_id.in_(notice_ids))
            )
        ).all()
        queued = set(
            await session.scalars(
                select(OutboxEntry.envelope_id).where(
                    OutboxEntry.envelope_id.in_([r.envelope_id for r in rows]),
                    OutboxEntry.channel == "webhook",
                )
            )
        )
    assert sorted(r.notice_id for r in rows) == sorted(notice_ids)
    for row in rows:
        envelope = parse_envelope(row.body)
        content = open_sealed(
            envelope,
            private_key=people[row.key_adult_id].keys.recipient,
            service_public_key=c.signing_key.public_key(),
        )
        assert content.notice_id == row.notice_id
        assert row.envelope_hash == envelope_hash(envelope)
    # And each is queued for its webhook
    assert queued == {r.envelope_id for r in rows}


async def test_a_worker_that_dies_is_replaced_and_the_batch_still_sealed(
    container: Container, pool: SealPool
) -> None:
    c = container
    # Given a pool whose workers, once started, were killed
    first, _ = await due_notices(c, MIN_POOLED)
    assert (await release_due(c.sessions, c.clock, c.signing_key, sealer=pool)).notices == len(
        first
    )
    assert pool._pool._processes
    for pid in list(pool._pool._processes):
        os.kill(pid, signal.SIGKILL)
    notice_ids, _ = await due_notices(c, MIN_POOLED)
    # When a batch is released
    released = await release_due(c.sessions, c.clock, c.signing_key, sealer=pool)
    # Then every notice was released all the same
    assert released.notices == len(notice_ids)
    # And the pool works again afterwards
    more, _ = await due_notices(c, MIN_POOLED)
    assert (await release_due(c.sessions, c.clock, c.signing_key, sealer=pool)).notices == len(more)
