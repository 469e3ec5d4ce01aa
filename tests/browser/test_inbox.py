"""The Key Adult's inbox in a real Chromium, on the real RabbitMQ and PostgreSQL.

An admin invites a Key Adult; the browser sets itself up (WebCrypto keys, non-extractable, in
IndexedDB); a force reports an incident over HTTP, the matcher matches it through RabbitMQ,
the dispatcher seals it at release to every device; the browser opens it in the page (HPKE in
JavaScript, the service's signature checked with WebCrypto) and acknowledges it, signed in the
browser and verified by the service in Python. Every response the server sends during the
test is recorded: none holds the child's details in clear.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, expect
from sqlalchemy import select

from encompass.adapters.db.tables import Acknowledgement, KeyAdultDevice, SealedEnvelope
from encompass.adapters.topology import Topology
from encompass.api.app import create_app
from encompass.bootstrap import Container, bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.demo.directory import write_directory
from encompass.domain.envelope import verify_ack
from encompass.services.access.credentials import add_force
from encompass.services.directory.importer import import_directory
from encompass.services.receiving.device_keys import signing_key
from encompass.services.receiving.devices import invite, revoke_device
from encompass.workers.main import start_workers
from tests.cleanup import delete_topologies
from tests.conftest import RabbitTarget
from tests.receiving_fixtures import AMELIA, own_database, send_due

pytestmark = [pytest.mark.browser, pytest.mark.integration]

NIGHT = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)  # Friday night
TUESDAY = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)  # Oakfield's next open day, after 07:30
# What must never cross the wire in clear: the child's name, date of birth, their words.
SECRETS = ("Amelia", "2015-03-02", "scared", "upstairs bedroom", "Oliver", "2017-07-19")
OLIVER = {
    "given_name": "Oliver",
    "family_name": "Smith",
    "date_of_birth": "2017-07-19",
    "postcode": "TF3 4NT",
}
REPLY = "Not in school today; our DSL will call the family \u2014 Zo\u00eb\u2019s gran."


@dataclass
class Stack:
    container: Container
    url: str
    force: str
    responses: list[tuple[str, bytes]] = field(default_factory=list)


@pytest.fixture
async def stack(admin_pg_url: str, rabbit: RabbitTarget, tmp_path: Path) -> AsyncIterator[Stack]:
    async with own_database(admin_pg_url, "inbox") as url:
        settings = load_settings(
            database_url=url,
            amqp_url=rabbit.url,
            queue_prefix=f"{rabbit.prefix}inbox.",
            signing_key=tmp_path / "service.pem",
        )
        container = await bootstrap(settings, clock=Clock(NIGHT))
        await import_directory(container.sessions, **write_directory(tmp_path / "directory"))
        force = await add_force(
            container.sessions, container.clock, f"P{secrets.token_hex(3).upper()}", "Test"
        )
        app = create_app(container)
        made = Stack(container, "", force.token)

        @web.middleware
        async def record(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            response = await handler(request)
            body = response.body if isinstance(response, web.Response) else None
            made.responses.append(
                (request.path, bytes(body) if isinstance(body, bytes | bytearray) else b"")
            )
            return response

        # Outermost, so error bodies written by the other middlewares are recorded too.
        app.middlewares.insert(0, record)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        made.url = f"http://{host}:{port}"
        consumers = await start_workers(container, ["matcher"])
        try:
            yield made
        finally:
            for consumer in consumers:
                await consumer.cancel()
            await runner.cleanup()
            await container.close()
            await delete_topologies([(rabbit.url, Topology(settings.queue_prefix))])


async def call(stack: Stack, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {stack.force}"}
    async with (
        aiohttp.ClientSession() as client,
        client.request(method, stack.url + path, headers=headers, json=body) as response,
    ):
        return response.status, await response.json()


async def report_incident(stack: Stack, who: dict[str, str] = AMELIA) -> tuple[str, str]:
    """A Friday-night incident naming ``who``, matched to Oakfield: (incident id, notice id)."""
    child = {
        **who,
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
        {
            "incident_ref": f"INBOX-{secrets.token_hex(4)}",
            "version": 1,
            "occurred_at": "2026-11-20T22:10:00+00:00",
            "location": "the family home",
            "circumstances": "Argument between adults; no weapons.",
            "police_actions": "Officers attended; one adult left the address.",
            "officer": {"name": "PC 1234 Jones", "contact": "0300 000 0000"},
            "children": [child],
        },
    )
    assert status == 202, accepted
    incident_id = accepted["incident_id"]
    for _ in range(200):
        _, state = await call(stack, "GET", f"/v1/incidents/{incident_id}")
        if state["children"] and state["children"][0]["notices"]:
            break
        await asyncio.sleep(0.05)
    (notice,) = state["children"][0]["notices"]
    return incident_id, notice["notice_id"]


async def test_a_key_adult_sets_up_a_browser_opens_and_acknowledges_a_notice(
    stack: Stack, browser: Browser, screenshots: Path
) -> None:
    # Given an admin's one-time set-up link for Oakfield's Key Adult
    link = await invite(stack.container.sessions, stack.container.clock, "KA-OAK-1")
    enrol_url = f"{stack.url}/enrol/{link.token}"
    laptop = await browser.new_context()
    page = await laptop.new_page()
    # When the Key Adult opens it and presses "Set up this browser"
    await page.goto(enrol_url)
    await page.get_by_role("button", name="Set up this browser").click()
    # Then the browser is set up and signed in: its inbox is empty so far
    await page.wait_for_url(f"{stack.url}/inbox")
    await expect(page.get_by_role("heading", name="Your notices")).to_be_visible()
    await expect(page.get_by_text("No notices.")).to_be_visible()
    cookies = await laptop.cookies()
    (session,) = [c for c in cookies if c["name"] == "encompass_inbox"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    # and the link cannot be used twice
    assert (await page.goto(enrol_url)) is not None
    await expect(
        page.get_by_role("heading", name="This set-up link cannot be used")
    ).to_be_visible()

    # When a force reports an incident and the notice is released on Tuesday morning
    incident_id, notice_id = await report_incident(stack)
    stack.container.clock.set(TUESDAY)
    await send_due(stack.container)
    async with stack.container.sessions() as db:
        devices = set(
            await db.scalars(
                select(SealedEnvelope.device_id).where(SealedEnvelope.notice_id == notice_id)
            )
        )
        (device,) = await db.scalars(select(KeyAdultDevice))
    # Then it is sealed to every device: the directory key and the browser
    assert "directory" in devices and device.device_id in devices

    # When the Key Adult follows the e-mail's link to the notice
    await page.goto(f"{stack.url}/inbox/notices/{notice_id}")
    item = page.locator(f'li[data-notice="{notice_id}"]')
    await expect(item).to_be_visible()
    # Then it opens in the page, verified, and shows what the Key Adult needs
    await expect(page.get_by_role("heading", name="Amelia Smith")).to_be_focused()
    opened = item.locator(".opened")
    for text in (
        "2 March 2015",
        "upstairs bedroom",
        "said she was scared",
        "Officers attended; one adult left the address.",
        "PC 1234 Jones, 0300 000 0000",
    ):
        await expect(opened).to_contain_text(text)
    assert "Amelia" not in await page.title()
    await page.set_viewport_size({"width": 900, "height": 1400})
    await page.screenshot(path=screenshots / "inbox-notice-opened.png", full_page=True)

    # When they acknowledge "Child absent" with a reply to the police
    await item.get_by_label("Child absent").check()
    await item.get_by_label("Reply to the police (optional)").fill(REPLY)
    await item.get_by_role("button", name="Acknowledge").click()
    await expect(item.get_by_text("Acknowledged: Child absent")).to_be_visible()
    # Then the force sees the acknowledgement and the reply
    _, state = await call(stack, "GET", f"/v1/incidents/{incident_id}")
    (seen,) = state["children"][0]["notices"]
    assert seen["status"] == "acknowledged"
    assert seen["acknowledgement"]["kind"] == "child_absent"
    assert seen["acknowledgement"]["reply"] == REPLY
    # and the signature made in JavaScript verifies in Python with the browser's key
    async with stack.container.sessions() as db:
        (ack,) = await db.scalars(
            select(Acknowledgement).where(Acknowledgement.notice_id == notice_id)
        )
    verify_ack(
        signing_key(device),
        ack.signature,
        notice_id=notice_id,
        envelope_hash=ack.envelope_hash,
        kind="child_absent",
        reply=REPLY,
    )

    # A notice the force withdraws after its release shows as withdrawn
    stack.container.clock.set(NIGHT)
    withdrawn_incident, withdrawn = await report_incident(stack, OLIVER)
    stack.container.clock.set(TUESDAY)
    await send_due(stack.container)
    await page.goto(f"{stack.url}/inbox/notices/{withdrawn}")
    await expect(page.get_by_role("heading", name="Oliver Smith")).to_be_visible()
    status, _ = await call(stack, "POST", f"/v1/incidents/{withdrawn_incident}/withdraw")
    assert status == 200
    await page.goto(f"{stack.url}/inbox")
    retraction = page.locator(f'li[data-notice="{withdrawn}"][data-kind="retraction"]')
    await retraction.get_by_role("button", name="Open retraction").click()
    await expect(retraction.get_by_role("heading", name="Withdrawn: Oliver Smith")).to_be_visible()
    await expect(retraction).to_contain_text("The police withdrew this notice")
    assert await retraction.get_by_role("button", name="Acknowledge").count() == 0

    # Signing out ends the session; signing in again needs only the browser's key
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_text("You are signed out.")).to_be_visible()
    assert (await page.request.get(f"{stack.url}/inbox/api/notices/{notice_id}")).status == 401
    await page.get_by_role("button", name="Sign in with this browser").click()
    await expect(page.locator(f'li[data-notice="{notice_id}"]')).to_contain_text(
        "Acknowledged: child absent"
    )

    # A second browser that was never set up sees nothing
    other = await browser.new_context()
    stranger = await other.new_page()
    await stranger.goto(f"{stack.url}/inbox")
    await expect(stranger.get_by_text("This browser is not set up")).to_be_visible()
    assert await stranger.locator("li.notice").count() == 0
    response = await stranger.request.get(f"{stack.url}/inbox/api/notices/{notice_id}")
    assert response.status == 401

    # A revoked device is refused at once: its session ends and it cannot sign in again
    await revoke_device(stack.container.sessions, stack.container.clock, device.device_id)
    response = await page.request.get(f"{stack.url}/inbox/api/notices/{notice_id}")
    assert response.status == 401
    await page.goto(f"{stack.url}/inbox")
    await expect(page.get_by_text("its access was withdrawn")).to_be_visible()
    assert await page.locator("li.notice").count() == 0
    await other.close()
    await laptop.close()

    # No response during the whole test held the child's details in clear
    assert len(stack.responses) > 10
    leaks = [
        (path, secret)
        for path, body in stack.responses
        for secret in SECRETS
        if secret.encode() in body
    ]
    assert leaks == []
