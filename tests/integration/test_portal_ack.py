"""The Key Adult's side on real PostgreSQL and RabbitMQ: the portal, signed acknowledgements,
and what the force sees of them."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from encompass.adapters.db.tables import (
    Acknowledgement,
    Alert,
    AuditEntry,
    Child,
    KeyAdultRow,
    Notice,
    NoticeEvent,
    SealedEnvelope,
)
from encompass.adapters.key_files import KeyAdultPrivateKeys, load_public_key_bundle, public_key_pem
from encompass.adapters.topology import Topology
from encompass.api.app import create_app
from encompass.bootstrap import Container, bootstrap
from encompass.client import Portal, ack, inbox, load_keys
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.demo.directory import write_directory
from encompass.domain.envelope import AckKind, envelope_hash, parse_envelope, sign_ack, verify_ack
from encompass.services.access.credentials import add_admin, add_force
from encompass.services.directory.importer import import_directory
from encompass.services.receiving.portal import issue_key_adult_credentials
from encompass.services.records.at_rest import open_reply
from encompass.services.records.audit import verify_chain
from encompass.workers.main import start_workers
from tests.cleanup import delete_topologies
from tests.conftest import RabbitTarget
from tests.receiving_fixtures import (
    AMELIA,
    FREDDIE,
    PERSONAL,
    add_child,
    add_notice,
    own_database,
    send_due,
)

pytestmark = pytest.mark.integration

NIGHT = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)  # Friday night
TUESDAY = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)  # Oakfield's next open day, after 07:30


@dataclass
class Stack:
    container: Container
    url: str
    force: str
    force_id: str
    admin: str
    tokens: dict[str, str]
    keys: Path

    def key(self, key_adult_id: str) -> KeyAdultPrivateKeys:
        return load_keys(self.keys / f"{key_adult_id}.private.pem")

    def portal(self, key_adult_id: str) -> Portal:
        return Portal(self.url, self.tokens[key_adult_id], self.key(key_adult_id))


@pytest.fixture(scope="module")
async def stack(
    admin_pg_url: str, rabbit: RabbitTarget, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    folder = tmp_path_factory.mktemp("portal")
    async with own_database(admin_pg_url, "portal") as url:
        settings = load_settings(
            database_url=url,
            amqp_url=rabbit.url,
            queue_prefix=f"{rabbit.prefix}portal.",
            signing_key=folder / "service.pem",
        )
        container = await bootstrap(settings, clock=Clock(NIGHT))
        paths = write_directory(folder / "directory")
        await import_directory(container.sessions, **paths)
        force = await add_force(
            container.sessions,
            container.clock,
            f"P{secrets.token_hex(3).upper()}",
            "Test Constabulary",
        )
        admin = await add_admin(container.sessions, container.clock, "Coordinator", "all")
        tokens = {}
        for key_adult_id in ("KA-OAK-1", "KA-OAK-2", "KA-ACORN-1"):
            issued = await issue_key_adult_credentials(
                container.sessions, container.clock, key_adult_id
            )
            tokens[key_adult_id] = issued.token
        runner = web.AppRunner(create_app(container))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        consumers = await start_workers(container, ["matcher"])
        yield Stack(
            container,
            f"http://{host}:{port}",
            force.token,
            force.subject_id,
            admin.token,
            tokens,
            folder / "directory" / "keys",
        )
        for consumer in consumers:
            await consumer.cancel()
        await runner.cleanup()
        await container.close()
        await delete_topologies([(rabbit.url, Topology(settings.queue_prefix))])


async def call(
    stack: Stack, method: str, path: str, token: str | None, body: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as client,
        client.request(method, stack.url + path, headers=headers, json=body) as response,
    ):
        return response.status, await response.json()


async def sent_notice(
    stack: Stack, child: dict[str, Any] = AMELIA, setting_id: str = "URN100001"
) -> str:
    """A Friday-night child's notice, released on Tuesday morning: ``sending``."""
    clock = stack.container.clock
    placed = await add_child(
        stack.container.sessions, force_id=stack.force_id, reported_at=NIGHT, child=child
    )
    notice_id = await add_notice(stack.container.sessions, placed, setting_id, clock.now())
    clock.set(TUESDAY)
    await send_due(stack.container)
    return notice_id


