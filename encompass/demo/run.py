"""``encompass demo``: a simulated night and morning, through the real paths, on whatever
is configured (RabbitMQ and PostgreSQL when set, the embedded defaults otherwise).

It seeds the demo directory, registers a demo force, serves the HTTP API on a free loopback
port, reports the night's incidents to it over HTTP, lets the matcher match and schedule
them, withdraws one, then moves the clock through the morning: at each release time the
dispatcher seals and delivers, and an in-process receiver standing in for the settings
opens, verifies and acknowledges each notice. E-mail goes over real SMTP to an in-process
receiver (aiosmtpd): a Key Adult who receives by e-mail follows the pointer to the portal;
a deputy's broken system makes failed-delivery e-mails; a Key Adult who acknowledges late
makes the overdue e-mails, to the deputy at the day's start and the admin an hour later.
It prints a timeline, each e-mail received, and one line of JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import func, select

from encompass.adapters.data_keys import load_or_create_data_keys
from encompass.adapters.db.tables import (
    Child,
    Incident,
    IncidentVersion,
    MailOutboxRow,
    Notice,
    SettingRow,
)
from encompass.adapters.key_files import load_or_create_signing_key
from encompass.api.app import create_app
from encompass.bootstrap import Container, bootstrap, data_key_path, make_mailer
from encompass.clock import Clock
from encompass.config import Settings, load_settings
from encompass.demo.directory import KEY_ADULTS, write_directory
from encompass.demo.inbox import serve_inbox
from encompass.demo.incidents import night_of_incidents
from encompass.demo.mailbox import DemoMailbox, Mail
from encompass.demo.receiver import DemoReceiver
from encompass.domain.alert_mail import POINTER_SUBJECT
from encompass.domain.calendar import LONDON
from encompass.logging import configure_logging
from encompass.services.access.credentials import add_admin, add_force
from encompass.services.directory.importer import import_directory
from encompass.services.receiving.escalate_overdue import ack_deadline
from encompass.services.receiving.portal import issue_key_adult_credentials
from encompass.services.receiving.sweep_stuck import SweepPolicy, sweep
from encompass.workers.main import start_workers

DEFAULT_NIGHT = datetime.fromisoformat("2026-11-20T23:30:00+00:00")  # a Friday night
Say = Callable[[str], None]
# The nursery's Key Adult receives by e-mail; the Oakfield deputy's system is switched off
# (its deliveries fail); the Oakfield Key Adult leaves their first notice until told.
EMAIL_ONLY = frozenset({"KA-ACORN-1"})
BROKEN_WEBHOOK = frozenset({"KA-OAK-2"})
LATE = frozenset({"KA-OAK-1"})
ADMIN_EMAIL = "coordinator@la.example"


def _local(instant: datetime | None) -> str:
    if instant is None:
        return "-"
    return instant.astimezone(LONDON).strftime("%a %d %b %H:%M %Z")


async def _serve(container: Container) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(create_app(container), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def _until(what: str, check: Callable[[], Any], seconds: float = 60) -> None:
    for _ in range(int(seconds / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the demo waited {seconds:.0f}s for {what}")


async def _seed(container: Container, folder: Path, receiver: DemoReceiver) -> None:
    paths = write_directory(folder, webhook_base=await receiver.start(), email_only=EMAIL_ONLY)
    await import_directory(
        container.sessions,
        settings=paths["settings"],
        calendars=paths["calendars"],
        key_adults=paths["key_adults"],
        pupils=paths["pupils"],
    )
    for key_adult_id, *_ in KEY_ADULTS:
        issued = await issue_key_adult_credentials(
            container.sessions, container.clock, key_adult_id, actor="system:demo"
        )
        receiver.credentials[key_adult_id] = (issued.token, issued.webhook_secret)
    await add_admin(
        container.sessions, container.clock, "Demo coordinator", "all", email=ADMIN_EMAIL
    )


async def _report_night(container: Container, url: str, say: Say) -> list[str]:
    """Report the night's incidents over HTTP; withdraw the last. Returns incident ids."""
    force = await add_force(
        container.sessions,
        container.clock,
        f"DEMO{secrets.token_hex(2).upper()}",
        "Demo Constabulary",
    )
    say(f"night of {_local(container.clock.now())}: force {force.subject_id} reports to {url}")
    ids: list[str] = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {force.token}"}) as client:
        for report in night_of_incidents(container.clock.now(), run=secrets.token_hex(3).upper()):
            async with client.post(f"{url}/v1/incidents", json=report) as response:
                body = await response.json()
                if response.status != 202:
                    raise RuntimeError(f"ingest refused a demo incident: {body}")
            ids.append(body["incident_id"])
            say(
                f"  {_local(datetime.fromisoformat(report['occurred_at']))}  "
                f"{report['incident_ref']}: {len(report['children'])} child(ren) -> 202"
            )

        async def matched() -> bool:
            async with container.sessions() as session:
                pending = await session.scalar(
                    select(func.count())
                    .select_from(IncidentVersion)
                    .where(
                        IncidentVersion.incident_id.in_(ids), IncidentVersion.processed_at.is_(None)
                    )
                )
            return not pending

        await _until("the matcher", matched)
        async with client.post(f"{url}/v1/incidents/{ids[-1]}/withdraw") as response:
            body = await response.json()
        say(
            f"  {_local(container.clock.now())}  the force withdraws the last incident: "
            f"{body.get('cancelled', 0)} unsent notice(s) cancelled"
        )
    return ids


