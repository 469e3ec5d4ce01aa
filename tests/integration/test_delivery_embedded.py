"""The dispatcher worker on the embedded defaults (in-process broker, SQLite): what
``encompass serve`` and the demo run with nothing configured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from encompass.bootstrap import bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from tests.integration.delivery_fixtures import (
    add_incident,
    add_setting,
    notice_status,
    receiver,
    until,
)
from workers import dispatcher

NOW = datetime(2026, 3, 5, 7, 30, tzinfo=UTC)


async def test_the_embedded_stack_releases_and_delivers(tmp_path: Path) -> None:
    settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'e.db'}",
                             amqp_url="", smtp_host="")
    container = await bootstrap(settings, clock=Clock(NOW),
                                signing_key=Ed25519PrivateKey.generate())
    async with receiver() as hooks:
        worker = await dispatcher.start(container, backoff=lambda _attempt: 0.0,
                                        interval=0.05)
        try:
            setting, _ = await add_setting(container.sessions,
                                           people=[("key_adult", hooks.url("embedded", 503)),
                                                   ("deputy", None)])
            (notice_id,) = (await add_incident(
                container.sessions, setting_ids=[setting],
                deliver_at=NOW - timedelta(seconds=1))).notice_ids

            async def delivered() -> bool:
                return await notice_status(container.sessions, notice_id) == "delivered"

            await until(delivered)
            assert len(hooks.at("embedded")) == 2  # one 503, then delivered
        finally:
            await worker.cancel()
            await container.close()
