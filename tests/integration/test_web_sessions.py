"""Browser sessions on the real PostgreSQL (and SQLite): opened, found, expired, closed,
revoked; and the cookie and CSRF rules a page relies on, through a real aiohttp app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import WebSessionRow
from encompass.api.app import create_app
from encompass.api.app_keys import CONTAINER
from encompass.api.web_session import (
    CSRF_HEADER,
    clear_session_cookie,
    current_session,
    require_csrf,
    set_session_cookie,
    submitted_csrf,
)
from encompass.bootstrap import bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.services.access.web_sessions import (
    ADMIN,
    KEY_ADULT,
    close_session,
    close_sessions_of,
    open_session,
    session_for_cookie,
)
from encompass.web.render import PAGE_HEADERS, render

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


async def test_a_session_is_found_by_its_cookie_and_only_as_its_kind(
    sessions: async_sessionmaker[AsyncSession], prefix: str
) -> None:
    opened = await open_session(sessions, kind=ADMIN, subject_id=f"{prefix}a", now=NOW)
    found = await session_for_cookie(sessions, opened.cookie, kind=ADMIN, now=NOW)
    assert found == opened.session
    assert found.csrf_token and found.csrf_token != opened.cookie
    assert await session_for_cookie(sessions, opened.cookie, kind=KEY_ADULT, now=NOW) is None
    assert await session_for_cookie(sessions, "not-a-cookie", kind=ADMIN, now=NOW) is None
    assert await session_for_cookie(sessions, "\udcff", kind=ADMIN, now=NOW) is None
    async with sessions() as session:
        stored = (
            await session.scalars(
                select(WebSessionRow.token_hash).where(WebSessionRow.subject_id == f"{prefix}a")
            )
        ).all()
    assert stored and opened.cookie not in stored  # only its hash is kept


async def test_a_session_ends_at_expiry_at_sign_out_and_at_revocation(
    sessions: async_sessionmaker[AsyncSession], prefix: str
) -> None:
    short = await open_session(
        sessions, kind=ADMIN, subject_id=f"{prefix}a", now=NOW, ttl=timedelta(minutes=5)
    )
    later = NOW + timedelta(minutes=5)
    assert await session_for_cookie(sessions, short.cookie, kind=ADMIN, now=later) is None

    signed_out = await open_session(sessions, kind=ADMIN, subject_id=f"{prefix}a", now=NOW)
    await close_session(sessions, signed_out.cookie, now=NOW)
    assert await session_for_cookie(sessions, signed_out.cookie, kind=ADMIN, now=NOW) is None

    laptop = await open_session(
        sessions, kind=KEY_ADULT, subject_id=f"{prefix}k", device_id=f"{prefix}d1", now=NOW
    )
    phone = await open_session(
        sessions, kind=KEY_ADULT, subject_id=f"{prefix}k", device_id=f"{prefix}d2", now=NOW
    )
    async with sessions.begin() as session:
        closed = await close_sessions_of(session, now=NOW, kind=KEY_ADULT, device_id=f"{prefix}d1")
    assert closed == 1
    assert await session_for_cookie(sessions, laptop.cookie, kind=KEY_ADULT, now=NOW) is None
    assert await session_for_cookie(sessions, phone.cookie, kind=KEY_ADULT, now=NOW) is not None

    async with sessions.begin() as session:
        assert await close_sessions_of(session, now=NOW, kind=KEY_ADULT, subject_id=f"{prefix}k")
    assert await session_for_cookie(sessions, phone.cookie, kind=KEY_ADULT, now=NOW) is None
    with pytest.raises(ValueError, match="exactly one"):
        async with sessions.begin() as session:
            await close_sessions_of(session, now=NOW, kind=ADMIN)


async def _sign_in(request: web.Request) -> web.Response:
    container = request.app[CONTAINER]
    opened = await open_session(
        container.sessions, kind=ADMIN, subject_id="admin-1", now=container.clock.now()
    )
    response = web.json_response({"csrf": opened.session.csrf_token})
    set_session_cookie(response, request, ADMIN, opened.cookie, opened.session.expires_at)
    return response


async def _change(request: web.Request) -> web.Response:
    found = await current_session(request, ADMIN)
    if found is None:
        return web.json_response({"signed_in": False}, status=401)
    require_csrf(found, await submitted_csrf(request))
    return render(request, "base.html", title="Changed")


async def _sign_out(request: web.Request) -> web.Response:
    response = web.json_response({"signed_out": True})
    clear_session_cookie(response, ADMIN)
    return response


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    settings = load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'w.db'}", amqp_url="", smtp_host=""
    )
    container = await bootstrap(
        settings, clock=Clock(NOW), signing_key=Ed25519PrivateKey.generate()
    )
    app = create_app(container)
    app.router.add_post("/test/sign-in", _sign_in)
    app.router.add_post("/test/change", _change)
    app.router.add_post("/test/sign-out", _sign_out)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client
    await container.close()


async def test_the_cookie_is_http_only_strict_and_csrf_is_required(
    client: TestClient[web.Request, web.Application],
) -> None:
    signed_in = await client.post("/test/sign-in")
    cookie = signed_in.headers["Set-Cookie"]
    assert "encompass_admin=" in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    csrf = (await signed_in.json())["csrf"]

    refused = await client.post("/test/change")
    assert refused.status == 403
    assert (await refused.json())["error"]["code"] == "csrf_failed"
    wrong = await client.post("/test/change", data={"csrf_token": "x" * 43})
    assert wrong.status == 403

    by_form = await client.post("/test/change", data={"csrf_token": csrf})
    assert by_form.status == 200
    for name, value in PAGE_HEADERS.items():
        assert by_form.headers[name] == value
    assert "script-src 'self'" in by_form.headers["Content-Security-Policy"]
    assert "<title>Changed \u2013 Encompass</title>" in await by_form.text()
    by_header = await client.post("/test/change", headers={CSRF_HEADER: csrf})
    assert by_header.status == 200

    signed_out = await client.post("/test/sign-out")
    assert 'encompass_admin=""' in signed_out.headers["Set-Cookie"]
    client.session.cookie_jar.clear()
    assert (await client.post("/test/change", data={"csrf_token": csrf})).status == 401


async def test_the_stylesheet_is_served_from_the_service(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/static/encompass.css")
    assert response.status == 200
    assert "text/css" in response.headers["Content-Type"]
    missing = await client.get("/static/nothing.js")
    assert missing.status == 404
