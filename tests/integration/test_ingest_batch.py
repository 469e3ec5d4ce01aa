"""Reports arriving together are stored together: over HTTP into real PostgreSQL and
RabbitMQ, many concurrent reports share few transactions, and each caller still gets its
own answer (accepted, a conflict, a broker that did not confirm); the use case itself, on
PostgreSQL and SQLite, keeps one report's failure from the others."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from encompass.adapters.broker import PublishError
from encompass.adapters.db.tables import AuditEntry, Incident, IncidentVersion
from encompass.adapters.embedded_broker import EmbeddedBroker
from encompass.adapters.topology import INCIDENTS, Topology
from encompass.api.app import create_app
from encompass.bootstrap import Container, bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.domain.queued import VersionQueued
from encompass.services.access.credentials import add_force
from encompass.services.intake.ingest import (
    Accepted,
    BrokerUnavailable,
    Reported,
    VersionConflict,
    report_incidents,
)
from encompass.services.intake.ingest_batch import IngestBatcher
from encompass.services.records.audit import verify_chain
from tests.cleanup import delete_topologies
from tests.conftest import RabbitTarget
from tests.receiving_fixtures import AMELIA, own_database, report

pytestmark = pytest.mark.integration

NIGHT = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)


def body(ref: str, *, version: int = 1, location: str = "the family home") -> dict[str, Any]:
    return {
        "incident_ref": ref,
        "version": version,
        "occurred_at": "2026-11-20T22:10:00+00:00",
        "location": location,
        "circumstances": "Argument between adults.",
        "police_actions": "Officers attended.",
        "officer": {"name": "PC 1234 Jones", "contact": "0300 000 0000"},
        "children": [
            {
                **AMELIA,
                "upn": None,
                "gender": None,
                "present": True,
                "where_during": "upstairs bedroom",
                "voice": "said she was scared",
                "injured": False,
                "school_hint": None,
            }
        ],
    }


def ref() -> str:
    return f"GB-{uuid.uuid4().hex[:12]}"


# --- over HTTP, into real PostgreSQL and RabbitMQ ------------------------------------------


@dataclass
class Http:
    container: Container
    url: str
    token: str
    force_id: str
    rabbit_url: str


@pytest.fixture(scope="module")
async def http(admin_pg_url: str, rabbit: RabbitTarget) -> AsyncIterator[Http]:
    async with own_database(admin_pg_url, "batch") as url:
        settings = load_settings(
            database_url=url, amqp_url=rabbit.url, queue_prefix=f"{rabbit.prefix}batch."
        )
        container = await bootstrap(settings, clock=Clock(NIGHT))
        force = await add_force(
            container.sessions,
            container.clock,
            f"B{secrets.token_hex(3).upper()}",
            "Batch Constabulary",
        )
        runner = web.AppRunner(create_app(container))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        try:
            yield Http(
                container, f"http://{host}:{port}", force.token, force.subject_id, rabbit.url
            )
        finally:
            await runner.cleanup()
            await container.close()
            await delete_topologies([(rabbit.url, Topology(settings.queue_prefix))])


async def post_all(http: Http, bodies: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Every body at once, each in its own request; the answers in order."""
    headers = {"Authorization": f"Bearer {http.token}"}
    async with aiohttp.ClientSession(
        headers=headers, connector=aiohttp.TCPConnector(limit=0)
    ) as client:

        async def one(item: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            async with client.post(f"{http.url}/v1/incidents", json=item) as answer:
                return answer.status, await answer.json()

        return list(await asyncio.gather(*(one(item) for item in bodies)))


async def drain(http: Http) -> list[str]:
    """The version ids on the incidents queue, taken off it."""
    found = []
    while (delivery := await http.container.broker.get(INCIDENTS, timeout=0.2)) is not None:
        found.append(VersionQueued.from_bytes(delivery.message.body).version_id)
        await delivery.ack()
    return found


async def versions_of(http: Http, incident_ids: list[str]) -> list[IncidentVersion]:
    async with http.container.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(IncidentVersion).where(IncidentVersion.incident_id.in_(incident_ids))
                )
            ).all()
        )


async def reported(http: Http, incident_ids: list[str]) -> list[AuditEntry]:
    async with http.container.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(AuditEntry)
                    .where(
                        AuditEntry.action == "incident.reported",
                        AuditEntry.subject.in_([f"incident:{i}" for i in incident_ids]),
                    )
                    .order_by(AuditEntry.seq)
                )
            ).all()
        )


async def chain_holds(http: Http) -> bool:
    async with http.container.sessions() as session:
        return (await verify_chain(session)).ok


