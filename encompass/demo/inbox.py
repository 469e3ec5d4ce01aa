"""``encompass demo --serve``: after the night's story, a Key Adult's inbox to try by hand.

The demo prints a one-time set-up link for Oakfield's Key Adult and keeps serving. Once a
browser is set up with it, a force reports one more incident naming an Oakfield pupil, and
at its release the notice is sealed to that browser too: it waits in the inbox, to be opened
and acknowledged in the page. Ctrl-C ends the demo.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Final

import aiohttp
from sqlalchemy import select

from encompass.adapters.db.tables import KeyAdultDevice, Notice, SealedEnvelope
from encompass.bootstrap import Container
from encompass.services.access.credentials import add_force
from encompass.services.receiving.devices import invite

Say = Callable[[str], None]
KEY_ADULT: Final = "KA-OAK-1"


def _incident(now_iso: str, run: str) -> dict[str, Any]:
    return {
        "incident_ref": f"DEMO-INBOX-{run}",
        "version": 1,
        "occurred_at": now_iso,
        "location": "the family home",
        "circumstances": "Verbal argument between two adults; neighbours called the police.",
        "police_actions": "Two officers attended; one adult agreed to stay elsewhere tonight.",
        "officer": {"name": "PC 4521 Evans", "contact": "0300 123 4567 (Safeguarding Hub)"},
        "children": [
            {
                "given_name": "Isla",
                "family_name": "Patel",
                "date_of_birth": "2016-05-11",
                "postcode": "TF3 4QQ",
                "upn": None,
                "gender": None,
                "present": True,
                "where_during": "in the living room with her brother",
                "voice": "Said she was worried about her mum and asked to go to school.",
                "injured": False,
                "school_hint": None,
            }
        ],
    }


async def _poll(check: Callable[[], Any], every: float = 0.5) -> Any:
    while not (found := await check()):  # noqa: ASYNC110 (polls the database)
        await asyncio.sleep(every)
    return found


async def serve_inbox(container: Container, url: str, roles: dict[str, str], say: Say) -> None:
    """Print a set-up link, wait for a browser, send it a notice, serve until Ctrl-C or
    SIGTERM; then return, so the demo cleans up after itself."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    try:
        await _inbox_story(container, url, roles, say)
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        task.uncancel()
        say("Demo stopped.")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _inbox_story(container: Container, url: str, roles: dict[str, str], say: Say) -> None:
    link = await invite(container.sessions, container.clock, KEY_ADULT, actor="system:demo")
    say("")
    say(f"The inbox of {KEY_ADULT} (Oakfield's Key Adult): open this link on this machine")
    say("in Chromium, Firefox or Safari and press Set up this browser:")
    say(f"enrol_url: {link.url(url)}")
    say("Waiting for the browser (Ctrl-C ends the demo)...")

    async def device() -> str | None:
        async with container.sessions() as session:
            return await session.scalar(
                select(KeyAdultDevice.device_id).where(KeyAdultDevice.key_adult_id == KEY_ADULT)
            )

    device_id = await _poll(device)
    say("Browser set up. A force reports one more incident naming an Oakfield pupil...")
    # From now on the person at the browser answers, not the demo's webhook receiver.
    for key in roles:
        roles[key] = "deputy"
    force = await add_force(
        container.sessions, container.clock, f"DEMO{secrets.token_hex(2).upper()}", "Demo"
    )
    occurred = (container.clock.now() - timedelta(hours=2)).isoformat(timespec="seconds")
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {force.token}"}) as client,
        client.post(f"{url}/v1/incidents", json=_incident(occurred, secrets.token_hex(3))) as sent,
    ):
        incident_id = (await sent.json())["incident_id"]

    async def scheduled() -> Notice | None:
        async with container.sessions() as session:
            return await session.scalar(
                select(Notice).where(
                    Notice.incident_id == incident_id, Notice.deliver_at.is_not(None)
                )
            )

    notice = await _poll(scheduled)
    assert notice.deliver_at is not None
    if notice.deliver_at > container.clock.now():
        container.clock.set(notice.deliver_at + timedelta(seconds=1))

    async def sealed() -> bool:
        async with container.sessions() as session:
            found = await session.scalar(
                select(SealedEnvelope.envelope_id).where(
                    SealedEnvelope.notice_id == notice.notice_id,
                    SealedEnvelope.device_id == device_id,
                )
            )
        return found is not None

    await _poll(sealed)
    say(f"A new notice is waiting: {url}/inbox/notices/{notice.notice_id}")
    say("Open it, then acknowledge it. The demo keeps serving until Ctrl-C.")
