"""Encryption at rest: the key-encryption key (a file, never the database) and AES-256-GCM.

Two levels, both AES-256-GCM from ``cryptography`` with a random 96-bit nonce:

* the **key-encryption key** (KEK), 32 random bytes in the file ``ENCOMPASS_DATA_KEY``
  (generated on first start, mode 0600), wraps each incident's data key and seals the few
  service secrets kept in the database (a webhook HMAC key);
* a **data key** per incident, 32 random bytes, encrypts that incident's personal fields.

Every ciphertext carries associated data naming what it is and which row it belongs to,
so a value copied to another row, column or incident does not decrypt. Destroying an
incident's wrapped data key makes its fields unreadable for good (crypto-shredding).

Stored form of a sealed value: ``ev1.`` + base64url(nonce ‖ ciphertext ‖ tag), no padding.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from encompass.adapters.key_files import KeyFileError, write_secret_file

PREFIX: Final = "ev1."
_NONCE: Final = 12
_KEY_BYTES: Final = 32
_FILE_LABEL: Final = "encompass-data-key/1"


class DataUnavailable(Exception):
    """A sealed value cannot be read; the message is one line without personal data."""


class DataPurged(DataUnavailable):
    """The incident's data key was destroyed under the retention rule."""


class DataUnreadable(DataUnavailable):
    """The value does not decrypt: not sealed by us, altered, moved, or sealed under
    another key-encryption key."""


def _aad(purpose: str, subject: str) -> bytes:
    # NUL-separated: neither part can contain a NUL, so no two (purpose, subject) pairs
    # give the same bytes.
    return b"encompass-at-rest/1\x00" + purpose.encode() + b"\x00" + subject.encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal_value(key: bytes, plaintext: bytes, *, purpose: str, subject: str) -> str:
    """``plaintext`` encrypted under ``key`` (AES-256-GCM), bound to ``purpose`` (e.g.
    ``incident_versions.payload``) and ``subject`` (the row's id); the stored text form."""
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(key).encrypt(nonce, plaintext, _aad(purpose, subject))
    return PREFIX + _b64(nonce + sealed)


def open_value(key: bytes, token: str, *, purpose: str, subject: str) -> bytes:
    """The plaintext of a value made by :func:`seal_value` with the same ``key``,
    ``purpose`` and ``subject``; DataUnreadable for anything else (clear text included:
    a value written into the database by someone without the key is never trusted)."""
    if not token.startswith(PREFIX):
        raise DataUnreadable(f"{purpose} of {subject} is not a sealed value")
    try:
        raw = _unb64(token[len(PREFIX) :])
    except (ValueError, binascii.Error):
        raise DataUnreadable(f"{purpose} of {subject} is not valid base64") from None
    if len(raw) < _NONCE + 16:
        raise DataUnreadable(f"{purpose} of {subject} is too short to be sealed")
    try:
        return AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], _aad(purpose, subject))
    except InvalidTag:
        raise DataUnreadable(
            f"{purpose} of {subject} does not decrypt (altered, moved, or "
            "sealed under another data key file)"
        ) from None


class DataKeys:
    """The key-encryption key in memory: wraps data keys and seals service secrets."""

    def __init__(self, kek: bytes) -> None:
        if len(kek) != _KEY_BYTES:
            raise ValueError("a key-encryption key is 32 bytes")
        self._kek = kek

    @property
    def fingerprint(self) -> str:
        """16 hex digits naming the KEK (not secret: tells which file sealed a value)."""
        return hashlib.sha256(b"encompass-kek-id\x00" + self._kek).hexdigest()[:16]

    @staticmethod
    def new_data_key() -> bytes:
        """A fresh random 256-bit data key."""
        return AESGCM.generate_key(bit_length=256)

    def wrap(self, data_key: bytes, *, incident_id: str) -> str:
        """``data_key`` sealed under the KEK, bound to ``incident_id``."""
        return seal_value(
            self._kek, data_key, purpose="incident_keys.data_key", subject=incident_id
        )

    def unwrap(self, wrapped: str, *, incident_id: str) -> bytes:
        """The data key of ``incident_id``; DataUnreadable when it was not wrapped by this
        KEK for this incident."""
        return open_value(self._kek, wrapped, purpose="incident_keys.data_key", subject=incident_id)

    def seal_secret(self, secret: bytes, *, purpose: str, subject: str) -> str:
        """A service secret (not incident data, never purged) sealed under the KEK."""
        return seal_value(self._kek, secret, purpose=purpose, subject=subject)

    def open_secret(self, sealed: str, *, purpose: str, subject: str) -> bytes:
        """The secret sealed by :meth:`seal_secret`; DataUnreadable otherwise."""
        return open_value(self._kek, sealed, purpose=purpose, subject=subject)


def data_key_file_text(kek: bytes) -> bytes:
    """The file form: a label, then the 32 bytes in standard base64, one line each."""
    return f"{_FILE_LABEL}\n{base64.b64encode(kek).decode('ascii')}\n".encode("ascii")


def parse_data_key_file(data: bytes, path: Path) -> DataKeys:
    """The KEK in ``data`` (the text of ``path``); KeyFileError (one line) otherwise."""
    lines = data.decode("ascii", "replace").split()
    if len(lines) != 2 or lines[0] != _FILE_LABEL:
        raise KeyFileError(
            f"the data key {path} is not an Encompass data key file "
            f"(expected '{_FILE_LABEL}' and one base64 line)"
        )
    try:
        kek = base64.b64decode(lines[1], validate=True)
    except (ValueError, binascii.Error):
        raise KeyFileError(f"the data key {path} does not hold valid base64") from None
    if len(kek) != _KEY_BYTES:
        raise KeyFileError(f"the data key {path} holds {len(kek)} bytes, not 32")
    return DataKeys(kek)


def load_or_create_data_keys(path: Path) -> DataKeys:
    """The KEK at ``path``; generated (mode 0600) when the file is absent. KeyFileError
    (one line) when it exists but cannot be read or is not one."""
    if not path.exists():
        kek = AESGCM.generate_key(bit_length=256)
        try:
            write_secret_file(path, data_key_file_text(kek))
            return DataKeys(kek)
        except FileExistsError:
            pass  # another process created it first: use that one, as it does
        except OSError as exc:
            raise KeyFileError(f"cannot create the data key {path}: {exc.strerror}") from None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read the data key {path}: {exc.strerror}") from None
    return parse_data_key_file(data, path)
