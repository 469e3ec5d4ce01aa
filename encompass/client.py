"""The Key Adult's side of the portal API: fetch and open notices, sign acknowledgements.

This is what ``encompass inbox`` and ``encompass ack`` run, and a reference for settings'
own systems. The private key never leaves this side: envelopes are opened here, and the
acknowledgement is signed here over exactly the envelope that was opened.

Origin: each envelope's signature is checked against the service's public key — the one
given with ``service_key`` or, without it, the one the service publishes at
``/v1/service-key``, compared with the key pinned at ``pin`` (``service_pin.py``: pinned on
first use, a changed key refused). The commands always give one or the other.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from encompass.adapters.key_files import (
    KeyAdultPrivateKeys,
    KeyFileError,
    load_private_key_bundle,
    load_service_public_key,
)
from encompass.domain.envelope import (
    AckKind,
    Envelope,
    EnvelopeError,
    envelope_hash,
    open_sealed,
    parse_envelope,
    sign_ack,
)
from encompass.service_pin import PinError, check_or_pin

TIMEOUT: Final = aiohttp.ClientTimeout(total=30)


class ClientError(Exception):
    """The command failed; the message is one line, never a stack trace."""


@dataclass
class Portal:
    """One Key Adult's connection: the service's base URL, their token and their keys."""

    url: str
    token: str
    keys: KeyAdultPrivateKeys
    service_key: Ed25519PublicKey | None = None
    # Where the service's key is pinned (used only without ``service_key``).
    pin: Path | None = None
    pinned_now: bool = False

    async def _get(self, client: aiohttp.ClientSession, path: str) -> aiohttp.ClientResponse:
        return await client.get(
            self.url.rstrip("/") + path, headers={"Authorization": f"Bearer {self.token}"}
        )

    async def _json(self, response: aiohttp.ClientResponse) -> Any:
        try:
            data = await response.json(content_type=None)
        except (json.JSONDecodeError, aiohttp.ContentTypeError, UnicodeDecodeError):
            raise ClientError(
                f"the service answered HTTP {response.status} without JSON ({response.url})"
            ) from None
        if response.status >= 400:
            error = data.get("error", {}) if isinstance(data, dict) else {}
            raise ClientError(
                f"the service refused (HTTP {response.status}, "
                f"{error.get('code', '?')}): {error.get('message', '')}"
            )
        return data

    async def service_public_key(self, client: aiohttp.ClientSession) -> Ed25519PublicKey:
        if self.service_key is None:
            async with await self._get(client, "/v1/service-key") as response:
                if response.status != 200:
                    raise ClientError(f"cannot get the service key (HTTP {response.status})")
                try:
                    served = load_service_public_key(await response.text())
                except KeyFileError as exc:
                    raise ClientError(f"the service's key is not usable: {exc}") from None
            if self.pin is not None:
                try:
                    self.pinned_now = check_or_pin(self.pin, served)
                except PinError as exc:
                    raise ClientError(str(exc)) from None
            self.service_key = served
        return self.service_key

    def open(self, envelope: Envelope, service_key: Ed25519PublicKey) -> dict[str, Any]:
        try:
            notice = open_sealed(
                envelope, private_key=self.keys.recipient, service_public_key=service_key
            )
        except EnvelopeError as exc:
            raise ClientError(f"notice {envelope.notice_id}: {exc}") from None
        return notice.model_dump(mode="json")


def load_keys(key_path: Path | str) -> KeyAdultPrivateKeys:
    """The Key Adult's ``private.pem``; ClientError (one line) when unusable."""
    try:
        return load_private_key_bundle(Path(key_path).read_bytes())
    except OSError as exc:
        raise ClientError(f"cannot read the private key {key_path}: {exc.strerror}") from None
    except KeyFileError as exc:
        raise ClientError(str(exc)) from None