async def signed(
    stack: Stack,
    key_adult_id: str,
    notice_id: str,
    kind: str = "received",
    reply: str | None = None,
) -> dict[str, Any]:
    """An acknowledgement body, signed over the envelope the portal serves."""
    status, item = await call(stack, "GET", f"/v1/notices/{notice_id}", stack.tokens[key_adult_id])
    assert status == 200, item
    digest = envelope_hash(parse_envelope(item["envelope"]))
    signature = sign_ack(
        stack.key(key_adult_id).signing,
        notice_id=notice_id,
        envelope_hash=digest,
        kind=kind,
        reply=reply,
    )
    return {"kind": kind, "reply": reply, "envelope_hash": digest, "signature": signature}


async def notice(stack: Stack, notice_id: str) -> Notice:
    async with stack.container.sessions() as session:
        found = await session.get(Notice, notice_id)
    assert found is not None
    return found


async def test_an_incident_reported_over_http_is_opened_and_acknowledged(stack: Stack) -> None:
    # Given a Friday-night incident, reported over HTTP and matched through RabbitMQ
    stack.container.clock.set(NIGHT)
    child = {
        **AMELIA,
        "upn": None,
        "gender": None,
        "present": True,
        "where_during": "upstairs bedroom",
        "voice": "said she was scared",
        "injured": False,
        "school_hint": None,
    }
    status, accepted = await call(
        stack,
        "POST",
        "/v1/incidents",
        stack.force,
        {
            "incident_ref": f"FLOW-{secrets.token_hex(4)}",
            "version": 1,
            "occurred_at": "2026-11-20T22:10:00+00:00",
            "location": "the family home",
            "circumstances": "Argument between adults.",
            "police_actions": "Officers attended.",
            "officer": {"name": "PC 1234 Jones", "contact": "0300 000 0000"},
            "children": [child],
        },
    )
    assert status == 202, accepted
    path = f"/v1/incidents/{accepted['incident_id']}"
    for _ in range(200):
        _, state = await call(stack, "GET", path, stack.force)
        if state["children"] and state["children"][0]["notices"]:
            break
        await asyncio.sleep(0.05)
    (scheduled,) = state["children"][0]["notices"]
    # When Tuesday's dispatch time has passed and the dispatcher released it
    stack.container.clock.set(TUESDAY)
    await send_due(stack.container)
    # Then the Key Adult's client opens and verifies it, and acknowledges it
    portal = stack.portal("KA-OAK-1")
    lines = [line for line in await inbox(portal) if line["notice_id"] == scheduled["notice_id"]]
    assert [line["notice"]["child"]["given_name"] for line in lines] == ["Amelia"]
    answer = await ack(portal, scheduled["notice_id"], kind=AckKind.RECEIVED, reply="Seen, thanks")
    assert answer["result"] == "acknowledged"
    _, state = await call(stack, "GET", path, stack.force)
    (seen,) = state["children"][0]["notices"]
    assert seen["status"] == "acknowledged" and seen["overdue"] is False
    assert seen["acknowledgement"]["kind"] == "received"
    assert seen["acknowledgement"]["reply"] == "Seen, thanks"
    assert seen["acknowledgement"]["key_adult_id"] == "KA-OAK-1"
    assert seen["returned"] is False and seen["failures"] == []


