"""Key files: Key Adult key bundles and the service's Ed25519 signing key, as PEM.

A Key Adult's ``private.pem`` holds two or three unencrypted PKCS#8 ``PRIVATE KEY`` blocks,
``public.pem`` the matching SubjectPublicKeyInfo ``PUBLIC KEY`` blocks (``schemas/envelope.md``):

* X25519 — the HPKE sealing key (always present);
* ML-KEM-768 — present only for a post-quantum key: with the X25519 block it forms the
  ML-KEM-768 + X25519 hybrid HPKE key;
* Ed25519 — the key that signs the Key Adult's acknowledgements.

Every block is the library's own serialisation, so ``openssl pkey`` reads each one (ML-KEM
from OpenSSL 3.5); which block is which comes from the key's algorithm identifier, not from
the order. Secret files are written 0600, and a key that exists is never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from encompass.domain.envelope import RecipientPrivateKey, RecipientPublicKey

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)


class KeyFileError(ValueError):
    """A key file that cannot be used; the message is one line and names the problem."""


@dataclass(frozen=True, slots=True)
class KeyAdultPublicKeys:
    """What the directory holds for a Key Adult: the key notices are sealed to, and the key
    that verifies their acknowledgements."""

    recipient: RecipientPublicKey
    signing: Ed25519PublicKey


@dataclass(frozen=True, slots=True)
class KeyAdultPrivateKeys:
    """What stays with the Key Adult: opens notices and signs acknowledgements."""

    recipient: RecipientPrivateKey
    signing: Ed25519PrivateKey

    def public_keys(self) -> KeyAdultPublicKeys:
        return KeyAdultPublicKeys(self.recipient.public_key(), self.signing.public_key())


def generate_key_adult_keys(post_quantum: bool) -> KeyAdultPrivateKeys:
    """Fresh keys: X25519 (plus ML-KEM-768 when ``post_quantum``) and Ed25519."""
    mlkem = MLKEM768PrivateKey.generate() if post_quantum else None
    return KeyAdultPrivateKeys(
        RecipientPrivateKey(X25519PrivateKey.generate(), mlkem), Ed25519PrivateKey.generate()
    )


def private_keys_pem(keys: KeyAdultPrivateKeys) -> bytes:
    """``private.pem`` text: explanatory line, then [ML-KEM-768], X25519, Ed25519 blocks."""
    parts: list[X25519PrivateKey | MLKEM768PrivateKey | Ed25519PrivateKey] = []
    if keys.recipient.mlkem768 is not None:
        parts.append(keys.recipient.mlkem768)
    parts += [keys.recipient.x25519, keys.signing]
    blocks = b"".join(
        part.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        for part in parts
    )
    return _header(keys.recipient.mlkem768 is not None, "private") + blocks


def public_keys_pem(keys: KeyAdultPublicKeys) -> bytes:
    """``public.pem`` text: explanatory line, then [ML-KEM-768], X25519, Ed25519 blocks."""
    parts: list[X25519PublicKey | MLKEM768PublicKey | Ed25519PublicKey] = []
    if keys.recipient.mlkem768 is not None:
        parts.append(keys.recipient.mlkem768)
    parts += [keys.recipient.x25519, keys.signing]
    blocks = b"".join(
        part.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        for part in parts
    )
    return _header(keys.recipient.mlkem768 is not None, "public") + blocks


def _header(post_quantum: bool, half: str) -> bytes:
    # RFC 7468 allows explanatory text outside the blocks; it tells a person what this is.
    sealing = "ML-KEM-768 + X25519 (hybrid)" if post_quantum else "X25519"
    return (
        f"Encompass Key Adult {half} keys: {sealing} for sealed notices, "
        "Ed25519 for acknowledgements.\n"
    ).encode()


def _blocks(pem_text: str | bytes, what: str) -> list[tuple[str, bytes]]:
    text = pem_text.decode("utf-8", "replace") if isinstance(pem_text, bytes) else pem_text
    found = [(m.group(1), m.group(0).encode()) for m in _PEM_BLOCK.finditer(text)]
    if not found:
        raise KeyFileError(f"{what} holds no PEM block")
    return found


def load_private_key_bundle(pem_text: str | bytes) -> KeyAdultPrivateKeys:
    """Parse ``private.pem``; KeyFileError (one line) unless it holds exactly one X25519 and
    one Ed25519 private key, at most one ML-KEM-768 key, and nothing else."""
    x25519: list[X25519PrivateKey] = []
    mlkem: list[MLKEM768PrivateKey] = []
    signing: list[Ed25519PrivateKey] = []
    for number, (label, block) in enumerate(_blocks(pem_text, "the private key file"), 1):
        if label == "ENCRYPTED PRIVATE KEY":
            raise KeyFileError(
                "the private key file is encrypted; Encompass reads unencrypted "
                "PKCS#8 keys (protect the file with its 0600 mode)"
            )
        if label != "PRIVATE KEY":
            raise KeyFileError(
                f"the private key file's block {number} is a {label!r}, "
                "not a 'PRIVATE KEY' (was public.pem given?)"
            )
        try:
            key = serialization.load_pem_private_key(block, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise KeyFileError(
                f"the private key file's block {number} is not a readable private key"
            ) from None
        if isinstance(key, X25519PrivateKey):
            x25519.append(key)
        elif isinstance(key, MLKEM768PrivateKey):
            mlkem.append(key)
        elif isinstance(key, Ed25519PrivateKey):
            signing.append(key)
        else:
            raise KeyFileError(
                f"the private key file's block {number} is a "
                f"{type(key).__name__}, not X25519, ML-KEM-768 or Ed25519"
            )
    _check_counts("private key file", len(x25519), len(mlkem), len(signing))
    return KeyAdultPrivateKeys(
        RecipientPrivateKey(x25519[0], mlkem[0] if mlkem else None), signing[0]
    )


def load_public_key_bundle(pem_text: str | bytes) -> KeyAdultPublicKeys:
    """Parse ``public.pem``; KeyFileError (one line) unless it holds exactly one X25519 and
    one Ed25519 public key, at most one ML-KEM-768 key, and nothing else."""
    x25519: list[X25519PublicKey] = []
    mlkem: list[MLKEM768PublicKey] = []
    signing: list[Ed25519PublicKey] = []
    for number, (label, block) in enumerate(_blocks(pem_text, "the public key"), 1):
        if "PRIVATE" in label:
            raise KeyFileError(
                "the public key holds a private key: give public.pem, and keep "
                "private.pem with the Key Adult"
            )
        if label != "PUBLIC KEY":
            raise KeyFileError(
                f"the public key's block {number} is a {label!r}, not a 'PUBLIC KEY'"
            )
        try:
            key = serialization.load_pem_public_key(block)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise KeyFileError(
                f"the public key's block {number} is not a readable public key"
            ) from None
        if isinstance(key, X25519PublicKey):
            x25519.append(key)
        elif isinstance(key, MLKEM768PublicKey):
            mlkem.append(key)
        elif isinstance(key, Ed25519PublicKey):
            signing.append(key)
        else:
            raise KeyFileError(
                f"the public key's block {number} is a {type(key).__name__}, "
                "not X25519, ML-KEM-768 or Ed25519"
            )
    _check_counts("public key", len(x25519), len(mlkem), len(signing))
    return KeyAdultPublicKeys(
        RecipientPublicKey(x25519[0], mlkem[0] if mlkem else None), signing[0]
    )


def _check_counts(what: str, x25519: int, mlkem: int, signing: int) -> None:
    if x25519 != 1:
        raise KeyFileError(
            f"the {what} must hold exactly one X25519 key (sealing), it holds {x25519}"
        )
    if mlkem > 1:
        raise KeyFileError(f"the {what} holds {mlkem} ML-KEM-768 keys; at most one")
    if signing != 1:
        raise KeyFileError(
            f"the {what} must hold exactly one Ed25519 key (acknowledgements), it holds {signing}"
        )


def load_service_public_key(pem_text: str | bytes) -> Ed25519PublicKey:
    """The service's Ed25519 public key: the file must hold exactly that one PUBLIC KEY
    block, so neither a private key nor a Key Adult's public.pem is taken for it."""
    blocks = _blocks(pem_text, "the service key")
    if len(blocks) != 1 or blocks[0][0] != "PUBLIC KEY":
        raise KeyFileError(
            "the service key must be one Ed25519 'PUBLIC KEY' block, "
            f"it holds {len(blocks)} block(s) ({blocks[0][0]!r} first)"
        )
    try:
        key = serialization.load_pem_public_key(blocks[0][1])
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError("the service key is not a readable public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"the service key is a {type(key).__name__}, not Ed25519")
    return key


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The Ed25519 public key as a SubjectPublicKeyInfo PEM block (what receivers pin)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def write_secret_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 holding exactly ``data``. Raises FileExistsError when
    it exists (never overwrites); other readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # link() publishes the finished file atomically and, unlike rename(), fails when
        # the name exists: two processes starting together cannot replace each other's key.
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:
            _write_exclusive(path, data)  # a filesystem without hard links
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _write_exclusive(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """The service's Ed25519 signing key at ``path``; generated (PKCS#8 PEM, mode 0600) when
    the file is absent. KeyFileError (one line) when it exists but is not one."""
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            write_secret_file(path, data)
            return key
        except FileExistsError:
            pass  # another process created it first: use that one, as it does
        except OSError as exc:
            raise KeyFileError(f"cannot create the signing key {path}: {exc.strerror}") from None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read the signing key {path}: {exc.strerror}") from None
    try:
        loaded = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError(
            f"the signing key {path} is not an unencrypted PEM private key"
        ) from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise KeyFileError(f"the signing key {path} is a {type(loaded).__name__}, not Ed25519")
    return loaded
