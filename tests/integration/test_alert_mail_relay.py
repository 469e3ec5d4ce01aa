"""The mail relay on real PostgreSQL and a real SMTP server on loopback: relays side by
side send each e-mail once; a 5xx refusal is final, a 4xx is tried again later and then
given up; without an SMTP server each e-mail is recorded as skipped; an overdue e-mail is
not sent once the notice is acknowledged."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from encompass.adapters.db.tables import MailOutboxRow, Notice
from encompass.adapters.smtp import SmtpSender
from encompass.bootstrap import Container, bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.domain.status import NoticeStatus
from encompass.services.receiving.alert_mail import MAX_ATTEMPTS, relay_mail
from encompass.services.scheduling.notices import transition
from tests.integration.delivery_fixtures import add_incident, add_setting, own_database

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)


@dataclass
class Refusing:
    """An SMTP server that answers each recipient by the start of its address."""

    port: int = 0
    delivered: list[str] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("gone"):
            return "550 no such mailbox"
        if address.startswith("busy"):
            return "451 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.delivered.extend(envelope.rcpt_tos)
        return "250 OK"


@asynccontextmanager
async def refusing_server() -> AsyncIterator[Refusing]:
    made = Refusing()
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(made), "127.0.0.1", 0)
    made.port = server.sockets[0].getsockname()[1]
    try:
        yield made
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class Stack:
    container: Container
    smtp: Refusing
    sender: SmtpSender


@pytest.fixture(scope="module")
async def stack(admin_pg_url: str) -> AsyncIterator[Stack]:
    async with own_database(admin_pg_url, "relay") as url, refusing_server() as smtp:
        settings = load_settings(database_url=url, amqp_url="")
        container = await bootstrap(
            settings, clock=Clock(NOW), signing_key=Ed25519PrivateKey.generate()
        )
        sender = SmtpSender(
            host="127.0.0.1",
            port=smtp.port,
            sender="encompass@la.example",
            portal_url="https://e.example",
        )
        try:
            yield Stack(container, smtp, sender)
        finally:
            await container.close()


async def queue(stack: Stack, kind: str, *addresses: str, status: str = "delivered") -> str:
    """A notice in ``status`` with e-mails of ``kind`` pending to ``addresses``."""
    c = stack.container
    setting, _ = await add_setting(c.sessions, people=[("key_adult", None)])
    (notice_id,) = (
        await add_incident(c.sessions, setting_ids=[setting], deliver_at=NOW)
    ).notice_ids
    async with c.sessions.begin() as session:
        notice = await session.get(Notice, notice_id)
        assert notice is not None
        for step in (NoticeStatus.SEALED, NoticeStatus.SENDING, NoticeStatus.DELIVERED):
            if NoticeStatus(notice.status) is not NoticeStatus(status):
                transition(session, notice, step, at=NOW, cause="test")
        for n, address in enumerate(addresses):
            session.add(
                MailOutboxRow(
                    notice_id=notice_id,
                    kind=kind,
                    audience="recipient",
                    recipient_id=f"R{n}",
                    address=address,
                    status="pending",
                    attempts=0,
                    created_at=NOW,
                    next_at=NOW,
                    sent_at=None,
                    detail="",
                )
            )
    return notice_id


async def rows(stack: Stack, notice_id: str) -> dict[str, tuple[str, int]]:
    async with stack.container.sessions() as session:
        return {
            r.address: (r.status, r.attempts)
            for r in await session.scalars(
                select(MailOutboxRow).where(MailOutboxRow.notice_id == notice_id)
            )
        }


async def test_relays_side_by_side_send_each_e_mail_once(stack: Stack) -> None:
    c = stack.container
    addresses = [f"ok{n}@school.example" for n in range(12)]
    notice_id = await queue(stack, "delivery_failed", *addresses)
    sent = await asyncio.gather(
        *(relay_mail(c.sessions, stack.sender, c.clock, limit=5) for _ in range(4))
    )
    while await relay_mail(c.sessions, stack.sender, c.clock, limit=5):
        pass
    assert sum(sent) <= 12
    assert sorted(a for a in stack.smtp.delivered if a in addresses) == sorted(addresses)
    assert set((await rows(stack, notice_id)).values()) == {("sent", 1)}


async def test_a_refusal_is_final_and_a_busy_server_is_tried_again_then_given_up(
    stack: Stack,
) -> None:
    c = stack.container
    c.clock.set(NOW)
    notice_id = await queue(stack, "delivery_failed", "gone@x.example", "busy@x.example")
    await relay_mail(c.sessions, stack.sender, c.clock)
    assert await rows(stack, notice_id) == {
        "gone@x.example": ("failed", 1),
        "busy@x.example": ("pending", 1),
    }
    # Not again before its time
    await relay_mail(c.sessions, stack.sender, c.clock)
    assert (await rows(stack, notice_id))["busy@x.example"] == ("pending", 1)
    for _ in range(MAX_ATTEMPTS):
        c.clock.advance(timedelta(minutes=20))
        await relay_mail(c.sessions, stack.sender, c.clock)
    assert (await rows(stack, notice_id))["busy@x.example"] == ("failed", MAX_ATTEMPTS)


async def test_without_smtp_skipped_and_an_acknowledged_notice_is_not_chased(
    stack: Stack,
) -> None:
    c = stack.container
    c.clock.set(NOW)
    skipped = await queue(stack, "delivery_failed", "nosmtp@school.example")
    await relay_mail(c.sessions, None, c.clock)
    assert await rows(stack, skipped) == {"nosmtp@school.example": ("skipped", 0)}
    late = await queue(stack, "overdue_deputies", "late@school.example", status="delivered")
    async with c.sessions.begin() as session:
        notice = await session.get(Notice, late)
        assert notice is not None
        transition(session, notice, NoticeStatus.ACKNOWLEDGED, at=NOW, cause="test")
    await relay_mail(c.sessions, stack.sender, c.clock)
    assert await rows(stack, late) == {"late@school.example": ("skipped", 0)}
    assert "late@school.example" not in stack.smtp.delivered
