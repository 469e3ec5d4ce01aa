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

from encompass.adapters.db.tables import IncidentVersion, Notice
from encompass.adapters.topology import Topology
from encompass.api.app import create_app
from encompass.bootstrap import Container, bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.demo.directory import write_directory
from encompass.logging import configure_logging
from encompass.services.credentials import add_force
from encompass.services.directory_import import import_directory
from encompass.services.ingest import FORCE_HEADER, INCIDENTS
from tests.cleanup import delete_topologies
from tests.conftest import RabbitTarget
from workers.main import start_workers

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
        return {"Authorization": f"Bearer {token or self.token}",
                "Content-Type": "application/json"}


@pytest.fixture(scope="module")
async def stack(pg_url: str, rabbit: RabbitTarget,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    log = io.StringIO()
    configure_logging("json", "debug", stream=log)
    settings = load_settings(database_url=pg_url, amqp_url=rabbit.url,
                             queue_prefix=f"{rabbit.prefix}flow.")
    container = await bootstrap(settings, clock=Clock(NIGHT))
    paths = write_directory(Path(tmp_path_factory.mktemp("directory")))
    await import_directory(container.sessions, settings=paths["settings"],
                           calendars=paths["calendars"], key_adults=paths["key_adults"],
                           pupils=paths["pupils"])
    force = await add_force(container.sessions, container.clock,
                            f"T{secrets.token_hex(3).upper()}", "Test Constabulary")
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
        "incident_ref": ref, "version": version, "occurred_at": "2026-11-20T22:10:00+00:00",
        "location": "the family home", "circumstances": "Argument between adults.",
        "police_actions": "Officers attended.",
        "officer": {"name": "PC 1234 Jones", "contact": "0300 000 0000"},
        "children": list(children),
    }


def child(given: str, family: str, born: str, postcode: str) -> dict[str, Any]:
    return {"given_name": given, "family_name": family, "date_of_birth": born,
            "postcode": postcode, "upn": None, "gender": None, "present": True,
            "where_during": "upstairs bedroom", "voice": "said she was scared",
            "injured": False, "school_hint": None}


AMELIA = child("Amelia", "Smith", "2015-03-02", "TF3 4NT")
FREDDIE = child("Freddie", "Smith", "2022-02-14", "TF3 4NT")


def ref() -> str:
    return f"IT-{uuid.uuid4().hex[:12]}"


async def post(stack: Stack, body: Any, *, token: str | None = None,
               raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as client, client.post(
            f"{stack.url}/v1/incidents", headers=stack.headers(token),
            data=raw if raw is not None else json.dumps(body),
            ) as response:
        return response.status, await response.json()


async def get(stack: Stack, incident_id: str, token: str | None = None
              ) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as client, client.get(
            f"{stack.url}/v1/incidents/{incident_id}", headers=stack.headers(token)) as response:
        return response.status, await response.json()


async def settled(stack: Stack, incident_id: str, version: int = 1) -> dict[str, Any]:
    """The incident's status once the matcher has processed ``version``."""
    for _ in range(200):
        status, body = await get(stack, incident_id)
        assert status == 200
        # The GET reads the incident and its versions in separate statements, so wait
        # until both show the version processed.
        if body["latest_version"] >= version and any(
                v["version"] == version and v["processed"] for v in body["versions"]):
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
    assert datetime.fromisoformat(school["deliver_at"]) == datetime(2026, 11, 24, 7, 30,
                                                                    tzinfo=UTC)
    # The nursery opens every weekday: Monday at 07:00
    assert nursery["setting_id"] == "EY200002"
    assert datetime.fromisoformat(nursery["deliver_at"]) == datetime(2026, 11, 23, 7, 0,
                                                                     tzinfo=UTC)


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
        statuses = sorted((await session.scalars(select(Notice.status).where(
            Notice.incident_id == first["incident_id"]))).all())
    assert statuses == ["cancelled", "scheduled", "scheduled"]


@pytest.mark.parametrize("mutate,code", [
    (lambda r: r.update(surprise=1), "invalid_incident"),
    (lambda r: r["children"][0].update(date_of_birth="2000-01-01"), "invalid_incident"),
    (lambda r: r.update(occurred_at="2030-01-01T00:00:00+00:00"), "invalid_incident"),
    (lambda r: r.update(occurred_at="2026-11-20T22:10:00"), "invalid_incident"),
])
async def test_invalid_reports_are_refused_with_json(stack: Stack, mutate: Any,
                                                     code: str) -> None:
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
    other = await add_force(stack.container.sessions, stack.container.clock,
                            f"O{secrets.token_hex(3).upper()}", "Other Constabulary")
    status, answer = await get(stack, body["incident_id"], token=other.token)
    assert status == 404 and answer["error"]["code"] == "not_found"


async def test_a_redelivered_message_creates_nothing_twice(stack: Stack) -> None:
    body = json.dumps(report(ref(), AMELIA)).encode()
    message_id = str(uuid.uuid4())
    for _ in range(2):
        await stack.container.broker.publish(INCIDENTS, body, message_id=message_id,
                                             headers={FORCE_HEADER: stack.force_id})
    incident_ref = json.loads(body)["incident_ref"]
    for _ in range(200):
        async with stack.container.sessions() as session:
            from encompass.adapters.db.tables import Incident

            incident_id = await session.scalar(select(Incident.incident_id).where(
                Incident.incident_ref == incident_ref))
        if incident_id:
            break
        await asyncio.sleep(0.05)
    assert incident_id is not None
    await settled(stack, incident_id)
    await asyncio.sleep(0.3)  # let the second copy be consumed too
    async with stack.container.sessions() as session:
        versions = await session.scalar(select(func.count()).select_from(IncidentVersion)
                                        .where(IncidentVersion.incident_id == incident_id))
        notices = await session.scalar(select(func.count()).select_from(Notice)
                                       .where(Notice.incident_id == incident_id))
    assert (versions, notices) == (1, 1)


async def test_a_poison_message_reaches_the_dead_letter_queue_with_its_reason(
        stack: Stack) -> None:
    broker = stack.container.broker
    message_id = str(uuid.uuid4())
    await broker.publish(INCIDENTS, b'{"incident_ref": "x", "given_name": "Amelia"}',
                         message_id=message_id, headers={FORCE_HEADER: stack.force_id})
    for _ in range(100):
        delivery = await broker.get(f"{INCIDENTS}.dead", timeout=0.1)
        if delivery is not None:
            await delivery.ack()
            if delivery.message.message_id == message_id:
                break
    else:
        raise AssertionError("the poison message never reached incidents.dead")
    reason = delivery.message.headers["x-encompass-dead-reason"]
    assert reason.startswith("invalid incident report") and "Amelia" not in reason


async def test_no_personal_data_reached_the_log(stack: Stack) -> None:
    await post(stack, report(ref(), AMELIA))
    await asyncio.sleep(0.3)
    text = stack.log.getvalue()
    assert "incident.accepted" in text and "incident.matched" in text
    for value in ("Amelia", "Smith", "2015-03-02", "TF3 4NT", "scared", "upstairs"):
        assert value not in text
