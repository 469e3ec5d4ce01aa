"""Checking a Key Adult's public key as given in ``key_adults.csv``.

The column holds a PEM file path (relative to the CSV) or the PEM text inline. A file may
hold several blocks (the post-quantum key pair adds an ML-KEM block beside the X25519 one);
we keep every block, so the sealing code can pick the algorithm the key allows.
"""

from __future__ import annotations

import re
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)
_MAX_BYTES = 64 * 1024  # a public key file is a few kB; anything larger is the wrong file


def _text(value: str, base: Path) -> str:
    if "-----BEGIN" in value:
        # Spreadsheets sometimes flatten the PEM's line breaks into a literal "\n".
        return value.replace("\\n", "\n") if "\n" not in value else value
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base / path
    try:
        if path.stat().st_size > _MAX_BYTES:
            raise ValueError(f"file {value} is too large to be a public key")
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"file {value} cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ValueError(f"file {value} is not PEM text") from None


def public_key_pem(value: str, base: Path) -> str:
    """The PEM blocks of ``value`` (inline PEM, or a path relative to ``base``), joined.

    Raises ValueError (a short reason for the row's message) unless at least one block parses
    as an X25519 public key, which every HPKE suite we seal with needs. A private key is
    refused outright: the service must never hold a Key Adult's private key.
    """
    blocks = list(_BLOCK.finditer(_text(value, base)))
    if not blocks:
        raise ValueError("holds no PEM block")
    if any("PRIVATE" in block[1] for block in blocks):
        raise ValueError("holds a PRIVATE key: give only the Key Adult's public key")
    usable = False
    for block in blocks:
        try:
            key = load_pem_public_key(block[0].encode("ascii"))
        except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError):
            continue
        usable = usable or isinstance(key, X25519PublicKey)
    if not usable:
        raise ValueError("holds no X25519 public key")
    return "\n".join(block[0] for block in blocks) + "\n"
