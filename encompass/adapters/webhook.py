"""Posting sealed envelopes to settings' own systems (``schemas/webhook.md``).

Transport only: one POST, classified as delivered, retry or failed. The delivery handler
decides what an outcome means for the envelope and the notice.

Each request carries ``Idempotency-Key: <envelope_id>`` (a receiver that sees it twice
keeps one copy) and ``X-Encompass-Signature: t=<unix seconds>,v1=<hex>``: HMAC-SHA256 over
``"<t>." + body``, keyed with SHA-256 of the Key Adult's webhook secret. We store only that
hash (``key_adults.webhook_secret_hash``), so it is the key; the receiver, holding the
secret, computes the same hash and verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

import aiohttp

SIGNATURE_HEADER: Final = "X-Encompass-Signature"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
KIND_HEADER: Final = "X-Encompass-Envelope-Kind"
# Too Many Requests and Request Timeout say "later", not "never".
_RETRY_4XX: Final = frozenset({408, 429})

Outcome = Literal["delivered", "retry", "failed"]


@dataclass(frozen=True, slots=True)
class PostResult:
    """How a POST ended; ``detail`` is a status code or an error class, never data."""

    outcome: Outcome
    detail: str


def signature_key(secret: str) -> bytes:
    """The HMAC key for a webhook secret: its SHA-256 digest (what the receiver computes)."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


def sign(body: bytes, *, secret_hash_hex: str, timestamp: int) -> str:
    """The ``X-Encompass-Signature`` value for ``body``, keyed with the stored secret hash."""
    key = bytes.fromhex(secret_hash_hex)
    digest = hmac.new(key, f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(body: bytes, header: str, *, secret: str, now: int, tolerance: int = 300) -> bool:
    """The receiver's check: the header's HMAC matches ``body`` under ``secret`` and its
    time lies within ``tolerance`` seconds of ``now``. A reference for receivers."""
    parts: dict[str, str] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        parts[name] = value
    try:
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = hmac.new(signature_key(secret), f"{timestamp}.".encode("ascii") + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


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
        return PostResult("delivered", f"HTTP {status}")
    if status >= 500 or status in _RETRY_4XX:
        return PostResult("retry", f"HTTP {status}")
    return PostResult("failed", f"HTTP {status}")


class WebhookSender:
    """POSTs envelopes with one shared HTTP client; :meth:`close` it when done."""

    def __init__(self, *, timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._client: aiohttp.ClientSession | None = None

    async def post(self, url: str, body: bytes, *, envelope_id: str, kind: str,
                   secret_hash_hex: str | None, timestamp: int) -> PostResult:
        """POST ``body`` to ``url`` once and classify the answer. Timeouts and connection
        errors are ``retry``; an unacceptable URL is ``failed`` without sending."""
        if not acceptable_url(url):
            return PostResult("failed", "refused: webhook URL is not https")
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: envelope_id,
                   KIND_HEADER: kind}
        if secret_hash_hex:
            headers[SIGNATURE_HEADER] = sign(body, secret_hash_hex=secret_hash_hex,
                                             timestamp=timestamp)
        if self._client is None:
            self._client = aiohttp.ClientSession(timeout=self._timeout)
        try:
            # No redirects: a 3xx could carry the envelope to a host nobody registered.
            async with self._client.post(url, data=body, headers=headers,
                                         allow_redirects=False) as response:
                await response.read()
                return classify(response.status)
        except TimeoutError as exc:
            return PostResult("retry", type(exc).__name__)
        except aiohttp.InvalidURL:
            return PostResult("failed", "InvalidURL")
        except aiohttp.ClientError as exc:
            return PostResult("retry", type(exc).__name__)

    async def close(self) -> None:
        """Close the HTTP client (safe to call twice)."""
        if self._client is not None:
            await self._client.close()
            self._client = None
