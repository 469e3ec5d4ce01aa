"""Data at rest on the real PostgreSQL and RabbitMQ, after the whole job (``encompass demo``):

* every row of every table holds no child's name, date of birth or circumstances in clear
  (the directory's own roster aside: the matcher reads it);
* nothing in the database signs a webhook a receiver would accept;
* after retention, an incident's data cannot be decrypted, the audit chain still verifies,
  and the incident, the review queue and the dispatcher answer with a "purged" state.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text, update

from encompass.adapters.data_keys import DataPurged, DataUnreadable, open_value
from encompass.adapters.db.tables import (
    AuditEntry,
    Force,
    Incident,
    IncidentKey,
    IncidentVersion,
    Notice,
    SealedEnvelope,
)
from encompass.adapters.key_files import load_or_create_signing_key
from encompass.adapters.topology import Topology
from encompass.adapters.webhook import (
    service_sign,
    sign,
    signature_key,
    verify,
    verify_service,
)
from encompass.api.app import create_app
from encompass.bootstrap import Container, bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.demo.run import run_demo
from encompass.domain.incident import IncidentReport
from encompass.services.access.credentials import hash_token
from encompass.services.delivery.sealing import load_sources
from encompass.services.intake.ingest import IncidentPurged, report_incident
from encompass.services.matching.review_queue import list_review
from encompass.services.receiving.portal import issue_key_adult_credentials
from encompass.services.records.at_rest import PAYLOAD, open_payload
from encompass.services.records.audit import verify_chain
from encompass.services.records.retention import purge_due
from tests.cleanup import delete_topologies
from tests.conftest import RabbitTarget
from tests.databases import scratch_database

pytestmark = pytest.mark.integration

# The demo night's children (encompass/demo/incidents.py) and what the force said.
NAMES = ("Amelia", "Oliver", "Freddie", "Noah", "Isla", "Harry", "Cerys")
BORN = (
    "2015-03-02",
    "2017-07-19",
    "2022-02-14",
    "2018-01-30",
    "2016-05-11",
    "2013-06-01",
    "2014-10-09",
)
CIRCUMSTANCES = (
    "Verbal argument between adults",
    "police called by a neighbour",
    "said she was scared",
    "upstairs bedroom",
    "a street near the home",
    "one adult left the address",
)
# Harry Brown is on no roll: nothing anywhere may name him, the roster included.
NO_ROLL = ("Harry", "Brown", "2013-06-01", "TF1 2ZZ")
LATER = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)  # well past the 90 days of retention


@dataclass
class Ran:
    url: str
    folder: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def _env() -> Iterator[pytest.MonkeyPatch]:
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


@pytest.fixture(scope="module")
async def ran(
    admin_pg_url: str,
    rabbit: RabbitTarget,
    _env: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Ran]:
    """The demo's whole night and morning on RabbitMQ and a PostgreSQL database of its own,
    with the service's keys in a folder of this module's."""
    folder = tmp_path_factory.mktemp("at-rest")
    prefix = f"{rabbit.prefix}rest."
    async with scratch_database(admin_pg_url, f"encompass_rest_{uuid.uuid4().hex[:8]}") as url:
        env = {
            "ENCOMPASS_DATABASE_URL": url,
            "ENCOMPASS_SIGNING_KEY": str(folder / "svc.pem"),
            "ENCOMPASS_DATA_KEY": str(folder / "data-key"),
        }
        for name, value in {
            **env,
            "ENCOMPASS_AMQP_URL": rabbit.url,
            "ENCOMPASS_QUEUE_PREFIX": prefix,
        }.items():
            _env.setenv(name, value)
        _env.delenv("ENCOMPASS_NOW", raising=False)
        try:
            summary = await run_demo(json_only=True)
        finally:
            structlog.reset_defaults()
            await delete_topologies([(rabbit.url, Topology(prefix))])
            for name in ("ENCOMPASS_AMQP_URL", "ENCOMPASS_QUEUE_PREFIX"):
                _env.delenv(name)
        assert summary["acknowledged"] == 7 and summary["failed"] == 0
        yield Ran(url, folder, env)


async def _container(ran: Ran, now: datetime) -> Container:
    settings = load_settings(
        database_url=ran.url,
        amqp_url="",
        signing_key=ran.folder / "svc.pem",
        data_key=ran.folder / "data-key",
    )
    return await bootstrap(settings, clock=Clock(now), run_migrations=False)


async def _every_row(container: Container) -> dict[str, list[str]]:
    """Every row of every table, as PostgreSQL spells it in text (every column)."""
    async with container.engine.connect() as connection:
        tables = (
            (
                await connection.execute(
                    text(
                        "SELECT table_name FROM information_schema.tables "
                        "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
                    )
                )
            )
            .scalars()
            .all()
        )
        return {
            table: [
                str(row)
                for row in (await connection.execute(text(f'SELECT t::text FROM "{table}" t')))
                .scalars()
                .all()
            ]
            for table in tables
        }


async def test_the_database_holds_no_child_in_clear(ran: Ran) -> None:
    container = await _container(ran, LATER)
    try:
        rows = await _every_row(container)
    finally:
        await container.close()
    assert rows["incident_versions"] and rows["children"] and rows["envelopes"]
    everything = "\n".join(line for lines in rows.values() for line in lines)
    outside_roster = "\n".join(
        line for table, lines in rows.items() if table != "pupils" for line in lines
    )
    for words in CIRCUMSTANCES + NO_ROLL:
        assert words not in everything, words
    for words in NAMES + BORN:
        assert words not in outside_roster, words
    # (the check sees clear text where there is some: the roster the council imported)
    assert all(name in "\n".join(rows["pupils"]) for name in ("Amelia", "Cerys"))
    # What is there instead: sealed values, each bound to its row
    assert all('"ev1.' in line or ",ev1." in line for line in rows["incident_versions"])


_TOKEN = re.compile(r"[A-Za-z0-9+/=_.\-]+")


def _decodings(value: str) -> set[bytes]:
    raw = value.encode()
    found = {raw, hashlib.sha256(raw).digest()}
    body = value.removeprefix("ev1.")
    padded = body + "=" * (-len(body) % 4)
    for decode in (bytes.fromhex, base64.b64decode, base64.urlsafe_b64decode):
        with contextlib.suppress(ValueError, binascii.Error):
            found.add(decode(body if decode is bytes.fromhex else padded))
    return found


def _materials(rows: dict[str, list[str]]) -> set[bytes]:
    """Every byte string a database reader could try as a key: every token of every row
    (as text, decoded from hex and from base64) and its SHA-256."""
    found: set[bytes] = set()
    for lines in rows.values():
        for line in lines:
            for token in _TOKEN.findall(line):
                found |= _decodings(token)
    return found


async def test_webhooks_cannot_be_forged_from_the_database(ran: Ran) -> None:
    container = await _container(ran, LATER)
    try:
        # A Key Adult holds a webhook secret, so its key is in the database (sealed)
        issued = await issue_key_adult_credentials(container.sessions, container.clock, "KA-OAK-1")
        rows = await _every_row(container)
    finally:
        await container.close()
    service = load_or_create_signing_key(ran.folder / "svc.pem").public_key()
    body, now = b'{"format":"encompass-envelope/1","notice_id":"forged"}', 1_800_000_000
    materials = _materials(rows)
    assert len(materials) > 1_000
    for key in materials:
        # Neither the HMAC of the webhook secret ...
        assert not verify(
            body, sign(body, key=key, timestamp=now), secret=issued.webhook_secret, now=now
        )
        # ... nor the service's Ed25519 signature can be made with anything stored.
        if len(key) == 32:
            forged = service_sign(
                body,
                signing_key=Ed25519PrivateKey.from_private_bytes(key),
                timestamp=now,
                idempotency_key="x",
                kind="notice",
            )
            assert not verify_service(
                body, forged, idempotency_key="x", kind="notice", service_key=service, now=now
            )
    for table in rows:  # no private key of any kind is stored
        assert all("PRIVATE KEY" not in line for line in rows[table]), table
    # The harness would catch the old scheme: the key it stored did sign webhooks.
    old = signature_key(issued.webhook_secret)
    assert verify(body, sign(body, key=old, timestamp=now), secret=issued.webhook_secret, now=now)
    assert old not in materials and old.hex().encode() not in materials


def _cli(ran: Ran, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ran.env, "ENCOMPASS_NOW": LATER.isoformat()}
    env.pop("ENCOMPASS_AMQP_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "encompass.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_purge_shreds_closed_incidents_and_everything_copes(ran: Ran) -> None:
    container = await _container(ran, LATER)
    try:
        async with container.sessions() as session:
            before = (
                await session.execute(
                    select(
                        IncidentVersion.incident_id,
                        IncidentVersion.version_id,
                        IncidentVersion.payload,
                    )
                )
            ).all()
            audit_before = len((await session.scalars(select(AuditEntry.seq))).all())
        # A dry run names them and changes nothing
        dry = _cli(ran, "purge", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        would = [
            line.split()[3]
            for line in dry.stdout.splitlines()
            if line.startswith("would purge incident")
        ]
        assert len(would) == 6, dry.stdout  # every demo incident is closed by then
        assert all(word not in dry.stdout for word in NAMES)
        # When purged (the command, as an operator runs it)
        done = _cli(ran, "purge")
        assert done.returncode == 0, done.stderr
        assert "6 incident(s) purged" in done.stdout
        assert sorted(
            line.split()[2]
            for line in done.stdout.splitlines()
            if line.startswith("purged incident")
        ) == sorted(would)
        async with container.sessions() as session:
            keys = (await session.scalars(select(IncidentKey))).all()
            assert {k.incident_id for k in keys} == set(would)
            assert all(
                k.wrapped_key is None and k.purged_at is not None and k.purged_at >= LATER
                for k in keys
            )
            # Then no stored report opens any more, with any key material left anywhere
            left = [m for m in _materials(await _every_row(container)) if len(m) == 32]
            for incident_id, version_id, stored in before:
                with pytest.raises(DataPurged):
                    await open_payload(
                        session, incident_id=incident_id, version_id=version_id, stored=stored
                    )
                for candidate in left:
                    with pytest.raises(DataUnreadable):
                        open_value(candidate, stored, purpose=PAYLOAD, subject=version_id)
            # the envelopes are cleared, their hashes kept for the receipts
            envelopes = (await session.scalars(select(SealedEnvelope))).all()
            assert all(e.body == "" and len(e.envelope_hash) == 64 for e in envelopes)
            # and the audit trail still verifies, one entry per purge on it
            chain = await verify_chain(session)
            assert chain.ok and chain.entries == audit_before + 6, chain
            purges = (
                await session.scalars(
                    select(AuditEntry).where(AuditEntry.action == "incident.purged")
                )
            ).all()
            assert {p.subject for p in purges} == {f"incident:{i}" for i in would}
        # Again: nothing more to do
        assert await purge_due(container.sessions, container.clock, retention_days=90) == []
        await _everything_copes(container, would)
    finally:
        await container.close()


async def _everything_copes(container: Container, purged: list[str]) -> None:
    # The dispatcher leaves out what it cannot read, never crashes on it
    async with container.sessions() as session:
        notices = (await session.scalars(select(Notice))).all()
        assert notices and await load_sources(session, notices) == {}
    # The review queue still lists its item, with the personal fields marked purged
    items = await list_review(container.sessions, container.clock, "admin:test")
    assert items and {i.data for i in items} == {"purged"}
    assert all(i.candidates == [] and i.reported == {} for i in items)
    # A force still follows its incident: statuses and times, no personal data
    async with container.sessions.begin() as session:
        incident = await session.get(Incident, purged[0])
        assert incident is not None
        await session.execute(
            update(Force)
            .where(Force.force_id == incident.force_id)
            .values(token_hash=hash_token("force_after_purge"))
        )
    client = TestClient(TestServer(create_app(container)))
    await client.start_server()
    try:
        response = await client.get(
            f"/v1/incidents/{purged[0]}", headers={"Authorization": "Bearer force_after_purge"}
        )
        assert response.status == 200, await response.text()
        answer = await response.json()
    finally:
        await client.close()
    assert answer["data"] == "purged" and answer["purged_at"] >= LATER.isoformat()
    assert answer["children"] and all(n["status"] for c in answer["children"] for n in c["notices"])
    # A new version of a purged incident is refused with a clear message
    report = IncidentReport.model_validate(
        {
            "incident_ref": incident.incident_ref,
            "version": 9,
            "occurred_at": (LATER - timedelta(hours=1)).isoformat(),
            "location": "home",
            "circumstances": "x",
            "police_actions": "y",
            "officer": {"name": "PC 1", "contact": "0300 000 0000"},
            "children": [
                {
                    "given_name": "A",
                    "family_name": "B",
                    "date_of_birth": "2015-01-01",
                    "postcode": "TF3 4NT",
                    "present": True,
                }
            ],
        },
        context={"now": LATER},
    )
    with pytest.raises(IncidentPurged, match="purged under the retention rule"):
        await report_incident(
            container.sessions, container.broker, container.clock, incident.force_id, report
        )
