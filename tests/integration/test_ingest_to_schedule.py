"""Incidents in over HTTP, through real RabbitMQ, matched and scheduled in real PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from sqlalchemy import func, select

from encompass.adapters.db.tables import AuditEntry, Child, Incident, IncidentVersion, Notice
from encompass.adapters.topology import INCIDENTS, Topology
from encompass.api.app import create_app
from encompass.bootstrap import Container, bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.demo.directory import write_directory
from encompass.domain.queued import VersionQueued
from encompass.logging import configure_logging
from encompass.services.access.credentials import add_force
from encompass.services.directory.importer import import_directory
from encompass.services.records.audit import verify_chain
from encompass.workers.main import start_workers
from tests.cleanup import delete_topologies
from tests.conftest import RabbitTarget

pytestmark = pytest.mark.integration

NIGHT = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)  # a Friday night, GMT


@dataclass
class Stack:
    container: Container
    url: str
    token: str
    force_id: str
    log: io.StringIO

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token or self.token}",
            "Content-Type": "application/json",
        }


@pytest.fixture(scope="module")
async def stack(
    pg_url: str, rabbit: RabbitTarget, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    log = io.StringIO()
    configure_logging("json", "debug", stream=log)
    settings = load_settings(
        database_url=pg_url, amqp_url=rabbit.url, queue_prefix=f"{rabbit.prefix}flow."
    )
    container = await bootstrap(settings, clock=Clock(NIGHT))
    paths = write_directory(Path(tmp_path_factory.mktemp("directory")))
    await import_directory(
        container.sessions,
        settings=paths["settings"],
        calendars=paths["calendars"],
        key_adults=paths["key_adults"],
        pupils=paths["pupils"],
    )
    force = await add_force(
        container.sessions, container.clock, f"T{secrets.token_hex(3).upper()}", "Test Constabulary"
    )
    runner = web.AppRunner(create_app(container))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    consumers = await start_workers(container, ["matcher"])
    yield Stack(container, f"http://{host}:{port}", force.token, force.subject_id, log)
    for consumer in consumers:
        await consumer.cancel()
    await runner.cleanup()
    await container.close()
    await delete_topologies([(rabbit.url, Topology(settings.queue_prefix))])
    structlog.reset_defaults()


def report(ref: str, *children: dict[str, Any], version: int = 1) -> dict[str, Any]:
    return {
        "incident_ref": ref,
        "version": version,
        "occurred_at": "2026-11-20T22:10:00+00:00",
        "location": "the family home",
        "circumstances": "Argument between adults.",
        "police_actions": "Officers attended.",
        "officer": {"name": "PC 1234 Jones", "contact": "0300 000 0000"},
        "children": list(children),
    }


def child(given: str, family: str, born: str, postcode: str) -> dict[str, Any]:
    return {
        "given_name": given,
        "family_name": family,
        "date_of_birth": born,
        "postcode": postcode,
        "upn": None,
        "gender": None,
        "present": True,
        "where_during": "upstairs bedroom",
        "voice": "said she was scared",
        "injured": False,
        "school_hint": None,
    }


AMELIA = child("Amelia", "Smith", "2015-03-02", "TF3 4NT")
FREDDIE = child("Freddie", "Smith", "2022-02-14", "TF3 4NT")


def ref() -> str:
    return f"IT-{uuid.uuid4().hex[:12]}"


async def post(
    stack: Stack, body: Any, *, token: str | None = None, raw: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            f"{stack.url}/v1/incidents",
            headers=stack.headers(token),
            data=raw if raw is not None else json.dumps(body),
        ) as response,
    ):
        return response.status, await response.json()


async def get(
    stack: Stack, incident_id: str, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as client,
        client.get(
            f"{stack.url}/v1/incidents/{incident_id}", headers=stack.headers(token)
        ) as response,
    ):
        return response.status, await response.json()


async def settled(stack: Stack, incident_id: str, version: int = 1) -> dict[str, Any]:
    """The incident's status once the matcher has processed ``version``."""
    for _ in range(200):
        status, body = await get(stack, incident_id)
        assert status == 200
        # The GET reads the incident and its versions in separate statements, so wait
        # until both show the version processed.
        if body["latest_version"] >= version and any(
            v["version"] == version and v["processed"] for v in body["versions"]
        ):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError("the matcher did not process the incident in 10 seconds")


async def test_an_incident_becomes_scheduled_notices_with_release_times(stack: Stack) -> None:
    # Given a Friday-night incident with a school child and her brother at nursery
    status, body = await post(stack, report(ref(), AMELIA, FREDDIE))
    # Then it is accepted once the broker confirmed it
    assert status == 202, body
    state = await settled(stack, body["incident_id"])
    amelia, freddie = state["children"]
    assert amelia["decision"] == freddie["decision"] == "match"
    (school,) = amelia["notices"]
    (nursery,) = freddie["notices"]
    # Oakfield's Monday 23 November is an INSET day: Tuesday at 07:30
    assert school["setting_id"] == "URN100001"
    assert school["status"] == "scheduled"
    assert datetime.fromisoformat(school["deliver_at"]) == datetime(2026, 11, 24, 7, 30, tzinfo=UTC)
    # The nursery opens every weekday: Monday at 07:00
    assert nursery["setting_id"] == "EY200002"
    assert datetime.fromisoformat(nursery["deliver_at"]) == datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


