"""E-mail that reaches people, on real PostgreSQL and RabbitMQ and a real SMTP server on
loopback, with two dispatchers side by side: the pointer links to the notice in the inbox;
an overdue notice e-mails the deputies at the day's start and the admins an hour later; a
failed delivery e-mails the setting's other recipients and the admins; each e-mail once,
across both dispatchers and a restart, and none carries personal data."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from email.message import EmailMessage

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from encompass.adapters.db.tables import MailOutboxRow
from encompass.adapters.topology import Topology
from encompass.bootstrap import Container, bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.services.access.credentials import add_admin, revoke_admin
from encompass.services.receiving.sweep_stuck import sweep
from encompass.workers import dispatcher
from tests.cleanup import delete_topologies
from tests.conftest import RabbitTarget
from tests.integration.delivery_fixtures import (
    CHILD,
    SCHOOL_NAME,
    Mailbox,
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

MORNING = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)  # Monday 07:30 in London (GMT)
PORTAL = "https://encompass.example"
ADMIN_EMAIL = "coordinator@la.example"
# What no e-mail may carry: the child, the setting's name, the incident.
PERSONAL = [*CHILD.values(), SCHOOL_NAME, "family home", "Argument", "arrested", "scared"]


@dataclass
class Stack:
    containers: list[Container]
    workers: list[dispatcher.Dispatcher]
    hooks: Receiver
    mail: Mailbox

    def set_clock(self, instant: datetime) -> None:
        for container in self.containers:
            container.clock.set(instant)

    async def sweep_side_by_side(self) -> None:
        """Both dispatchers' sweeps at the same moment, as two processes would."""
        await asyncio.gather(*(sweep(c.sessions, c.clock, c.signing_key) for c in self.containers))

    async def mail_settled(self) -> None:
        """Wait until no e-mail is pending, then a little for a resend that must not come."""

        async def none_pending() -> bool:
            async with self.containers[0].sessions() as session:
                pending = await session.scalar(
                    select(func.count())
                    .select_from(MailOutboxRow)
                    .where(MailOutboxRow.status == "pending")
                )
            return not pending

        await until(none_pending)
        await asyncio.sleep(0.3)

    def received(self, notice_id: str) -> list[tuple[str, EmailMessage]]:
        """(recipient, message) for each e-mail naming ``notice_id``."""
        found: list[tuple[str, EmailMessage]] = []
        for recipients, raw in self.mail.messages:
            message = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            if notice_id in _text(message):
                found.extend((to, message) for to in recipients)
        return found


def _text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(message["Subject"]) + "\n" + str(body.get_content())


@pytest.fixture(scope="module")
async def stack(admin_pg_url: str, rabbit: RabbitTarget) -> AsyncIterator[Stack]:
    async with own_database(admin_pg_url, "mail") as url, receiver() as hooks, smtp_server() as box:
        settings = load_settings(
            database_url=url,
            amqp_url=rabbit.url,
            queue_prefix=f"{rabbit.prefix}mail.",
            smtp_host="127.0.0.1",
            smtp_port=box.port,
            smtp_from="encompass@la.example",
            portal_url=PORTAL,
            delivery_max_attempts=2,
        )
        key = Ed25519PrivateKey.generate()
        containers = [
            await bootstrap(settings, clock=Clock(MORNING), signing_key=key) for _ in range(2)
        ]
        # An admin with an address, one without, and a revoked one: only the first is e-mailed.
        c = containers[0]
        await add_admin(c.sessions, c.clock, "Coordinator", "all", email=ADMIN_EMAIL)
        await add_admin(c.sessions, c.clock, "No Address", "all")
        await add_admin(c.sessions, c.clock, "Gone", "all", email="gone@la.example")
        await revoke_admin(c.sessions, c.clock, "Gone")
        workers = [
            await dispatcher.start(
                container, backoff=lambda _attempt: 0.0, interval=0.05, sweep_every=3600
            )
            for container in containers
        ]
        made = Stack(containers, workers, hooks, box)
        try:
            yield made
        finally:
            for worker in made.workers:
                await worker.cancel()
            for container in containers:
                await container.close()
            await delete_topologies([(rabbit.url, Topology(settings.queue_prefix))])


def assert_no_personal_data(stack: Stack, notice_id: str, setting_id: str) -> None:
    for _to, message in stack.received(notice_id):
        text = _text(message) + str(message["To"]) + str(message["From"])
        for value in [*PERSONAL, setting_id]:
            assert value not in text


async def test_the_pointer_links_to_the_notice_in_the_inbox(stack: Stack) -> None:
    c = stack.containers[0]
    stack.set_clock(MORNING)
    # Given a Key Adult who receives by e-mail only
    setting, (person,) = await add_setting(c.sessions, people=[("key_adult", None)])
    (notice_id,) = (
        await add_incident(c.sessions, setting_ids=[setting], deliver_at=MORNING)
    ).notice_ids
    # When the notice is released, the pointer arrives
    ((to, message),) = await until(lambda: _async(stack.received(notice_id)))
    assert to == f"{person.key_adult_id.lower()}@settings.example"
    assert f"{PORTAL}/inbox/notices/{notice_id}" in _text(message)
    assert "/v1/" not in _text(message)
    assert_no_personal_data(stack, notice_id, setting)
    assert await notice_status(c.sessions, notice_id) == "sending"


