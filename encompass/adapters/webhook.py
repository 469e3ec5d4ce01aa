"""Posting sealed envelopes to settings' own systems (``schemas/webhook.md``).

Transport only: one POST, classified as delivered, retry or failed. The delivery handler
decides what an outcome means for the envelope and the notice.

Each request carries ``Idempotency-Key: <envelope_id>`` (a receiver that sees it twice
keeps one copy) and two signatures, neither of which anyone can make from the database:

* ``X-Encompass-Service-Signature: t=<unix seconds>,ed25519=<base64>`` — the service's
  Ed25519 signature (the key receivers pin from ``GET /v1/service-key``) over
  :func:`signed_bytes`: a label, ``t``, the idempotency key, the envelope kind and the
  body's SHA-256. The private key lives in the signing key file only.
* ``X-Encompass-Signature: t=<unix seconds>,v1=<hex>`` — HMAC-SHA256 over ``"<t>." + body``
  keyed with SHA-256 of the Key Adult's webhook secret, for receivers that check a shared
  secret. That key is stored only sealed under the data key file
  (``key_adults.webhook_key_sealed``), never in clear nor as a plain hash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
from typing import Final
from urllib.parse import urlsplit

import aiohttp
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from encompass.adapters.channels import PostResult
from encompass.domain.status import DeliveryOutcome

SIGNATURE_HEADER: Final = "X-Encompass-Signature"
SERVICE_SIGNATURE_HEADER: Final = "X-Encompass-Service-Signature"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
KIND_HEADER: Final = "X-Encompass-Envelope-Kind"
SIGNED_LABEL: Final = "encompass-webhook/1"
# What the sealed HMAC key is bound to (``DataKeys.seal_secret``), with the Key Adult's id.
WEBHOOK_KEY_PURPOSE: Final = "key_adults.webhook_key"
# Too Many Requests and Request Timeout say "later", not "never".
_RETRY_4XX: Final = frozenset({408, 429})


def _fields(header: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        parts[name] = value
    return parts


def signature_key(secret: str) -> bytes:
    """The HMAC key for a webhook secret: its SHA-256 digest (what the receiver computes)."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


def sign(body: bytes, *, key: bytes, timestamp: int) -> str:
    """The ``X-Encompass-Signature`` value for ``body`` under the HMAC ``key``."""
    digest = hmac.new(key, f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(body: bytes, header: str, *, secret: str, now: int, tolerance: int = 300) -> bool:
    """The receiver's HMAC check: the header's HMAC matches ``body`` under ``secret`` and
    its time lies within ``tolerance`` seconds of ``now``. A reference for receivers."""
    parts = _fields(header)
    try:
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = hmac.new(
        signature_key(secret), f"{timestamp}.".encode("ascii") + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, given)


def signed_bytes(body: bytes, *, timestamp: int, idempotency_key: str, kind: str) -> bytes:
    """What the service signs: five lines joined by LF, no final LF — the label
    ``encompass-webhook/1``, ``t`` in decimal, the ``Idempotency-Key``, the
    ``X-Encompass-Envelope-Kind``, and the lowercase hex SHA-256 of the raw body."""
    return "\n".join(
        (SIGNED_LABEL, str(timestamp), idempotency_key, kind, hashlib.sha256(body).hexdigest())
    ).encode("utf-8")


def service_sign(
    body: bytes, *, signing_key: Ed25519PrivateKey, timestamp: int, idempotency_key: str, kind: str
) -> str:
    """The ``X-Encompass-Service-Signature`` value: ``t=<t>,ed25519=<standard base64>``."""
    signature = signing_key.sign(
        signed_bytes(body, timestamp=timestamp, idempotency_key=idempotency_key, kind=kind)
    )
    return f"t={timestamp},ed25519={base64.b64encode(signature).decode('ascii')}"


def verify_service(
    body: bytes,
    header: str,
    *,
    idempotency_key: str,
    kind: str,
    service_key: Ed25519PublicKey,
    now: int,
    tolerance: int = 300,
) -> bool:
    """The receiver's origin check: the Ed25519 signature in ``header`` is the service's
    over this body, idempotency key and kind, made within ``tolerance`` seconds of
    ``now``. A reference for receivers."""
    parts = _fields(header)
    try:
        timestamp = int(parts["t"])
        signature = base64.b64decode(parts["ed25519"], validate=True)
    except (KeyError, ValueError, binascii.Error):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    try:
        service_key.verify(
            signature,
            signed_bytes(body, timestamp=timestamp, idempotency_key=idempotency_key, kind=kind),
        )
    except InvalidSignature:
        return False
    return True


def acceptable_url(url: str) -> bool:
    """HTTPS anywhere; plain HTTP only to a loopback address (tests, a local relay)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def classify(status: int) -> PostResult:
    """2xx delivered; 408, 429 and 5xx retry; any other status (3xx, 4xx) failed."""
    if 200 <= status < 300:
        return PostResult(DeliveryOutcome.DELIVERED, f"HTTP {status}")
    if status >= 500 or status in _RETRY_4XX:
        return PostResult(DeliveryOutcome.RETRY, f"HTTP {status}")
    return PostResult(DeliveryOutcome.FAILED, f"HTTP {status}")


class WebhookSender:
    """POSTs envelopes with one shared HTTP client; :meth:`close` it when done."""

    def __init__(self, *, timeout: float, signing_key: Ed25519PrivateKey) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._signing_key = signing_key
        self._client: aiohttp.ClientSession | None = None

    async def post(
        self,
        url: str,
        body: bytes,
        *,
        envelope_id: str,
        kind: str,
        hmac_key: bytes | None,
        timestamp: int,
    ) -> PostResult:
        """POST ``body`` to ``url`` once, signed by the service (and with ``hmac_key`` when
        given), and classify the answer. Timeouts and connection errors are ``retry``; an
        unacceptable URL is ``failed`` without sending."""
        if not acceptable_url(url):
            return PostResult(DeliveryOutcome.FAILED, "refused: webhook URL is not https")
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: envelope_id,
            KIND_HEADER: kind,
            SERVICE_SIGNATURE_HEADER: service_sign(
                body,
                signing_key=self._signing_key,
                timestamp=timestamp,
                idempotency_key=envelope_id,
                kind=kind,
            ),
        }
        if hmac_key:
            headers[SIGNATURE_HEADER] = sign(body, key=hmac_key, timestamp=timestamp)
        if self._client is None:
            self._client = aiohttp.ClientSession(timeout=self._timeout)
        try:
            # No redirects: a 3xx could carry the envelope to a host nobody registered.
            async with self._client.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                return classify(response.status)
        except TimeoutError as exc:
            return PostResult(DeliveryOutcome.RETRY, type(exc).__name__)
        except aiohttp.InvalidURL:
            return PostResult(DeliveryOutcome.FAILED, "InvalidURL")
        except aiohttp.ClientError as exc:
            return PostResult(DeliveryOutcome.RETRY, type(exc).__name__)

    async def close(self) -> None:
        """Close the HTTP client (safe to call twice)."""
        if self._client is not None:
            await self._client.close()
            self._client = None
