"""Whether a browser could use the post-quantum hybrid: Python's HPKE ``MLKEM768_X25519``
(the envelope's ``HPKE-MLKEM768X25519-SHA256-AES256GCM``) against the JavaScript X-Wing of
``@hpke/hybridkem-x-wing``, both ways, on a real envelope's ``info``.

They agree. Browsers still use X25519: WebCrypto has no ML-KEM, so an X-Wing private key in
a browser would be bytes a script can read, not a non-extractable key (docs/receiving.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from encompass.domain.envelope import (
    FORMAT,
    HYBRID_ALGORITHM,
    RecipientPublicKey,
    canonical_bytes,
    seal,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "web" / "test" / "xwing_interop.mjs"
SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
NOTICE_ID = "N-PQ"
NOTICE: dict[str, Any] = {
    "notice_id": NOTICE_ID,
    "setting_id": "URN1",
    "version": 1,
    "child": {"given_name": "Zoë", "family_name": "Ng", "date_of_birth": "2016-01-02"},
    "police_reference": "R-1",
    "occurred_at": "2026-12-06T22:00:00+00:00",
    "location": "home",
    "present": True,
    "circumstances": "c",
    "police_actions": "p",
    "officer": {"name": "PC 1", "contact": "101"},
    "guidance": "g",
}


def js(ask: dict[str, Any]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (ROOT / "web" / "node_modules" / "@hpke").exists():
        pytest.fail("node and web/node_modules are needed: run make (npm ci)", pytrace=False)
    done = subprocess.run(
        [node, str(SCRIPT)],
        input=json.dumps(ask),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT / "web",
    )
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def python_keys(seed: bytes) -> tuple[MLKEM768PrivateKey, X25519PrivateKey]:
    """X-Wing's private key is a 32-byte seed: SHAKE-256 expands it to the ML-KEM-768 seed
    (64 bytes) and the X25519 private key (32)."""
    expanded = hashlib.shake_256(seed).digest(96)
    return (
        MLKEM768PrivateKey.from_seed_bytes(expanded[:64]),
        X25519PrivateKey.from_private_bytes(expanded[64:]),
    )


def info_of(recipient: str, key_id: str) -> bytes:
    return canonical_bytes(
        {
            "algorithm": HYBRID_ALGORITHM,
            "format": FORMAT,
            "notice_id": NOTICE_ID,
            "recipient": recipient,
            "recipient_key_id": key_id,
        }
    )


def test_python_and_javascript_x_wing_agree_both_ways() -> None:
    # Given an X-Wing key pair made in JavaScript,
    made = js({"op": "generate"})
    public = base64.b64decode(made["public_key"])
    mlkem, x25519 = python_keys(base64.b64decode(made["seed"]))
    # its public key is Python's ML-KEM-768 key followed by its X25519 key,
    assert public == mlkem.public_key().public_bytes_raw() + x25519.public_key().public_bytes_raw()
    recipient = RecipientPublicKey(
        X25519PublicKey.from_public_bytes(public[1184:]),
        MLKEM768PublicKey.from_public_bytes(public[:1184]),
    )
    # when the service seals a real envelope to it, JavaScript opens it;
    envelope = seal(
        NOTICE,
        notice_id=NOTICE_ID,
        recipient_id="KA-1",
        recipient_public_key=recipient,
        signing_key=Ed25519PrivateKey.generate(),
        now=datetime(2026, 12, 7, tzinfo=UTC),
    )
    assert envelope.algorithm == HYBRID_ALGORITHM
    info = info_of("KA-1", recipient.key_id)
    opened = js(
        {
            "op": "open",
            "seed": made["seed"],
            "ciphertext": envelope.ciphertext,
            "info": base64.b64encode(info).decode(),
        }
    )
    assert json.loads(base64.b64decode(opened["plaintext"]))["child"]["given_name"] == "Zoë"
    # and what JavaScript seals, Python opens.
    sealed = js(
        {
            "op": "seal",
            "public_key": made["public_key"],
            "info": base64.b64encode(info).decode(),
            "plaintext": base64.b64encode(b"from the browser").decode(),
        }
    )
    private = hpke.MLKEM768X25519PrivateKey(mlkem, x25519)
    assert (
        SUITE.decrypt(base64.b64decode(sealed["ciphertext"]), private, info=info)
        == b"from the browser"
    )
