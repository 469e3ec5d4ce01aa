"""The sealed envelope: one notice, sealed with HPKE to one Key Adult, signed by the service.

Pure domain code (cryptography, pydantic, stdlib; no I/O). The format is documented in
``schemas/envelope.md``; anything that changes the bytes below changes the format version.

HPKE (RFC 9180) comes whole from ``cryptography.hazmat.primitives.hpke``: nothing here
derives keys, runs a KEM or an AEAD by hand. The public HPKE API offers single-shot
``encrypt``/``decrypt`` with ``info`` but no AAD, so the envelope's routing fields (format,
notice id, recipient, recipient key id, algorithm) are bound through ``info``: it enters the
HPKE key schedule, so a ciphertext moved to another envelope derives another key and fails
its AEAD tag, exactly as an AAD mismatch would.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from encompass.domain.incident import ShortText, Text

FORMAT: Final = "encompass-envelope/1"
ACK_FORMAT: Final = "encompass-ack/1"
X25519_ALGORITHM: Final = "HPKE-X25519-SHA256-AES256GCM"
HYBRID_ALGORITHM: Final = "HPKE-MLKEM768X25519-SHA256-AES256GCM"
Algorithm = Literal["HPKE-X25519-SHA256-AES256GCM", "HPKE-MLKEM768X25519-SHA256-AES256GCM"]


class AckKind(StrEnum):
    """What a Key Adult's acknowledgement says (the ``kind`` they sign)."""

    RECEIVED = "received"
    NOT_OUR_PUPIL = "not_our_pupil"  # sends the notice back to review
    CHILD_ABSENT = "child_absent"


_ACK_KINDS = frozenset(AckKind)

_SUITES: dict[str, hpke.Suite] = {
    X25519_ALGORITHM: hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM),
    HYBRID_ALGORITHM: hpke.Suite(
        hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM
    ),
}


class EnvelopeError(Exception):
    """An envelope refused; ``str()`` is one line, ``reason`` a stable code:
    ``malformed``, ``unknown_format``, ``unknown_algorithm``, ``bad_signature``,
    ``altered`` or ``not_for_this_key``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _canonical_b64(value: str) -> str:
    # Only the one canonical spelling: otherwise a signature's base64 could be re-spelt
    # (padding bits) without breaking it, and the envelope hash acks refer to would drift.
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError("not valid base64") from exc
    if base64.b64encode(raw).decode("ascii") != value:
        raise ValueError("not canonical base64")
    return value


Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
]
KeyId = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
B64 = Annotated[
    str, StringConstraints(min_length=4, max_length=1_000_000), AfterValidator(_canonical_b64)
]
Instant = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")]


_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChildDetails(_Frozen):
    given_name: ShortText
    family_name: ShortText
    date_of_birth: date | None


class OfficerContact(_Frozen):
    name: ShortText
    contact: ShortText


class NoticeContent(_Frozen):
    """What a Key Adult reads (docs/receiving.md), and nothing more."""

    notice_id: Identifier
    setting_id: Identifier
    kind: Literal["notice", "retraction"] = "notice"
    version: Annotated[int, Field(ge=1)]
    child: ChildDetails
    police_reference: ShortText
    occurred_at: AwareDatetime
    location: ShortText
    present: bool
    where_during: Text | None = None
    voice: Text | None = None
    circumstances: Text
    police_actions: Text
    officer: OfficerContact
    guidance: Text


class Envelope(_Frozen):
    """The sealed notice as stored, served and delivered (``schemas/envelope.md``)."""

    format: Literal["encompass-envelope/1"]
    notice_id: Identifier
    recipient: Identifier
    recipient_key_id: KeyId
    algorithm: Algorithm
    sealed_at: Instant
    ciphertext: B64
    signer_key_id: KeyId
    signature: B64

    def sealed_at_datetime(self) -> datetime:
        """``sealed_at`` as an aware UTC datetime."""
        return datetime.strptime(self.sealed_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RecipientPublicKey:
    """A Key Adult's sealing key: X25519, or the ML-KEM-768 + X25519 hybrid when
    ``mlkem768`` is set. The algorithm follows the key; it is never negotiated down."""

    x25519: X25519PublicKey
    mlkem768: MLKEM768PublicKey | None = None
    key_id: str = field(init=False, compare=False)
    hpke_key: X25519PublicKey | hpke.MLKEM768X25519PublicKey = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # Computed once: seal() is the hot path and both are pure functions of the key.
        raw = self.x25519.public_bytes_raw()
        target: X25519PublicKey | hpke.MLKEM768X25519PublicKey = self.x25519
        if self.mlkem768 is not None:
            raw = self.mlkem768.public_bytes_raw() + raw
            target = hpke.MLKEM768X25519PublicKey(self.mlkem768, self.x25519)
        object.__setattr__(self, "key_id", "sha256:" + hashlib.sha256(raw).hexdigest())
        object.__setattr__(self, "hpke_key", target)

    @property
    def algorithm(self) -> Algorithm:
        return X25519_ALGORITHM if self.mlkem768 is None else HYBRID_ALGORITHM


@dataclass(frozen=True, slots=True)
class RecipientPrivateKey:
    """The private half of :class:`RecipientPublicKey`; only ever held by the Key Adult."""

    x25519: X25519PrivateKey
    mlkem768: MLKEM768PrivateKey | None = None

    def public_key(self) -> RecipientPublicKey:
        mlkem = None if self.mlkem768 is None else self.mlkem768.public_key()
        return RecipientPublicKey(self.x25519.public_key(), mlkem)

    def hpke_key(self) -> X25519PrivateKey | hpke.MLKEM768X25519PrivateKey:
        """The key object the HPKE API takes."""
        if self.mlkem768 is None:
            return self.x25519
        return hpke.MLKEM768X25519PrivateKey(self.mlkem768, self.x25519)


def canonical_bytes(value: Mapping[str, Any]) -> bytes:
    """The canonical form: JSON, keys sorted, no whitespace, UTF-8, non-ASCII unescaped.
    For the string-only, ASCII-keyed objects signed here this equals RFC 8785 (JCS)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def signer_key_id(public_key: Ed25519PublicKey) -> str:
    """``sha256:`` + hex SHA-256 of the raw 32-byte Ed25519 public key."""
    return "sha256:" + hashlib.sha256(public_key.public_bytes_raw()).hexdigest()