async def _schedule(container: Container, ids: list[str], say: Say) -> list[datetime]:
    """Print each child's match and each notice's release time; return the release times."""
    async with container.sessions() as session:
        names = dict((await session.execute(select(SettingRow.setting_id, SettingRow.name))).all())
        rows = (
            await session.execute(
                select(Incident.incident_ref, Child, Notice)
                .join(IncidentVersion, IncidentVersion.incident_id == Incident.incident_id)
                .join(Child, Child.version_id == IncidentVersion.version_id)
                .outerjoin(Notice, Notice.child_id == Child.child_id)
                .where(Incident.incident_id.in_(ids))
                .order_by(Incident.incident_ref, Child.position)
            )
        ).all()
    say("matched and scheduled:")
    times = set()
    for ref, child, notice in rows:
        if notice is None:
            say(
                f"  {ref} child {child.position + 1}: {child.decision} -> review queue "
                f"({'; '.join(child.reasons[:2])})"
            )
            continue
        say(
            f"  {ref} child {child.position + 1}: {child.decision} -> "
            f"{names.get(notice.setting_id, notice.setting_id)}: {notice.status}"
            + (f", release {_local(notice.deliver_at)}" if notice.deliver_at else "")
        )
        if notice.status == "scheduled" and notice.deliver_at is not None:
            say(f"      why: {notice.release_reason}")
            times.add(notice.deliver_at)
    return sorted(times)


async def _morning(
    container: Container, receiver: DemoReceiver, ids: list[str], times: list[datetime], say: Say
) -> None:
    """Move the clock to each release time and wait until its notices are acknowledged."""
    roles = {ka_id: role for ka_id, _, _, role in KEY_ADULTS}
    for moment in times:
        container.clock.set(moment + timedelta(seconds=1))
        async with container.sessions() as session:
            due = set(
                (
                    await session.scalars(
                        select(Notice.notice_id).where(
                            Notice.incident_id.in_(ids),
                            Notice.deliver_at == moment,
                            Notice.status != "cancelled",
                        )
                    )
                ).all()
            )
        say(f"{_local(moment)}: {len(due)} notice(s) released")
        seen = len(receiver.opened)

        async def answered(due: set[str] = due) -> bool:
            done = receiver.acknowledged | set(receiver.held)
            return due <= done or bool(receiver.problems)

        await _until("the acknowledgements", answered)
        await _mail_settled(container)
        for opened in receiver.opened[seen:]:
            who = "deputy" if roles[opened.key_adult_id] == "deputy" else "Key Adult"
            late = opened.notice_id in receiver.held
            say(
                f"  {opened.key_adult_id} ({who}) opened and verified notice "
                f"{opened.notice_id[:8]} for {opened.setting_id}"
                + (", acknowledged" if who != "deputy" and not late else "")
                + (", but does not acknowledge it yet" if late else "")
            )
        if receiver.held:
            await _overdue(container, receiver, moment, say)
    if receiver.problems:
        raise RuntimeError("; ".join(receiver.problems))