async def test_many_concurrent_reports_share_few_transactions(http: Http) -> None:
    # Given 48 reports of 48 incidents sent at once
    answers = await post_all(http, [body(ref()) for _ in range(48)])
    # Then every one is accepted
    assert [status for status, _ in answers] == [202] * 48, answers
    incident_ids = [answer["incident_id"] for _, answer in answers]
    assert len(set(incident_ids)) == 48
    # And they were stored in far fewer transactions than reports (one instant each)
    versions = await versions_of(http, incident_ids)
    assert len(versions) == 48
    assert len({v.received_at for v in versions}) <= 12
    # And each is audited once, published once and marked queued
    entries = await reported(http, incident_ids)
    assert sorted(e.subject for e in entries) == sorted(f"incident:{i}" for i in incident_ids)
    assert sorted(await drain(http)) == sorted(v.version_id for v in versions)
    assert all(v.queued_at is not None for v in versions)
    assert await chain_holds(http)


async def test_a_conflicting_version_fails_only_its_own_caller(http: Http) -> None:
    # Given an incident already reported
    taken = ref()
    ((status, _),) = await post_all(http, [body(taken)])
    assert status == 202
    await drain(http)
    # When its version 1 comes again with other content, among other reports
    others = [body(ref()) for _ in range(15)]
    answers = await post_all(http, [*others[:7], body(taken, location="elsewhere"), *others[7:]])
    # Then only that one is refused
    statuses = [status for status, _ in answers]
    assert statuses == [202] * 7 + [409] + [202] * 8, answers
    assert answers[7][1]["error"]["code"] == "version_conflict"
    assert len(await drain(http)) == 15
    assert await chain_holds(http)


async def test_the_same_incident_twice_at_once_is_stored_in_turn(http: Http) -> None:
    # Given version 1 and version 2 of one incident, and version 1 again, sent at once
    # with others
    twice = ref()
    bodies = [body(twice), body(twice, version=2), body(twice), *(body(ref()) for _ in range(9))]
    answers = await post_all(http, bodies)
    assert [status for status, _ in answers] == [202] * 12, answers
    first, second, again = (answer for _, answer in answers[:3])
    # Then they are one incident, with two versions; the repeat is a duplicate
    assert first["incident_id"] == second["incident_id"] == again["incident_id"]
    # (whichever of the two version 1 reports the server took first stored it)
    assert sorted([first["duplicate"], again["duplicate"]]) == [False, True]
    assert second["duplicate"] is False
    versions = await versions_of(http, [first["incident_id"]])
    assert sorted(v.version for v in versions) == [1, 2]
    # And each version was published once; all three reports are audited
    published = await drain(http)
    assert len(published) == 11
    assert {v.version_id for v in versions} <= set(published)
    assert len(await reported(http, [first["incident_id"]])) == 3
    assert await chain_holds(http)


async def delete_incidents_queue(http: Http) -> None:
    connection = await aio_pika.connect(http.rabbit_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(
            http.container.broker.topology.name(INCIDENTS), if_unused=False, if_empty=False
        )


async def test_reports_the_broker_did_not_confirm_are_503_and_nothing_is_lost(
    http: Http,
) -> None:
    # Given the incidents queue has gone: RabbitMQ returns every message as unroutable
    await delete_incidents_queue(http)
    bodies = [body(ref()) for _ in range(12)]
    try:
        answers = await post_all(http, bodies)
        # Then each caller hears 503, to retry
        assert [status for status, _ in answers] == [503] * 12, answers
        assert {answer["error"]["code"] for _, answer in answers} == {"broker_unavailable"}
    finally:
        await http.container.broker.start()  # declares the queue again
    # When they report again, the stored versions are published, once each
    again = await post_all(http, bodies)
    assert [status for status, _ in again] == [202] * 12, again
    assert all(answer["duplicate"] for _, answer in again)
    incident_ids = [answer["incident_id"] for _, answer in again]
    versions = await versions_of(http, incident_ids)
    assert len(versions) == 12 and all(v.queued_at is not None for v in versions)
    assert sorted(await drain(http)) == sorted(v.version_id for v in versions)
    assert len(await reported(http, incident_ids)) == 24
    assert await chain_holds(http)


# --- the use case, on PostgreSQL and SQLite -----------------------------------------------


class Unconfirming(EmbeddedBroker):
    """While ``refusing``, every other publish is not confirmed, as a broker that nacks
    some messages."""

    refusing = True
    calls = 0

    async def publish(
        self, queue: str, body: bytes, *, message_id: str, headers: Mapping[str, Any] | None = None
    ) -> None:
        self.calls += 1
        if self.refusing and self.calls % 2 == 0:
            raise PublishError(f"{queue}: refused by the broker (nack)")
        await super().publish(queue, body, message_id=message_id, headers=headers)


@pytest.fixture(params=["postgresql", "sqlite"])
async def container(
    request: pytest.FixtureRequest, admin_pg_url: str, tmp_path: Path
) -> AsyncIterator[Container]:
    async def start(url: str) -> Container:
        settings = load_settings(database_url=url, amqp_url="", smtp_host="")
        built = await bootstrap(
            settings,
            clock=Clock(NIGHT),
            signing_key=Ed25519PrivateKey.generate(),
            broker=Unconfirming(Topology("")),
        )
        await add_force(built.sessions, built.clock, "WMP", "West Midlands Police")
        return built

    if request.param == "sqlite":
        built = await start(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}")
        yield built
        await built.close()
        return
    async with own_database(admin_pg_url, "batchuc") as url:
        built = await start(url)
        yield built
        await built.close()


def unconfirming(container: Container) -> Unconfirming:
    assert isinstance(container.broker, Unconfirming)
    return container.broker


async def counts(container: Container) -> tuple[int, int, int]:
    """(incidents, versions, incident.reported entries)."""
    async with container.sessions() as session:
        return (
            await session.scalar(select(func.count()).select_from(Incident)) or 0,
            await session.scalar(select(func.count()).select_from(IncidentVersion)) or 0,
            await session.scalar(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.action == "incident.reported")
            )
            or 0,
        )


