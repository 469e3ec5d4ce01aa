"""The ``encompass`` command as people run it: each subcommand in its own process against
a temporary SQLite database, and the Key Adult's ``inbox`` / ``ack`` against a live app.

The live app runs on port 0 in a thread with its own event loop, over the same database
file, with the embedded broker; its notices are sealed by the dispatcher's own release.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import select

from encompass.adapters.db.tables import (
    Acknowledgement,
    Admin,
    AuditEntry,
    KeyAdultRow,
    Notice,
)
from encompass.adapters.key_files import load_public_key_bundle, public_key_pem
from encompass.api.app import create_app
from encompass.bootstrap import Container, bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.demo.directory import write_directory
from encompass.domain.envelope import seal
from encompass.services.access.credentials import add_force
from encompass.services.directory.importer import import_directory
from encompass.services.receiving.devices import enrol_payload
from encompass.services.records.at_rest import open_reply
from tests.loop_thread import LoopThread
from tests.receiving_fixtures import add_child, add_notice, send_due

NIGHT = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)  # a Friday
TUESDAY = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
T = TypeVar("T")


@dataclass
class Live:
    thread: LoopThread
    container: Container
    url: str
    env: dict[str, str]
    keys: Path
    notice_id: str

    def cli(self, *args: str, now: datetime | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if now is not None:
            env["ENCOMPASS_NOW"] = now.isoformat()
        return subprocess.run(
            [sys.executable, "-m", "encompass.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def query(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.thread.run(coro)


def token_line(output: str, label: str) -> str:
    (line,) = [x for x in output.splitlines() if x.startswith(f"{label}: ")]
    return line.removeprefix(f"{label}: ").strip()


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("e2e")
    database = f"sqlite+aiosqlite:///{folder / 'encompass.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCOMPASS_")}
    env.update(
        ENCOMPASS_DATABASE_URL=database,
        ENCOMPASS_SIGNING_KEY=str(folder / "service.pem"),
        ENCOMPASS_LOG_FORMAT="json",
        ENCOMPASS_LOG_LEVEL="warning",
    )
    thread = LoopThread()

    async def start() -> tuple[Container, web.AppRunner, str, str]:
        # The commands find the data key beside the signing key (the default): so here.
        settings = load_settings(
            database_url=database,
            amqp_url="",
            signing_key=folder / "service.pem",
            data_key=folder / "encompass-data-key",
        )
        container = await bootstrap(settings, clock=Clock(NIGHT))
        await import_directory(container.sessions, **write_directory(folder / "directory"))
        force = await add_force(container.sessions, container.clock, "E2EF", "E2E Police")
        placed = await add_child(container.sessions, force_id=force.subject_id, reported_at=NIGHT)
        notice_id = await add_notice(container.sessions, placed, "URN100001", NIGHT)
        container.clock.set(TUESDAY)
        await send_due(container)
        runner = web.AppRunner(create_app(container))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        return container, runner, f"http://{host}:{port}", notice_id

    container, runner, url, notice_id = thread.run(start())
    yield Live(thread, container, url, env, folder / "directory" / "keys", notice_id)

    async def stop() -> None:
        await runner.cleanup()
        await container.close()

    thread.run(stop())
    thread.close()


@pytest.fixture(scope="module")
def oak_token(live: Live) -> str:
    result = live.cli("key-adults", "credentials", "KA-OAK-1")
    assert result.returncode == 0, result.stderr
    return token_line(result.stdout, "token")


def test_forces_add_prints_the_token_once(live: Live) -> None:
    result = live.cli("forces", "add", "E2EX", "--name", "Example Constabulary")
    assert result.returncode == 0, result.stderr
    assert token_line(result.stdout, "token").startswith("force_")
    assert "already registered" in one_line_failure(
        live.cli("forces", "add", "E2EX", "--name", "Example Constabulary")
    )


def test_forces_add_amqp_prints_the_token_first_then_the_brokers_commands(live: Live) -> None:
    result = live.cli("forces", "add", "E2EQ", "--name", "Queue Constabulary", "--amqp")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("token: force_")
    commands = [line for line in lines if line.startswith("rabbitmqctl ")]
    assert commands[0].startswith("rabbitmqctl add_user encompass-force-E2EQ ")
    # configure nothing, write the incidents exchange only, read nothing
    assert commands[1] == (
        "rabbitmqctl set_permissions -p / encompass-force-E2EQ '' '^encompass\\.incidents$' ''"
    )


def test_key_adult_credentials_print_both_and_revoke_the_old(live: Live) -> None:
    first = live.cli("key-adults", "credentials", "KA-OAK-2")
    assert first.returncode == 0, first.stderr
    old = token_line(first.stdout, "token")
    assert token_line(first.stdout, "webhook_secret")
    second = live.cli("key-adults", "credentials", "KA-OAK-2")
    new, secret = token_line(second.stdout, "token"), token_line(second.stdout, "webhook_secret")
    assert new != old

    async def stored() -> KeyAdultRow | None:
        async with live.container.sessions() as session:
            return await session.get(KeyAdultRow, "KA-OAK-2")

    row = live.query(stored())
    assert row is not None
    # The token stored only hashed, the webhook key only sealed under the data key file:
    # neither the secret nor the HMAC key derived from it is in the database
    assert row.token_hash == hashlib.sha256(new.encode()).hexdigest()
    assert row.webhook_key_sealed is not None and row.webhook_key_sealed.startswith("ev1.")
    assert secret not in row.webhook_key_sealed
    assert hashlib.sha256(secret.encode()).hexdigest() not in row.webhook_key_sealed
    assert row.token_hash != hashlib.sha256(old.encode()).hexdigest()
    assert "no Key Adult 'KA-NOBODY'" in one_line_failure(
        live.cli("key-adults", "credentials", "KA-NOBODY")
    )


def test_next_delivery_prints_the_release_time_first(live: Live) -> None:
    result = live.cli(
        "next-delivery", "--setting", "URN100001", "--reported-at", "2026-11-20T22:10:00+00:00"
    )
    assert result.returncode == 0, result.stderr
    first = result.stdout.split()[0]
    # Monday 23 November is Oakfield's INSET day: Tuesday at 07:30 (GMT)
    assert datetime.fromisoformat(first) == datetime(2026, 11, 24, 7, 30, tzinfo=UTC)
    assert first.endswith("+00:00")


def test_inbox_opens_and_saves_the_key_adults_notices(
    live: Live, oak_token: str, tmp_path: Path
) -> None:
    key = str(live.keys / "KA-OAK-1.private.pem")
    result = live.cli(
        "inbox",
        "--url",
        live.url,
        "--token",
        oak_token,
        "--key",
        key,
        "--out",
        str(tmp_path / "box"),
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    (mine,) = [line for line in lines if line["notice_id"] == live.notice_id]
    assert mine["status"] == "delivered"
    assert mine["notice"]["child"]["given_name"] == "Amelia"
    assert mine["notice"]["setting_id"] == "URN100001"
    # The saved envelope opens again offline, with the service key pinned
    service = tmp_path / "service.pub.pem"
    service.write_text(public_key_pem(live.container.signing_key))
    opened = live.cli(
        "open",
        str(tmp_path / "box" / f"{live.notice_id}.json"),
        "--key",
        key,
        "--service-key",
        str(service),
    )
    assert opened.returncode == 0, opened.stderr
    assert json.loads(opened.stdout)["notice_id"] == live.notice_id
    # Another Key Adult's key cannot open it: one clear line, exit 1
    other = str(live.keys / "KA-ACORN-1.private.pem")
    assert "could not be opened" in one_line_failure(
        live.cli("inbox", "--url", live.url, "--token", oak_token, "--key", other)
    )


def test_ack_signs_and_sends_the_acknowledgement(live: Live, oak_token: str) -> None:
    key = str(live.keys / "KA-OAK-1.private.pem")
    args = ("ack", live.notice_id, "--url", live.url, "--token", oak_token, "--key", key)
    result = live.cli(*args, "--kind", "child_absent", "--reply", "Off sick today")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["result"] == "acknowledged" and answer["kind"] == "child_absent"

    async def stored() -> tuple[str, Acknowledgement | None, str | None]:
        async with live.container.sessions() as session:
            notice = await session.get(Notice, live.notice_id)
            receipt = await session.scalar(
                select(Acknowledgement).where(Acknowledgement.notice_id == live.notice_id)
            )
            assert notice is not None and receipt is not None
            reply = await open_reply(
                session, incident_id=notice.incident_id, ack_id=receipt.ack_id, stored=receipt.reply
            )
        return notice.status, receipt, reply

    status, receipt, reply = live.query(stored())
    assert status == "acknowledged"
    assert receipt is not None and reply == "Off sick today"
    assert receipt.key_adult_id == "KA-OAK-1"
    assert "already_acknowledged" in one_line_failure(live.cli(*args))


def test_client_failures_are_one_clear_line(live: Live, oak_token: str, tmp_path: Path) -> None:
    key = str(live.keys / "KA-OAK-1.private.pem")
    assert "cannot reach" in one_line_failure(
        live.cli("inbox", "--url", "http://127.0.0.1:9", "--token", oak_token, "--key", key)
    )
    assert "HTTP 401" in one_line_failure(
        live.cli("inbox", "--url", live.url, "--token", "keyadult_wrong", "--key", key)
    )
    assert "cannot read the private key" in one_line_failure(
        live.cli(
            "ack",
            live.notice_id,
            "--url",
            live.url,
            "--token",
            oak_token,
            "--key",
            str(tmp_path / "missing.pem"),
        )
    )
    assert "HTTP 404" in one_line_failure(
        live.cli("ack", "not-a-notice", "--url", live.url, "--token", oak_token, "--key", key)
    )


def test_release_sends_a_held_notice_now(live: Live) -> None:
    async def held() -> str:
        placed = await add_child(live.container.sessions, force_id="E2EF", reported_at=NIGHT)
        return await add_notice(live.container.sessions, placed, "URN100001", NIGHT)

    notice_id = live.query(held())
    soon = datetime(2026, 11, 21, 0, 0, tzinfo=UTC)
    result = live.cli("release", notice_id, now=soon)
    assert result.returncode == 0, result.stderr
    assert f"notice {notice_id} released now" in result.stdout
    assert "only a scheduled notice" in one_line_failure(
        live.cli("release", live.notice_id, now=soon)
    )
    assert "no notice 'nothing'" in one_line_failure(live.cli("release", "nothing"))


def test_release_names_the_admin_in_the_audit_log(live: Live) -> None:
    async def held() -> str:
        placed = await add_child(live.container.sessions, force_id="E2EF", reported_at=NIGHT)
        return await add_notice(live.container.sessions, placed, "URN100001", NIGHT)

    notice_id = live.query(held())
    soon = datetime(2026, 11, 21, 0, 0, tzinfo=UTC)
    assert live.cli("admins", "add", "Wrexham lead", "--area", "W06000006").returncode == 0
    assert live.cli("admins", "add", "Telford lead", "--area", "E06000020").returncode == 0
    # An admin of another area cannot release it; one of its own area can, by name
    assert "no notice" in one_line_failure(
        live.cli("release", notice_id, "--admin", "Wrexham lead", now=soon)
    )
    result = live.cli("release", notice_id, "--admin", "Telford lead", now=soon)
    assert result.returncode == 0, result.stderr

    async def audited() -> tuple[str, str]:
        async with live.container.sessions() as session:
            entry = await session.scalar(
                select(AuditEntry).where(
                    AuditEntry.subject == f"notice:{notice_id}",
                    AuditEntry.action == "notice.released_now",
                )
            )
            assert entry is not None
            admin = await session.scalar(select(Admin).where(Admin.name == "Telford lead"))
            assert admin is not None
            return entry.actor, admin.admin_id

    actor, admin_id = live.query(audited())
    assert actor == f"admin:{admin_id}"


def test_forces_and_admins_revoke_from_the_command_line(live: Live) -> None:
    added = live.cli("forces", "add", "E2ER", "--name", "Revoked Constabulary")
    token = token_line(added.stdout, "token")
    assert _status(live, "/v1/incidents/nothing", token) == 404
    # When the force is revoked, its token stops working at once,
    revoked = live.cli("forces", "revoke", "E2ER")
    assert revoked.returncode == 0, revoked.stderr
    assert "force E2ER revoked" in revoked.stdout
    assert _status(live, "/v1/incidents/nothing", token) == 401
    assert "already revoked" in live.cli("forces", "revoke", "e2er").stdout
    # re-adding it gives a new token (the old one stays dead),
    readded = live.cli("forces", "add", "E2ER", "--name", "Revoked Constabulary")
    assert _status(live, "/v1/incidents/nothing", token_line(readded.stdout, "token")) == 404
    assert _status(live, "/v1/incidents/nothing", token) == 401
    # and unknown names are one clear line.
    assert "no force 'NOPE' is registered" in one_line_failure(live.cli("forces", "revoke", "NOPE"))
    admin = token_line(live.cli("admins", "add", "E2E Revoker", "--area", "all").stdout, "token")
    assert _status(live, "/v1/admin/review", admin) == 200
    assert live.cli("admins", "revoke", "E2E Revoker").returncode == 0
    assert _status(live, "/v1/admin/review", admin) == 401
    assert "no admin named 'Nobody'" in one_line_failure(live.cli("admins", "revoke", "Nobody"))


def test_admins_add_takes_an_optional_e_mail_address(live: Live) -> None:
    # Given an address, the admin is registered with it (the token line as before)
    added = live.cli("admins", "add", "Mail Admin", "--area", "all", "--email", "ma@la.example")
    assert added.returncode == 0, added.stderr
    assert token_line(added.stdout, "token").startswith("admin_")

    async def address() -> str | None:
        async with live.container.sessions() as session:
            return await session.scalar(select(Admin.email).where(Admin.name == "Mail Admin"))

    assert live.query(address()) == "ma@la.example"
    # A bad address is one clear line, and nobody is registered
    bad = live.cli("admins", "add", "Bad Mail", "--area", "all", "--email", "no-at-sign")
    assert "--email must be an e-mail address" in one_line_failure(bad)
    assert "token" not in bad.stdout


def _status(live: Live, path: str, token: str) -> int:
    request = urllib.request.Request(live.url + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_audit_verify_names_the_first_entry_that_does_not_verify(live: Live) -> None:
    assert live.cli("forces", "revoke", "E2EF").returncode == 0  # at least one entry
    assert live.cli("forces", "add", "E2EF", "--name", "E2E Police").returncode == 0
    result = live.cli("audit", "verify")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("audit chain intact: ")
    entries = int(result.stdout.split(": ")[1].split()[0])
    assert entries >= 2

    async def tamper(action: str) -> tuple[int, str]:
        async with live.container.sessions.begin() as session:
            entry = (await session.scalars(select(AuditEntry).order_by(AuditEntry.seq))).first()
            assert entry is not None
            was, entry.action = entry.action, action
            return entry.seq, was

    seq, was = live.query(tamper("incident.read.altered"))
    try:
        line = one_line_failure(live.cli("audit", "verify"))
        assert f"audit chain broken at entry {seq}" in line
    finally:
        live.query(tamper(was))
    assert live.cli("audit", "verify").returncode == 0


def test_open_fails_closed_without_a_service_key(
    live: Live, oak_token: str, tmp_path: Path
) -> None:
    # Given the Key Adult's key in a folder of its own (nothing pinned there yet),
    folder, box = tmp_path / "oak", tmp_path / "box"
    folder.mkdir()
    key = folder / "private.pem"
    key.write_bytes((live.keys / "KA-OAK-1.private.pem").read_bytes())
    envelope = str(box / f"{live.notice_id}.json")
    fetched = live.cli(
        "inbox", "--url", live.url, "--token", oak_token, "--key", str(key), "--out", str(box)
    )
    assert fetched.returncode == 0, fetched.stderr
    # the first inbox pinned the service's key beside the private key,
    pin = folder / "service-key.pem"
    assert pin.read_text() == public_key_pem(live.container.signing_key)
    assert f"pinned the service's key in {pin}" in fetched.stderr
    # so open checks the origin without --service-key;
    opened = live.cli("open", envelope, "--key", str(key))
    assert opened.returncode == 0, opened.stderr
    notice = json.loads(opened.stdout)
    # with no pin and no --service-key nothing opens,
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "private.pem").write_bytes(key.read_bytes())
    assert "cannot check who sealed this envelope" in one_line_failure(
        live.cli("open", envelope, "--key", str(bare / "private.pem"))
    )
    # an envelope sealed by anyone else to this Key Adult's key is refused,
    public = load_public_key_bundle((live.keys / "KA-OAK-1.public.pem").read_bytes())
    forged = seal(
        notice,
        notice_id=notice["notice_id"],
        recipient_id="KA-OAK-1",
        recipient_public_key=public.recipient,
        signing_key=Ed25519PrivateKey.generate(),
        now=TUESDAY,
    )
    (tmp_path / "forged.json").write_text(forged.model_dump_json())
    assert "signature" in one_line_failure(
        live.cli("open", str(tmp_path / "forged.json"), "--key", str(key))
    )
    # and a service key other than the pinned one is refused by inbox, in one line.
    pin.write_text(public_key_pem(Ed25519PrivateKey.generate()))
    assert "differs from the one pinned" in one_line_failure(
        live.cli("inbox", "--url", live.url, "--token", oak_token, "--key", str(key))
    )
    assert "signature" in one_line_failure(live.cli("open", envelope, "--key", str(key)))


def test_key_adults_invite_devices_and_revoke_device(live: Live) -> None:
    # The set-up link is printed once, on its own line; the page behind it works once
    result = live.cli("key-adults", "invite", "KA-ACORN-1", "--valid-hours", "2")
    assert result.returncode == 0, result.stderr
    enrol_url = token_line(result.stdout, "enrol_url")
    token = enrol_url.rsplit("/enrol/", 1)[1]
    with urllib.request.urlopen(f"{live.url}/enrol/{token}") as page:
        assert "Set up this browser" in page.read().decode()
    browser = Ed25519PrivateKey.generate()
    x25519 = base64.b64encode(X25519PrivateKey.generate().public_key().public_bytes_raw())
    ed25519 = base64.b64encode(browser.public_key().public_bytes_raw())
    payload = enrol_payload(
        hashlib.sha256(token.encode()).hexdigest(), x25519.decode(), ed25519.decode()
    )
    body = {
        "x25519": x25519.decode(),
        "ed25519": ed25519.decode(),
        "label": "laptop",
        "signature": base64.b64encode(browser.sign(payload)).decode(),
    }
    request = urllib.request.Request(
        f"{live.url}/enrol/{token}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as answer:
        device_id = json.loads(answer.read())["device_id"]
    with pytest.raises(urllib.error.HTTPError) as twice:
        urllib.request.urlopen(request)
    assert twice.value.code == 410
    twice.value.close()
    # The devices are listed, the directory key first; revoking one is audited
    listed = live.cli("key-adults", "devices", "KA-ACORN-1")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.strip().splitlines()
    assert lines[0].startswith("directory\tactive") and lines[1].startswith(f"{device_id}\tactive")
    revoked = live.cli("key-adults", "revoke-device", device_id)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout, revoked.stderr
    again = live.cli("key-adults", "devices", "KA-ACORN-1")
    assert again.stdout.strip().splitlines()[1].startswith(f"{device_id}\trevoked")
    assert "no device" in one_line_failure(live.cli("key-adults", "revoke-device", "nope"))
    assert "no Key Adult" in one_line_failure(live.cli("key-adults", "invite", "KA-NOBODY"))
