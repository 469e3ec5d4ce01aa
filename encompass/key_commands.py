"""The Key Adult's key commands: ``encompass keys generate`` and ``encompass open``.

Plain functions (the argparse wiring lives in ``encompass.cli``): each either does its job
or raises an exception whose message is the one line to print before exiting 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from encompass.adapters.key_files import (
    KeyFileError,
    generate_key_adult_keys,
    load_private_key_bundle,
    load_service_public_key,
    private_keys_pem,
    public_keys_pem,
    write_secret_file,
)
from encompass.domain.envelope import EnvelopeError, open_sealed, parse_envelope
from encompass.service_pin import PinError, pinned_for_opening

__all__ = ["KeyFileError", "OpenError", "keys_generate", "open_envelope"]


class OpenError(Exception):
    """``encompass open`` refused; the message is one line (altered, not for this key,
    signature does not verify, or a file that cannot be read)."""


def keys_generate(out_dir: Path | str, post_quantum: bool) -> None:
    """Write a fresh Key Adult key pair: ``out_dir/private.pem`` (mode 0600) and
    ``out_dir/public.pem``. Refuses with KeyFileError (one line) when ``private.pem``
    already exists: an existing private key is never replaced."""
    keys = generate_key_adult_keys(post_quantum)
    private_path, public_path = Path(out_dir) / "private.pem", Path(out_dir) / "public.pem"
    try:
        write_secret_file(private_path, private_keys_pem(keys))
    except FileExistsError:
        raise KeyFileError(
            f"{private_path} already exists; not overwriting a private key"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot write {private_path}: {exc.strerror}") from None
    try:
        # Replaced if present: a public.pem must always match the private.pem beside it.
        public_path.write_bytes(public_keys_pem(keys.public_keys()))
    except OSError as exc:
        raise KeyFileError(f"cannot write {public_path}: {exc.strerror}") from None


def _read(path: Path | str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise OpenError(f"cannot read the {what} {path}: {exc.strerror}") from None


def open_envelope(
    envelope_path: Path | str, key_path: Path | str, service_key_path: Path | str | None
) -> dict[str, Any]:
    """Open the sealed notice in ``envelope_path`` with the Key Adult's ``private.pem`` and
    return the notice as a JSON-ready dict, after checking the service's signature against
    ``service_key_path`` or, without it, the key an earlier ``encompass inbox`` pinned beside
    the private key. Fails closed: with neither, nothing is opened. Raises OpenError with
    one line."""
    envelope_text = _read(envelope_path, "envelope")
    key_text = _read(key_path, "private key")
    try:
        keys = load_private_key_bundle(key_text)
        if service_key_path is not None:
            service_key = load_service_public_key(_read(service_key_path, "service key"))
        else:
            service_key = pinned_for_opening(key_path)
    except (KeyFileError, PinError) as exc:
        raise OpenError(str(exc)) from None
    try:
        notice = open_sealed(
            parse_envelope(envelope_text),
            private_key=keys.recipient,
            service_public_key=service_key,
        )
    except EnvelopeError as exc:
        raise OpenError(str(exc)) from None
    return notice.model_dump(mode="json")
