"""``encompass match CHILDREN.jsonl [--out F]``: the dry run as a council runs it, through
``encompass.cli.main`` against a temporary SQLite database holding the sample directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from encompass.cli import main
from encompass.services.matching import match_dry_run
from tests.fixtures.directory.sample import write_sample

CHILDREN = [
    {
        "ref": "noah",
        "given_name": "Noah",
        "family_name": "Sample",
        "date_of_birth": "2012-01-07",
        "postcode": "TF1 3BX",
        "upn": "A801200002001",
    },
    {
        "ref": "ollie",
        "given_name": "Ollie",
        "family_name": "Example",
        "date_of_birth": "2017-09-14",
        "postcode": "tf34nt",
        "gender": "M",
    },
    {
        "ref": "stranger",
        "given_name": "Nobody",
        "family_name": "Known",
        "date_of_birth": "2009-01-01",
        "postcode": "EX1 1AA",
    },
]


@pytest.fixture
def roster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A SQLite database with the sample directory imported by ``encompass directory
    import``; returns the scratch folder."""
    monkeypatch.setenv("ENCOMPASS_DATABASE_URL", f"sqlite:///{tmp_path / 'encompass.db'}")
    monkeypatch.setenv("ENCOMPASS_SIGNING_KEY", str(tmp_path / "service-key.pem"))
    monkeypatch.delenv("ENCOMPASS_AMQP_URL", raising=False)
    paths = write_sample(tmp_path / "directory", prefix="")
    assert (
        main(
            [
                "directory",
                "import",
                "--calendars",
                str(paths["calendars"]),
                "--settings",
                str(paths["settings"]),
                "--pupils",
                str(paths["pupils"]),
            ]
        )
        == 0
    )
    return tmp_path


def _jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines),
        encoding="utf-8",
    )
    return path


