"""Key files and the key commands: modes, refusals, parsing, and ``open`` end to end.

Every key is generated at run time into pytest's temporary directory.
"""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from encompass.adapters.key_files import (
    KeyFileError,
    generate_key_adult_keys,
    load_or_create_signing_key,
    load_private_key_bundle,
    load_public_key_bundle,
    load_service_public_key,
    private_keys_pem,
    public_key_pem,
    write_secret_file,
)
from encompass.domain.envelope import HYBRID_ALGORITHM, X25519_ALGORITHM, seal
from encompass.key_commands import OpenError, keys_generate, open_envelope
from tests.unit.test_envelope import notice


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def pem(key: X25519PrivateKey | Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: X25519PrivateKey | Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    ("post_quantum", "blocks", "algorithm"),
    [(False, 2, X25519_ALGORITHM), (True, 3, HYBRID_ALGORITHM)],
)
def test_keys_generate_writes_matching_files(
    tmp_path: Path, post_quantum: bool, blocks: int, algorithm: str
) -> None:
    out = tmp_path / "new" / "keys"
    keys_generate(out, post_quantum)
    private_text = (out / "private.pem").read_text()
    public_text = (out / "public.pem").read_text()
    assert mode(out / "private.pem") == 0o600
    assert private_text.count("-----BEGIN PRIVATE KEY-----") == blocks
    assert public_text.count("-----BEGIN PUBLIC KEY-----") == blocks
    assert private_text.startswith("Encompass Key Adult private keys:")
    private = load_private_key_bundle(private_text)
    public = load_public_key_bundle(public_text.encode())
    assert public.recipient.key_id == private.recipient.public_key().key_id
    assert public.recipient.algorithm == algorithm
    assert public.signing == private.signing.public_key()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_keys_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    keys_generate(tmp_path, post_quantum=False)
    before = (tmp_path / "private.pem").read_bytes()
    with pytest.raises(KeyFileError, match="already exists") as caught:
        keys_generate(tmp_path, post_quantum=True)
    assert "\n" not in str(caught.value)
    assert (tmp_path / "private.pem").read_bytes() == before


