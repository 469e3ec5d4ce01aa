"""Police systems over AMQP, on the real RabbitMQ and PostgreSQL: a force's own RabbitMQ user
(made with the very commands ``encompass forces add --amqp`` prints, and removed after) can
publish reports as itself and nothing else; what the service refuses is dead-lettered as a
record holding no report."""

from __future__ import annotations

import asyncio
import json
import secrets
import shlex
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiormq.exceptions
import pika
import pytest
from sqlalchemy import func, select
from yarl import URL

from encompass.adapters.db.tables import AuditEntry, Incident, IncidentVersion, Notice
from encompass.adapters.topology import Topology
from encompass.bootstrap import Container, bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.demo.directory import write_directory
from encompass.services.access.credentials import add_force
from encompass.services.directory.importer import import_directory
from encompass.services.intake.from_amqp import force_user, rabbitmqctl_commands
from encompass.workers.main import start_workers
from tests.cleanup import delete_topologies
from tests.conftest import RabbitTarget

pytestmark = pytest.mark.integration

NIGHT = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
PERSONAL = ("Amelia", "Smith", "2015-03-02", "TF3 4NT", "scared", "upstairs")


@dataclass
class Intake:
    container: Container
    topology: Topology
    force_id: str
    # The force's own user; a second user named for a force that is not registered
    url: str
    user: str
    other_url: str
    other_user: str
    service_url: str


