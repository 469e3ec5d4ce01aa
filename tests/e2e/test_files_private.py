"""Files the service creates are 0600: the SQLite database (and its WAL files), the signing
key and the data key; a data key file that cannot be used stops a command with one line.
The service writes no log file of its own (logs go to standard error)."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from encompass.cli import main


@pytest.fixture(autouse=True)
def _logging_reset() -> Iterator[None]:
    # The commands point the log at this test's captured stderr: undo it after.
    yield
    structlog.reset_defaults()


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ENCOMPASS_DATABASE_URL", f"sqlite:///{tmp_path / 'db' / 'encompass.db'}")
    monkeypatch.setenv("ENCOMPASS_SIGNING_KEY", str(tmp_path / "keys" / "signing.pem"))
    monkeypatch.delenv("ENCOMPASS_DATA_KEY", raising=False)  # the default: beside it
    monkeypatch.delenv("ENCOMPASS_AMQP_URL", raising=False)
    return tmp_path


def test_every_file_the_service_creates_is_0600(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["forces", "add", "CH", "--name", "Cheshire Constabulary"]) == 0
    assert main(["purge", "--dry-run"]) == 0
    assert "0 incident(s) to purge" in capsys.readouterr().out
    made = [p for p in folder.rglob("*") if p.is_file()]
    names = {p.name for p in made}
    assert {"encompass.db", "signing.pem", "encompass-data-key"} <= names, names
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in made} == {
        p.name: oct(0o600) for p in made
    }
    assert not any(p.suffix == ".log" for p in made)


def test_a_bad_data_key_file_stops_a_command_with_one_line(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (folder / "keys").mkdir()
    (folder / "keys" / "encompass-data-key").write_text("not a key\n")
    assert main(["forces", "add", "CH", "--name", "Cheshire Constabulary"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("encompass: ") and "\n" not in err
    assert "is not an Encompass data key file" in err
