"""The door on the real PostgreSQL and RabbitMQ: hostile bodies, content types, the rate
limits, failed sign-ins, revocation, and the headers every response carries (or not)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy
from sqlalchemy import select
from structlog.testing import capture_logs

from encompass.adapters.broker import Message
from encompass.adapters.db.tables import AuditEntry
from encompass.adapters.topology import Topology
from encompass.api.app import create_app
from encompass.api.app_keys import METRICS
from encompass.bootstrap import Container, bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.demo.directory import write_directory
from encompass.services.access.credentials import (
    CredentialError,
    add_admin,
    add_force,
    revoke_admin,
    revoke_force,
)
from encompass.services.directory.importer import import_directory
from encompass.services.intake.from_amqp import Refused, force_user, intake
from encompass.services.receiving.portal import issue_key_adult_credentials
from encompass.services.records.audit import verify_chain
from tests.cleanup import delete_topologies
from tests.conftest import RabbitTarget
from tests.receiving_fixtures import own_database

pytestmark = pytest.mark.integration

NIGHT = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
JSON = {"Content-Type": "application/json"}


@dataclass
class Door:
    container: Container
    app: web.Application
    url: str
    tokens: dict[str, str]
    force_id: str

    async def call(
        self,
        method: str,
        path: str,
        *,
        role: str | None = None,
        token: str | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, CIMultiDictProxy[str]]:
        sent = dict(headers or {})
        if role or token:
            sent["Authorization"] = f"Bearer {token or self.tokens[role or '']}"
        async with (
            aiohttp.ClientSession() as client,
            client.request(method, self.url + path, data=body, headers=sent) as response,
        ):
            raw = await response.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw.decode("utf-8", "replace")
            return response.status, parsed, response.headers


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture(scope="module")
async def door(
    admin_pg_url: str, rabbit: RabbitTarget, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Door]:
    folder: Path = tmp_path_factory.mktemp("door")
    prefix = f"{rabbit.prefix}door.{secrets.token_hex(3)}."
    async with own_database(admin_pg_url, "door") as url:
        settings = load_settings(
            database_url=url,
            amqp_url=rabbit.url,
            queue_prefix=prefix,
            signing_key=folder / "service.pem",
        )
        container = await bootstrap(settings, clock=Clock(NIGHT))
        await import_directory(container.sessions, **write_directory(folder / "directory"))
        force = await add_force(container.sessions, container.clock, "DOOR", "Door Police")
        admin = await add_admin(container.sessions, container.clock, "Door Admin", "all")
        key_adult = await issue_key_adult_credentials(
            container.sessions, container.clock, "KA-OAK-1"
        )
        app = create_app(container)
        runner, base = await _serve(app)
        yield Door(
            container,
            app,
            base,
            {"force": force.token, "admin": admin.token, "key_adult": key_adult.token},
            force.subject_id,
        )
        await runner.cleanup()
        await container.close()
        await delete_topologies([(rabbit.url, Topology(prefix))])


# Each hostile body and the code it must get: never a 5xx, never a stack trace.
HOSTILE: list[tuple[str, bytes, str]] = [
    ("nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000, "too_deep"),
    ("objects nested 40,000 deep", b'{"a":' * 40_000 + b"1" + b"}" * 40_000, "too_deep"),
    ("a 5,000-digit integer", b'{"version": ' + b"9" * 5_000 + b"}", "number_too_large"),
    ("a 5,000-digit fraction", b'{"version": 0.' + b"1" * 5_000 + b"}", "number_too_large"),
    ("a float out of range", b'{"version": 1e999}', "number_too_large"),
    ("NaN", b'{"version": NaN}', "invalid_json"),
    ("a duplicate key", b'{"version": 1, "version": 2}', "duplicate_key"),
    ("an escaped NUL", b'{"location": "home\\u0000"}', "invalid_characters"),
    ("a raw NUL byte", b'{"location": "home\x00"}', "invalid_json"),
    ("a lone surrogate", b'{"location": "\\ud800"}', "invalid_characters"),
    ("a surrogate key", b'{"\\udfff": 1}', "invalid_characters"),
    ("a NUL in an array", b'[["\\u0000"]]', "invalid_characters"),
    ("not UTF-8", b'{"location": "\xff\xfe"}', "invalid_json"),
    ("not JSON", b"{not json", "invalid_json"),
]
POSTS = [
    ("force", "/v1/incidents"),
    ("key_adult", "/v1/notices/n-1/ack"),
    ("admin", "/v1/admin/review/r-1/resolve"),
]


@pytest.mark.parametrize(("role", "path"), POSTS)
@pytest.mark.parametrize(("what", "body", "code"), HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_hostile_bodies_are_refused_with_a_clear_code(
    door: Door, role: str, path: str, what: str, body: bytes, code: str
) -> None:
    status, answer, _ = await door.call("POST", path, role=role, body=body, headers=JSON)
    assert status == 400, (what, answer)
    assert answer["error"]["code"] == code
    assert "Traceback" not in json.dumps(answer)


@pytest.mark.parametrize(("role", "path"), POSTS)
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1", None],
)
async def test_a_body_not_declared_json_is_415(
    door: Door, role: str, path: str, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    status, answer, _ = await door.call(
        "POST", path, role=role, body=b'{"version": 1}', headers=headers
    )
    assert status == 415 and answer["error"]["code"] == "unsupported_media_type"


async def test_a_declared_charset_of_utf8_is_accepted(door: Door) -> None:
    status, answer, _ = await door.call(
        "POST",
        "/v1/admin/review/r-1/resolve",
        role="admin",
        body=b'{"setting_id": "X"}',
        headers={"Content-Type": "application/json; charset=UTF-8"},
    )
    assert status == 404 and answer["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/incidents/%00",
        "/v1/incidents/a%00b",
        "/v1/incidents/%ED%A0%80",
        "/v1/notices?limit=%00",
        "/v1/admin/notices?status=%ED%A0%80",
    ],
)
async def test_nul_and_surrogates_in_the_url_are_4xx(door: Door, path: str) -> None:
    for role in ("force", "key_adult", "admin"):
        status, answer, _ = await door.call("GET", path, role=role)
        assert 400 <= status < 500, (path, role, answer)
        assert set(answer["error"]) >= {"code", "message"}


@pytest.mark.parametrize(
    ("role", "path"), [("key_adult", "/v1/notices"), ("admin", "/v1/admin/notices")]
)
@pytest.mark.parametrize("limit", ["%C2%B2", "0" * 5_000, "9" * 5_000, "-1", "1.5", "%00"])
async def test_odd_limits_are_400(door: Door, role: str, path: str, limit: str) -> None:
    status, answer, _ = await door.call("GET", f"{path}?limit={limit}", role=role)
    assert status == 400, answer


async def _raw(door: Door, request: bytes) -> bytes:
    """Send ``request`` as bytes, as no well-behaved client would; the whole answer."""
    host, port = door.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    return response


@pytest.mark.parametrize("token", [b"\xff\xfe", "caf\u00e9".encode(), b"force_\x80abc"])
async def test_a_token_that_is_not_ascii_is_401(door: Door, token: bytes) -> None:
    # Raw bytes on the wire: aiohttp hands undecodable header bytes on as surrogates.
    response = await _raw(
        door,
        b"GET /v1/incidents/x HTTP/1.1\r\nHost: door\r\n"
        b"Connection: close\r\nAuthorization: Bearer " + token + b"\r\n\r\n",
    )
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401"), response[:300]
    assert json.loads(body)["error"]["code"] == "unauthorised"


async def test_a_405_keeps_its_allow_header_and_is_json(door: Door) -> None:
    status, answer, headers = await door.call("GET", "/v1/incidents", role="force")
    assert status == 405 and answer["error"]["code"] == "method_not_allowed"
    assert headers["Allow"] == "POST"
    status, _, headers = await door.call("DELETE", "/v1/notices", role="key_adult")
    assert status == 405 and "GET" in headers["Allow"]


async def test_no_response_names_the_server_software_or_its_version(door: Door) -> None:
    for method, path in (
        ("GET", "/healthz"),
        ("GET", "/nowhere"),
        ("GET", "/v1/incidents"),
        ("GET", "/metrics"),
        ("GET", "/v1/service-key"),
    ):
        _, _, headers = await door.call(method, path)
        assert headers.get("Server") == "Encompass", (path, headers.get("Server"))
    # Not even on what aiohttp's parser refuses before the app sees it.
    for request in (b"GETT / HTTP/1.1\r\n", b"GET /v1/incidents/\xff HTTP/1.1\r\n"):
        response = await _raw(door, request + b"Host: door\r\nConnection: close\r\n\r\n")
        assert response.startswith(b"HTTP/1.") and b" 400 " in response.split(b"\r\n")[0]
        assert b"Server: Encompass\r\n" in response and b"aiohttp" not in response


async def test_failed_sign_ins_are_logged_without_the_token_and_counted(door: Door) -> None:
    metric = door.app[METRICS].auth_failures
    before = {r: metric.labels(r)._value.get() for r in ("missing", "invalid", "wrong_kind")}
    wrong = f"force_{secrets.token_urlsafe(32)}"
    with capture_logs() as logs:
        assert (await door.call("GET", "/v1/incidents/x", token=wrong))[0] == 401
        assert (await door.call("GET", "/v1/incidents/x"))[0] == 401
        assert (await door.call("GET", "/v1/incidents/x", role="admin"))[0] == 403
    failed = [e for e in logs if e["event"] == "auth.failed"]
    assert [e["reason"] for e in failed] == ["invalid", "missing", "wrong_kind"]
    assert failed[0]["route"] == "/v1/incidents/{incident_id}"
    assert wrong not in repr(logs) and wrong[6:20] not in repr(logs)
    assert door.tokens["admin"] not in repr(logs)
    for reason in before:
        assert metric.labels(reason)._value.get() == before[reason] + 1


async def test_rate_limits_answer_429_with_retry_after(door: Door) -> None:
    # Given an app over the same services with a burst of 3 per credential, 5 per address,
    settings = door.container.settings.model_copy(
        update={
            "rate_limit_credential": 0.01,
            "rate_limit_credential_burst": 3,
            "rate_limit_address": 0.01,
            "rate_limit_address_burst": 5,
        }
    )
    app = create_app(dataclasses.replace(door.container, settings=settings))
    runner, base = await _serve(app)
    try:
        limited = Door(door.container, app, base, door.tokens, door.force_id)
        # when one token calls four times, the fourth is refused with Retry-After,
        statuses = [
            (await limited.call("GET", "/v1/notices", role="key_adult"))[0] for _ in range(3)
        ]
        status, answer, headers = await limited.call("GET", "/v1/notices", role="key_adult")
        assert statuses == [200, 200, 200]
        assert status == 429 and answer["error"]["code"] == "rate_limited"
        assert int(headers["Retry-After"]) >= 1
        # another credential still gets in until the address's own limit is reached,
        assert (await limited.call("GET", "/v1/admin/notices", role="admin"))[0] == 200
        status, answer, headers = await limited.call("GET", "/healthz")
        assert status == 429 and "address" in answer["error"]["message"]
        assert "Retry-After" in headers
        # and each refusal is counted by the limit that refused it.
        metric = app[METRICS].rate_limited
        assert metric.labels("credential")._value.get() == 1
        assert metric.labels("address")._value.get() == 1
    finally:
        await runner.cleanup()


async def test_a_revoked_force_token_stops_within_a_second_and_is_audited(door: Door) -> None:
    container = door.container
    code = f"R{secrets.token_hex(3).upper()}"
    issued = await add_force(container.sessions, container.clock, code, "Revoked Police")
    assert (await door.call("GET", "/v1/incidents/x", token=issued.token))[0] == 404
    # When the force is revoked, its requests are refused within a second (its token is
    # looked up at most once a second, not on every request),
    done = await revoke_force(container.sessions, container.clock, code.lower())
    revoked_at = time.monotonic()
    assert done.subject_id == code and not done.already
    while True:
        status, answer, _ = await door.call("GET", "/v1/incidents/x", token=issued.token)
        if status != 404 or time.monotonic() - revoked_at > 2:
            break
        await asyncio.sleep(0.05)
    assert status == 401 and answer["error"]["code"] == "unauthorised"
    assert time.monotonic() - revoked_at <= 1.2
    # revoking again changes nothing, an unknown code is one clear error,
    assert (await revoke_force(container.sessions, container.clock, code)).already
    with pytest.raises(CredentialError, match="no force 'NOPE' is registered"):
        await revoke_force(container.sessions, container.clock, "nope")
    # re-adding reinstates it under a new token only,
    again = await add_force(container.sessions, container.clock, code, "Revoked Police")
    assert (await door.call("GET", "/v1/incidents/x", token=again.token))[0] == 404
    assert (await door.call("GET", "/v1/incidents/x", token=issued.token))[0] == 401
    # and the audit log holds both, still verifying.
    async with container.sessions() as session:
        actions = (
            await session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.subject == f"force:{code}")
                .order_by(AuditEntry.seq)
            )
        ).all()
        assert (await verify_chain(session)).ok
    assert actions == ["force.revoked", "force.reinstated"]


@pytest.mark.parametrize(
    ("what", "body", "code"),
    [h for h in HOSTILE if h[2] != "invalid_json"],
    ids=[h[0] for h in HOSTILE if h[2] != "invalid_json"],
)
async def test_the_amqp_intake_refuses_what_the_door_refuses(
    door: Door, what: str, body: bytes, code: str
) -> None:
    message = Message(
        body=body, message_id=f"m-{secrets.token_hex(4)}", user_id=force_user(door.force_id)
    )
    with pytest.raises(Refused) as refused:
        await intake(door.container.sessions, door.container.broker, door.container.clock, message)
    assert refused.value.reason.endswith(f"({code})")


async def test_a_revoked_forces_amqp_reports_are_refused(door: Door) -> None:
    container = door.container
    code = f"Q{secrets.token_hex(3).upper()}"
    await add_force(container.sessions, container.clock, code, "Queue Police")
    await revoke_force(container.sessions, container.clock, code)
    message = Message(body=b"{}", message_id="m-1", user_id=force_user(code))
    with pytest.raises(Refused, match="the publishing user's force is revoked"):
        await intake(container.sessions, container.broker, container.clock, message)


async def test_a_revoked_admin_token_stops_at_once(door: Door) -> None:
    container = door.container
    name = f"Admin {secrets.token_hex(3)}"
    first = await add_admin(container.sessions, container.clock, name, "all")
    assert (await door.call("GET", "/v1/admin/review", token=first.token))[0] == 200
    done = await revoke_admin(container.sessions, container.clock, name)
    assert done.subject_id == first.subject_id
    assert (await door.call("GET", "/v1/admin/review", token=first.token))[0] == 401
    # Two live admins of one name: the id must be given.
    second = await add_admin(container.sessions, container.clock, name, "all")
    third = await add_admin(container.sessions, container.clock, name, "all")
    with pytest.raises(CredentialError, match="2 admins are named"):
        await revoke_admin(container.sessions, container.clock, name)
    await revoke_admin(container.sessions, container.clock, third.subject_id)
    assert (await door.call("GET", "/v1/admin/review", token=third.token))[0] == 401
    assert (await door.call("GET", "/v1/admin/review", token=second.token))[0] == 200
    with pytest.raises(CredentialError, match="no admin named 'Nobody'"):
        await revoke_admin(container.sessions, container.clock, "Nobody")
    async with container.sessions() as session:
        subjects = (
            await session.scalars(
                select(AuditEntry.subject).where(AuditEntry.action == "admin.revoked")
            )
        ).all()
    assert f"admin:{first.subject_id}" in subjects and f"admin:{third.subject_id}" in subjects
