"""The safety net under the incidents queue, on the real PostgreSQL (and SQLite): a version
no matcher processed is published again, a few times, then admins are alerted once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update

from encompass.adapters.db.tables import Alert, IncidentVersion
from encompass.adapters.topology import INCIDENTS
from encompass.bootstrap import Container, bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.services.access.credentials import add_force
from encompass.services.intake.ingest import report_incident
from encompass.services.intake.requeue_stale import MAX_REQUEUES, STALE_AFTER, requeue_stale
from tests.receiving_fixtures import AMELIA, own_database, report

pytestmark = pytest.mark.integration

NIGHT = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)


@pytest.fixture(params=["postgresql", "sqlite"])
async def container(
    request: pytest.FixtureRequest, admin_pg_url: str, tmp_path: Path
) -> AsyncIterator[Container]:
    async def start(url: str) -> Container:
        settings = load_settings(database_url=url, amqp_url="", smtp_host="")
        return await bootstrap(
            settings, clock=Clock(NIGHT), signing_key=Ed25519PrivateKey.generate()
        )

    if request.param == "sqlite":
        built = await start(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
        yield built
        await built.close()
        return
    async with own_database(admin_pg_url, "requeue") as url:
        built = await start(url)
        yield built
        await built.close()


async def test_an_unprocessed_version_is_published_again_then_admins_are_alerted(
    container: Container,
) -> None:
    await add_force(container.sessions, container.clock, "WMP", "West Midlands Police")
    lost = await report_incident(
        container.sessions, container.broker, container.clock, "WMP", report(AMELIA)
    )
    matched = await report_incident(
        container.sessions, container.broker, container.clock, "WMP", report(AMELIA)
    )
    async with container.sessions.begin() as session:
        await session.execute(
            update(IncidentVersion)
            .where(IncidentVersion.version_id == matched.version_id)
            .values(processed_at=container.clock.now())
        )
    assert await container.broker.depth(INCIDENTS) == 2

    # Not yet stale: nothing is published again.
    assert (
        await requeue_stale(container.sessions, container.broker, container.clock)
    ).published == 0

    for attempt in range(1, MAX_REQUEUES + 1):
        container.clock.advance(STALE_AFTER + timedelta(seconds=1))
        done = await requeue_stale(container.sessions, container.broker, container.clock)
        assert (done.published, done.alerted) == (1, 0)
        assert await container.broker.depth(INCIDENTS) == 2 + attempt

    container.clock.advance(STALE_AFTER + timedelta(seconds=1))
    done = await requeue_stale(container.sessions, container.broker, container.clock)
    assert (done.published, done.alerted) == (0, 1)
    container.clock.advance(STALE_AFTER + timedelta(seconds=1))
    done = await requeue_stale(container.sessions, container.broker, container.clock)
    assert (done.published, done.alerted) == (0, 0)  # alerted once, then left to a person

    async with container.sessions() as session:
        alerts = (
            await session.scalars(select(Alert).where(Alert.kind == "incident_unprocessed"))
        ).all()
    assert len(alerts) == 1
    assert alerts[0].notice_id is None and alerts[0].audience == "admins"
    assert lost.incident_id in alerts[0].message
    assert "Amelia" not in alerts[0].message and "Smith" not in alerts[0].message