def rabbitmqctl(command: str) -> None:
    subprocess.run(shlex.split(command), check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
async def stack(
    pg_url: str, rabbit: RabbitTarget, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Intake]:
    settings = load_settings(
        database_url=pg_url, amqp_url=rabbit.url, queue_prefix=f"{rabbit.prefix}intake."
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
        container.sessions, container.clock, f"T{secrets.token_hex(4).upper()}", "Test Constabulary"
    )
    topology = Topology(settings.queue_prefix)
    urls, users = [], []
    for code in (force.subject_id, f"O{secrets.token_hex(4).upper()}"):
        password = secrets.token_hex(16)
        for command in rabbitmqctl_commands(code, topology, password=password):
            rabbitmqctl(command)
        users.append(force_user(code))
        urls.append(str(URL(rabbit.url).with_user(users[-1]).with_password(password)))
    consumers = await start_workers(container, ["matcher", "intake"])
    try:
        yield Intake(
            container, topology, force.subject_id, urls[0], users[0], urls[1], users[1], rabbit.url
        )
    finally:
        for consumer in consumers:
            await consumer.cancel()
        await container.close()
        for user in users:
            rabbitmqctl(f"rabbitmqctl delete_user {shlex.quote(user)}")
        await delete_topologies([(rabbit.url, topology)])


def report(ref: str, *, version: int = 1, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "incident_ref": ref,
        "version": version,
        "occurred_at": "2026-11-20T22:10:00+00:00",
        "location": "the family home",
        "circumstances": "Argument between adults.",
        "police_actions": "Officers attended.",
        "officer": {"name": "PC 1234 Jones", "contact": "0300 000 0000"},
        "children": [
            {
                "given_name": "Amelia",
                "family_name": "Smith",
                "date_of_birth": "2015-03-02",
                "postcode": "TF3 4NT",
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
    body.update(changes)
    return body


def ref() -> str:
    return f"AMQP-{uuid.uuid4().hex[:12]}"


async def publish(
    url: str,
    body: bytes,
    *,
    exchange: str,
    routing_key: str = "",
    message_id: str | None = None,
    user_id: str | None = None,
    headers: dict[str, Any] | None = None,
) -> None:
    """Publish one persistent message with publisher confirms as the user in ``url``."""
    connection = await aio_pika.connect(url, timeout=10)
    try:
        channel = await connection.channel(publisher_confirms=True)
        target = (
            channel.default_exchange
            if exchange == ""
            else await channel.get_exchange(exchange, ensure=False)
        )
        await target.publish(
            aio_pika.Message(
                body,
                message_id=message_id,
                user_id=user_id,
                headers=headers,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key,
            timeout=10,
        )
    finally:
        await connection.close()


def publish_without_message_id(url: str, body: bytes, *, exchange: str, user_id: str) -> None:
    """Publish with no ``message_id`` at all (with pika: aio-pika always sets one)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            exchange, "", body, pika.BasicProperties(user_id=user_id, delivery_mode=2)
        )
    finally:
        connection.close()


async def as_force(stack: Intake, body: Any, *, message_id: str | None = "auto") -> str:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    if message_id is None:
        await asyncio.to_thread(
            publish_without_message_id,
            stack.url,
            raw,
            exchange=stack.topology.incidents_exchange,
            user_id=stack.user,
        )
        return ""
    message_id = str(uuid.uuid4()) if message_id == "auto" else message_id
    await publish(
        stack.url,
        raw,
        exchange=stack.topology.incidents_exchange,
        message_id=message_id,
        user_id=stack.user,
    )
    return message_id


async def incident_of(stack: Intake, incident_ref: str, *, wait: float = 10.0) -> Incident | None:
    for _ in range(int(wait / 0.05)):
        async with stack.container.sessions() as session:
            incident = await session.scalar(
                select(Incident).where(Incident.incident_ref == incident_ref)
            )
            if incident is not None:
                processed = await session.scalar(
                    select(IncidentVersion.processed_at).where(
                        IncidentVersion.incident_id == incident.incident_id,
                        IncidentVersion.version == incident.latest_version,
                    )
                )
                if processed is not None:
                    return incident
        await asyncio.sleep(0.05)
    return None


async def test_a_forces_own_user_publishes_and_the_incident_is_scheduled_under_it(
    stack: Intake,
) -> None:
    # Given a report published by the force's own RabbitMQ user to encompass.incidents,
    # with a header naming another force (headers are never trusted)
    incident_ref = ref()
    await publish(
        stack.url,
        json.dumps(report(incident_ref)).encode(),
        exchange=stack.topology.incidents_exchange,
        message_id=str(uuid.uuid4()),
        user_id=stack.user,
        headers={"x-encompass-force": stack.other_user},
    )
    # Then it is matched and scheduled, under that force
    incident = await incident_of(stack, incident_ref)
    assert incident is not None and incident.force_id == stack.force_id
    async with stack.container.sessions() as session:
        notices = (
            await session.scalars(select(Notice).where(Notice.incident_id == incident.incident_id))
        ).all()
        entry = await session.scalar(
            select(AuditEntry).where(
                AuditEntry.subject == f"incident:{incident.incident_id}",
                AuditEntry.action == "incident.reported",
            )
        )
    assert [(n.setting_id, n.status) for n in notices] == [("URN100001", "scheduled")]
    # And the report is an audit entry of that force, over AMQP
    assert entry is not None and entry.actor == f"force:{stack.force_id}"
    assert (entry.detail["channel"], entry.detail["duplicate"]) == ("amqp", False)


async def test_the_same_message_twice_creates_one_version(stack: Intake) -> None:
    incident_ref = ref()
    message_id = str(uuid.uuid4())
    for _ in range(2):
        await as_force(stack, report(incident_ref), message_id=message_id)
    incident = await incident_of(stack, incident_ref)
    assert incident is not None
    for _ in range(100):  # until the second copy was handled: its audit entry is there
        async with stack.container.sessions() as session:
            reported = (
                await session.scalars(
                    select(AuditEntry.detail).where(
                        AuditEntry.subject == f"incident:{incident.incident_id}"
                    )
                )
            ).all()
        if len(reported) == 2:
            break
        await asyncio.sleep(0.05)
    assert sorted(d["duplicate"] for d in reported) == [False, True]
    async with stack.container.sessions() as session:
        versions = await session.scalar(
            select(func.count())
            .select_from(IncidentVersion)
            .where(IncidentVersion.incident_id == incident.incident_id)
        )
    assert versions == 1


async def test_a_user_cannot_publish_as_another_force(stack: Intake) -> None:
    # When the force's user sets another force's user_id, the broker refuses the message
    incident_ref = ref()
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
        await publish(
            stack.url,
            json.dumps(report(incident_ref)).encode(),
            exchange=stack.topology.incidents_exchange,
            message_id=str(uuid.uuid4()),
            user_id=stack.other_user,
        )
    assert await incident_of(stack, incident_ref, wait=0.5) is None


@pytest.mark.parametrize(
    ("exchange", "queue"),
    [
        ("", "incidents"),  # the matcher's own queue, through the default exchange
        ("", "intake"),
        ("encompass.dlx", "incidents.dead"),
    ],
)
async def test_a_forces_user_can_publish_nowhere_else(
    stack: Intake, exchange: str, queue: str
) -> None:
    real_exchange = stack.topology.prefix + exchange if exchange else ""
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
        await publish(
            stack.url,
            json.dumps(report(ref())).encode(),
            exchange=real_exchange,
            routing_key=stack.topology.name(queue),
            message_id=str(uuid.uuid4()),
            user_id=stack.user,
        )


async def dead_records(stack: Intake, count: int) -> list[tuple[dict[str, Any], bytes]]:
    """``count`` dead letters from ``intake.dead``: (headers, body) each."""
    found: list[tuple[dict[str, Any], bytes]] = []
    for _ in range(200):
        delivery = await stack.container.broker.get("intake.dead", timeout=0.1)
        if delivery is not None:
            await delivery.ack()
            found.append((dict(delivery.message.headers), delivery.message.body))
            if len(found) == count:
                return found
    raise AssertionError(f"only {len(found)} of {count} dead letters arrived")


async def test_what_is_refused_is_dead_lettered_as_a_record_and_creates_nothing(
    stack: Intake,
) -> None:
    async with stack.container.sessions() as session:
        before = await session.scalar(select(func.count()).select_from(Incident))
    # Given six messages the service must refuse
    no_id_ref, bad_ref, other_ref = ref(), ref(), ref()
    await as_force(stack, report(no_id_ref), message_id=None)
    invalid_json = await as_force(stack, b'{"incident_ref": "x", "Amelia Smith": ')
    invalid = report(bad_ref, surprise="Amelia Smith")
    invalid["children"][0]["date_of_birth"] = "2000-01-01"
    invalid_report = await as_force(stack, invalid)
    # a user that is not a force's (the service's own), naming itself, or naming nobody
    not_force = str(uuid.uuid4())
    await publish(
        stack.service_url,
        json.dumps(report(other_ref)).encode(),
        exchange=stack.topology.incidents_exchange,
        message_id=not_force,
        user_id=URL(stack.service_url).user,
    )
    anonymous = str(uuid.uuid4())
    await publish(
        stack.service_url,
        json.dumps(report(other_ref)).encode(),
        exchange=stack.topology.incidents_exchange,
        message_id=anonymous,
    )
    # a force's user whose force is not registered with us
    unregistered = str(uuid.uuid4())
    await publish(
        stack.other_url,
        json.dumps(report(other_ref)).encode(),
        exchange=stack.topology.incidents_exchange,
        message_id=unregistered,
        user_id=stack.other_user,
    )
    # Then each is dead-lettered as a record naming the message, the user and the reason
    records = await dead_records(stack, 6)
    by_id = {}
    for headers, body in records:
        record = json.loads(body)
        assert set(record) == {"message_id", "user_id", "reason"}
        assert headers["x-encompass-dead-reason"] == record["reason"]
        by_id[record["message_id"]] = record
        # And holds nothing of the report: not a name, not a key the sender invented
        for value in (*PERSONAL, "surprise"):
            assert value not in body.decode()
    assert by_id[None]["reason"].startswith("no message_id")
    assert by_id[None]["user_id"] == stack.user
    assert by_id[invalid_json]["reason"].endswith("body (json_invalid)")
    assert by_id[invalid_report]["reason"] == (
        "invalid incident report: 1 error(s) at * (extra_forbidden)"
    )
    assert by_id[not_force]["reason"].startswith("not published by a force's user")
    assert by_id[not_force]["user_id"] == URL(stack.service_url).user
    assert by_id[anonymous]["user_id"] is None
    assert by_id[unregistered] == {
        "message_id": unregistered,
        "user_id": stack.other_user,
        "reason": "the publishing user's force is not registered",
    }
    # And nothing was created
    for incident_ref in (no_id_ref, bad_ref, other_ref):
        assert await incident_of(stack, incident_ref, wait=0.1) is None
    async with stack.container.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Incident)) == before
