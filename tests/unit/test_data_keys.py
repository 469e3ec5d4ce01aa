"""The pure parts of data at rest and webhook signing: sealed values bound to their row,
the key file, the retention moment, and the service's webhook signature."""

from __future__ import annotations

import base64
import hashlib
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from encompass.adapters.data_keys import (
    DataKeys,
    DataUnreadable,
    data_key_file_text,
    load_or_create_data_keys,
    open_value,
    seal_value,
)
from encompass.adapters.db.engine import private_sqlite_file
from encompass.adapters.key_files import KeyFileError
from encompass.adapters.webhook import service_sign, signed_bytes, verify_service
from encompass.bootstrap import data_key_path
from encompass.config import ConfigError, load_settings
from encompass.services.records.retention import closed_at

KEY = DataKeys.new_data_key()


def test_a_sealed_value_opens_only_for_its_key_column_and_row() -> None:
    sealed = seal_value(KEY, b"Amelia Smith", purpose="incident_versions.payload", subject="v-1")
    assert sealed.startswith("ev1.") and "Amelia" not in sealed
    assert (
        open_value(KEY, sealed, purpose="incident_versions.payload", subject="v-1")
        == b"Amelia Smith"
    )
    # Two seals of one value differ (a fresh nonce each time)
    assert sealed != seal_value(
        KEY, b"Amelia Smith", purpose="incident_versions.payload", subject="v-1"
    )
    for key, purpose, subject in (
        (DataKeys.new_data_key(), "incident_versions.payload", "v-1"),
        (KEY, "children.candidates", "v-1"),
        (KEY, "incident_versions.payload", "v-2"),
    ):
        with pytest.raises(DataUnreadable):
            open_value(key, sealed, purpose=purpose, subject=subject)


@pytest.mark.parametrize("stored", ['{"incident_ref":"X"}', "ev1.", "ev1.!!!!", "ev1.AAAA"])
def test_clear_or_malformed_values_are_never_trusted(stored: str) -> None:
    with pytest.raises(DataUnreadable) as refused:
        open_value(KEY, stored, purpose="incident_versions.payload", subject="v-1")
    assert "\n" not in str(refused.value) and "incident_ref" not in str(refused.value)


def test_an_altered_value_does_not_open() -> None:
    sealed = seal_value(KEY, b"x" * 40, purpose="p", subject="s")
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(DataUnreadable):
        open_value(KEY, flipped, purpose="p", subject="s")


def test_a_wrapped_data_key_is_bound_to_its_incident() -> None:
    keys = DataKeys(DataKeys.new_data_key())
    wrapped = keys.wrap(KEY, incident_id="i-1")
    assert keys.unwrap(wrapped, incident_id="i-1") == KEY
    with pytest.raises(DataUnreadable):
        keys.unwrap(wrapped, incident_id="i-2")
    with pytest.raises(DataUnreadable):
        DataKeys(DataKeys.new_data_key()).unwrap(wrapped, incident_id="i-1")


def test_the_key_file_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "encompass-data-key"
    first = load_or_create_data_keys(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_data_keys(path).fingerprint == first.fingerprint
    assert path.read_text().startswith("encompass-data-key/1\n")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "not an Encompass data key file"),
        (
            b"-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n",
            "not an Encompass data key file",
        ),
        (b"encompass-data-key/1\n%%%%\n", "does not hold valid base64"),
        (
            data_key_file_text(b"k" * 32).replace(
                base64.b64encode(b"k" * 32), base64.b64encode(b"k" * 16)
            ),
            "16 bytes, not 32",
        ),
    ],
)
def test_a_bad_key_file_stops_the_start_with_one_line(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "data-key"
    path.write_bytes(content)
    with pytest.raises(KeyFileError) as refused:
        load_or_create_data_keys(path)
    assert problem in str(refused.value) and "\n" not in str(refused.value)


def test_the_data_key_defaults_to_beside_the_signing_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ENCOMPASS_DATA_KEY", raising=False)
    monkeypatch.delenv("ENCOMPASS_SIGNING_KEY", raising=False)
    assert data_key_path(load_settings()) == Path("encompass-data-key")
    beside = load_settings(signing_key=tmp_path / "svc.pem")
    assert data_key_path(beside) == tmp_path / "encompass-data-key"
    assert data_key_path(load_settings(data_key=tmp_path / "k")) == tmp_path / "k"


def test_retention_days_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCOMPASS_RETENTION_DAYS", "-1")
    with pytest.raises(ConfigError, match="ENCOMPASS_RETENTION_DAYS"):
        load_settings()
    monkeypatch.delenv("ENCOMPASS_RETENTION_DAYS")
    assert load_settings().retention_days == 90


def test_an_incident_closes_at_its_last_change() -> None:
    withdrawn = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    assert closed_at(withdrawn, None) == withdrawn
    assert closed_at(withdrawn, withdrawn + timedelta(days=2)) == withdrawn + timedelta(days=2)
    assert closed_at(withdrawn, withdrawn - timedelta(days=2)) == withdrawn


def test_the_sqlite_file_is_created_and_kept_0600(tmp_path: Path) -> None:
    path = tmp_path / "db" / "encompass.db"
    private_sqlite_file(f"sqlite+aiosqlite:///{path}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)  # an older file, made world-readable
    private_sqlite_file(f"sqlite+aiosqlite:///{path}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    private_sqlite_file("sqlite+aiosqlite:///:memory:")  # nothing to do


SERVICE = Ed25519PrivateKey.generate()
BODY = b'{"format":"encompass-envelope/1"}'


def test_the_service_signs_exactly_the_documented_bytes() -> None:
    assert signed_bytes(BODY, timestamp=1_700_000_000, idempotency_key="e-1", kind="notice") == (
        b"encompass-webhook/1\n1700000000\ne-1\nnotice\n"
        + hashlib.sha256(BODY).hexdigest().encode()
    )
    header = service_sign(
        BODY, signing_key=SERVICE, timestamp=1_700_000_000, idempotency_key="e-1", kind="notice"
    )
    assert header.startswith("t=1700000000,ed25519=")
    SERVICE.public_key().verify(
        base64.b64decode(header.split("ed25519=")[1]),
        signed_bytes(BODY, timestamp=1_700_000_000, idempotency_key="e-1", kind="notice"),
    )


def test_the_service_signature_verifies_for_that_request_only() -> None:
    header = service_sign(
        BODY, signing_key=SERVICE, timestamp=1_700_000_000, idempotency_key="e-1", kind="notice"
    )

    def ok(
        body: bytes = BODY,
        header: str = header,
        key: str = "e-1",
        kind: str = "notice",
        service: Ed25519PrivateKey = SERVICE,
        now: int = 1_700_000_100,
    ) -> bool:
        return verify_service(
            body, header, idempotency_key=key, kind=kind, service_key=service.public_key(), now=now
        )

    assert ok()
    assert not ok(body=BODY + b" ")
    assert not ok(key="e-2")  # replayed under another idempotency key
    assert not ok(kind="retraction")
    assert not ok(service=Ed25519PrivateKey.generate())
    assert not ok(now=1_700_001_000)  # too old: a replay
    assert not ok(header="garbage")
    assert not ok(header="t=1700000000,ed25519=%%%")
    assert not ok(header=header.replace("t=1700000000", "t=1700000001"))
