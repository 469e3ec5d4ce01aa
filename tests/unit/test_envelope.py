"""The sealed envelope: round trips, every refusal with its one-line reason, acks, canonical form.

Every key is generated at run time; nothing here touches the network or the disk.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import ValidationError

from encompass.domain.envelope import (
    HYBRID_ALGORITHM,
    X25519_ALGORITHM,
    Envelope,
    EnvelopeError,
    NoticeContent,
    RecipientPrivateKey,
    RecipientPublicKey,
    ack_payload,
    canonical_bytes,
    envelope_hash,
    open_sealed,
    parse_envelope,
    seal,
    seal_hashed,
    sign_ack,
    signed_bytes,
    signer_key_id,
    verify_ack,
)

NOW = datetime(2026, 11, 23, 7, 30, 5, 123456, tzinfo=UTC)
SERVICE = Ed25519PrivateKey.generate()


def notice(notice_id: str = "N-1", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "notice_id": notice_id,
        "setting_id": "URN100001",
        "kind": "notice",
        "version": 1,
        "child": {"given_name": "Amelia", "family_name": "Smith", "date_of_birth": "2015-03-02"},
        "police_reference": "CH-2026-000123",
        "occurred_at": "2026-11-22T23:10:00+00:00",
        "location": "the family home",
        "present": True,
        "where_during": "upstairs bedroom",
        "voice": "said she was scared; her brother was there",
        "circumstances": "x" * 1500,
        "police_actions": "arrest made; safeguarding referral",
        "officer": {"name": "PC 1234 Jones", "contact": "0300 000 0000"},
        "guidance": "Offer quiet support; do not question the child about the incident.",
    }
    body.update(changes)
    return body


def recipient(post_quantum: bool = False) -> RecipientPrivateKey:
    mlkem = MLKEM768PrivateKey.generate() if post_quantum else None
    return RecipientPrivateKey(X25519PrivateKey.generate(), mlkem)


def sealed(
    key: RecipientPrivateKey,
    notice_id: str = "N-1",
    recipient_id: str = "KA-1",
    signing_key: Ed25519PrivateKey = SERVICE,
) -> Envelope:
    return seal(
        notice(notice_id),
        notice_id=notice_id,
        recipient_id=recipient_id,
        recipient_public_key=key.public_key(),
        signing_key=signing_key,
        now=NOW,
    )


def refused(envelope: Envelope, key: RecipientPrivateKey, *, service: bool = True) -> EnvelopeError:
    with pytest.raises(EnvelopeError) as caught:
        open_sealed(
            envelope, private_key=key, service_public_key=SERVICE.public_key() if service else None
        )
    assert "\n" not in str(caught.value)
    return caught.value


def altered(envelope: Envelope, **changes: str) -> Envelope:
    return Envelope.model_validate({**envelope.model_dump(), **changes})


def flip_byte(text: str, index: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    ("post_quantum", "algorithm"), [(False, X25519_ALGORITHM), (True, HYBRID_ALGORITHM)]
)
def test_round_trip(post_quantum: bool, algorithm: str) -> None:
    key = recipient(post_quantum)
    envelope = sealed(key)
    assert envelope.algorithm == algorithm
    assert envelope.format == "encompass-envelope/1"
    assert envelope.recipient == "KA-1"
    assert envelope.recipient_key_id == key.public_key().key_id
    assert envelope.signer_key_id == signer_key_id(SERVICE.public_key())
    assert envelope.sealed_at == "2026-11-23T07:30:05Z"
    assert envelope.sealed_at_datetime() == NOW.replace(microsecond=0)
    assert Envelope.model_validate(envelope.model_dump()) == envelope  # seal builds valid ones
    opened = open_sealed(envelope, private_key=key, service_public_key=SERVICE.public_key())
    assert opened == NoticeContent.model_validate(notice())
    # Without the service key the content still opens (origin then unverified).
    assert open_sealed(envelope, private_key=key, service_public_key=None) == opened


def test_round_trip_through_json_and_bare_x25519_keys() -> None:
    private = X25519PrivateKey.generate()
    envelope = seal(
        NoticeContent.model_validate(notice()),
        notice_id="N-1",
        recipient_id="KA-1",
        recipient_public_key=private.public_key(),
        signing_key=SERVICE,
        now=NOW.astimezone(timezone(timedelta(hours=1))),
    )
    again = parse_envelope(envelope.model_dump_json())
    assert again == envelope and envelope_hash(again) == envelope_hash(envelope)
    assert again.sealed_at == "2026-11-23T07:30:05Z"
    assert open_sealed(again, private_key=private, service_public_key=SERVICE.public_key())


def test_seal_refuses_bad_input() -> None:
    key = recipient().public_key()
    with pytest.raises(ValueError, match="notice_id"):
        seal(
            notice("N-1"),
            notice_id="N-2",
            recipient_id="KA-1",
            recipient_public_key=key,
            signing_key=SERVICE,
            now=NOW,
        )
    with pytest.raises(ValueError, match="timezone"):
        seal(
            notice(),
            notice_id="N-1",
            recipient_id="KA-1",
            recipient_public_key=key,
            signing_key=SERVICE,
            now=NOW.replace(tzinfo=None),
        )
    with pytest.raises(ValidationError):
        seal(
            notice(),
            notice_id="N-1",
            recipient_id="KA\n1",
            recipient_public_key=key,
            signing_key=SERVICE,
            now=NOW,
        )
    with pytest.raises(ValidationError):
        seal(
            notice(injured=True),
            notice_id="N-1",
            recipient_id="KA-1",
            recipient_public_key=key,
            signing_key=SERVICE,
            now=NOW,
        )


@pytest.mark.parametrize("post_quantum", [False, True])
@pytest.mark.parametrize("service", [True, False])
def test_tampered_ciphertext_is_refused(post_quantum: bool, service: bool) -> None:
    key = recipient(post_quantum)
    envelope = sealed(key)
    for index in (0, 40, -1):  # KEM encapsulation, AEAD body, AEAD tag
        error = refused(
            altered(envelope, ciphertext=flip_byte(envelope.ciphertext, index)),
            key,
            service=service,
        )
        assert error.reason == "altered" and str(error).startswith("envelope altered")


@pytest.mark.parametrize("service", [True, False])
@pytest.mark.parametrize("field", ["notice_id", "recipient"])
def test_tampered_routing_fields_are_refused(field: str, service: bool) -> None:
    key = recipient()
    error = refused(altered(sealed(key), **{field: "N-OTHER"}), key, service=service)
    assert error.reason == "altered" and str(error).startswith("envelope altered")


def test_tampered_signature_is_refused() -> None:
    key = recipient()
    envelope = sealed(key)
    error = refused(altered(envelope, signature=flip_byte(envelope.signature, 5)), key)
    assert error.reason == "altered"


def test_ciphertext_moved_to_another_envelope_fails_even_when_signed() -> None:
    # Even someone holding the service key cannot reuse a ciphertext under another notice:
    # HPKE info binds notice id, recipient, key id and algorithm.
    key = recipient()
    first, second = sealed(key, "N-1"), sealed(key, "N-2")
    fields = {**second.model_dump(exclude={"signature"}), "ciphertext": first.ciphertext}
    signature = base64.b64encode(SERVICE.sign(canonical_bytes(fields))).decode()
    moved = Envelope.model_validate({**fields, "signature": signature})
    assert refused(moved, key).reason == "altered"


def test_envelope_for_another_key_adult_is_refused() -> None:
    ours, theirs = recipient(), recipient(post_quantum=True)
    for service in (True, False):
        error = refused(sealed(theirs, recipient_id="KA-2"), ours, service=service)
        assert error.reason == "not_for_this_key"
        assert str(error).startswith("not for this key")


def test_wrong_service_key_is_refused() -> None:
    key = recipient()
    error = refused(sealed(key, signing_key=Ed25519PrivateKey.generate()), key)
    assert error.reason == "bad_signature"
    assert str(error).startswith("signature does not verify")


def test_algorithm_swapped_is_refused() -> None:
    key = recipient(post_quantum=True)
    swapped = altered(sealed(key), algorithm=X25519_ALGORITHM)
    assert refused(swapped, key).reason == "altered"
    assert refused(swapped, key, service=False).reason == "altered"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"format": "encompass-envelope/2"}, "unknown_format"),
        ({"algorithm": "HPKE-P256-SHA256-AES128GCM"}, "unknown_algorithm"),
        ({"algorithm": ["x"]}, "unknown_algorithm"),
        ({"extra": "field"}, "malformed"),
        ({"recipient_key_id": "abc"}, "malformed"),
        ({"sealed_at": "2026-11-23T07:30:05+00:00"}, "malformed"),
    ],
)
def test_parse_envelope_refuses(change: dict[str, Any], reason: str) -> None:
    data = {**sealed(recipient()).model_dump(), **change}
    with pytest.raises(EnvelopeError) as caught:
        parse_envelope(json.dumps(data))
    assert caught.value.reason == reason and "\n" not in str(caught.value)


def test_parse_envelope_refuses_non_json_and_non_canonical_base64() -> None:
    for text in ("{not json", "[]", b"\xff\xfe"):
        with pytest.raises(EnvelopeError) as caught:
            parse_envelope(text)
        assert caught.value.reason == "malformed"
    data = sealed(recipient()).model_dump()
    assert data["signature"].endswith("==")  # 64 bytes: the last char carries 4 spare bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    spare_bit = alphabet[alphabet.index(data["signature"][-3]) ^ 1]
    respelt = data["signature"][:-3] + spare_bit + "=="
    assert base64.b64decode(respelt) == base64.b64decode(data["signature"])
    with pytest.raises(EnvelopeError, match="canonical base64"):
        parse_envelope({**data, "signature": respelt})


def test_canonical_form_is_stable() -> None:
    value = {"b": "2", "a": 'ünï"\n', "c": None, "d": 1}
    assert canonical_bytes(value) == '{"a":"ünï\\"\\n","b":"2","c":null,"d":1}'.encode()
    envelope = Envelope.model_validate(
        {
            "format": "encompass-envelope/1",
            "notice_id": "N-1",
            "recipient": "KA-1",
            "recipient_key_id": "sha256:" + "a" * 64,
            "algorithm": X25519_ALGORITHM,
            "sealed_at": "2026-11-23T07:30:05Z",
            "ciphertext": "AAAA",
            "signer_key_id": "sha256:" + "b" * 64,
            "signature": "AAAA",
        }
    )
    assert signed_bytes(envelope) == (
        b'{"algorithm":"HPKE-X25519-SHA256-AES256GCM","ciphertext":"AAAA","format":'
        b'"encompass-envelope/1","notice_id":"N-1","recipient":"KA-1","recipient_key_id":'
        b'"sha256:' + b"a" * 64 + b'","sealed_at":"2026-11-23T07:30:05Z","signer_key_id":'
        b'"sha256:' + b"b" * 64 + b'"}'
    )
    # A golden value: changing it changes the format, and needs a new format version.
    assert envelope_hash(envelope) == (
        "fa0e45377ee2333adec8c4ecb13395605bc0a98ab33ce76dbfb4de82fc4441b1"
    )


def test_envelope_hash_covers_every_field() -> None:
    envelope = sealed(recipient())
    assert len(envelope_hash(envelope)) == 64
    other = altered(envelope, signature=flip_byte(envelope.signature, 0))
    assert envelope_hash(other) != envelope_hash(envelope)


def test_models_refuse_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        NoticeContent.model_validate(notice(spare="x"))
    with pytest.raises(ValidationError):
        NoticeContent.model_validate(notice(kind="reminder"))
    assert NoticeContent.model_validate(notice(kind="retraction")).kind == "retraction"


def test_ack_round_trip_and_tamper() -> None:
    key = Ed25519PrivateKey.generate()
    values: dict[str, Any] = {
        "notice_id": "N-1",
        "envelope_hash": "f" * 64,
        "kind": "child_absent",
        "reply": "not in school today",
    }
    signature = sign_ack(key, **values)
    verify_ack(key.public_key(), signature, **values)
    assert ack_payload("N-1", "f" * 64, "received", None) == (
        b'{"envelope_hash":"'
        + b"f" * 64
        + b'","format":"encompass-ack/1","kind":"received","notice_id":"N-1","reply":null}'
    )
    for field, value in [
        ("notice_id", "N-2"),
        ("envelope_hash", "e" * 64),
        ("kind", "received"),
        ("reply", "in school"),
    ]:
        with pytest.raises(EnvelopeError) as caught:
            verify_ack(key.public_key(), signature, **{**values, field: value})
        assert caught.value.reason == "bad_signature"
    with pytest.raises(EnvelopeError, match="does not verify"):
        verify_ack(Ed25519PrivateKey.generate().public_key(), signature, **values)
    with pytest.raises(EnvelopeError, match="does not verify"):
        verify_ack(key.public_key(), "not base64!", **values)
    with pytest.raises(ValueError, match="kind"):
        ack_payload("N-1", "f" * 64, "read", None)


@pytest.mark.parametrize("recipient_id", ["KA-1", "KA-Zoë-ß"])
def test_the_hash_made_while_sealing_is_the_envelopes_hash(recipient_id: str) -> None:
    private = X25519PrivateKey.generate()
    envelope, digest = seal_hashed(
        NoticeContent.model_validate(notice()),
        notice_id="N-1",
        recipient_id=recipient_id,
        recipient_public_key=RecipientPublicKey(private.public_key()),
        signing_key=SERVICE,
        now=NOW,
    )
    assert digest == envelope_hash(envelope)
    assert digest == envelope_hash(parse_envelope(envelope.model_dump_json()))