async def test_a_key_adult_sees_only_their_own_notices(stack: Stack) -> None:
    school = await sent_notice(stack, AMELIA, "URN100001")
    nursery = await sent_notice(stack, FREDDIE, "EY200002")
    status, body = await call(stack, "GET", "/v1/notices", stack.tokens["KA-OAK-1"])
    assert status == 200
    mine = {item["notice_id"] for item in body["notices"]}
    assert school in mine and nursery not in mine
    status, body = await call(stack, "GET", "/v1/notices", stack.tokens["KA-ACORN-1"])
    assert {item["notice_id"] for item in body["notices"]} >= {nursery}
    assert school not in {item["notice_id"] for item in body["notices"]}
    # Another setting's notice looks exactly like one that does not exist
    status, body = await call(stack, "GET", f"/v1/notices/{nursery}", stack.tokens["KA-OAK-1"])
    assert status == 404 and body["error"]["code"] == "not_found"
    status, other = await call(stack, "GET", "/v1/notices/no-such-notice", stack.tokens["KA-OAK-1"])
    assert status == 404 and other == body


async def test_the_portal_refuses_other_callers(stack: Stack) -> None:
    assert (await call(stack, "GET", "/v1/notices", None))[0] == 401
    assert (await call(stack, "GET", "/v1/notices", "keyadult_forged"))[0] == 401
    status, body = await call(stack, "GET", "/v1/notices", stack.force)
    assert status == 403 and body["error"]["code"] == "forbidden"
    assert (await call(stack, "GET", "/v1/notices", stack.admin))[0] == 403


async def test_the_first_fetch_delivers_the_notice(stack: Stack) -> None:
    notice_id = await sent_notice(stack)
    assert (await notice(stack, notice_id)).status == "sending"
    status, first = await call(stack, "GET", f"/v1/notices/{notice_id}", stack.tokens["KA-OAK-1"])
    assert status == 200 and first["status"] == "delivered" and first["kind"] == "notice"
    assert parse_envelope(first["envelope"]).recipient == "KA-OAK-1"
    _, again = await call(stack, "GET", f"/v1/notices/{notice_id}", stack.tokens["KA-OAK-1"])
    assert again["delivered_at"] == first["delivered_at"]
    async with stack.container.sessions() as session:
        envelope = await session.scalar(
            select(SealedEnvelope).where(
                SealedEnvelope.notice_id == notice_id, SealedEnvelope.key_adult_id == "KA-OAK-1"
            )
        )
        events = (
            await session.scalars(
                select(NoticeEvent)
                .where(NoticeEvent.notice_id == notice_id)
                .order_by(NoticeEvent.event_id)
            )
        ).all()
        reads = (
            await session.scalars(
                select(AuditEntry).where(
                    AuditEntry.subject == f"notice:{notice_id}", AuditEntry.action == "notice.read"
                )
            )
        ).all()
    assert envelope is not None and envelope.delivered_by == "portal"
    assert (events[-1].from_status, events[-1].to_status) == ("sending", "delivered")
    assert [r.detail["first_fetch"] for r in reads] == [True, False]
    assert all(r.actor == "key_adult:KA-OAK-1" for r in reads)


async def test_a_valid_signed_acknowledgement_is_recorded(stack: Stack) -> None:
    notice_id = await sent_notice(stack)
    body = await signed(stack, "KA-OAK-1", notice_id, "child_absent", "Not in school today")
    status, answer = await call(
        stack, "POST", f"/v1/notices/{notice_id}/ack", stack.tokens["KA-OAK-1"], body
    )
    assert status == 201, answer
    assert answer["notice_status"] == "acknowledged" and answer["kind"] == "child_absent"
    async with stack.container.sessions() as session:
        (receipt,) = (
            await session.scalars(
                select(Acknowledgement).where(Acknowledgement.notice_id == notice_id)
            )
        ).all()
        key_adult = await session.get(KeyAdultRow, "KA-OAK-1")
        row = await session.get(Notice, notice_id)
        assert row is not None
        reply = await open_reply(
            session, incident_id=row.incident_id, ack_id=receipt.ack_id, stored=receipt.reply
        )
    assert key_adult is not None
    # The reply is kept sealed under the incident's data key, never in clear
    assert receipt.reply is not None and "school" not in receipt.reply
    assert (receipt.key_adult_id, receipt.kind, reply) == (
        "KA-OAK-1",
        "child_absent",
        "Not in school today",
    )
    assert receipt.at == datetime.fromisoformat(answer["at"])
    # The stored receipt proves itself to anyone holding the Key Adult's public key
    verify_ack(
        load_public_key_bundle(key_adult.public_key_pem).signing,
        receipt.signature,
        notice_id=notice_id,
        envelope_hash=receipt.envelope_hash,
        kind="child_absent",
        reply="Not in school today",
    )
    assert (await notice(stack, notice_id)).status == "acknowledged"
    # A second answer, from the deputy too, is refused
    again = await signed(stack, "KA-OAK-2", notice_id)
    status, refused = await call(
        stack, "POST", f"/v1/notices/{notice_id}/ack", stack.tokens["KA-OAK-2"], again
    )
    assert status == 409 and refused["error"]["code"] == "already_acknowledged"


