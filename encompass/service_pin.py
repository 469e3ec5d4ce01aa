"""The service's public key, pinned on first use beside the Key Adult's private key.

``encompass inbox`` (and ``ack``) fetch the service's Ed25519 key from ``/v1/service-key``.
The first time, it is written to ``service-key.pem`` in the directory of the Key Adult's
``private.pem``; every later run compares what the service sends with that file and
refuses a different key, as SSH does with a changed host key. ``encompass open``, which
has no service to ask, checks envelopes against that file (or ``--service-key``) and
refuses to open anything whose origin it cannot check.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from encompass.adapters.key_files import KeyFileError, load_service_public_key, public_key_pem

PIN_NAME: Final = "service-key.pem"


class PinError(Exception):
    """The pinned key is missing, unreadable or differs from the service's; one line."""


def pin_path_for(private_key_path: Path | str) -> Path:
    """Where the service key is pinned for the Key Adult whose key is ``private_key_path``."""
    return Path(private_key_path).parent / PIN_NAME


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def read_pin(path: Path) -> Ed25519PublicKey | None:
    """The key pinned at ``path``, or None when nothing is pinned there yet."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PinError(f"cannot read the pinned service key {path}: {exc.strerror}") from None
    try:
        return load_service_public_key(text)
    except KeyFileError as exc:
        raise PinError(f"{path}: {exc}") from None


def check_or_pin(path: Path, served: Ed25519PublicKey) -> bool:
    """Compare ``served`` with the key pinned at ``path``; pin it when none is. Returns
    True when it was pinned just now. PinError when a different key is pinned."""
    pinned = read_pin(path)
    if pinned is None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:  # another run pinned it meanwhile: compare with that
            check_or_pin(path, served)
            return False
        except OSError as exc:
            raise PinError(f"cannot pin the service key in {path}: {exc.strerror}") from None
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(public_key_pem(served))
        return True
    if _raw(pinned) != _raw(served):
        raise PinError(
            f"the service's key differs from the one pinned in {path}; nothing "
            "was opened. If the service really changed its key, check the new "
            "one with your local authority, then delete that file"
        )
    return False


def pinned_for_opening(private_key_path: Path | str) -> Ed25519PublicKey:
    """The key ``encompass open`` checks envelopes against when no ``--service-key`` is
    given; PinError (one line) when none is pinned."""
    path = pin_path_for(private_key_path)
    pinned = read_pin(path)
    if pinned is None:
        raise PinError(
            "cannot check who sealed this envelope: give --service-key "
            f"PUBLIC.pem, or run 'encompass inbox' once to pin the service's "
            f"key in {path}"
        )
    return pinned
