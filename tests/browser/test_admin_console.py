"""An area admin's morning in the console, in a real Chromium, on the real RabbitMQ and
PostgreSQL: sign in, see the overdue notice by its setting's name, resolve a review item
through its form, acknowledge an alert, replay a dead letter, open an incident's timeline,
export notices as CSV. An admin of another area sees none of it; a form posted without
its CSRF token is refused. Screenshots are kept in ``build/screenshots/admin-*.png``."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, expect
from sqlalchemy import select

from encompass.adapters.broker import Message, Poison
from encompass.adapters.db.tables import Alert, Incident, SealedEnvelope
from encompass.api.app import create_app
from encompass.bootstrap import Container, bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.demo.directory import write_directory
from encompass.services.access.credentials import add_admin, add_force
from encompass.services.directory.importer import import_directory
from encompass.services.receiving.escalate_overdue import escalate_overdue
from encompass.workers.runner import run_consumer
from tests.cleanup import delete_topologies
from tests.conftest import RabbitTarget
from tests.receiving_fixtures import (
    AMELIA,
    FREDDIE,
    add_child,
    add_notice,
    own_database,
    send_due,
)

pytestmark = [pytest.mark.browser, pytest.mark.integration]

FRIDAY_NIGHT = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
MONDAY_0705 = datetime(2026, 11, 23, 7, 5, tzinfo=UTC)
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CANDIDATES = [
    {
        "setting_id": "EY200002",
        "score": 0.81,
        "reasons": ["given name: nickname", "date of birth: day and month swapped"],
        "given_name": "Fred",
        "family_name": "Smith",
        "date_of_birth": "2022-02-14",
        "postcode": "TF3 4NT",
    }
]


@dataclass
class Console:
    container: Container
    url: str
    area_admin: str
    other_admin: str
    overdue_notice: str
    review_child: str
    force_id: str
    incident_ref: str
    dead_message: str


@pytest.fixture
async def console(
    admin_pg_url: str, rabbit: RabbitTarget, tmp_path: Path
) -> AsyncIterator[Console]:
    async with own_database(admin_pg_url, "console") as url:
        settings = load_settings(
            database_url=url,
            amqp_url=rabbit.url,
            queue_prefix=f"{rabbit.prefix}console{uuid.uuid4().hex[:6]}.",
            signing_key=tmp_path / "service.pem",
        )
        container = await bootstrap(settings, clock=Clock(FRIDAY_NIGHT))
        try:
            yield await _morning(container, tmp_path)
        finally:
            await container.close()
            await delete_topologies([(rabbit.url, container.broker.topology)])


async def _morning(container: Container, tmp_path: Path) -> Console:
    """Friday night's incidents, and Monday morning in Telford (E06000020): a notice to the
    nursery unacknowledged past the start of its day, a child waiting for review, a
    delivery that went to the dead letters."""
    await import_directory(container.sessions, **write_directory(tmp_path / "directory"))
    force = await add_force(
        container.sessions, container.clock, f"F{secrets.token_hex(3).upper()}", "West Mercia"
    )
    area = await add_admin(container.sessions, container.clock, "Telford coordinator", "E06000020")
    other = await add_admin(container.sessions, container.clock, "Wrexham coordinator", "W06000006")
    placed = await add_child(
        container.sessions, force_id=force.subject_id, reported_at=FRIDAY_NIGHT, child=AMELIA
    )
    notice_id = await add_notice(container.sessions, placed, "EY200002", FRIDAY_NIGHT)
    waiting = await add_child(
        container.sessions,
        force_id=force.subject_id,
        reported_at=FRIDAY_NIGHT,
        child=FREDDIE,
        decision="review",
        score=0.81,
        candidates=CANDIDATES,
        reasons=["names do not agree well enough to be sure"],
    )
    container.clock.set(MONDAY_0705)
    await send_due(container)
    container.clock.set(MONDAY_10)
    await escalate_overdue(
        container.sessions,
        container.clock,
        container.signing_key,
        ack_grace=timedelta(0),
        admins_after=timedelta(0),
    )
    async with container.sessions() as session:
        envelope_id = await session.scalar(
            select(SealedEnvelope.envelope_id).where(SealedEnvelope.notice_id == notice_id)
        )
        incident = await session.get(Incident, placed.incident_id)
    assert envelope_id is not None and incident is not None
    dead_message = await _dead_delivery(container, envelope_id)
    return Console(
        container,
        "",
        area.token,
        other.token,
        notice_id,
        waiting.child_id,
        force.subject_id,
        incident.incident_ref,
        dead_message,
    )


async def _dead_delivery(container: Container, envelope_id: str) -> str:
    """A delivery the worker runner gives up on, dead-lettered by the real broker."""
    message_id = f"delivery-{uuid.uuid4().hex[:8]}"

    async def refuse(_: Message) -> None:
        raise Poison("the setting's webhook answered 410 Gone")

    broker = container.broker
    body = json.dumps({"envelope_id": envelope_id, "channel": "webhook"}).encode()
    await broker.publish("deliveries", body, message_id=message_id)
    consumer = await run_consumer(broker, "deliveries", refuse)
    try:
        for _ in range(100):
            if await broker.depth("deliveries.dead"):
                break
            await asyncio.sleep(0.1)
    finally:
        await consumer.cancel()
    assert await broker.depth("deliveries.dead") == 1
    return message_id


@pytest.fixture
async def served(console: Console) -> AsyncIterator[Console]:
    runner = web.AppRunner(create_app(console.container), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    console.url = f"http://{host}:{port}"
    try:
        yield console
    finally:
        await runner.cleanup()


async def sign_in(page: Page, url: str, token: str) -> None:
    await page.goto(f"{url}/admin/login")
    await page.get_by_label("Token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Today", exact=True)).to_be_visible()


async def test_an_area_admin_works_through_the_morning(
    served: Console, browser: Browser, screenshots: Path
) -> None:
    c = served
    context = await browser.new_context(viewport={"width": 1100, "height": 900})
    page = await context.new_page()
    try:
        await page.goto(f"{c.url}/admin/login")
        await page.screenshot(path=screenshots / "admin-01-login.png")
        # Signs in, and sees the overdue notice by its setting's name and Key Adult
        await sign_in(page, c.url, c.area_admin)
        overdue = page.locator("table").filter(has_text=c.overdue_notice)
        await expect(overdue).to_contain_text("Little Acorns Nursery")
        await expect(overdue).to_contain_text("Ms Key Adult Acorns")
        await expect(page.locator("body")).to_contain_text("Overdue acknowledgements (1)")
        await page.screenshot(path=screenshots / "admin-02-today.png", full_page=True)

        # Resolves the review item through its form
        await page.get_by_role("link", name="Review", exact=True).click()
        item = page.locator(f"#item-{c.review_child}")
        await expect(item).to_contain_text("Freddie")
        await page.screenshot(path=screenshots / "admin-03-review.png", full_page=True)
        await item.get_by_label("Little Acorns Nursery (EY200002)", exact=False).check()
        await item.get_by_role("button", name="Resolve").click()
        await expect(page.get_by_role("status")).to_contain_text("review item was resolved")
        await expect(page.locator(f"#item-{c.review_child}")).to_have_count(0)

        # Acknowledges the overdue alert: who and when are shown
        await page.get_by_role("link", name="Alerts", exact=True).click()
        alert = page.locator("section.alert-item").filter(has_text=c.overdue_notice)
        await expect(alert).to_contain_text("Little Acorns Nursery (EY200002)")
        await alert.get_by_role("button", name="Acknowledge").click()
        await expect(page.get_by_role("status")).to_contain_text("acknowledged")
        alert = page.locator("section.alert-item").filter(has_text=c.overdue_notice)
        await expect(alert).to_contain_text("Acknowledged")
        await expect(alert).to_contain_text("by Telford coordinator")
        await page.screenshot(path=screenshots / "admin-04-alerts.png", full_page=True)

        # Replays the dead letter: it leaves the dead letters for its queue
        await page.get_by_role("link", name="Dead letters").click()
        row = page.locator("tr").filter(has_text=c.dead_message)
        await expect(row).to_contain_text("410 Gone")
        await expect(row).to_contain_text("Little Acorns Nursery")
        await page.screenshot(path=screenshots / "admin-05-dead-letters.png", full_page=True)
        await row.get_by_role("button", name="Replay").click()
        await expect(page.get_by_role("status")).to_contain_text("sent back to its queue")
        await expect(page.locator("tr").filter(has_text=c.dead_message)).to_have_count(0)
        assert await c.container.broker.depth("deliveries") == 1

        # Opens the incident's timeline
        await page.get_by_role("link", name="Incident timeline").click()
        await page.get_by_label("Force code").fill(c.force_id)
        await page.get_by_label("Incident reference").fill(c.incident_ref)
        await page.get_by_role("button", name="Show timeline").click()
        timeline = page.locator("table")
        for step in ("version 1 received", "decision match", "new → scheduled", "→ sending"):
            await expect(timeline).to_contain_text(step)
        await page.screenshot(path=screenshots / "admin-06-timeline.png", full_page=True)

        # Exports the overdue notices as CSV
        await page.get_by_role("link", name="Notices", exact=True).click()
        await page.get_by_label("Overdue").select_option("true")
        await page.get_by_role("button", name="Filter").click()
        await expect(page.locator("table")).to_contain_text("Little Acorns Nursery")
        await page.screenshot(path=screenshots / "admin-07-notices.png", full_page=True)
        async with page.expect_download() as download_info:
            await page.get_by_role("link", name="Export these notices as CSV").click()
        download = await download_info.value
        saved = await download.path()
        csv_text = await asyncio.to_thread(Path(saved).read_text, encoding="utf-8")
        lines = csv_text.strip().splitlines()
        assert lines[0].startswith("notice_id,incident_id,force_id,setting_id,")
        assert len(lines) == 2 and c.overdue_notice in lines[1]
        assert "Little Acorns Nursery" in lines[1] and "Amelia" not in csv_text

        # The same pages are readable on a phone
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.goto(f"{c.url}/admin")
        await page.screenshot(path=screenshots / "admin-08-today-phone.png", full_page=True)
    finally:
        await context.close()
    async with c.container.sessions() as session:
        acknowledged = await session.scalar(
            select(Alert).where(
                Alert.notice_id == c.overdue_notice,
                Alert.audience == "admins",
                Alert.acknowledged_at.is_not(None),
            )
        )
    assert acknowledged is not None and acknowledged.acknowledged_by is not None


async def test_an_admin_of_another_area_sees_none_of_it(
    served: Console, browser: Browser, screenshots: Path
) -> None:
    c = served
    context = await browser.new_context()
    page = await context.new_page()
    try:
        await sign_in(page, c.url, c.other_admin)
        await expect(page.locator("body")).to_contain_text("Overdue acknowledgements (0)")
        await page.screenshot(path=screenshots / "admin-09-other-area.png", full_page=True)
        for path in ("/admin", "/admin/review", "/admin/alerts", "/admin/dead-letters"):
            await page.goto(c.url + path)
            body = await page.locator("main").inner_text()
            for seen in (c.overdue_notice, c.review_child, c.dead_message, "Little Acorns"):
                assert seen not in body, (path, seen)
        await page.goto(f"{c.url}/admin/incidents?force={c.force_id}&ref={c.incident_ref}")
        await expect(page.locator("main")).to_contain_text("No incident with that force")
        await page.goto(f"{c.url}/admin/notices")
        assert c.overdue_notice not in await page.locator("main").inner_text()
        # A form posted without its CSRF token is refused, even from a signed-in browser
        cookies = {k["name"]: k["value"] for k in await context.cookies()}
        async with (
            aiohttp.ClientSession(cookies=cookies) as client,
            client.post(
                f"{c.url}/admin/review/{c.review_child}/resolve",
                data={"choice": "setting:URN100003"},
                allow_redirects=False,
            ) as response,
        ):
            assert response.status == 403
            assert (await response.json())["error"]["code"] == "csrf_failed"
    finally:
        await context.close()
