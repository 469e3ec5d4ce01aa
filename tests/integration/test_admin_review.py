"""Admins on real PostgreSQL: the review queue and its resolutions, notices, the dashboard,
metrics and the urgent release. (No broker traffic here: the embedded one stands by.)"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select

from encompass.adapters.db.tables import Alert, AuditEntry, Child, Incident, Notice
from encompass.adapters.key_files import load_private_key_bundle
from encompass.api.app import create_app
from encompass.bootstrap import Container, bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.demo.directory import write_directory
from encompass.domain.envelope import AckKind, envelope_hash, parse_envelope, sign_ack
from encompass.services.access.credentials import add_admin, add_force
from encompass.services.directory.importer import import_directory
from encompass.services.receiving.acknowledge import acknowledge
from encompass.services.receiving.portal import fetch_envelope, issue_key_adult_credentials
from encompass.services.scheduling.release_now import ReleaseRefused, release_now
from tests.receiving_fixtures import (
    AMELIA,
    NOBODY,
    PERSONAL,
    add_child,
    add_notice,
    own_database,
    send_due,
)

pytestmark = pytest.mark.integration

FRIDAY_NIGHT = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
SATURDAY_MORNING = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # GMT: 10:00 in London
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
class Stack:
    container: Container
    url: str
    force: str
    force_id: str
    admin: str
    area_admin: str
    other_area_admin: str
    key_adult: str
    keys: Path


@pytest.fixture(scope="module")
async def stack(
    admin_pg_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    folder = tmp_path_factory.mktemp("admin")
    async with own_database(admin_pg_url, "admin") as url:
        settings = load_settings(database_url=url, amqp_url="", signing_key=folder / "service.pem")
        container = await bootstrap(settings, clock=Clock(FRIDAY_NIGHT))
        await import_directory(container.sessions, **write_directory(folder / "directory"))
        force = await add_force(
            container.sessions,
            container.clock,
            f"A{secrets.token_hex(3).upper()}",
            "Test Constabulary",
        )
        admin = await add_admin(container.sessions, container.clock, "Coordinator", "all")
        area = await add_admin(container.sessions, container.clock, "Area", "E06000020")
        other = await add_admin(container.sessions, container.clock, "Wrexham", "W06000006")
        key_adult = await issue_key_adult_credentials(
            container.sessions, container.clock, "KA-OAK-1"
        )
        runner = web.AppRunner(create_app(container))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield Stack(
            container,
            f"http://{host}:{port}",
            force.token,
            force.subject_id,
            admin.token,
            area.token,
            other.token,
            key_adult.token,
            folder / "directory" / "keys",
        )
        await runner.cleanup()
        await container.close()


async def call(
    stack: Stack, method: str, path: str, token: str | None = None, body: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token or stack.admin}"} if token != "" else {}
    async with (
        aiohttp.ClientSession() as client,
        client.request(method, stack.url + path, headers=headers, json=body) as response,
    ):
        return response.status, await response.json()


async def queue(stack: Stack) -> dict[str, dict[str, Any]]:
    status, body = await call(stack, "GET", "/v1/admin/review")
    assert status == 200, body
    return {item["id"]: item for item in body["items"]}


async def unplaced(
    stack: Stack, reported_at: datetime, decision: str = "review", child: dict[str, Any] = AMELIA
) -> str:
    placed = await add_child(
        stack.container.sessions,
        force_id=stack.force_id,
        reported_at=reported_at,
        child=child,
        decision=decision,
        score=0.81 if decision == "review" else 0.0,
        candidates=CANDIDATES if decision == "review" else [],
        reasons=["names do not agree well enough to be sure"],
    )
    return placed.child_id


async def test_the_review_queue_shows_candidates_reasons_and_age(stack: Stack) -> None:
    stack.container.clock.set(MONDAY_10)
    child_id = await unplaced(stack, FRIDAY_NIGHT)
    item = (await queue(stack))[child_id]
    assert item["type"] == "child" and item["decision"] == "review"
    assert item["candidates"][0]["setting_id"] == "EY200002"
    assert item["candidates"][0]["reasons"] == CANDIDATES[0]["reasons"]
    assert item["reasons"] == ["names do not agree well enough to be sure"]
    # The person deciding sees what the force reported, to compare with the candidates
    assert item["reported_child"]["given_name"] == "Amelia"
    assert item["age_seconds"] == pytest.approx((MONDAY_10 - FRIDAY_NIGHT).total_seconds(), abs=60)


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/v1/admin/review", "GET"),
        ("/v1/admin/notices", "GET"),
        ("/v1/admin/review/x/resolve", "POST"),
    ],
)
async def test_admin_routes_refuse_other_callers(stack: Stack, path: str, method: str) -> None:
    body = {"setting_id": "EY200002"}
    for token, status_, code in (
        (stack.force, 403, "forbidden"),
        (stack.key_adult, 403, "forbidden"),
        ("", 401, "unauthorised"),
        ("admin_forged", 401, "unauthorised"),
    ):
        status, answer = await call(stack, method, path, token, body)
        assert (status, answer["error"]["code"]) == (status_, code), token


async def test_a_friday_night_child_resolved_on_monday_morning_goes_at_once(stack: Stack) -> None:
    stack.container.clock.set(MONDAY_10)
    child_id = await unplaced(stack, FRIDAY_NIGHT)
    status, done = await call(
        stack, "POST", f"/v1/admin/review/{child_id}/resolve", body={"setting_id": "EY200002"}
    )
    assert status == 200, done
    assert done["type"] == "child" and done["resolution"] == "setting"
    assert done["notice"]["status"] == "scheduled"
    deliver_at = datetime.fromisoformat(done["notice"]["deliver_at"])
    # Monday 07:00 has passed: the rule, from the report, says it should have gone already
    assert abs((deliver_at - MONDAY_10).total_seconds()) < 60
    assert "released at once" in done["notice"]["release_reason"]
    assert child_id not in await queue(stack)
    async with stack.container.sessions() as session:
        child = await session.get(Child, child_id)
        audit = await session.scalar(
            select(AuditEntry).where(
                AuditEntry.subject == f"child:{child_id}", AuditEntry.action == "review.resolved"
            )
        )
    assert child is not None and child.resolved_at is not None
    assert child.resolved_by is not None and child.resolved_by.startswith("admin:")
    assert audit is not None and audit.detail["setting_id"] == "EY200002"


async def test_a_saturday_child_resolved_on_saturday_waits_for_monday(stack: Stack) -> None:
    stack.container.clock.set(datetime(2026, 11, 21, 11, 0, tzinfo=UTC))
    child_id = await unplaced(stack, SATURDAY_MORNING)
    status, done = await call(
        stack, "POST", f"/v1/admin/review/{child_id}/resolve", body={"setting_id": "EY200002"}
    )
    assert status == 200, done
    # The nursery opens on weekdays at 07:00 (GMT in November)
    assert datetime.fromisoformat(done["notice"]["deliver_at"]) == datetime(
        2026, 11, 23, 7, 0, tzinfo=UTC
    )


async def test_a_child_on_no_roll_goes_to_the_local_authority_contact(stack: Stack) -> None:
    stack.container.clock.set(MONDAY_10)
    placed = await add_child(
        stack.container.sessions,
        force_id=stack.force_id,
        reported_at=FRIDAY_NIGHT,
        child=NOBODY,
        decision="none",
        score=0.0,
    )
    assert (await queue(stack))[placed.child_id]["decision"] == "none"
    path = f"/v1/admin/review/{placed.child_id}/resolve"
    # An admin of all areas names the authority; one without a contact is refused
    status, answer = await call(stack, "POST", path, body={"local_authority_contact": True})
    assert (status, answer["error"]["code"]) == (400, "bad_request")
    status, answer = await call(
        stack, "POST", path, body={"local_authority_contact": True, "la_code": "W06000006"}
    )
    assert (status, answer["error"]["code"]) == (404, "no_local_authority_contact")
    status, done = await call(
        stack, "POST", path, body={"local_authority_contact": True, "la_code": "E06000020"}
    )
    assert status == 200, done
    assert done["resolution"] == "local_authority_contact"
    # The authority's contact receives a notice like any setting, by the release rule
    assert done["notice"]["setting_id"] == "LA-E06000020"
    assert done["notice"]["status"] == "scheduled"
    assert (
        abs((datetime.fromisoformat(done["notice"]["deliver_at"]) - MONDAY_10).total_seconds()) < 60
    )
    await send_due(stack.container)
    served = await fetch_envelope(
        stack.container.sessions, stack.container.clock, "KA-TWC-1", done["notice"]["notice_id"]
    )
    assert served is not None
    status, state = await call(stack, "GET", f"/v1/incidents/{placed.incident_id}", stack.force)
    assert state["children"][0]["resolution"] == "local_authority_contact"
    assert state["children"][0]["resolved"] is True


async def test_resolutions_that_cannot_be_made_are_refused(stack: Stack) -> None:
    child_id = await unplaced(stack, FRIDAY_NIGHT)
    path = f"/v1/admin/review/{child_id}/resolve"
    for body, status_, code in (
        ({}, 400, "bad_request"),
        ({"setting_id": "EY200002", "local_authority_contact": True}, 400, "bad_request"),
        ({"setting_id": "NOPE"}, 404, "unknown_setting"),
        ({"setting": "EY200002"}, 422, "invalid_resolution"),
    ):
        status, answer = await call(stack, "POST", path, body=body)
        assert (status, answer["error"]["code"]) == (status_, code), body
    assert (await call(stack, "POST", path, body={"setting_id": "EY200002"}))[0] == 200
    status, answer = await call(stack, "POST", path, body={"setting_id": "EY200002"})
    assert status == 409 and answer["error"]["code"] == "already_resolved"
    status, answer = await call(
        stack, "POST", "/v1/admin/review/nothing/resolve", body={"setting_id": "EY200002"}
    )
    assert status == 404 and answer["error"]["code"] == "not_found"


async def test_a_returned_notice_is_resolved_to_another_setting(stack: Stack) -> None:
    # Given a notice the school received and answered "not our pupil"
    container = stack.container
    container.clock.set(FRIDAY_NIGHT)
    placed = await add_child(container.sessions, force_id=stack.force_id, reported_at=FRIDAY_NIGHT)
    notice_id = await add_notice(container.sessions, placed, "URN100001", FRIDAY_NIGHT)
    container.clock.set(datetime(2026, 11, 24, 8, 0, tzinfo=UTC))
    await send_due(container)
    served = await fetch_envelope(container.sessions, container.clock, "KA-OAK-1", notice_id)
    assert served is not None
    digest = envelope_hash(parse_envelope(served.envelope))
    keys = load_private_key_bundle((stack.keys / "KA-OAK-1.private.pem").read_bytes())
    await acknowledge(
        container.sessions,
        container.clock,
        "KA-OAK-1",
        notice_id=notice_id,
        kind=AckKind.NOT_OUR_PUPIL,
        reply=None,
        envelope_hash=digest,
        signature=sign_ack(
            keys.signing,
            notice_id=notice_id,
            envelope_hash=digest,
            kind="not_our_pupil",
            reply=None,
        ),
    )
    path = f"/v1/admin/review/{notice_id}/resolve"
    # Sending it to the same school again is refused: they have it and said no
    status, answer = await call(stack, "POST", path, body={"setting_id": "URN100001"})
    assert status == 409 and answer["error"]["code"] == "already_sent_there"
    # When the admin names the nursery instead
    status, done = await call(stack, "POST", path, body={"setting_id": "EY200002"})
    assert status == 200 and done["type"] == "notice", done
    # Then the school's notice is closed and a new one for the nursery goes at once
    async with container.sessions() as session:
        old = await session.get(Notice, notice_id)
        new = await session.get(Notice, done["notice"]["notice_id"])
    assert old is not None and old.status == "cancelled"
    assert new is not None and new.status == "scheduled" and new.setting_id == "EY200002"
    # Tuesday 08:00: the nursery's Monday 07:00 has passed, so at once
    assert new.deliver_at is not None
    assert abs((new.deliver_at - container.clock.now()).total_seconds()) < 60


async def test_admins_list_notices_without_child_data(stack: Stack) -> None:
    stack.container.clock.set(FRIDAY_NIGHT)
    placed = await add_child(
        stack.container.sessions, force_id=stack.force_id, reported_at=FRIDAY_NIGHT
    )
    notice_id = await add_notice(stack.container.sessions, placed, "EY200002", FRIDAY_NIGHT)
    status, body = await call(stack, "GET", "/v1/admin/notices?status=scheduled")
    assert status == 200
    (row,) = [n for n in body["notices"] if n["notice_id"] == notice_id]
    assert row["setting_name"] == "Little Acorns Nursery" and row["overdue"] is False
    assert row["deliver_at"] == "2026-11-23T07:00:00+00:00"
    assert all(n["status"] == "scheduled" for n in body["notices"])
    for value in PERSONAL:
        assert value not in str(body)
    status, body = await call(stack, "GET", "/v1/admin/notices?status=lost")
    assert status == 400 and body["error"]["code"] == "bad_request"


async def signed_in_browser(stack: Stack, token: str) -> aiohttp.ClientSession:
    """A client that signed in at /admin/login, as a browser does (cookies kept)."""
    client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with client.get(f"{stack.url}/admin/login") as response:
        form = await response.text()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert csrf is not None
    async with client.post(
        f"{stack.url}/admin/login",
        data={"token": token, "csrf_token": csrf.group(1)},
        allow_redirects=False,
    ) as response:
        assert response.status == 303, await response.text()
    return client


async def test_the_console_escapes_everything_and_names_no_child(stack: Stack) -> None:
    async with stack.container.sessions.begin() as session:
        session.add(
            Alert(
                notice_id=None,
                kind="test",
                audience="admins",
                message="<script>alert(1)</script>",
                created_at=FRIDAY_NIGHT,
            )
        )
    await unplaced(stack, FRIDAY_NIGHT)
    client = await signed_in_browser(stack, stack.admin)
    async with client:
        async with client.get(f"{stack.url}/admin") as response:
            assert response.status == 200 and response.content_type == "text/html"
            assert response.headers["Referrer-Policy"] == "no-referrer"
            page = await response.text()
        assert "Waiting for review" in page and "Notices by status" in page
        for value in PERSONAL:
            assert value not in page
        async with client.get(f"{stack.url}/admin/alerts") as response:
            page = await response.text()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    # A token in the URL signs nobody in any more
    async with (
        aiohttp.ClientSession() as client,
        client.get(
            f"{stack.url}/admin", params={"token": stack.admin}, allow_redirects=False
        ) as response,
    ):
        assert response.status == 303 and response.headers["Location"] == "/admin/login"


async def test_a_form_without_its_csrf_token_is_refused(stack: Stack) -> None:
    child_id = await unplaced(stack, FRIDAY_NIGHT)
    client = await signed_in_browser(stack, stack.admin)
    async with client:
        async with client.post(
            f"{stack.url}/admin/review/{child_id}/resolve",
            data={"choice": "setting:EY200002"},
            allow_redirects=False,
        ) as response:
            assert response.status == 403
            assert (await response.json())["error"]["code"] == "csrf_failed"
        async with client.post(
            f"{stack.url}/admin/review/{child_id}/resolve",
            data={"choice": "setting:EY200002", "csrf_token": "forged"},
            allow_redirects=False,
        ) as response:
            assert response.status == 403
    assert child_id in await queue(stack)


async def test_sign_out_ends_the_session(stack: Stack) -> None:
    client = await signed_in_browser(stack, stack.admin)
    async with client:
        async with client.get(f"{stack.url}/admin") as response:
            page = await response.text()
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert csrf is not None
        (cookie,) = [c.value for c in client.cookie_jar if c.key == "encompass_admin"]
        async with client.post(
            f"{stack.url}/admin/logout", data={"csrf_token": csrf.group(1)}, allow_redirects=False
        ) as response:
            assert response.status == 303
    # The old cookie, replayed, no longer opens a page
    async with (
        aiohttp.ClientSession(cookies={"encompass_admin": cookie}) as other,
        other.get(f"{stack.url}/admin", allow_redirects=False) as response,
    ):
        assert response.status == 303


async def test_a_wrong_token_does_not_sign_in(stack: Stack) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        async with client.get(f"{stack.url}/admin/login") as response:
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', await response.text())
        assert csrf is not None
        async with client.post(
            f"{stack.url}/admin/login",
            data={"token": "admin_wrong", "csrf_token": csrf.group(1)},
            allow_redirects=False,
        ) as response:
            assert response.status == 401
            assert "not valid" in await response.text()
        # Nor does a sign-in posted without the form's token (from another site)
        async with client.post(
            f"{stack.url}/admin/login", data={"token": stack.admin}, allow_redirects=False
        ) as response:
            assert response.status == 403


async def test_the_metrics_show_the_age_of_the_oldest_review_item(stack: Stack) -> None:
    stack.container.clock.set(MONDAY_10)
    await unplaced(stack, FRIDAY_NIGHT)
    async with aiohttp.ClientSession() as client, client.get(f"{stack.url}/metrics") as response:
        text = await response.text()
    (line,) = [
        x for x in text.splitlines() if x.startswith("encompass_review_queue_oldest_age_seconds ")
    ]
    assert float(line.split()[1]) >= (MONDAY_10 - FRIDAY_NIGHT).total_seconds() - 60


async def test_an_urgent_release_sends_a_held_notice_now(stack: Stack) -> None:
    container = stack.container
    container.clock.set(FRIDAY_NIGHT)
    placed = await add_child(container.sessions, force_id=stack.force_id, reported_at=FRIDAY_NIGHT)
    notice_id = await add_notice(container.sessions, placed, "URN100001", FRIDAY_NIGHT)
    done = await release_now(container.sessions, container.clock, notice_id, actor="admin:cli")
    assert done.was_due_at == datetime(2026, 11, 24, 7, 30, tzinfo=UTC)
    assert abs((done.deliver_at - container.clock.now()).total_seconds()) < 60
    async with container.sessions() as session:
        entry = await session.scalar(
            select(AuditEntry).where(
                AuditEntry.subject == f"notice:{notice_id}",
                AuditEntry.action == "notice.released_now",
            )
        )
    assert entry is not None and entry.actor == "admin:cli"
    with pytest.raises(ReleaseRefused, match="already due"):
        await release_now(container.sessions, container.clock, notice_id, actor="admin:cli")
    await send_due(container)
    with pytest.raises(ReleaseRefused, match="is sending; only a scheduled"):
        await release_now(container.sessions, container.clock, notice_id, actor="admin:cli")
    with pytest.raises(ReleaseRefused, match="no notice"):
        await release_now(container.sessions, container.clock, "missing", actor="admin:cli")


async def test_an_admin_of_another_area_sees_and_acts_on_nothing(stack: Stack) -> None:
    # Given, in Telford (E06000020), a child in review and a notice to the nursery
    stack.container.clock.set(MONDAY_10)
    child_id = await unplaced(stack, FRIDAY_NIGHT)
    placed = await add_child(
        stack.container.sessions, force_id=stack.force_id, reported_at=FRIDAY_NIGHT
    )
    notice_id = await add_notice(stack.container.sessions, placed, "EY200002", FRIDAY_NIGHT)
    async with stack.container.sessions.begin() as session:
        session.add(
            Alert(
                notice_id=notice_id,
                kind="test",
                audience="admins",
                message="area alert",
                created_at=FRIDAY_NIGHT,
            )
        )
    # The Telford admin sees them
    status, body = await call(stack, "GET", "/v1/admin/review", stack.area_admin)
    assert status == 200 and child_id in {i["id"] for i in body["items"]}
    status, body = await call(
        stack, "GET", "/v1/admin/notices?setting_id=EY200002", stack.area_admin
    )
    assert notice_id in {n["notice_id"] for n in body["notices"]}
    assert {n["setting_id"] for n in body["notices"]} == {"EY200002"}
    # An admin of Wrexham (W06000006) sees none of it, on every route
    other = stack.other_area_admin
    status, body = await call(stack, "GET", "/v1/admin/review", other)
    assert status == 200 and child_id not in {i["id"] for i in body["items"]}
    for query in ("", "?setting_id=EY200002", "?status=scheduled"):
        status, body = await call(stack, "GET", "/v1/admin/notices" + query, other)
        assert status == 200 and notice_id not in {n["notice_id"] for n in body["notices"]}
        assert all(n["setting_id"] == "URN100003" for n in body["notices"])
    # and cannot act on it, nor send a child of its own to another area's setting
    status, body = await call(
        stack, "POST", f"/v1/admin/review/{child_id}/resolve", other, {"setting_id": "URN100003"}
    )
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = await call(
        stack,
        "POST",
        f"/v1/admin/review/{child_id}/resolve",
        stack.area_admin,
        {"setting_id": "URN100003"},
    )
    assert (status, body["error"]["code"]) == (404, "unknown_setting")
    client = await signed_in_browser(stack, other)
    async with client:
        for path in ("/admin", "/admin/review", "/admin/alerts", "/admin/notices"):
            async with client.get(stack.url + path) as response:
                assert response.status == 200, path
                page = await response.text()
            assert notice_id not in page and child_id not in page and "area alert" not in page
        async with client.get(f"{stack.url}/admin/notices.csv") as response:
            assert notice_id not in await response.text()
    status, body = await call(stack, "GET", "/v1/admin/alerts", other)
    assert status == 200 and "area alert" not in str(body)
    status, body = await call(stack, "GET", "/v1/admin/alerts", stack.area_admin)
    assert "area alert" in str(body) and body["total"] == len(body["alerts"])
    status, body = await call(stack, "GET", "/v1/admin/today", other)
    assert status == 200 and notice_id not in str(body) and child_id not in str(body)
    assert body["settings_without_openable_device"] == []  # Ysgol Glan Afon has its Key Adult
    async with stack.container.sessions() as session:
        alert_id = await session.scalar(select(Alert.alert_id).where(Alert.message == "area alert"))
    for action in ("acknowledge", "resolve"):
        status, body = await call(stack, "POST", f"/v1/admin/alerts/{alert_id}/{action}", other)
        assert (status, body["error"]["code"]) == (404, "not_found")
    async with stack.container.sessions() as session:
        incident = await session.get(Incident, placed.incident_id)
    assert incident is not None
    timeline = (
        f"/v1/admin/incidents/timeline?force={stack.force_id}&incident_ref={incident.incident_ref}"
    )
    status, body = await call(stack, "GET", timeline, stack.area_admin)
    assert status == 200 and notice_id in {e["subject"] for e in body["events"]}
    status, body = await call(stack, "GET", timeline, other)
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = await call(stack, "GET", "/v1/admin/dead-letters", other)
    assert status == 200 and set(body["queues"]) == {"deliveries"}


async def test_the_metrics_count_what_the_workers_did(stack: Stack) -> None:
    # Given a notice released on Tuesday at 07:30, fetched at 08:00 and acknowledged at 08:10
    container = stack.container
    container.clock.set(FRIDAY_NIGHT)
    placed = await add_child(container.sessions, force_id=stack.force_id, reported_at=FRIDAY_NIGHT)
    notice_id = await add_notice(container.sessions, placed, "URN100001", FRIDAY_NIGHT)
    container.clock.set(datetime(2026, 11, 24, 8, 0, tzinfo=UTC))
    await send_due(container)
    served = await fetch_envelope(container.sessions, container.clock, "KA-OAK-1", notice_id)
    assert served is not None
    digest = envelope_hash(parse_envelope(served.envelope))
    keys = load_private_key_bundle((stack.keys / "KA-OAK-1.private.pem").read_bytes())
    container.clock.set(datetime(2026, 11, 24, 8, 10, tzinfo=UTC))
    await acknowledge(
        container.sessions,
        container.clock,
        "KA-OAK-1",
        notice_id=notice_id,
        kind=AckKind.RECEIVED,
        reply=None,
        envelope_hash=digest,
        signature=sign_ack(
            keys.signing, notice_id=notice_id, envelope_hash=digest, kind="received", reply=None
        ),
    )
    # When Prometheus scrapes
    async with aiohttp.ClientSession() as client, client.get(f"{stack.url}/metrics") as response:
        text = await response.text()
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("encompass_") and " " in line
    }
    # Then the figures the workers wrote are there
    assert values["encompass_incidents_received_total"] >= 1
    assert values['encompass_notices{status="acknowledged"}'] >= 1
    assert "encompass_notices_overdue" in values
    assert 'encompass_dead_letters{queue="deliveries"}' in values
    # 30 minutes from release to delivery, 40 to the acknowledgement: under the hour's bucket
    assert values['encompass_release_to_delivery_seconds_bucket{le="3600.0"}'] >= 1
    assert values['encompass_release_to_ack_seconds_bucket{le="3600.0"}'] >= 1
    assert values["encompass_release_to_ack_seconds_sum"] >= 40 * 60


async def test_a_session_expires_after_a_working_day(stack: Stack) -> None:
    stack.container.clock.set(MONDAY_10)
    client = await signed_in_browser(stack, stack.area_admin)
    async with client:
        async with client.get(f"{stack.url}/admin", allow_redirects=False) as response:
            assert response.status == 200
        stack.container.clock.set(MONDAY_10 + timedelta(hours=8, minutes=1))
        async with client.get(f"{stack.url}/admin", allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == "/admin/login"