async def test_forged_or_mismatched_acknowledgements_are_refused(stack: Stack) -> None:
    notice_id = await sent_notice(stack)
    good = await signed(stack, "KA-OAK-1", notice_id)
    path, token = f"/v1/notices/{notice_id}/ack", stack.tokens["KA-OAK-1"]
    forged = sign_ack(
        Ed25519PrivateKey.generate(),
        notice_id=notice_id,
        envelope_hash=good["envelope_hash"],
        kind="received",
        reply=None,
    )
    cases = [
        ({**good, "signature": forged}, 403, "bad_signature"),
        ({**good, "reply": "words the Key Adult never signed"}, 403, "bad_signature"),
        ({**good, "kind": "not_our_pupil"}, 403, "bad_signature"),
        ({**good, "signature": base64.b64encode(b"x" * 64).decode()}, 403, "bad_signature"),
        (
            {
                **good,
                "envelope_hash": "0" * 64,
                "signature": sign_ack(
                    stack.key("KA-OAK-1").signing,
                    notice_id=notice_id,
                    envelope_hash="0" * 64,
                    kind="received",
                    reply=None,
                ),
            },
            400,
            "envelope_mismatch",
        ),
        ({**good, "surprise": 1}, 422, "invalid_acknowledgement"),
        ({**good, "reply": "x" * 501}, 422, "invalid_acknowledgement"),
    ]
    for body, status_, code in cases:
        status, answer = await call(stack, "POST", path, token, body)
        assert (status, answer["error"]["code"]) == (status_, code), body
    # The deputy cannot pass off the Key Adult's receipt, nor their signature, as their own
    status, answer = await call(stack, "POST", path, stack.tokens["KA-OAK-2"], good)
    assert status == 400 and answer["error"]["code"] == "envelope_mismatch"
    deputys = await signed(stack, "KA-OAK-2", notice_id)
    borrowed = sign_ack(
        stack.key("KA-OAK-1").signing,
        notice_id=notice_id,
        envelope_hash=deputys["envelope_hash"],
        kind="received",
        reply=None,
    )
    status, answer = await call(
        stack, "POST", path, stack.tokens["KA-OAK-2"], {**deputys, "signature": borrowed}
    )
    assert status == 403 and answer["error"]["code"] == "bad_signature"
    # Nor can another setting acknowledge it
    status, answer = await call(stack, "POST", path, stack.tokens["KA-ACORN-1"], good)
    assert status == 404
    assert (await notice(stack, notice_id)).status == "delivered"
    status, _ = await call(stack, "POST", path, token, good)
    assert status == 201


