"""``encompass demo``: a simulated night, through the real ingest path, on whatever is configured.

It seeds the demo directory, registers a demo force, serves the HTTP API on a free loopback
port, reports the night's incidents to it over HTTP, lets the matcher worker consume them
from the broker, and prints each child's match and each notice's release time, then one
line of JSON summary.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import func, select

from encompass.adapters.db.tables import Child, Incident, IncidentVersion, Notice, SettingRow
from encompass.api.app import create_app
from encompass.bootstrap import Container, bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.demo.directory import write_directory
from encompass.demo.incidents import night_of_incidents
from encompass.domain.calendar import LONDON
from encompass.logging import configure_logging
from encompass.services.credentials import add_force
from encompass.services.directory_import import import_directory
from workers.main import start_workers

DEFAULT_NIGHT = datetime.fromisoformat("2026-11-20T23:30:00+00:00")  # a Friday night


async def _serve(container: Container) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(create_app(container), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def _wait_processed(container: Container, version_ids: list[str]) -> None:
    for _ in range(600):
        async with container.sessions() as session:
            pending = await session.scalar(select(func.count()).select_from(IncidentVersion)
                                           .where(IncidentVersion.version_id.in_(version_ids),
                                                  IncidentVersion.processed_at.is_(None)))
        if not pending:
            return

        await asyncio.sleep(0.05)
    raise RuntimeError("the matcher did not process every incident within 30 seconds")


def _local(instant: datetime | None) -> str:
    if instant is None:
        return "-"
    return instant.astimezone(LONDON).strftime("%a %d %b %H:%M %Z")


async def run_demo(*, json_only: bool = False) -> dict[str, Any]:
    """Run the demo and return (and print) its summary."""
    say: Callable[[str], None] = (lambda _line: None) if json_only else print
    if "ENCOMPASS_DATABASE_URL" not in os.environ:
        # A fresh embedded database each run, so the demo always tells the same story.
        scratch = tempfile.mkdtemp(prefix="encompass-demo-")
        os.environ["ENCOMPASS_DATABASE_URL"] = f"sqlite+aiosqlite:///{scratch}/demo.db"
    settings = load_settings()
    configure_logging(settings.log_format, "warning")
    night = settings.now or DEFAULT_NIGHT
    container = await bootstrap(settings, clock=Clock(night))
    runner = None
    try:
        with tempfile.TemporaryDirectory(prefix="encompass-directory-") as folder:
            paths = write_directory(Path(folder))
            await import_directory(container.sessions, settings=paths["settings"],
                                   calendars=paths["calendars"],
                                   key_adults=paths["key_adults"], pupils=paths["pupils"])
        say(f"directory imported: 3 settings, 5 Key Adults, 8 pupils "
            f"(broker: {container.broker.kind}, database: {settings.database_kind})")
        force = await add_force(container.sessions, container.clock,
                                f"DEMO{secrets.token_hex(2).upper()}", "Demo Constabulary")
        runner, url = await _serve(container)
        consumers = await start_workers(container, ["matcher"])
        say(f"night of {_local(night)}: force {force.subject_id} reports to {url}")
        incidents = night_of_incidents(night, run=secrets.token_hex(3).upper())
        version_ids, incident_ids = [], []
        async with aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {force.token}"}) as client:
            for report in incidents:
                async with client.post(f"{url}/v1/incidents", json=report) as response:
                    body = await response.json()
                    if response.status != 202:
                        raise RuntimeError(f"ingest refused a demo incident: {body}")
                incident_ids.append(body["incident_id"])
                say(f"  {_local(datetime.fromisoformat(report['occurred_at']))}  "
                    f"{report['incident_ref']}: {len(report['children'])} child(ren) -> 202")
        async with container.sessions() as session:
            version_ids = list((await session.scalars(
                select(IncidentVersion.version_id)
                .where(IncidentVersion.incident_id.in_(incident_ids)))).all())
        await _wait_processed(container, version_ids)
        for consumer in consumers:
            await consumer.cancel()
        summary = await _report(container, incident_ids, say)
    finally:
        if runner is not None:
            await runner.cleanup()
        await container.close()
    summary.update(broker=container.broker.kind, database=settings.database_kind)
    print(json.dumps(summary, separators=(",", ":")))
    return summary


async def _report(container: Container, incident_ids: list[str],
                  say: Callable[[str], None]) -> dict[str, Any]:
    async with container.sessions() as session:
        names = dict((await session.execute(select(SettingRow.setting_id,
                                                   SettingRow.name))).tuples().all())
        rows = (await session.execute(
            select(Incident.incident_ref, Child, Notice)
            .join(IncidentVersion, IncidentVersion.incident_id == Incident.incident_id)
            .join(Child, Child.version_id == IncidentVersion.version_id)
            .outerjoin(Notice, Notice.child_id == Child.child_id)
            .where(Incident.incident_id.in_(incident_ids))
            .order_by(Incident.incident_ref, Child.position))).tuples().all()
    say("matched and scheduled:")
    children: dict[str, Child] = {}
    notices: list[Notice] = []
    for ref, child, notice in rows:
        children[child.child_id] = child
        if notice is None:
            say(f"  {ref} child {child.position + 1}: {child.decision} -> review queue "
                f"({'; '.join(child.reasons[:2])})")
            continue
        notices.append(notice)
        say(f"  {ref} child {child.position + 1}: {child.decision} -> "
            f"{names.get(notice.setting_id, notice.setting_id)}: {notice.status}, "
            f"released {_local(notice.deliver_at)} ({notice.recipient})")
        say(f"      why: {notice.release_reason}")
    decisions = [c.decision for c in children.values()]
    return {
        "incidents": len(incident_ids), "children": len(children),
        "matched": decisions.count("match"),
        "review": decisions.count("review") + decisions.count("none"),
        "notices": len(notices),
        "delivered": sum(n.status in ("delivered", "acknowledged") for n in notices),
        "acknowledged": sum(n.status == "acknowledged" for n in notices),
        "failed": sum(n.status == "failed" for n in notices),
    }


