"""``encompass match CHILDREN.jsonl [--out F]``: what the matcher would decide for a file of
children, against the imported roster, with nothing written to the database and nothing sent.

The file is read twice. The first pass only checks every line, so a bad line (even the last
of a million) stops the run at once with ``FILE:LINE: reason``, before minutes of matching
and before any output is written. The second pass matches (``dry_run.match_children``) and
writes one JSON line per child, in input order. With ``--out`` the lines go to a temporary
file beside ``F`` that replaces ``F`` only when complete, so ``F`` is never half-written; it
is readable by its owner only (mode 0600), since the refs may identify children.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.directory_repo import roster_version
from encompass.adapters.db.match_model_repo import save_match_model
from encompass.adapters.db.tables import PupilRow
from encompass.domain.match import ChildQuery, Decision, RosterIndex
from encompass.domain.matching.dry_run import match_children, parse_child
from encompass.domain.matching.fit import (
    explain_weights,
    fit_roster,
    model_to_json,
    model_weights,
)
from encompass.services.matching.roster import load_roster_index

PROGRESS_EVERY = 10_000

Progress = Callable[[str], None]
"""Called with one line for people (stderr): the roster loaded, every
:data:`PROGRESS_EVERY` children matched. Never holds personal data."""


class DryRunError(Exception):
    """The dry run cannot go on, for a reason the user can act on; ``str()`` is one line."""


class MatchInputError(DryRunError):
    """The children file cannot be used; ``str()`` is one line, ``FILE:LINE: reason`` (or
    ``FILE: reason`` when the file as a whole cannot be read)."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        super().__init__(f"{file}:{line}: {reason}" if line else f"{file}: {reason}")
        self.file = file
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DryRunReport:
    """What a dry run did: children matched, pupils on the roster, decisions counted."""

    children: int
    pupils: int
    decisions: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for people: ``3 children against 8 pupils: match 2, review 0, none 1``."""
        counts = ", ".join(f"{d.value} {self.decisions.get(d.value, 0):,}" for d in Decision)
        return f"{self.children:,} children against {self.pupils:,} pupils: {counts}"


def _lines(path: Path, label: str) -> Iterator[str]:
    """Every line of ``path`` as text, the first without a BOM; decoded line by line (not
    by 8 kB blocks) so that bytes that are not UTF-8 are reported on their own line."""
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise MatchInputError(label, number, "not UTF-8 text") from None
                yield text.removeprefix("\ufeff") if number == 1 else text
    except OSError as exc:
        raise MatchInputError(label, 0, f"cannot read the file ({exc.strerror})") from None


def check_children(path: Path, label: str | None = None) -> int:
    """Check every line of a CHILDREN.jsonl file and return how many children it holds
    (blank lines are skipped). The first bad line raises :class:`MatchInputError` naming
    ``label`` (default: ``path`` as given) and the line; the reason never quotes values."""
    label = label or str(path)
    children = 0
    for number, line in enumerate(_lines(path, label), start=1):
        if line.strip():
            try:
                parse_child(line, number)
            except ValueError as exc:
                raise MatchInputError(label, number, str(exc)) from None
            children += 1
    return children


@contextmanager
def _output(out: Path | None, stdout: TextIO) -> Iterator[TextIO]:
    """``stdout``, or a temporary file beside ``out`` renamed to ``out`` on success only."""
    if out is None:
        yield stdout
        return
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    except OSError as exc:
        raise DryRunError(f"{out}: cannot write there ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            yield handle
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_results(
    index: RosterIndex,
    path: Path,
    label: str,
    handle: TextIO,
    total: int,
    progress: Progress | None,
) -> dict[str, int]:
    decisions: dict[str, int] = {}
    for done, result in enumerate(match_children(index, _lines(path, label)), start=1):
        if result["decision"] == "error":
            # check_children passed every line: the file changed while we were reading it.
            raise MatchInputError(label, 0, "the file changed during the run; run it again")
        handle.write(json.dumps(result, ensure_ascii=False) + "\n")
        decisions[result["decision"]] = decisions.get(result["decision"], 0) + 1
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(f"  {label}: {done:,} of {total:,} children matched")
    return decisions


def _has_roster_table(connection: Connection) -> bool:
    return inspect(connection).has_table(PupilRow.__tablename__)


async def _load_index(
    sessions: async_sessionmaker[AsyncSession], total: int, progress: Progress | None
) -> RosterIndex:
    """The whole roster, indexed; a database that cannot be used raises DryRunError."""
    started = time.perf_counter()
    try:
        async with sessions() as session:
            connection = await session.connection()
            if not await connection.run_sync(_has_roster_table):
                raise DryRunError(
                    "the database has no directory: import one first "
                    "(encompass directory import --settings F --pupils F)"
                )
            version = await roster_version(session)
        # the model the matcher would use; a dry run writes nothing, a refit included
        index = await load_roster_index(sessions, version=version, keep_model=False)
    except (OSError, SQLAlchemyError) as exc:
        # Named by the innermost error's class only (the driver's, e.g. "the database does
        # not exist"): a driver's message may quote the values it was given.
        cause: BaseException = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        raise DryRunError(f"cannot use the database ({cause.__class__.__name__})") from None
    if progress is not None:
        progress(
            f"  roster: {len(index):,} pupils indexed in "
            f"{time.perf_counter() - started:.1f} s; matching {total:,} children"
        )
    return index


async def dry_run(
    sessions: async_sessionmaker[AsyncSession],
    children: Path,
    *,
    out: Path | None,
    stdout: TextIO,
    progress: Progress | None = None,
) -> DryRunReport:
    """Match every child of ``children`` against the whole imported roster and write one
    JSON line per child, ``{"ref", "decision", "setting_ids", "score", "reasons"}``, to
    ``out`` (complete or not at all) or else to ``stdout``.

    Reads the database, writes nothing to it, sends nothing. A bad input line raises
    :class:`MatchInputError` before any matching; a database that cannot be used (or holds
    no directory), or an ``out`` that cannot be written, raises :class:`DryRunError`.
    """
    label = str(children)
    total = check_children(children, label)
    try:
        # The output is opened before the roster is loaded: a wrong --out fails at once.
        with _output(out, stdout) as handle:
            index = await _load_index(sessions, total, progress)
            decisions = _write_results(index, children, label, handle, total, progress)
    except OSError as exc:  # the output only: a full disk, a closed pipe
        raise DryRunError(f"cannot write the results ({exc.strerror or exc})") from None
    return DryRunReport(children=sum(decisions.values()), pupils=len(index), decisions=decisions)


async def match_file(
    sessions: async_sessionmaker[AsyncSession],
    children: Path,
    *,
    out: Path | None,
    stdout: TextIO,
    progress: Progress | None = None,
) -> DryRunReport:
    """:func:`dry_run` against the database of ``sessions`` (``bootstrap.open_database``).
    Every failure the user can act on (the file, the output, the database) is a
    :class:`DryRunError`: one line, no stack trace."""
    return await dry_run(sessions, children, out=out, stdout=stdout, progress=progress)


def _children(path: Path, label: str) -> list[ChildQuery]:
    """Every child of a checked CHILDREN.jsonl file."""
    check_children(path, label)
    return [
        parse_child(line, number)
        for number, line in enumerate(_lines(path, label), 1)
        if line.strip()
    ]


async def explain_model(
    sessions: async_sessionmaker[AsyncSession],
    children: Path | None,
    *,
    stdout: TextIO,
    progress: Progress | None = None,
    save: bool = False,
) -> None:
    """Fit the Fellegi-Sunter model on the imported roster (and the children of ``children``,
    when given: the incoming children) and print it, level by level, beside the hand-set
    values, then the weights in use. Writes nothing to the database, unless ``save``: then
    the model (fitted on children, never on the roster alone) is kept for the roster's
    version, and the matcher weighs every level with it from its next roster load on.
    Failures as for :func:`match_file`."""
    if save and children is None:
        raise DryRunError(
            "--save-model needs CHILDREN.jsonl: fitted on the roster alone, m learns what "
            "siblings share, not how reports of one child differ from its record"
        )
    reported = _children(children, str(children)) if children is not None else []
    index = await _load_index(sessions, len(reported), progress)
    pupils = [index.columns.pupil(row) for row in range(len(index))]
    model = fit_roster(pupils, reported)
    weights = index.weights
    if save:
        async with sessions() as session:
            version = await roster_version(session)
            await save_match_model(session, version, model_to_json(model), _now())
            await session.commit()
        weights = model_weights(model, len(index))
    lines = [*model.explain(), *explain_weights(weights)]
    if save:
        lines.append("kept for this roster version: the matcher uses it from its next load")
    stdout.write("\n".join(lines) + "\n")


def _now() -> datetime:
    return datetime.now(UTC)