async def test_not_our_pupil_goes_back_to_review_and_the_force_sees_it(stack: Stack) -> None:
    notice_id = await sent_notice(stack)
    found = await notice(stack, notice_id)
    body = await signed(stack, "KA-OAK-1", notice_id, "not_our_pupil", "Left us in July")
    status, answer = await call(
        stack, "POST", f"/v1/notices/{notice_id}/ack", stack.tokens["KA-OAK-1"], body
    )
    assert status == 201 and answer["result"] == "returned_to_review"
    assert (await notice(stack, notice_id)).status == "review"
    async with stack.container.sessions() as session:
        child = await session.get(Child, found.child_id)
        alerts = (await session.scalars(select(Alert).where(Alert.notice_id == notice_id))).all()
    assert child is not None and any("not their pupil" in r for r in child.reasons)
    assert [(a.kind, a.audience) for a in alerts] == [("not_our_pupil", "force")]
    assert "Amelia" not in alerts[0].message
    # The force sees the return, the reply and the alert on its incident
    status, state = await call(stack, "GET", f"/v1/incidents/{found.incident_id}", stack.force)
    (returned,) = state["children"][0]["notices"]
    assert returned["status"] == "review" and returned["returned"] is True
    assert returned["acknowledgement"]["reply"] == "Left us in July"
    assert returned["alerts"][0]["kind"] == "not_our_pupil"
    # And the admins find it in the review queue, with the reason and the reply
    _, queue = await call(stack, "GET", "/v1/admin/review", stack.admin)
    (item,) = [i for i in queue["items"] if i["id"] == notice_id]
    assert item["type"] == "notice" and item["notice"]["was_sent"] is True
    assert item["notice"]["answer"]["reply"] == "Left us in July"
    assert any("not their pupil" in r for r in item["reasons"])


async def test_a_withdrawal_retracts_a_delivered_notice_in_the_portal(stack: Stack) -> None:
    # Given a notice the Key Adult fetched
    notice_id = await sent_notice(stack)
    found = await notice(stack, notice_id)
    portal = stack.portal("KA-OAK-1")
    assert any(line["notice_id"] == notice_id for line in await inbox(portal))
    # When another force tries to withdraw it, nothing happens; when its own force does...
    other = await add_force(
        stack.container.sessions,
        stack.container.clock,
        f"Q{secrets.token_hex(3).upper()}",
        "Other Constabulary",
    )
    path = f"/v1/incidents/{found.incident_id}/withdraw"
    status, body = await call(stack, "POST", path, other.token)
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await call(stack, "POST", path, stack.tokens["KA-OAK-1"])
    assert status == 403
    status, body = await call(stack, "POST", path, stack.force)
    assert status == 200 and body["retracted"] == 1, body
    # Then the Key Adult finds the retraction beside the notice, and can no longer answer
    lines = [line for line in await inbox(portal) if line["notice_id"] == notice_id]
    assert sorted(line["notice"]["kind"] for line in lines) == ["notice", "retraction"]
    assert {line["status"] for line in lines} == {"retracted"}
    status, item = await call(
        stack, "GET", f"/v1/notices/{notice_id}?kind=retraction", stack.tokens["KA-OAK-1"]
    )
    assert status == 200 and item["kind"] == "retraction"
    body = await signed(stack, "KA-OAK-1", notice_id)
    status, refused = await call(
        stack, "POST", f"/v1/notices/{notice_id}/ack", stack.tokens["KA-OAK-1"], body
    )
    assert status == 409 and refused["error"]["code"] == "not_acknowledgeable"
    async with stack.container.sessions() as session:
        entry = await session.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "incident.withdrawn",
                AuditEntry.subject == f"incident:{found.incident_id}",
            )
        )
    assert entry is not None and entry.actor == f"force:{stack.force_id}"


async def test_the_service_key_verifies_envelopes(stack: Stack) -> None:
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"{stack.url}/v1/service-key") as response,
    ):
        assert response.status == 200
        pem = await response.text()
    assert pem == public_key_pem(stack.container.signing_key)


async def test_the_audit_chain_holds_and_names_no_child(stack: Stack) -> None:
    async with stack.container.sessions() as session:
        report = await verify_chain(session)
        entries = (await session.scalars(select(AuditEntry))).all()
    assert report.ok, report
    assert report.entries == len(entries) > 5
    actions = {e.action for e in entries}
    assert {
        "notices.list",
        "notice.read",
        "notice.acknowledged",
        "incident.read",
        "incident.withdrawn",
        "key_adult.credentials_issued",
        "review.list",
    } <= actions
    text = repr([(e.actor, e.action, e.subject, e.detail) for e in entries])
    for value in PERSONAL:
        assert value not in text
