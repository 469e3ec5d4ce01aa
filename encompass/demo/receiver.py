"""The demo's settings: an in-process webhook receiver standing in for each setting's
safeguarding system, holding each Key Adult's private key as a real one would.

For every envelope it checks the webhook's two signatures (the service's Ed25519 one
against the pinned service key, and the HMAC under the Key Adult's webhook secret), opens
the envelope with the Key Adult's own key, verifies the envelope's signature, and then
the Key Adult (not a deputy) acknowledges it through the public API with a signed receipt.

A Key Adult who receives by e-mail follows the pointer: fetches the envelope from the
portal with their credentials, opens and verifies it the same way, and acknowledges it.
Two Key Adults misbehave on purpose, so the demo shows the e-mails that reach people: a
deputy whose system answers ``410 Gone`` (a failed delivery), and a Key Adult who leaves
their first notice unacknowledged until told (an overdue notice).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from encompass.adapters.key_files import KeyAdultPrivateKeys, load_private_key_bundle
from encompass.adapters.webhook import (
    IDEMPOTENCY_HEADER,
    KIND_HEADER,
    SERVICE_SIGNATURE_HEADER,
    SIGNATURE_HEADER,
    verify,
    verify_service,
)
from encompass.clock import Clock
from encompass.domain.envelope import (
    EnvelopeError,
    envelope_hash,
    open_sealed,
    parse_envelope,
    sign_ack,
)


@dataclass(frozen=True)
class Opened:
    at: datetime
    key_adult_id: str
    notice_id: str
    kind: str
    setting_id: str


@dataclass
class DemoReceiver:
    keys_folder: Path
    clock: Clock
    roles: dict[str, str]
    service_key: Ed25519PublicKey | None = None
    api_url: str = ""
    credentials: dict[str, tuple[str, str]] = field(default_factory=dict)
    opened: list[Opened] = field(default_factory=list)
    acknowledged: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    # Whose webhook answers 410 Gone; who holds back their first notice (``release_held``).
    broken: set[str] = field(default_factory=set)
    hold_first: set[str] = field(default_factory=set)
    held: dict[str, tuple[str, KeyAdultPrivateKeys, str]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _runner: web.AppRunner | None = None

    async def start(self) -> str:
        """Listen on a free loopback port; return the base URL for webhook_url."""
        app = web.Application()
        app.router.add_post("/hooks/{key_adult_id}", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}/hooks"

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        if self._runner is not None:
            await self._runner.cleanup()

    def _keys(self, key_adult_id: str) -> KeyAdultPrivateKeys:
        path = self.keys_folder / f"{key_adult_id}.private.pem"
        return load_private_key_bundle(path.read_bytes())

    def follow_pointer(self, key_adult_id: str, link: str) -> None:
        """The Key Adult read a pointer e-mail: open the notice it names (in the background)."""
        notice_id = link.rstrip("/").rpartition("/")[2]
        task = asyncio.create_task(self._fetch(key_adult_id, notice_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch(self, key_adult_id: str, notice_id: str) -> None:
        token, _secret = self.credentials[key_adult_id]
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as client,
            client.get(f"{self.api_url}/v1/notices/{notice_id}") as response,
        ):
            if response.status != 200:
                self.problems.append(f"{key_adult_id}: portal answered {response.status}")
                return
            served = await response.json()
        try:
            envelope = parse_envelope(served["envelope"])
            keys = self._keys(key_adult_id)
            content = open_sealed(
                envelope, private_key=keys.recipient, service_public_key=self.service_key
            )
        except (EnvelopeError, KeyError, TypeError) as exc:
            self.problems.append(f"{key_adult_id}: {exc}")
            return
        self._opened(key_adult_id, content.notice_id, content.kind, content.setting_id)
        if content.kind == "notice":
            await self._acknowledge(key_adult_id, keys, content.notice_id, envelope_hash(envelope))

    def _opened(self, key_adult_id: str, notice_id: str, kind: str, setting_id: str) -> None:
        self.opened.append(Opened(self.clock.now(), key_adult_id, notice_id, kind, setting_id))

    async def release_held(self) -> None:
        """The Key Adults who held a notice back acknowledge it now."""
        held, self.held = self.held, {}
        for notice_id, (key_adult_id, keys, digest) in held.items():
            await self._acknowledge(key_adult_id, keys, notice_id, digest)

    async def _receive(self, request: web.Request) -> web.Response:
        key_adult_id = request.match_info["key_adult_id"]
        body = await request.read()
        if key_adult_id in self.broken:
            return web.Response(status=410)  # the system was switched off for good
        _token, secret = self.credentials[key_adult_id]
        now = int(self.clock.now().timestamp())
        if self.service_key is None or not verify_service(
            body,
            request.headers.get(SERVICE_SIGNATURE_HEADER, ""),
            idempotency_key=request.headers.get(IDEMPOTENCY_HEADER, ""),
            kind=request.headers.get(KIND_HEADER, ""),
            service_key=self.service_key,
            now=now,
        ):
            self.problems.append(f"{key_adult_id}: the service's webhook signature did not verify")
            return web.Response(status=401)
        if not verify(body, request.headers.get(SIGNATURE_HEADER, ""), secret=secret, now=now):
            self.problems.append(f"{key_adult_id}: webhook HMAC did not verify")
            return web.Response(status=401)
        try:
            envelope = parse_envelope(body)
            keys = self._keys(key_adult_id)
            content = open_sealed(
                envelope, private_key=keys.recipient, service_public_key=self.service_key
            )
        except EnvelopeError as exc:
            self.problems.append(f"{key_adult_id}: {exc}")
            return web.Response(status=400)
        self._opened(key_adult_id, content.notice_id, content.kind, content.setting_id)
        if content.kind == "notice" and key_adult_id in self.hold_first:
            self.hold_first.discard(key_adult_id)
            self.held[content.notice_id] = (key_adult_id, keys, envelope_hash(envelope))
        elif content.kind == "notice" and self.roles[key_adult_id] != "deputy":
            # Answer the webhook first: the receipt is sent once the delivery is recorded.
            task = asyncio.create_task(
                self._acknowledge(key_adult_id, keys, content.notice_id, envelope_hash(envelope))
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.Response(status=200)

    async def _acknowledge(
        self, key_adult_id: str, keys: KeyAdultPrivateKeys, notice_id: str, digest: str
    ) -> None:
        token, _secret = self.credentials[key_adult_id]
        signature = sign_ack(
            keys.signing, notice_id=notice_id, envelope_hash=digest, kind="received", reply=None
        )
        body = {"kind": "received", "reply": None, "envelope_hash": digest, "signature": signature}
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as client:
            for _ in range(100):
                async with client.post(
                    f"{self.api_url}/v1/notices/{notice_id}/ack", json=body
                ) as response:
                    if response.status in (200, 201):
                        self.acknowledged.add(notice_id)
                        return
                    if response.status != 409:
                        self.problems.append(f"{key_adult_id}: ack refused ({response.status})")
                        return
                await asyncio.sleep(0.05)
        self.problems.append(f"{key_adult_id}: ack never accepted")
