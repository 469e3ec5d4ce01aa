"""The dispatcher worker on the embedded defaults (in-process broker, SQLite): what
``encompass serve`` and the demo run with nothing configured."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from encompass.adapters.db.tables import IncidentKey, Notice
from encompass.bootstrap import bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.domain.status import NoticeStatus
from encompass.services.scheduling.notices import transition
from encompass.workers import dispatcher
from tests.integration.delivery_fixtures import (
    add_incident,
    add_setting,
    notice_status,
    receiver,
    until,
)

NOW = datetime(2026, 3, 5, 7, 30, tzinfo=UTC)


async def test_the_embedded_stack_releases_and_delivers(tmp_path: Path) -> None:
    settings = load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'e.db'}", amqp_url="", smtp_host=""
    )
    container = await bootstrap(
        settings, clock=Clock(NOW), signing_key=Ed25519PrivateKey.generate()
    )
    async with receiver() as hooks:
        worker = await dispatcher.start(container, backoff=lambda _attempt: 0.0, interval=0.05)
        try:
            setting, _ = await add_setting(
                container.sessions,
                people=[("key_adult", hooks.url("embedded", 503)), ("deputy", None)],
            )
            (notice_id,) = (
                await add_incident(
                    container.sessions, setting_ids=[setting], deliver_at=NOW - timedelta(seconds=1)
                )
            ).notice_ids

            async def delivered() -> bool:
                return await notice_status(container.sessions, notice_id) == "delivered"

            await until(delivered)
            assert len(hooks.at("embedded")) == 2  # one 503, then delivered
        finally:
            await worker.cancel()
            await container.close()


async def test_the_dispatcher_applies_retention_on_sqlite(tmp_path: Path) -> None:
    # Given, on the embedded defaults, an incident whose only notice was cancelled long ago
    settings = load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'r.db'}",
        amqp_url="",
        smtp_host="",
        retention_days=30,
    )
    container = await bootstrap(
        settings, clock=Clock(NOW), signing_key=Ed25519PrivateKey.generate()
    )
    setting, _ = await add_setting(container.sessions, people=[("key_adult", None)])
    made = await add_incident(
        container.sessions, setting_ids=[setting], deliver_at=NOW - timedelta(days=40)
    )
    async with container.sessions.begin() as session:
        notice = await session.get(Notice, made.notice_ids[0])
        assert notice is not None
        transition(
            session, notice, NoticeStatus.CANCELLED, at=NOW - timedelta(days=31), cause="test"
        )
    fresh = await add_incident(container.sessions, setting_ids=[setting], deliver_at=NOW)

    async def key(incident_id: str) -> IncidentKey | None:
        async with container.sessions() as session:
            return await session.get(IncidentKey, incident_id)

    # When the dispatcher starts, it runs retention at once (then daily)
    worker = await dispatcher.start(container, interval=0.05, sweep_every=3600)
    try:
        purged = await until(lambda: _purged(key, made.incident_id))
        kept = await key(fresh.incident_id)
    finally:
        await worker.cancel()
        await container.close()
    # Then the closed incident's key is gone; the open one keeps its own
    assert purged.purged_at is not None
    assert kept is not None and kept.wrapped_key is not None


async def _purged(
    key: Callable[[str], Awaitable[IncidentKey | None]], incident_id: str
) -> IncidentKey | None:
    row = await key(incident_id)
    return row if row is not None and row.wrapped_key is None else None
