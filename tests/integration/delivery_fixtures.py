"""Shared pieces of the delivery tests: a database of their own, a directory and notices
inserted directly, a loopback webhook receiver and a loopback SMTP server.

Each delivery test module gets its own PostgreSQL database, so its sweeps and clock jumps
never touch another module's notices (the session database is shared by everyone).
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import (
    Child,
    Force,
    Incident,
    IncidentVersion,
    KeyAdultRow,
    Notice,
    SettingRow,
)
from encompass.adapters.key_files import (
    KeyAdultPrivateKeys,
    generate_key_adult_keys,
    public_keys_pem,
)
from encompass.adapters.webhook import WEBHOOK_KEY_PURPOSE, signature_key
from encompass.domain.incident import IncidentReport
from encompass.domain.status import NoticeStatus
from encompass.services.records.at_rest import keys_of, seal_candidates, seal_payload
from encompass.services.scheduling.notices import transition
from tests.databases import scratch_database

# Distinctive values, so a test can prove none of them leaked anywhere.
CHILD = {
    "given_name": "Zephyrine",
    "family_name": "Quillfeather",
    "date_of_birth": "2016-04-05",
    "postcode": "ZZ9 9ZZ",
}
SCHOOL_NAME = "Bramblewood Academy"
SECRET = "whsec_test-secret-for-hmac"


def own_database(admin_pg_url: str, label: str) -> AbstractAsyncContextManager[str]:
    """A fresh PostgreSQL database for one test module, dropped afterwards."""
    return scratch_database(admin_pg_url, f"encompass_dlv_{label}_{uuid.uuid4().hex[:8]}")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A setting's system on loopback: each path answers from its script (then 200)."""

    base: str = ""
    scripts: dict[str, list[int]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    def url(self, path: str, *statuses: int) -> str:
        self.scripts[path] = list(statuses)
        return f"{self.base}/{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        self.received.append(Received(path, dict(request.headers), await request.read()))
        script = self.scripts.get(path, [])
        status = script.pop(0) if script else 200
        if status == 0:  # "hang": longer than the sender's timeout
            await asyncio.sleep(5)
            status = 200
        return web.Response(status=status)


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    made = Receiver()
    app = web.Application()
    app.router.add_post("/{path}", made.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    made.base = f"http://{host}:{port}"
    try:
        yield made
    finally:
        await runner.cleanup()


@dataclass
class Mailbox:
    """What the loopback SMTP server was given: (recipients, raw message bytes)."""

    port: int = 0
    messages: list[tuple[list[str], bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        self.messages.append((list(envelope.rcpt_tos), raw))
        return "250 OK"


@asynccontextmanager
async def smtp_server() -> AsyncIterator[Mailbox]:
    box = Mailbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(box), "127.0.0.1", 0)
    box.port = server.sockets[0].getsockname()[1]
    try:
        yield box
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class Person:
    key_adult_id: str
    keys: KeyAdultPrivateKeys


async def add_setting(
    sessions: async_sessionmaker[AsyncSession],
    *,
    people: list[tuple[str, str | None]],
    day_starts: time = time(8, 45),
    with_secret: bool = True,
) -> tuple[str, list[Person]]:
    """A setting with Key Adults given as (role, webhook_url or None); returns its id and
    the people with their private keys."""
    setting_id = f"S{uuid.uuid4().hex[:10]}"
    made: list[Person] = []
    async with sessions.begin() as session:
        session.add(
            SettingRow(
                setting_id=setting_id,
                name=SCHOOL_NAME,
                kind="school",
                nation="england",
                postcode=CHILD["postcode"],
                day_starts=day_starts,
                day_ends=time(15, 30),
                dispatch_at=time(7, 30),
                calendar_id="weekdays",
                holiday_policy="hold",
            )
        )
        await session.flush()
        for n, (role, webhook) in enumerate(people):
            person = Person(f"{setting_id}-{role}-{n}", generate_key_adult_keys(False))
            row = key_adult_row(setting_id, person, role, webhook)
            if with_secret:
                row.webhook_key_sealed = keys_of(session).seal_secret(
                    signature_key(SECRET), purpose=WEBHOOK_KEY_PURPOSE, subject=person.key_adult_id
                )
            session.add(row)
            made.append(person)
    return setting_id, made


def key_adult_row(setting_id: str, person: Person, role: str, webhook: str | None) -> KeyAdultRow:
    """A Key Adult with no webhook secret (``add_setting`` seals one in when asked)."""
    return KeyAdultRow(
        key_adult_id=person.key_adult_id,
        setting_id=setting_id,
        name="Ms Example Key Adult",
        role=role,
        email=f"{person.key_adult_id.lower()}@settings.example",
        webhook_url=webhook,
        public_key_pem=public_keys_pem(person.keys.public_keys()).decode(),
        token_hash=None,
        webhook_key_sealed=None,
    )


def report_payload(ref: str, occurred_at: datetime) -> str:
    return IncidentReport.model_validate(
        {
            "incident_ref": ref,
            "version": 1,
            "occurred_at": occurred_at.isoformat(),
            "location": "the family home",
            "circumstances": "Argument between adults.",
            "police_actions": "Officers attended; one adult arrested.",
            "officer": {"name": "PC 1234 Example", "contact": "0300 000 0000"},
            "children": [
                {
                    **CHILD,
                    "present": True,
                    "where_during": "upstairs bedroom",
                    "voice": "said she was scared",
                }
            ],
        },
        context={"now": occurred_at + timedelta(hours=1)},
    ).model_dump_json()


@dataclass
class Made:
    incident_id: str
    force_id: str
    notice_ids: list[str]


async def add_incident(
    sessions: async_sessionmaker[AsyncSession],
    *,
    setting_ids: list[str],
    deliver_at: datetime,
    recipient: str = "key_adults",
    later: dict[str, datetime] | None = None,
) -> Made:
    """A force's incident with one child, scheduled at each setting at ``deliver_at`` (or
    ``later[setting_id]``); the notice ids come in the order of ``setting_ids``."""
    force_id = f"F{uuid.uuid4().hex[:8].upper()}"
    incident_id, version_id, child_id = (str(uuid.uuid4()) for _ in range(3))
    occurred = deliver_at - timedelta(hours=9)
    made = Made(incident_id, force_id, [])
    async with sessions.begin() as session:
        session.add(
            Force(
                force_id=force_id,
                name="Test Constabulary",
                token_hash=uuid.uuid4().hex,
                created_at=occurred,
            )
        )
        await session.flush()
        session.add(
            Incident(
                incident_id=incident_id,
                force_id=force_id,
                incident_ref=f"T-{uuid.uuid4().hex[:10]}",
                latest_version=1,
                status="active",
                created_at=occurred,
                updated_at=occurred,
            )
        )
        await session.flush()
        payload = report_payload(f"T-{incident_id[:8]}", occurred)
        sealed = await seal_payload(
            session, incident_id=incident_id, version_id=version_id, payload=payload, now=occurred
        )
        session.add(
            IncidentVersion(
                version_id=version_id,
                incident_id=incident_id,
                version=1,
                payload=sealed,
                payload_sha256=hashlib.sha256(payload.encode()).hexdigest(),
                received_at=occurred,
                queued_at=occurred,
                processed_at=occurred,
            )
        )
        await session.flush()
        session.add(
            Child(
                child_id=child_id,
                version_id=version_id,
                position=0,
                decision="match",
                score=1.0,
                reasons=[],
                candidates=await seal_candidates(
                    session, incident_id=incident_id, child_id=child_id, candidates=[], now=occurred
                ),
                reported_at=occurred,
                resolved_at=None,
                resolved_by=None,
            )
        )
        await session.flush()
        for setting_id in setting_ids:
            notice = Notice(
                notice_id=str(uuid.uuid4()),
                child_id=child_id,
                incident_id=incident_id,
                setting_id=setting_id,
                status="",
                deliver_at=(later or {}).get(setting_id, deliver_at),
                recipient=recipient,
                release_reason="test",
                created_at=occurred,
                updated_at=occurred,
            )
            session.add(notice)
            transition(session, notice, NoticeStatus.SCHEDULED, at=occurred, cause="test")
            made.notice_ids.append(notice.notice_id)
    return made


async def until(check: Callable[[], Awaitable[Any]], *, within: float = 15.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.05)


async def settled_queue(broker: Any, queue: str) -> None:
    """Wait until ``queue`` has no ready message, then a little for in-flight ones."""
    for _ in range(200):
        if await broker.depth(queue) == 0:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)


async def notice_status(sessions: async_sessionmaker[AsyncSession], notice_id: str) -> str:
    async with sessions() as session:
        notice = await session.get(Notice, notice_id)
        assert notice is not None
        return notice.status