def _hpke_info(notice_id: str, recipient: str, recipient_key_id: str, algorithm: str) -> bytes:
    return canonical_bytes(
        {
            "format": FORMAT,
            "notice_id": notice_id,
            "recipient": recipient,
            "recipient_key_id": recipient_key_id,
            "algorithm": algorithm,
        }
    )


def signed_bytes(envelope: Envelope) -> bytes:
    """The bytes the service's signature covers: every field but ``signature``, canonical."""
    return canonical_bytes(envelope.model_dump(mode="json", exclude={"signature"}))


def envelope_hash(envelope: Envelope) -> str:
    """Hex SHA-256 of the whole envelope's canonical bytes, signature included: the
    identity of exactly this envelope, which acknowledgements sign."""
    return hashlib.sha256(canonical_bytes(envelope.model_dump(mode="json"))).hexdigest()


def seal(
    content: NoticeContent | Mapping[str, Any],
    *,
    notice_id: str,
    recipient_id: str,
    recipient_public_key: RecipientPublicKey | X25519PublicKey,
    signing_key: Ed25519PrivateKey,
    now: datetime,
) -> Envelope:
    """Seal ``content`` to one recipient and sign it. The algorithm follows the key (hybrid
    when it has ML-KEM-768). Raises ValueError (pydantic's ValidationError for bad content)
    when ``content`` is invalid or names another notice, or ``now`` is naive."""
    notice = (
        content if isinstance(content, NoticeContent) else NoticeContent.model_validate(content)
    )
    if notice.notice_id != notice_id:
        raise ValueError("content.notice_id differs from the envelope's notice_id")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    _IDENTIFIER.validate_python(recipient_id)
    key = recipient_public_key
    if isinstance(key, X25519PublicKey):
        key = RecipientPublicKey(key)
    info = _hpke_info(notice_id, recipient_id, key.key_id, key.algorithm)
    # The plaintext needs no canonical form (only the receiver parses it), so pydantic's
    # fast serialiser does.
    sealed = _SUITES[key.algorithm].encrypt(
        notice.model_dump_json().encode(), key.hpke_key, info=info
    )
    fields: dict[str, Any] = {
        "format": FORMAT,
        "notice_id": notice_id,
        "recipient": recipient_id,
        "recipient_key_id": key.key_id,
        "algorithm": key.algorithm,
        "sealed_at": now.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z",
        "ciphertext": base64.b64encode(sealed).decode("ascii"),
        "signer_key_id": signer_key_id(signing_key.public_key()),
    }
    signature = base64.b64encode(signing_key.sign(canonical_bytes(fields))).decode("ascii")
    # Every field is well-formed by construction (the ids were validated above), so the
    # hot path skips re-validating ~3 kB of base64.
    return Envelope.model_construct(**fields, signature=signature)


def seal_hashed(
    content: NoticeContent,
    *,
    notice_id: str,
    recipient_id: str,
    recipient_public_key: RecipientPublicKey,
    signing_key: Ed25519PrivateKey,
    now: datetime,
) -> tuple[Envelope, str]:
    """:func:`seal`, with the envelope's :func:`envelope_hash` computed from the fields
    just made (every field is a string, so they are what ``model_dump`` would give)
    rather than by dumping the envelope again."""
    envelope = seal(
        content,
        notice_id=notice_id,
        recipient_id=recipient_id,
        recipient_public_key=recipient_public_key,
        signing_key=signing_key,
        now=now,
    )
    return envelope, hashlib.sha256(canonical_bytes(dict(envelope))).hexdigest()