async def test_the_same_version_twice_is_accepted_once(stack: Stack) -> None:
    incident = report(ref(), AMELIA)
    first_status, first = await post(stack, incident)
    again_status, again = await post(stack, incident)
    assert (first_status, again_status) == (202, 202)
    assert again["incident_id"] == first["incident_id"] and again["duplicate"] is True
    state = await settled(stack, first["incident_id"])
    assert len(state["children"]) == 1 and len(state["children"][0]["notices"]) == 1


async def test_a_changed_body_under_the_same_version_is_a_conflict(stack: Stack) -> None:
    incident = report(ref(), AMELIA)
    assert (await post(stack, incident))[0] == 202
    incident["location"] = "somewhere else"
    status, body = await post(stack, incident)
    assert status == 409 and body["error"]["code"] == "version_conflict"


async def test_a_new_version_replaces_the_unsent_notices(stack: Stack) -> None:
    incident_ref = ref()
    _, first = await post(stack, report(incident_ref, AMELIA))
    await settled(stack, first["incident_id"])
    _, second = await post(stack, report(incident_ref, AMELIA, FREDDIE, version=2))
    assert second["incident_id"] == first["incident_id"]
    state = await settled(stack, first["incident_id"], version=2)
    assert state["latest_version"] == 2 and len(state["children"]) == 2
    async with stack.container.sessions() as session:
        statuses = sorted(
            (
                await session.scalars(
                    select(Notice.status).where(Notice.incident_id == first["incident_id"])
                )
            ).all()
        )
    assert statuses == ["cancelled", "scheduled", "scheduled"]


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda r: r.update(surprise=1), "invalid_incident"),
        (lambda r: r["children"][0].update(date_of_birth="2000-01-01"), "invalid_incident"),
        (lambda r: r.update(occurred_at="2030-01-01T00:00:00+00:00"), "invalid_incident"),
        (lambda r: r.update(occurred_at="2026-11-20T22:10:00"), "invalid_incident"),
    ],
)
async def test_invalid_reports_are_refused_with_json(stack: Stack, mutate: Any, code: str) -> None:
    incident = report(ref(), dict(AMELIA))
    incident["children"] = [dict(AMELIA)]
    mutate(incident)
    status, body = await post(stack, incident)
    assert status == 422 and body["error"]["code"] == code
    assert "Amelia" not in json.dumps(body), "errors never echo the submitted values"


async def test_transport_errors_are_json_too(stack: Stack) -> None:
    assert (await post(stack, None, raw=b"{not json"))[1]["error"]["code"] == "invalid_json"
    status, body = await post(stack, report(ref(), AMELIA), token="wrong")
    assert status == 401 and body["error"]["code"] == "unauthorised"
    status, body = await post(stack, None, raw=b"{" + b" " * 400_000 + b"}")
    assert status == 413 and body["error"]["code"] == "body_too_large"
    async with aiohttp.ClientSession() as client, client.get(f"{stack.url}/nowhere") as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"


async def test_a_force_sees_only_its_own_incidents(stack: Stack) -> None:
    _, body = await post(stack, report(ref(), AMELIA))
    other = await add_force(
        stack.container.sessions,
        stack.container.clock,
        f"O{secrets.token_hex(3).upper()}",
        "Other Constabulary",
    )
    status, answer = await get(stack, body["incident_id"], token=other.token)
    assert status == 404 and answer["error"]["code"] == "not_found"


async def counts_of(stack: Stack, incident_id: str) -> tuple[int, int, int]:
    """(versions, children, notices) stored for one incident."""
    async with stack.container.sessions() as session:
        versions = await session.scalar(
            select(func.count())
            .select_from(IncidentVersion)
            .where(IncidentVersion.incident_id == incident_id)
        )
        children = await session.scalar(
            select(func.count())
            .select_from(Child)
            .join(IncidentVersion, IncidentVersion.version_id == Child.version_id)
            .where(IncidentVersion.incident_id == incident_id)
        )
        notices = await session.scalar(
            select(func.count()).select_from(Notice).where(Notice.incident_id == incident_id)
        )
    return versions or 0, children or 0, notices or 0


async def total_rows(stack: Stack) -> tuple[int, int, int]:
    """(incidents, versions, notices) in the whole database."""
    async with stack.container.sessions() as session:
        counts = [
            await session.scalar(select(func.count()).select_from(table)) or 0
            for table in (Incident, IncidentVersion, Notice)
        ]
    return counts[0], counts[1], counts[2]