def load_pinned(service_key_path: Path | str | None) -> Ed25519PublicKey | None:
    if service_key_path is None:
        return None
    try:
        return load_service_public_key(Path(service_key_path).read_bytes())
    except OSError as exc:
        raise ClientError(
            f"cannot read the service key {service_key_path}: {exc.strerror}"
        ) from None
    except KeyFileError as exc:
        raise ClientError(str(exc)) from None


def _connection_error(portal: Portal, exc: Exception) -> ClientError:
    return ClientError(f"cannot reach {portal.url}: {exc.__class__.__name__}")


async def inbox(
    portal: Portal,
    *,
    out_dir: Path | None = None,
    emit: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Fetch, verify and open every envelope the portal holds for this Key Adult; returns
    ``{"notice_id","status","notice"}`` per envelope (a retraction's ``notice.kind`` says
    so), handing each to ``emit`` as soon as it is open. With ``out_dir`` each envelope is
    saved as ``NOTICE_ID.json`` (a retraction as ``NOTICE_ID.retraction.json``).
    Envelopes that do not open are skipped and then reported together as a ClientError."""
    opened: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            service_key = await portal.service_public_key(client)
            async with await portal._get(client, "/v1/notices") as response:
                items = (await portal._json(response)).get("notices", [])
    except aiohttp.ClientError as exc:
        raise _connection_error(portal, exc) from None
    for item in items:
        try:
            envelope = parse_envelope(item["envelope"])
            line = {
                "notice_id": item["notice_id"],
                "status": item["status"],
                "notice": portal.open(envelope, service_key),
            }
        except (EnvelopeError, ClientError) as exc:
            problems.append(str(exc))
            continue
        except (KeyError, TypeError):
            problems.append("the service sent an item without an envelope")
            continue
        if out_dir is not None:
            suffix = "" if item.get("kind", "notice") == "notice" else ".retraction"
            _save(out_dir / f"{envelope.notice_id}{suffix}.json", item["envelope"])
        opened.append(line)
        if emit is not None:
            emit(line)
    if problems:
        raise ClientError(
            f"{len(problems)} notice(s) could not be opened: " + "; ".join(problems[:5])
        )
    return opened


def _save(path: Path, envelope: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(envelope, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ClientError(f"cannot write {path}: {exc.strerror}") from None


async def ack(
    portal: Portal, notice_id: str, *, kind: AckKind = AckKind.RECEIVED, reply: str | None = None
) -> dict[str, Any]:
    """Fetch the notice's envelope, check it opens with this Key Adult's key (so they sign
    only what they can read), sign its hash with ``kind`` and ``reply`` and send it.
    Returns the service's record of the acknowledgement; ClientError otherwise."""
    if reply is not None and len(reply) > 500:
        raise ClientError("the reply is longer than 500 characters")
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            service_key = await portal.service_public_key(client)
            async with await portal._get(
                client, f"/v1/notices/{quote(notice_id, safe='')}"
            ) as response:
                item = await portal._json(response)
            try:
                envelope = parse_envelope(item["envelope"])
            except (EnvelopeError, KeyError, TypeError) as exc:
                raise ClientError(f"the service sent no valid envelope: {exc}") from None
            if envelope.notice_id != notice_id:
                raise ClientError(
                    f"the service sent the envelope of another notice "
                    f"({envelope.notice_id}); nothing was signed"
                )
            portal.open(envelope, service_key)
            digest = envelope_hash(envelope)
            body = {
                "kind": kind,
                "reply": reply,
                "envelope_hash": digest,
                "signature": sign_ack(
                    portal.keys.signing,
                    notice_id=envelope.notice_id,
                    envelope_hash=digest,
                    kind=kind,
                    reply=reply,
                ),
            }
            async with client.post(
                f"{portal.url.rstrip('/')}/v1/notices/{quote(envelope.notice_id, safe='')}/ack",
                json=body,
                headers={"Authorization": f"Bearer {portal.token}"},
            ) as response:
                result: dict[str, Any] = await portal._json(response)
                return result
    except aiohttp.ClientError as exc:
        raise _connection_error(portal, exc) from None
