"""The AMQP intake's naming convention, the broker permissions it prints, and the record a
refused message leaves behind."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest

import encompass.workers.intake
from encompass.adapters.broker import Consumer, DeliveryHandler, Message, PublishError
from encompass.adapters.embedded_broker import EmbeddedBroker
from encompass.adapters.topology import Topology
from encompass.services.intake.from_amqp import (
    MAX_REPORT_BYTES,
    Refused,
    force_of_user,
    force_user,
    intake,
    rabbitmqctl_commands,
    shown_id,
)
from encompass.services.intake.ingest import Accepted
from encompass.workers.intake import dead_record


def test_a_force_user_is_named_by_its_code_and_back() -> None:
    assert force_user("CH") == "encompass-force-CH"
    assert force_of_user("encompass-force-CH") == "CH"
    assert force_of_user("encompass-force-WEST-MERCIA") == "WEST-MERCIA"
    for user in (None, "guest", "encompass-force-", "encompass-admin-CH", "x-encompass-force-CH"):
        assert force_of_user(user) is None


def test_the_commands_grant_writing_the_prefixed_exchange_only() -> None:
    add, permit = rabbitmqctl_commands("CH", Topology("blue."), vhost="/police", password="abc123")
    assert shlex.split(add) == ["rabbitmqctl", "add_user", "encompass-force-CH", "abc123"]
    words = shlex.split(permit)
    assert words[:5] == ["rabbitmqctl", "set_permissions", "-p", "/police", "encompass-force-CH"]
    configure, write, read = words[5:]
    assert (configure, read) == ("", "")
    assert re.fullmatch(write, "blue.encompass.incidents")
    for other in (
        "encompass.incidents",
        "blue.encompass.incidentsX",
        "blue.incidents",
        "amq.default",
        "",
        "blue.encompass.dlx",
    ):
        assert not re.fullmatch(write, other)


def test_a_generated_password_is_never_read_as_an_option() -> None:
    for _ in range(50):
        add, _permit = rabbitmqctl_commands("CH", Topology(""))
        assert not shlex.split(add)[3].startswith("-")


def test_a_dead_record_names_message_user_and_reason_only() -> None:
    record = json.loads(dead_record("msg-1", "encompass-force-CH", "no message_id"))
    assert record == {
        "message_id": "msg-1",
        "user_id": "encompass-force-CH",
        "reason": "no message_id",
    }
    assert json.loads(dead_record("", None, "r"))["message_id"] is None
    # An id that is free text (a child's name, say) is not repeated
    assert shown_id("Amelia Smith 2015-03-02") == "(not shown)"


class CapturingBroker(EmbeddedBroker):
    """Keeps the handler it was given, so a test can hand it deliveries with a user_id
    (which the embedded broker, having no users, never sets); refuses publishes when told."""

    handler: DeliveryHandler
    refuse = False

    async def publish(
        self, queue: str, body: bytes, *, message_id: str, headers: Mapping[str, Any] | None = None
    ) -> None:
        if self.refuse:
            raise PublishError(f"{queue}: refused by the broker (nack)")
        await super().publish(queue, body, message_id=message_id, headers=headers)

    async def consume(
        self, queue: str, handler: DeliveryHandler, *, prefetch: int = 16
    ) -> Consumer:
        self.handler = handler
        return await super().consume(queue, handler, prefetch=prefetch)


class FakeDelivery:
    def __init__(self, message: Message) -> None:
        self.message = message
        self.outcome: str | None = None

    async def ack(self) -> None:
        self.outcome = self.outcome or "acked"

    async def reject(self, *, requeue: bool) -> None:
        self.outcome = self.outcome or ("requeued" if requeue else "rejected")


SECRET = b'{"children": [{"given_name": "Ada", "family_name": "Lovelace"}]}'


async def handled(
    outcome: Exception | None, *, refuse: bool = False
) -> tuple[FakeDelivery, CapturingBroker]:
    async def fake_intake(*_: Any) -> Any:
        if outcome is not None:
            raise outcome
        return Accepted("incident-1", "version-1", duplicate=False)

    broker = CapturingBroker(Topology("unit."))
    await broker.start()
    broker.refuse = refuse
    container = SimpleNamespace(broker=broker, sessions=None, clock=None)
    consumer = await encompass.workers.intake.start(
        container,  # type: ignore[arg-type]
        retry_pause=0,
        ingest=fake_intake,
    )
    delivery = FakeDelivery(Message(body=SECRET, message_id="m-1", user_id="encompass-force-CH"))
    await broker.handler(delivery)
    await consumer.cancel()
    return delivery, broker


async def test_an_accepted_report_is_acked() -> None:
    delivery, broker = await handled(None)
    assert delivery.outcome == "acked"
    assert await broker.depth("intake.dead") == 0


async def test_a_refused_report_leaves_a_record_not_the_report() -> None:
    delivery, broker = await handled(Refused("no message_id"))
    assert delivery.outcome == "acked"
    dead = await broker.get("intake.dead", timeout=0.1)
    assert dead is not None
    assert json.loads(dead.message.body) == {
        "message_id": "m-1",
        "user_id": "encompass-force-CH",
        "reason": "no message_id",
    }
    assert dead.message.headers["x-encompass-dead-reason"] == "no message_id"


async def test_a_transient_failure_gives_the_message_back_with_its_user() -> None:
    # A copy published by the service would lose the broker-checked user_id: the original
    # goes back to the queue instead, and nothing is dead-lettered
    delivery, broker = await handled(ConnectionError("database down"))
    assert delivery.outcome == "requeued"
    assert await broker.depth("intake.dead") == 0
    assert await broker.depth("intake") == 0


async def test_a_refusal_the_broker_will_not_dead_letter_keeps_the_message() -> None:
    delivery, _broker = await handled(Refused("no message_id"), refuse=True)
    assert delivery.outcome == "requeued"


async def test_what_needs_no_database_is_refused_before_it() -> None:
    big = Message(
        body=b" " * (MAX_REPORT_BYTES + 1), message_id="m-1", user_id="encompass-force-CH"
    )
    no_id = Message(body=b"{}", message_id="", user_id="encompass-force-CH")
    no_user = Message(body=b"{}", message_id="m-1", user_id="guest")
    reasons = []
    for message in (big, no_id, no_user):
        with pytest.raises(Refused) as refused:
            await intake(None, None, None, message)  # type: ignore[arg-type]
        reasons.append(refused.value.reason)
    assert reasons[0] == f"the body is larger than {MAX_REPORT_BYTES} bytes"
    assert reasons[1].startswith("no message_id")
    assert reasons[2].startswith("not published by a force's user")