def parse_envelope(data: str | bytes | Mapping[str, Any]) -> Envelope:
    """An :class:`Envelope` from JSON text or a decoded object; EnvelopeError (one line)
    for an unknown format or algorithm, or anything else malformed."""
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EnvelopeError("malformed", f"not a valid envelope: not JSON ({exc})") from None
    if not isinstance(data, Mapping):
        raise EnvelopeError("malformed", "not a valid envelope: not a JSON object")
    if data.get("format") != FORMAT:
        raise EnvelopeError(
            "unknown_format",
            "unknown envelope format "
            f"{str(data.get('format'))[:80]!r} (this version reads {FORMAT})",
        )
    algorithm = data.get("algorithm")
    if not isinstance(algorithm, str) or algorithm not in _SUITES:
        raise EnvelopeError(
            "unknown_algorithm", f"unknown envelope algorithm {str(algorithm)[:80]!r}"
        )
    try:
        return Envelope.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "envelope"
        raise EnvelopeError("malformed", f"not a valid envelope: {where}: {first['msg']}") from None


def open_sealed(
    envelope: Envelope,
    *,
    private_key: RecipientPrivateKey | X25519PrivateKey,
    service_public_key: Ed25519PublicKey | None,
) -> NoticeContent:
    """Verify and open. Checks, in order: format and algorithm; the service's signature
    (when ``service_public_key`` is given; without it origin is NOT verified); that the
    envelope is sealed to this key; the HPKE tag. Raises EnvelopeError with one line."""
    suite = _SUITES.get(envelope.algorithm)
    if envelope.format != FORMAT or suite is None:  # only reachable via model_construct()
        raise EnvelopeError("unknown_format", f"unknown envelope format {envelope.format!r}")
    if service_public_key is not None:
        expected = signer_key_id(service_public_key)
        if envelope.signer_key_id != expected:
            raise EnvelopeError(
                "bad_signature",
                "signature does not verify: signed by "
                f"{envelope.signer_key_id}, not the service key {expected}",
            )
        try:
            service_public_key.verify(base64.b64decode(envelope.signature), signed_bytes(envelope))
        except InvalidSignature:
            raise EnvelopeError(
                "altered", "envelope altered: the service's signature does not match its content"
            ) from None
    key = private_key
    if isinstance(key, X25519PrivateKey):
        key = RecipientPrivateKey(key)
    ours = key.public_key()
    if envelope.recipient_key_id != ours.key_id:
        raise EnvelopeError(
            "not_for_this_key",
            f"not for this key: sealed to {envelope.recipient_key_id}, this key is {ours.key_id}",
        )
    if envelope.algorithm != ours.algorithm:  # the key id fixes the algorithm
        raise EnvelopeError("altered", "envelope altered: its algorithm does not match its key")
    info = _hpke_info(
        envelope.notice_id, envelope.recipient, envelope.recipient_key_id, envelope.algorithm
    )
    try:
        plaintext = suite.decrypt(base64.b64decode(envelope.ciphertext), key.hpke_key(), info=info)
    except InvalidTag:
        raise EnvelopeError(
            "altered", "envelope altered: the sealed content fails its integrity check"
        ) from None
    try:
        notice = NoticeContent.model_validate_json(plaintext)
    except ValidationError:
        raise EnvelopeError("malformed", "the sealed content is not a valid notice") from None
    if notice.notice_id != envelope.notice_id:
        raise EnvelopeError(
            "altered", "envelope altered: the sealed notice names another notice_id"
        )
    return notice


def ack_payload(
    notice_id: str, envelope_hash: str, kind: AckKind | str, reply: str | None
) -> bytes:
    """The canonical bytes a Key Adult signs to acknowledge exactly one envelope:
    ``{"format":"encompass-ack/1","notice_id","envelope_hash","kind","reply"}``. ``kind`` may
    come as a plain string from a signer's own code: it is checked here (ValueError)."""
    if kind not in _ACK_KINDS:
        raise ValueError(f"unknown acknowledgement kind {kind!r}")
    return canonical_bytes(
        {
            "format": ACK_FORMAT,
            "notice_id": notice_id,
            "envelope_hash": envelope_hash,
            "kind": kind,
            "reply": reply,
        }
    )


def sign_ack(
    private_key: Ed25519PrivateKey,
    *,
    notice_id: str,
    envelope_hash: str,
    kind: AckKind | str,
    reply: str | None,
) -> str:
    """The Key Adult's Ed25519 signature over :func:`ack_payload`, base64."""
    payload = ack_payload(notice_id, envelope_hash, kind, reply)
    return base64.b64encode(private_key.sign(payload)).decode("ascii")


def verify_ack(
    public_key: Ed25519PublicKey,
    signature: str,
    *,
    notice_id: str,
    envelope_hash: str,
    kind: AckKind | str,
    reply: str | None,
) -> None:
    """Returns when ``signature`` is the Key Adult's over exactly these values; otherwise
    EnvelopeError (reason ``bad_signature``)."""
    payload = ack_payload(notice_id, envelope_hash, kind, reply)
    try:
        public_key.verify(base64.b64decode(_canonical_b64(signature)), payload)
    except (ValueError, InvalidSignature):
        raise EnvelopeError("bad_signature", "acknowledgement signature does not verify") from None
