"""``encompass demo`` end to end: every notice delivered and acknowledged, none failed."""

from __future__ import annotations

import pytest
import structlog

from encompass.adapters.topology import Topology
from encompass.demo.run import run_demo
from tests.cleanup import delete_topologies
from tests.conftest import RUN_ID, RabbitTarget
from tests.databases import scratch_database

EXPECTED = {
    "incidents": 6,
    "children": 8,
    "matched": 7,
    "review": 1,
    "notices": 7,
    "delivered": 7,
    "acknowledged": 7,
    "failed": 0,
    "cancelled": 1,
    # 2 pointers to the nursery's Key Adult, who receives by e-mail; the Oakfield deputy's
    # 4 failed deliveries, each to the Key Adult and the admin; 1 overdue notice, to the
    # deputy at the day's start and the admin an hour later.
    "emails": 12,
}


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AMQP_URL", "DATABASE_URL", "NOW", "QUEUE_PREFIX", "SIGNING_KEY"):
        monkeypatch.delenv(f"ENCOMPASS_{name}", raising=False)


async def test_the_demo_on_the_embedded_defaults(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = await run_demo(json_only=True)
    structlog.reset_defaults()
    assert {k: summary[k] for k in EXPECTED} == EXPECTED
    assert (summary["broker"], summary["database"]) == ("embedded", "sqlite")
    assert capsys.readouterr().out.strip().startswith('{"incidents":6')


@pytest.mark.integration
async def test_the_demo_on_rabbitmq_and_postgresql(
    monkeypatch: pytest.MonkeyPatch, admin_pg_url: str, rabbit: RabbitTarget
) -> None:
    prefix = f"{rabbit.prefix}demo."
    monkeypatch.setenv("ENCOMPASS_AMQP_URL", rabbit.url)
    monkeypatch.setenv("ENCOMPASS_QUEUE_PREFIX", prefix)
    # A database of its own: the demo's dispatcher sweeps and mails whatever the database
    # holds, so other tests' notices must not be there to count.
    async with scratch_database(admin_pg_url, f"encompass_demo_{RUN_ID}") as url:
        monkeypatch.setenv("ENCOMPASS_DATABASE_URL", url)
        try:
            summary = await run_demo(json_only=True)
        finally:
            structlog.reset_defaults()
            await delete_topologies([(rabbit.url, Topology(prefix))])
    assert {k: summary[k] for k in EXPECTED} == EXPECTED
    assert (summary["broker"], summary["database"]) == ("rabbitmq", "postgresql")