def test_one_line_per_child_in_input_order(
    roster: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()  # the import's own output
    children = _jsonl(roster / "children.jsonl", [CHILDREN[0], "", *CHILDREN[1:]])
    assert main(["match", str(children)]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["ref"] for line in lines] == ["noah", "ollie", "stranger"]
    assert all(
        set(line) == {"ref", "decision", "setting_ids", "score", "reasons"} for line in lines
    )
    noah, ollie, stranger = lines
    assert noah["decision"] == "match" and noah["setting_ids"] == ["URN100002"]
    # Oliver is on two rolls, the school and the nursery's wrap-around care: both are told.
    assert ollie["decision"] == "match"
    assert sorted(ollie["setting_ids"]) == ["EY200001", "URN100001"]
    assert stranger["decision"] == "none" and stranger["setting_ids"] == []
    assert all(isinstance(line["score"], float) and line["reasons"] for line in lines)
    assert "3 children against 8 pupils: match 2, review 0, none 1" in err


def test_out_writes_the_file_and_progress_goes_to_stderr(
    roster: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(match_dry_run, "PROGRESS_EVERY", 2)
    capsys.readouterr()
    children = _jsonl(roster / "children.jsonl", CHILDREN * 2)
    out_file = roster / "results.jsonl"
    assert main(["match", str(children), "--out", str(out_file)]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert len(out_file.read_text(encoding="utf-8").splitlines()) == 6
    assert out_file.stat().st_mode & 0o777 == 0o600  # the refs may identify children
    assert [line for line in err.splitlines() if "children matched" in line] == [
        f"  {children}: {n} of 6 children matched" for n in (2, 4, 6)
    ]
    assert not list(roster.glob(".results.jsonl.*"))  # no temporary file left behind


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("{not json", "not JSON"),
        ('["a list"]', "not a JSON object"),
        ('{"ref": "x", "given_name": "A", "postcode": "TF3 4NT"}', "family_name"),
        (
            '{"ref": "x", "given_name": "A", "family_name": "B", "postcode": "TF3 4NT", '
            '"date_of_birth": "07/01/2012"}',
            "date_of_birth is not an ISO date",
        ),
    ],
)
def test_a_bad_line_stops_the_run_with_its_line_number(
    roster: Path, capsys: pytest.CaptureFixture[str], bad: str, reason: str
) -> None:
    capsys.readouterr()
    children = _jsonl(roster / "children.jsonl", [CHILDREN[0], "", bad, CHILDREN[1]])
    out_file = roster / "results.jsonl"
    assert main(["match", str(children), "--out", str(out_file)]) == 1
    out, err = capsys.readouterr()
    # One line naming the file and the line, nothing matched, nothing written.
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(f"encompass: {children}:3: ") and reason in err
    assert "Traceback" not in err
    assert not out_file.exists()


def test_a_file_that_is_not_utf8_names_its_line(
    roster: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    children = roster / "children.jsonl"
    children.write_bytes(json.dumps(CHILDREN[0]).encode() + b'\n{"given_name": "\xe9"}\n')
    assert main(["match", str(children)]) == 1
    assert capsys.readouterr().err == f"encompass: {children}:2: not UTF-8 text\n"


def test_a_missing_file_is_one_line(roster: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["match", str(roster / "nowhere.jsonl")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "cannot read the file" in err


def test_a_database_without_a_directory_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENCOMPASS_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    children = _jsonl(tmp_path / "children.jsonl", CHILDREN)
    assert main(["match", str(children)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("encompass: the database has no directory: import one first")


def test_an_out_that_cannot_be_written_fails_before_matching(
    roster: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    children = _jsonl(roster / "children.jsonl", CHILDREN)
    assert main(["match", str(children), "--out", str(roster / "no-such-dir" / "r.jsonl")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "roster:" not in err
    assert err.splitlines() == [
        f"encompass: {roster / 'no-such-dir' / 'r.jsonl'}: cannot "
        "write there (No such file or directory)"
    ]


def test_a_review_lists_its_candidates_best_first(
    roster: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    moved = {
        "ref": "moved",
        "given_name": "Amelia",
        "family_name": "Example",
        "date_of_birth": "2015-03-02",
        "postcode": "EX1 1AA",
    }
    children = _jsonl(roster / "children.jsonl", [moved, CHILDREN[2]])
    assert main(["match", str(children)]) == 0
    review, stranger = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert review["decision"] == "review" and review["setting_ids"] == []
    assert review["candidates"][0]["setting_id"] == "URN100001"
    assert 1 <= len(review["candidates"]) <= 5
    scores = [c["score"] for c in review["candidates"]]
    assert scores == sorted(scores, reverse=True)
    assert all(c["reasons"] for c in review["candidates"])
    assert "candidates" not in stranger


def test_explain_model_prints_every_level_fitted_on_the_roster_and_the_children(
    roster: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["match", "--explain-model"]) == 0
    alone = capsys.readouterr().out.splitlines()
    assert alone[0].startswith("Fellegi-Sunter model: u from 28 random roster pairs")
    assert any(line.startswith("postcode       exact") for line in alone)
    children = _jsonl(roster / "children.jsonl", CHILDREN)
    assert main(["match", str(children), "--explain-model"]) == 0
    out = capsys.readouterr().out
    assert "date of birth  transposed" in out and "hand-set bits" in out
    assert "Noah" not in out and "Sample" not in out  # levels only, no one's data


def test_match_without_a_file_says_what_to_give(
    roster: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["match"]) == 1
    assert "give CHILDREN.jsonl" in capsys.readouterr().err


def test_save_model_keeps_the_model_fitted_on_children_for_the_roster(
    roster: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    # never fitted on the roster alone, never without --explain-model
    assert main(["match", "--explain-model", "--save-model"]) == 1
    assert "--save-model needs CHILDREN.jsonl" in capsys.readouterr().err
    children = _jsonl(roster / "children.jsonl", CHILDREN)
    assert main(["match", str(children), "--save-model"]) == 1
    assert "goes with --explain-model" in capsys.readouterr().err
    assert main(["match", str(children), "--explain-model", "--save-model"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("the matcher uses it from its next load")
    # and the dry run now matches with it, its output unchanged in shape
    assert main(["match", str(children)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == len(CHILDREN)
    assert all({"ref", "decision", "setting_ids", "score", "reasons"} <= set(x) for x in lines)