async def test_an_unconfirmed_publish_fails_only_its_own_report(container: Container) -> None:
    batch = [Reported("WMP", report(AMELIA)) for _ in range(6)]
    answers = await report_incidents(container.sessions, container.broker, container.clock, batch)
    refused = [n for n, answer in enumerate(answers) if isinstance(answer, BrokerUnavailable)]
    accepted = [answer for answer in answers if isinstance(answer, Accepted)]
    assert len(refused) == 3 and len(accepted) == 3
    # Every version is stored and audited; only the confirmed ones are marked queued
    assert await counts(container) == (6, 6, 6)
    async with container.sessions() as session:
        queued = set(
            (
                await session.scalars(
                    select(IncidentVersion.version_id).where(IncidentVersion.queued_at.is_not(None))
                )
            ).all()
        )
        assert (await verify_chain(session)).ok
    assert queued == {answer.version_id for answer in accepted}
    # Reported again, the unconfirmed ones are published (and nothing is stored twice)
    unconfirming(container).refusing = False
    again = await report_incidents(
        container.sessions, container.broker, container.clock, [batch[refused[0]]]
    )
    assert isinstance(again[0], Accepted) and again[0].duplicate
    assert await container.broker.depth(INCIDENTS) == 4
    assert await counts(container) == (6, 6, 7)


async def test_a_report_that_fails_the_batch_is_retried_alone(container: Container) -> None:
    # Given a batch holding one report whose insert the database refuses (a force it does
    # not know), the others valid, one of which is a conflict
    unconfirming(container).refusing = False
    first = report(AMELIA)
    await report_incidents(
        container.sessions, container.broker, container.clock, [Reported("WMP", first)]
    )
    conflicting = first.model_copy(update={"location": "elsewhere"})
    batch = [
        Reported("WMP", report(AMELIA)),
        Reported("NOPE", report(AMELIA)),
        Reported("WMP", conflicting),
        Reported("WMP", report(AMELIA)),
    ]
    answers = await report_incidents(container.sessions, container.broker, container.clock, batch)
    # Then only that report fails, the conflict is still a conflict, the rest are accepted
    assert isinstance(answers[0], Accepted) and isinstance(answers[3], Accepted)
    assert isinstance(answers[1], IntegrityError)
    assert isinstance(answers[2], VersionConflict)
    assert await counts(container) == (3, 3, 3)
    async with container.sessions() as session:
        assert (await verify_chain(session)).ok


async def test_two_writers_storing_the_same_reports_at_once(container: Container) -> None:
    # Given two batchers (as two API processes) handed the same reports at the same time
    if container.settings.database_kind == "sqlite":
        pytest.skip("one SQLite file takes one writer at a time: no race to lose")
    unconfirming(container).refusing = False
    reports = [report(AMELIA) for _ in range(20)]
    writers = [
        IngestBatcher(container.sessions, container.broker, container.clock, max_batch=64)
        for _ in range(2)
    ]
    answers = await asyncio.gather(
        *(writer.report("WMP", item, channel="http") for item in reports for writer in writers)
    )
    # Then every report is accepted once stored: each incident and version exactly once
    pairs = list(zip(answers[::2], answers[1::2], strict=True))
    assert all(a.version_id == b.version_id for a, b in pairs)
    assert await counts(container) == (20, 20, 40)
    async with container.sessions() as session:
        assert (await verify_chain(session)).ok