async def _mail_settled(container: Container) -> None:
    """Wait until every e-mail decided so far has been handed to the mail server."""

    async def settled() -> bool:
        async with container.sessions() as session:
            pending = await session.scalar(
                select(func.count())
                .select_from(MailOutboxRow)
                .where(MailOutboxRow.status == "pending")
            )
        return not pending

    await _until("the e-mails", settled)
    await asyncio.sleep(0.2)


async def _overdue(
    container: Container, receiver: DemoReceiver, released: datetime, say: Say
) -> None:
    """Notices still unacknowledged: move the clock to the day's start (deputies are
    e-mailed), then an hour on (the admins), then the Key Adult acknowledges."""
    policy = SweepPolicy()
    async with container.sessions() as session:
        starts = await session.scalar(
            select(SettingRow.day_starts)
            .join(Notice, Notice.setting_id == SettingRow.setting_id)
            .where(Notice.notice_id.in_(list(receiver.held)))
        )
    if starts is None:
        return
    deadline = ack_deadline(released, starts, policy.ack_grace)
    held = list(receiver.held)
    for moment, who, flag in (
        (
            deadline,
            "the day starts: still not acknowledged, the deputies are e-mailed",
            "overdue_at",
        ),
        (
            deadline + policy.admins_after,
            "an hour later: the admins are e-mailed",
            "admins_alerted_at",
        ),
    ):
        container.clock.set(moment + timedelta(seconds=30))
        say(f"{_local(moment)}: {who}")
        await sweep(container.sessions, container.clock, container.signing_key, policy=policy)

        async def flagged(column: str = flag) -> bool:
            # The dispatcher's own sweep may have been first: its e-mails count the same.
            async with container.sessions() as session:
                missing = await session.scalar(
                    select(func.count())
                    .select_from(Notice)
                    .where(Notice.notice_id.in_(held), getattr(Notice, column).is_(None))
                )
            return not missing

        await _until("the escalation", flagged)
        await _mail_settled(container)
    await receiver.release_held()
    say(f"  the Key Adult acknowledges notice(s) {', '.join(n[:8] for n in sorted(held))}")


async def _summary(container: Container, ids: list[str]) -> dict[str, Any]:
    async with container.sessions() as session:
        decisions = list(
            (
                await session.scalars(
                    select(Child.decision)
                    .join(IncidentVersion, IncidentVersion.version_id == Child.version_id)
                    .where(IncidentVersion.incident_id.in_(ids))
                )
            ).all()
        )
        statuses = list(
            (await session.scalars(select(Notice.status).where(Notice.incident_id.in_(ids)))).all()
        )
    live = [s for s in statuses if s != "cancelled"]
    return {
        "incidents": len(ids),
        "children": len(decisions),
        "matched": decisions.count("match"),
        "review": decisions.count("review") + decisions.count("none"),
        "notices": len(live),
        "delivered": sum(s in ("delivered", "acknowledged") for s in live),
        "acknowledged": live.count("acknowledged"),
        "failed": live.count("failed"),
        "cancelled": len(statuses) - len(live),
    }