def test_bundles_refuse_bad_input() -> None:
    keys = generate_key_adult_keys(post_quantum=False)
    private_text = private_keys_pem(keys).decode()
    x25519, signing = X25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    ec_key = generate_private_key(SECP256R1())
    ec_pem = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    encrypted = x25519.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    private_cases = [
        (b"nothing here", "no PEM block"),
        (pem(x25519), "exactly one Ed25519"),
        (pem(signing), "exactly one X25519"),
        (pem(x25519) + pem(x25519) + pem(signing), "exactly one X25519"),
        (encrypted + pem(signing), "encrypted"),
        (public_pem(x25519) + public_pem(signing), "was public.pem given"),
        (ec_pem + pem(x25519) + pem(signing), "not X25519, ML-KEM-768 or Ed25519"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a readable"),
    ]
    for text, message in private_cases:
        with pytest.raises(KeyFileError, match=message) as caught:
            load_private_key_bundle(text)
        assert "\n" not in str(caught.value)
    public_cases: list[tuple[str | bytes, str]] = [
        (private_text, "holds a private key"),
        (public_pem(x25519), "exactly one Ed25519"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not a 'PUBLIC KEY'"),
    ]
    for public_text, message in public_cases:
        with pytest.raises(KeyFileError, match=message) as caught:
            load_public_key_bundle(public_text)
        assert "\n" not in str(caught.value)


def test_signing_key_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "state" / "service-signing.pem"
    key = load_or_create_signing_key(path)
    assert mode(path) == 0o600
    again = load_or_create_signing_key(path)
    assert again.public_key() == key.public_key()
    service_pem = public_key_pem(key)
    assert service_pem == public_key_pem(key.public_key())
    assert load_service_public_key(service_pem) == key.public_key()
    with pytest.raises(KeyFileError, match="'PRIVATE KEY' first"):
        load_service_public_key(path.read_text())  # the private file is not a public key
    with pytest.raises(KeyFileError, match="not Ed25519"):
        load_service_public_key(public_pem(X25519PrivateKey.generate()))


def test_signing_key_refuses_wrong_files(tmp_path: Path) -> None:
    wrong = tmp_path / "x25519.pem"
    wrong.write_bytes(pem(X25519PrivateKey.generate()))
    with pytest.raises(KeyFileError, match="not Ed25519"):
        load_or_create_signing_key(wrong)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello")
    with pytest.raises(KeyFileError, match="not an unencrypted PEM private key"):
        load_or_create_signing_key(garbage)


def test_write_secret_file_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write_secret_file(path, b"one")
    with pytest.raises(FileExistsError):
        write_secret_file(path, b"two")
    assert path.read_bytes() == b"one" and mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]


@pytest.mark.parametrize("post_quantum", [False, True])
def test_open_envelope_end_to_end(tmp_path: Path, post_quantum: bool) -> None:
    keys_generate(tmp_path / "ka", post_quantum)
    public = load_public_key_bundle((tmp_path / "ka" / "public.pem").read_text())
    service = load_or_create_signing_key(tmp_path / "service.pem")
    (tmp_path / "service.pub.pem").write_text(public_key_pem(service))
    envelope = seal(
        notice(),
        notice_id="N-1",
        recipient_id="KA-1",
        recipient_public_key=public.recipient,
        signing_key=service,
        now=datetime(2026, 11, 23, 7, 30, tzinfo=UTC),
    )
    (tmp_path / "N-1.json").write_text(envelope.model_dump_json())
    opened = open_envelope(
        tmp_path / "N-1.json", tmp_path / "ka" / "private.pem", tmp_path / "service.pub.pem"
    )
    assert opened["notice_id"] == "N-1" and opened["child"]["given_name"] == "Amelia"
    json.dumps(opened)  # JSON-ready as returned
    # Without --service-key it fails closed until a key is pinned beside the private key.
    with pytest.raises(OpenError, match="cannot check who sealed this envelope"):
        open_envelope(tmp_path / "N-1.json", tmp_path / "ka" / "private.pem", None)
    (tmp_path / "ka" / "service-key.pem").write_text(public_key_pem(service))
    assert (
        open_envelope(str(tmp_path / "N-1.json"), str(tmp_path / "ka" / "private.pem"), None)
        == opened
    )

    keys_generate(tmp_path / "other", post_quantum=False)
    failures = [
        (
            (
                tmp_path / "N-1.json",
                tmp_path / "other" / "private.pem",
                tmp_path / "service.pub.pem",
            ),
            "not for this key",
        ),
        (
            (
                tmp_path / "N-1.json",
                tmp_path / "ka" / "private.pem",
                tmp_path / "other" / "public.pem",
            ),
            "must be one Ed25519",
        ),
        ((tmp_path / "missing.json", tmp_path / "ka" / "private.pem", None), "cannot read"),
        ((tmp_path / "N-1.json", tmp_path / "ka" / "public.pem", None), "private key"),
    ]
    data = envelope.model_dump()
    (tmp_path / "bad.json").write_text(json.dumps({**data, "notice_id": "N-9"}))
    failures.append(
        (
            (tmp_path / "bad.json", tmp_path / "ka" / "private.pem", tmp_path / "service.pub.pem"),
            "envelope altered",
        )
    )
    stranger = Ed25519PrivateKey.generate()
    (tmp_path / "stranger.pem").write_text(public_key_pem(stranger))
    failures.append(
        (
            (tmp_path / "N-1.json", tmp_path / "ka" / "private.pem", tmp_path / "stranger.pem"),
            "signature does not verify",
        )
    )
    for (envelope_path, key_path, service_path), message in failures:
        with pytest.raises(OpenError, match=message) as caught:
            open_envelope(envelope_path, key_path, service_path)
        assert "\n" not in str(caught.value)