async def dead_letter(stack: Stack, message_id: str) -> tuple[dict[str, Any], bytes]:
    """The headers and body of the dead letter with ``message_id`` on ``incidents.dead``."""
    broker = stack.container.broker
    for _ in range(100):
        delivery = await broker.get(f"{INCIDENTS}.dead", timeout=0.1)
        if delivery is not None:
            await delivery.ack()
            if delivery.message.message_id == message_id:
                return dict(delivery.message.headers), delivery.message.body
    raise AssertionError(f"{message_id} never reached incidents.dead")


async def test_a_redelivered_message_creates_nothing_twice(stack: Stack) -> None:
    # Given an incident reported and matched
    _, body = await post(stack, report(ref(), AMELIA))
    await settled(stack, body["incident_id"])
    async with stack.container.sessions() as session:
        version_id = await session.scalar(
            select(IncidentVersion.version_id).where(
                IncidentVersion.incident_id == body["incident_id"]
            )
        )
    assert version_id is not None
    # When its queue message arrives twice more (a redelivery, a replay)
    queued = VersionQueued(version_id=version_id)
    for _ in range(2):
        await stack.container.broker.publish(INCIDENTS, queued.to_bytes(), message_id=version_id)
    for _ in range(100):
        if await stack.container.broker.depth(INCIDENTS) == 0:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # let the last copy be handled
    # Then both are acked as no-ops: one version, one child, one notice
    assert await counts_of(stack, body["incident_id"]) == (1, 1, 1)


FORCE_HEADER = "x-encompass-force"  # the header the queue used to trust


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        # a whole report, claiming to come from a registered force (the finding)
        (None, "force"),
        # a well-formed version message naming a version nobody stored
        (VersionQueued(version_id=str(uuid.uuid4())).to_bytes(), "force"),
        (b'{"version_id": "not-a-uuid"}', None),
        (b'{"version_id": "' + str(uuid.uuid4()).encode() + b'", "Amelia Smith": 1}', None),
        (b"\x00\xff garbage", "garbage"),
        (b"", None),
    ],
)
async def test_a_forged_message_on_the_queue_creates_nothing_and_is_dead_lettered(
    stack: Stack, body: bytes | None, headers: str | None
) -> None:
    # Given a message published straight to the incidents queue, not through ingest
    forged = json.dumps(report(ref(), AMELIA)).encode() if body is None else body
    choices: dict[str | None, dict[str, Any]] = {
        "force": {FORCE_HEADER: stack.force_id},
        "garbage": {FORCE_HEADER: "Amelia Smith", "x-other": b"\x01"},
        None: {},
    }
    header_values = choices[headers]
    before = await total_rows(stack)
    message_id = str(uuid.uuid4())
    await stack.container.broker.publish(
        INCIDENTS, forged, message_id=message_id, headers=header_values
    )
    # Then it is dead-lettered with a reason that quotes nothing of it
    dead, dead_body = await dead_letter(stack, message_id)
    reason = dead["x-encompass-dead-reason"]
    assert reason.startswith(("not a version message", "unknown incident version")), reason
    for quoted in ("Amelia", "Smith", stack.force_id, "version_id", "not-a-uuid"):
        assert quoted not in reason
    # And neither its body nor its headers are kept
    assert dead_body == b"" and FORCE_HEADER not in dead and "x-other" not in dead
    assert dead["x-encompass-dropped-bytes"] == len(forged)
    # And nothing was created
    assert await total_rows(stack) == before


async def test_every_report_is_an_audit_entry_and_the_chain_holds(stack: Stack) -> None:
    incident = report(ref(), AMELIA, FREDDIE)
    _, first = await post(stack, incident)
    _, _again = await post(stack, incident)
    async with stack.container.sessions() as session:
        entries = (
            await session.scalars(
                select(AuditEntry)
                .where(
                    AuditEntry.subject == f"incident:{first['incident_id']}",
                    AuditEntry.action == "incident.reported",
                )
                .order_by(AuditEntry.seq)
            )
        ).all()
        chain = await verify_chain(session)
    assert [
        (
            e.actor,
            e.detail["version"],
            e.detail["children_count"],
            e.detail["channel"],
            e.detail["duplicate"],
        )
        for e in entries
    ] == [
        (f"force:{stack.force_id}", 1, 2, "http", False),
        (f"force:{stack.force_id}", 1, 2, "http", True),
    ]
    assert chain.ok
    assert "Amelia" not in json.dumps([e.detail for e in entries])


async def test_no_personal_data_reached_the_log(stack: Stack) -> None:
    await post(stack, report(ref(), AMELIA))
    await asyncio.sleep(0.3)
    text = stack.log.getvalue()
    assert "incident.accepted" in text and "incident.matched" in text
    for value in ("Amelia", "Smith", "2015-03-02", "TF3 4NT", "scared", "upstairs"):
        assert value not in text