async def test_overdue_e_mails_deputies_at_day_start_then_admins_once_each(stack: Stack) -> None:
    c = stack.containers[0]
    day = MORNING + timedelta(days=1)
    stack.set_clock(day)
    # Given a Key Adult and two deputies on webhooks, delivered at 07:30, never acknowledged
    setting, people = await add_setting(
        c.sessions,
        people=[
            ("key_adult", stack.hooks.url("od-ka")),
            ("deputy", stack.hooks.url("od-d1")),
            ("deputy", stack.hooks.url("od-d2")),
        ],
        day_starts=time(8, 45),
    )
    (notice_id,) = (
        await add_incident(c.sessions, setting_ids=[setting], deliver_at=day)
    ).notice_ids
    await until(lambda: _delivered(stack, notice_id))
    deputies = sorted(f"{p.key_adult_id.lower()}@settings.example" for p in people[1:])
    # When it is a minute before the day starts: no e-mail
    stack.set_clock(datetime(2026, 3, 3, 8, 44, tzinfo=UTC))
    await stack.sweep_side_by_side()
    await stack.mail_settled()
    assert stack.received(notice_id) == []
    # When the day starts, both dispatchers sweep: each deputy is e-mailed once
    stack.set_clock(datetime(2026, 3, 3, 8, 45, 30, tzinfo=UTC))
    await stack.sweep_side_by_side()
    await stack.sweep_side_by_side()
    await stack.mail_settled()
    got = stack.received(notice_id)
    assert sorted(to for to, _ in got) == deputies
    assert all(f"{PORTAL}/inbox/notices/{notice_id}" in _text(m) for _, m in got)
    # When 59 minutes have passed: nothing more
    stack.set_clock(datetime(2026, 3, 3, 9, 44, 30, tzinfo=UTC))
    await stack.sweep_side_by_side()
    await stack.mail_settled()
    assert len(stack.received(notice_id)) == 2
    # When an hour has passed: the admin with an address, once
    stack.set_clock(datetime(2026, 3, 3, 9, 45, 31, tzinfo=UTC))
    await stack.sweep_side_by_side()
    await stack.sweep_side_by_side()
    await stack.mail_settled()
    admin = [(to, m) for to, m in stack.received(notice_id) if to not in deputies]
    assert [to for to, _ in admin] == [ADMIN_EMAIL]
    assert f"{PORTAL}/admin" in _text(admin[0][1])
    # And a dispatcher restarted later sends nothing again
    await stack.workers[1].cancel()
    stack.workers[1] = await dispatcher.start(
        stack.containers[1], backoff=lambda _attempt: 0.0, interval=0.05, sweep_every=3600
    )
    stack.set_clock(datetime(2026, 3, 3, 11, 0, tzinfo=UTC))
    await stack.sweep_side_by_side()
    await stack.mail_settled()
    assert len(stack.received(notice_id)) == 3
    assert_no_personal_data(stack, notice_id, setting)


async def test_a_failed_delivery_e_mails_the_others_and_the_admins_once(stack: Stack) -> None:
    c = stack.containers[0]
    day = MORNING + timedelta(days=2)
    stack.set_clock(day)
    # Given a Key Adult whose system refuses the webhook for good, and a deputy whose works
    setting, (key_adult, deputy) = await add_setting(
        c.sessions,
        people=[("key_adult", stack.hooks.url("fail-ka", 410)), ("deputy", stack.hooks.url("ok"))],
    )
    (notice_id,) = (
        await add_incident(c.sessions, setting_ids=[setting], deliver_at=day)
    ).notice_ids
    # When the Key Adult's delivery fails (the deputy's succeeds)
    await until(lambda: _delivered(stack, notice_id))
    await until(lambda: _async(len(stack.received(notice_id)) >= 2))
    await stack.sweep_side_by_side()
    await stack.mail_settled()
    # Then the deputy and the admin are e-mailed, once each; the Key Adult is not
    got = stack.received(notice_id)
    assert sorted(to for to, _ in got) == sorted(
        [f"{deputy.key_adult_id.lower()}@settings.example", ADMIN_EMAIL]
    )
    links = {to: _text(m) for to, m in got}
    assert (
        f"{PORTAL}/inbox/notices/{notice_id}"
        in links[f"{deputy.key_adult_id.lower()}@settings.example"]
    )
    assert f"{PORTAL}/admin" in links[ADMIN_EMAIL]
    assert key_adult.key_adult_id.lower() not in " ".join(links)
    assert_no_personal_data(stack, notice_id, setting)


async def _async(value: object) -> object:
    return value


async def _delivered(stack: Stack, notice_id: str) -> bool:
    return await notice_status(stack.containers[0].sessions, notice_id) == "delivered"