async def run_demo(*, json_only: bool = False, serve: bool = False) -> dict[str, Any]:
    """Run the demo and return (and print) its summary; with ``serve``, then keep serving
    a Key Adult's inbox until interrupted (``demo/inbox.py``)."""
    say: Say = (lambda _line: None) if json_only else print
    scratch = Path(tempfile.mkdtemp(prefix="encompass-demo-"))
    # The demo's e-mail goes to its own in-process mail server, never to a real one.
    mailbox = DemoMailbox()
    mail: dict[str, Any] = {"smtp_host": "127.0.0.1", "smtp_port": await mailbox.start()}
    settings = load_settings(**mail)
    if "ENCOMPASS_DATABASE_URL" not in os.environ:
        # A fresh embedded database each run, so the demo always tells the same story.
        settings = load_settings(database_url=f"sqlite+aiosqlite:///{scratch}/demo.db", **mail)
    configure_logging(settings.log_format, "warning")
    try:
        return await _run(settings, scratch, mailbox, say, serve=serve)
    finally:
        await mailbox.close()


def _on_mail(receiver: DemoReceiver, say: Say) -> Callable[[Mail], None]:
    addresses = {f"{ka_id.lower()}@settings.example": ka_id for ka_id, *_ in KEY_ADULTS}

    def received(mail: Mail) -> None:
        say(f"  e-mail to {mail.to}: {mail.subject}\n      {mail.link}")
        key_adult_id = addresses.get(mail.to)
        if mail.subject == POINTER_SUBJECT and key_adult_id is not None:
            receiver.follow_pointer(key_adult_id, mail.link)

    return received


async def _run(
    settings: Settings, scratch: Path, mailbox: DemoMailbox, say: Say, *, serve: bool
) -> dict[str, Any]:
    # The demo's service key lives with its scratch files unless one is configured.
    key = load_or_create_signing_key(settings.signing_key or scratch / "service-key.pem")
    # Its data key file likewise (the data at rest of a demo is the demo's own).
    data_key = (
        data_key_path(settings)
        if settings.data_key or settings.signing_key
        else scratch / "data-key"
    )
    container = await bootstrap(
        settings,
        clock=Clock(settings.now or DEFAULT_NIGHT),
        signing_key=key,
        data_keys=load_or_create_data_keys(data_key),
    )
    receiver = DemoReceiver(
        scratch / "directory" / "keys",
        container.clock,
        {ka_id: role for ka_id, _, _, role in KEY_ADULTS},
        service_key=container.signing_key.public_key(),
        broken=set(BROKEN_WEBHOOK),
        hold_first=set(LATE),
    )
    mailbox.on_mail = _on_mail(receiver, say)
    runner = None
    try:
        await _seed(container, scratch / "directory", receiver)
        say(
            f"directory imported: 3 settings, {len(KEY_ADULTS)} Key Adults with fresh keys, "
            f"8 pupils (broker: {container.broker.kind}, database: {settings.database_kind})"
        )
        say(
            f"  {', '.join(sorted(EMAIL_ONLY))} receives by e-mail; the system of "
            f"{', '.join(sorted(BROKEN_WEBHOOK))} (deputy) answers 410 Gone; "
            f"{', '.join(sorted(LATE))} will leave a notice unacknowledged; "
            f"admin e-mail: {ADMIN_EMAIL}"
        )
        runner, url = await _serve(container)
        receiver.api_url = url
        # The e-mails' links point at the demo's own server.
        container.mailer = make_mailer(settings.model_copy(update={"portal_url": url}))
        workers = await start_workers(container, ["all"])
        ids = await _report_night(container, url, say)
        times = await _schedule(container, ids, say)
        await _morning(container, receiver, ids, times, say)
        await _mail_settled(container)
        if serve:
            await serve_inbox(container, url, receiver.roles, print)
        else:
            say(
                "The Key Adult's inbox in a browser: run `make demo DEMO_ARGS=--serve` (or "
                "`encompass demo --serve`); it prints a set-up link and keeps serving."
            )
        for worker in workers:
            await worker.cancel()
        summary = await _summary(container, ids)
    finally:
        await receiver.close()
        if runner is not None:
            await runner.cleanup()
        await container.close()
        # The scratch folder holds the demo Key Adults' private keys: leave nothing behind.
        shutil.rmtree(scratch, ignore_errors=True)
    summary.update(
        broker=container.broker.kind,
        database=settings.database_kind,
        emails=len(mailbox.received),
    )
    print(json.dumps(summary, separators=(",", ":")))
    return summary
