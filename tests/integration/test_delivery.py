"""Release, seal, outbox and delivery through real PostgreSQL and RabbitMQ, to a loopback
webhook receiver and a loopback SMTP server, with the dispatcher worker running."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from encompass.adapters.db.tables import Alert, DeliveryAttempt, SealedEnvelope
from encompass.adapters.smtp import SmtpSender
from encompass.adapters.topology import DELIVERIES, Topology
from encompass.adapters.webhook import verify, verify_service
from encompass.bootstrap import Container, bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.domain.envelope import EnvelopeError, open_sealed, parse_envelope
from encompass.domain.queued import DeliveryQueued
from encompass.logging import configure_logging
from encompass.services.intake.withdraw import IncidentNotFound, withdraw_incident
from encompass.workers import dispatcher
from tests.cleanup import delete_topologies
from tests.conftest import RabbitTarget
from tests.integration.delivery_fixtures import (
    CHILD,
    SCHOOL_NAME,
    SECRET,
    Mailbox,
    Received,
    Receiver,
    add_incident,
    add_setting,
    notice_status,
    own_database,
    receiver,
    smtp_server,
    until,
)

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 3, 7, 30, tzinfo=UTC)  # a Tuesday morning, GMT


@dataclass
class Stack:
    container: Container
    hooks: Receiver
    mail: Mailbox
    service_key: Ed25519PrivateKey
    log: io.StringIO


@pytest.fixture(scope="module")
async def stack(admin_pg_url: str, rabbit: RabbitTarget) -> AsyncIterator[Stack]:
    log = io.StringIO()
    configure_logging("json", "debug", stream=log)
    async with (
        own_database(admin_pg_url, "flow") as url,
        receiver() as hooks,
        smtp_server() as mail,
    ):
        settings = load_settings(
            database_url=url,
            amqp_url=rabbit.url,
            queue_prefix=f"{rabbit.prefix}dlv.",
            delivery_max_attempts=4,
        )
        key = Ed25519PrivateKey.generate()
        container = await bootstrap(settings, clock=Clock(NOW), signing_key=key)
        sender = SmtpSender(
            host="127.0.0.1",
            port=mail.port,
            sender="encompass@example.org",
            portal_url="https://encompass.example",
        )
        worker = await dispatcher.start(
            container, backoff=lambda _attempt: 0.0, mail=sender, interval=0.05, sweep_every=3600
        )
        try:
            yield Stack(container, hooks, mail, key, log)
        finally:
            await worker.cancel()
            await container.close()
            await delete_topologies([(rabbit.url, Topology(settings.queue_prefix))])
            structlog.reset_defaults()


def due(stack: Stack) -> datetime:
    return stack.container.clock.now() - timedelta(seconds=1)


async def attempts(stack: Stack, notice_id: str) -> list[str]:
    async with stack.container.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(DeliveryAttempt.outcome)
                    .join(SealedEnvelope, SealedEnvelope.envelope_id == DeliveryAttempt.envelope_id)
                    .where(SealedEnvelope.notice_id == notice_id)
                    .order_by(DeliveryAttempt.attempt_id)
                )
            ).all()
        )


async def final(stack: Stack, notice_id: str, *wanted: str) -> str:
    async def check() -> str | None:
        status = await notice_status(stack.container.sessions, notice_id)
        return status if status in wanted else None

    result: str = await until(check)
    return result


async def test_a_webhook_gets_the_sealed_signed_envelope_only_its_key_opens(stack: Stack) -> None:
    # Given a Key Adult and a deputy, both on webhooks
    hook = stack.hooks.url("open-ka")
    deputy_hook = stack.hooks.url("open-deputy")
    setting, (key_adult, deputy) = await add_setting(
        stack.container.sessions, people=[("key_adult", hook), ("deputy", deputy_hook)]
    )
    (notice_id,) = (
        await add_incident(stack.container.sessions, setting_ids=[setting], deliver_at=due(stack))
    ).notice_ids
    # When the notice falls due, it is delivered
    assert await final(stack, notice_id, "delivered") == "delivered"
    await until(lambda: _received(stack, "open-deputy"))
    (request,) = stack.hooks.at("open-ka")
    assert request.headers["Idempotency-Key"]
    envelope = parse_envelope(request.body)
    # Then the Key Adult opens it and it verifies against the service key
    content = open_sealed(
        envelope,
        private_key=key_adult.keys.recipient,
        service_public_key=stack.service_key.public_key(),
    )
    assert content.child.given_name == CHILD["given_name"] and content.kind == "notice"
    assert content.guidance.startswith("Operation Encompass")
    # And the deputy's key cannot open the Key Adult's envelope
    with pytest.raises(EnvelopeError) as other:
        open_sealed(
            envelope,
            private_key=deputy.keys.recipient,
            service_public_key=stack.service_key.public_key(),
        )
    assert other.value.reason == "not_for_this_key"
    # And one altered byte of the ciphertext is refused
    raw = bytearray(base64.b64decode(envelope.ciphertext))
    raw[-1] ^= 1
    tampered = envelope.model_copy(update={"ciphertext": base64.b64encode(raw).decode()})
    with pytest.raises(EnvelopeError) as altered:
        open_sealed(tampered, private_key=key_adult.keys.recipient, service_public_key=None)
    assert altered.value.reason == "altered"
    with pytest.raises(EnvelopeError):  # and with the service key, the signature fails
        open_sealed(
            tampered,
            private_key=key_adult.keys.recipient,
            service_public_key=stack.service_key.public_key(),
        )


async def _received(stack: Stack, path: str) -> bool:
    return bool(stack.hooks.at(path))


async def test_the_hmac_header_verifies_with_sha256_of_the_secret(stack: Stack) -> None:
    hook = stack.hooks.url("hmac")
    setting, _ = await add_setting(stack.container.sessions, people=[("key_adult", hook)])
    (notice_id,) = (
        await add_incident(stack.container.sessions, setting_ids=[setting], deliver_at=due(stack))
    ).notice_ids
    await final(stack, notice_id, "delivered")
    (request,) = stack.hooks.at("hmac")
    header = request.headers["X-Encompass-Signature"]
    parts = dict(part.split("=", 1) for part in header.split(","))
    # What the receiver does, per schemas/webhook.md
    key = hashlib.sha256(SECRET.encode()).digest()
    expected = hmac.new(key, parts["t"].encode() + b"." + request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"])
    assert verify(request.body, header, secret=SECRET, now=int(parts["t"]))
    assert not verify(request.body + b" ", header, secret=SECRET, now=int(parts["t"]))
    assert not verify(request.body, header, secret="another secret", now=int(parts["t"]))


async def test_every_webhook_carries_the_service_signature(stack: Stack) -> None:
    hook = stack.hooks.url("service-signed")
    setting, _ = await add_setting(
        stack.container.sessions, people=[("key_adult", hook)], with_secret=False
    )
    (notice_id,) = (
        await add_incident(stack.container.sessions, setting_ids=[setting], deliver_at=due(stack))
    ).notice_ids
    await final(stack, notice_id, "delivered")
    (request,) = stack.hooks.at("service-signed")
    # No webhook secret issued: no HMAC, but the service's Ed25519 signature all the same
    assert "X-Encompass-Signature" not in request.headers
    header = request.headers["X-Encompass-Service-Signature"]
    parts = dict(part.split("=", 1) for part in header.split(","))
    # What the receiver does, per schemas/webhook.md, with the key it pinned
    signed = "\n".join(
        [
            "encompass-webhook/1",
            parts["t"],
            request.headers["Idempotency-Key"],
            request.headers["X-Encompass-Envelope-Kind"],
            hashlib.sha256(request.body).hexdigest(),
        ]
    ).encode()
    stack.service_key.public_key().verify(base64.b64decode(parts["ed25519"]), signed)

    def check(
        body: bytes, key: Ed25519PrivateKey = stack.service_key, kind: str = "notice"
    ) -> bool:
        return verify_service(
            body,
            header,
            idempotency_key=request.headers["Idempotency-Key"],
            kind=kind,
            service_key=key.public_key(),
            now=int(parts["t"]),
        )

    assert check(request.body)
    assert not check(request.body + b" ")
    assert not check(request.body, kind="retraction")
    assert not check(request.body, Ed25519PrivateKey.generate())


async def test_two_503s_then_success_is_delivered_after_three_attempts(stack: Stack) -> None:
    hook = stack.hooks.url("flaky", 503, 503)
    setting, _ = await add_setting(stack.container.sessions, people=[("key_adult", hook)])
    (notice_id,) = (
        await add_incident(stack.container.sessions, setting_ids=[setting], deliver_at=due(stack))
    ).notice_ids
    assert await final(stack, notice_id, "delivered", "failed") == "delivered"
    assert await attempts(stack, notice_id) == ["retry", "retry", "delivered"]
    assert len(stack.hooks.at("flaky")) == 3
    # The same envelope each time, so the receiver can keep one copy
    assert len({r.headers["Idempotency-Key"] for r in stack.hooks.at("flaky")}) == 1


async def test_a_webhook_that_always_fails_ends_failed_with_an_admin_alert(stack: Stack) -> None:
    hook = stack.hooks.url("down", *([503] * 10))
    # Released once the setting's day has begun: retried for max_attempts attempts.
    setting, _ = await add_setting(
        stack.container.sessions, people=[("key_adult", hook)], day_starts=time(7, 0)
    )
    (notice_id,) = (
        await add_incident(stack.container.sessions, setting_ids=[setting], deliver_at=due(stack))
    ).notice_ids
    assert await final(stack, notice_id, "delivered", "failed") == "failed"
    assert await attempts(stack, notice_id) == ["retry", "retry", "retry", "failed"]
    async with stack.container.sessions() as session:
        alert = (await session.scalars(select(Alert).where(Alert.notice_id == notice_id))).one()
    assert (alert.kind, alert.audience) == ("delivery_failed", "admins")
    assert CHILD["given_name"] not in alert.message


async def test_a_4xx_fails_at_once(stack: Stack) -> None:
    hook = stack.hooks.url("gone", 410)
    setting, _ = await add_setting(stack.container.sessions, people=[("key_adult", hook)])
    (notice_id,) = (
        await add_incident(stack.container.sessions, setting_ids=[setting], deliver_at=due(stack))
    ).notice_ids
    assert await final(stack, notice_id, "delivered", "failed") == "failed"
    assert await attempts(stack, notice_id) == ["failed"]


async def test_one_failing_recipient_does_not_fail_a_notice_another_received(stack: Stack) -> None:
    good, bad = stack.hooks.url("mixed-good"), stack.hooks.url("mixed-bad", 404)
    setting, _ = await add_setting(
        stack.container.sessions, people=[("key_adult", good), ("deputy", bad)]
    )
    (notice_id,) = (
        await add_incident(stack.container.sessions, setting_ids=[setting], deliver_at=due(stack))
    ).notice_ids
    await until(lambda: _count_final(stack, notice_id, 2))
    assert await notice_status(stack.container.sessions, notice_id) == "delivered"


async def _count_final(stack: Stack, notice_id: str, wanted: int) -> bool:
    return len([a for a in await attempts(stack, notice_id) if a != "retry"]) >= wanted


async def test_the_email_pointer_carries_no_personal_data(stack: Stack) -> None:
    # Given a Key Adult with no webhook: an e-mail pointer to the portal
    setting, (person,) = await add_setting(stack.container.sessions, people=[("key_adult", None)])
    (notice_id,) = (
        await add_incident(stack.container.sessions, setting_ids=[setting], deliver_at=due(stack))
    ).notice_ids
    address = f"{person.key_adult_id.lower()}@settings.example"

    async def mailed() -> list[bytes]:
        return [raw for to, raw in stack.mail.messages if address in to]

    (raw,) = await until(mailed)
    text = (
        email.message_from_bytes(raw, policy=email.policy.default)
        .get_body(preferencelist=("plain",))
        .get_content()  # type: ignore[union-attr]
    )
    # Then the whole raw message, and its decoded text, hold the id and link only
    for whole in (raw.decode("utf-8", "replace"), text):
        assert notice_id in whole and "https://encompass.example/inbox/notices/" in whole
        for secret in (
            CHILD["given_name"],
            CHILD["family_name"],
            CHILD["postcode"],
            CHILD["date_of_birth"],
            "05/04/2016",
            "2016",
            SCHOOL_NAME,
            "Bramblewood",
            "family home",
            "Argument",
            "PC 1234",
        ):
            assert secret.lower() not in whole.lower(), secret
    # And sending the pointer is not delivery: the portal's first fetch is
    assert await until(lambda: _attempts_are(stack, notice_id, ["sent"]))
    assert await notice_status(stack.container.sessions, notice_id) == "sending"


async def _attempts_are(stack: Stack, notice_id: str, wanted: list[str]) -> bool:
    return await attempts(stack, notice_id) == wanted


def _duplicates_logged(stack: Stack, envelope_id: str) -> int:
    return sum(
        "delivery.duplicate" in line and envelope_id in line
        for line in stack.log.getvalue().splitlines()
    )


async def _logged_more_duplicates(stack: Stack, envelope_id: str, seen: int) -> bool:
    return _duplicates_logged(stack, envelope_id) > seen


async def test_a_redelivered_message_sends_nothing_twice(stack: Stack) -> None:
    hook = stack.hooks.url("twice")
    setting, _ = await add_setting(stack.container.sessions, people=[("key_adult", hook)])
    (notice_id,) = (
        await add_incident(stack.container.sessions, setting_ids=[setting], deliver_at=due(stack))
    ).notice_ids
    await final(stack, notice_id, "delivered")
    async with stack.container.sessions() as session:
        envelope_id = (
            await session.scalars(
                select(SealedEnvelope.envelope_id).where(SealedEnvelope.notice_id == notice_id)
            )
        ).one()
    # When the relay, having crashed after publishing, publishes the entry again
    body = DeliveryQueued(outbox_id=0, envelope_id=envelope_id, channel="webhook").to_bytes()
    seen = _duplicates_logged(stack, envelope_id)
    await stack.container.broker.publish(DELIVERIES, body, message_id="outbox-dup")
    # (the barrier: the deliverer has taken the copy and decided it was already done)
    await until(lambda: _logged_more_duplicates(stack, envelope_id, seen))
    # Then nothing is posted twice
    assert len(stack.hooks.at("twice")) == 1
    assert await attempts(stack, notice_id) == ["delivered"]


async def test_withdrawal_cancels_the_unsent_and_retracts_the_delivered(stack: Stack) -> None:
    c = stack.container
    hook = stack.hooks.url("retract")
    delivered_to, (person,) = await add_setting(c.sessions, people=[("key_adult", hook)])
    tomorrow, _ = await add_setting(
        c.sessions, people=[("key_adult", stack.hooks.url("retract-later"))]
    )
    made = await add_incident(
        c.sessions,
        setting_ids=[delivered_to, tomorrow],
        deliver_at=due(stack),
        later={tomorrow: due(stack) + timedelta(days=1)},
    )
    sent, unsent = made.notice_ids
    await final(stack, sent, "delivered")
    # Another force cannot withdraw it
    with pytest.raises(IncidentNotFound):
        await withdraw_incident(c.sessions, c.clock, c.signing_key, "NOPE", made.incident_id)
    # When the force withdraws the incident
    summary = await withdraw_incident(
        c.sessions, c.clock, c.signing_key, made.force_id, made.incident_id
    )
    assert summary == {
        "incident_id": made.incident_id,
        "status": "withdrawn",
        "already_withdrawn": False,
        "cancelled": 1,
        "retracted": 1,
        "retractions_sealed": 1,
    }
    assert json.loads(json.dumps(summary)) == summary
    assert await notice_status(c.sessions, unsent) == "cancelled"
    assert await notice_status(c.sessions, sent) == "retracted"

    # Then the Key Adult's system receives a retraction it can open
    async def retraction() -> list[Received]:
        return [
            r
            for r in stack.hooks.at("retract")
            if r.headers.get("X-Encompass-Envelope-Kind") == "retraction"
        ]

    (request,) = await until(retraction)
    content = open_sealed(
        parse_envelope(request.body),
        private_key=person.keys.recipient,
        service_public_key=stack.service_key.public_key(),
    )
    assert content.kind == "retraction" and content.notice_id == sent
    assert content.child.family_name == CHILD["family_name"]
    assert "upstairs" not in content.model_dump_json()  # no incident details repeated
    # And the cancelled one never goes out, even when its time comes
    assert not stack.hooks.at("retract-later")
    again = await withdraw_incident(
        c.sessions, c.clock, c.signing_key, made.force_id, made.incident_id
    )
    assert again["already_withdrawn"] and again["cancelled"] == again["retracted"] == 0


async def test_no_personal_data_reached_the_log(stack: Stack) -> None:
    # Runs last in this module: every delivery above has been logged by now
    text = stack.log.getvalue()
    assert "delivery.attempt" in text and "dispatch.released" in text
    assert "notice.failed" in text and "delivery.failed" in text
    for value in (
        CHILD["given_name"],
        CHILD["family_name"],
        CHILD["postcode"],
        CHILD["date_of_birth"],
        SCHOOL_NAME,
        "scared",
        "upstairs",
        "family home",
    ):
        assert value not in text
