"""The matcher's in-memory roster against the real PostgreSQL (and a SQLite file): loaded
once, rebuilt in the background when a pupils import changes the roster version, and only
then."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db import directory_repo as repo
from encompass.adapters.db.match_model_repo import latest_match_model, save_match_model
from encompass.adapters.db.tables import MatchModelRow
from encompass.bootstrap import bootstrap
from encompass.config import load_settings
from encompass.domain.match import ChildQuery, Decision, MatchResult
from encompass.domain.matching.fit import (
    COMPARISONS,
    FittedModel,
    model_from_json,
    model_to_json,
    model_weights,
)
from encompass.services.directory.importer import DirectoryImportError, import_directory
from encompass.services.matching import roster as roster_module
from encompass.services.matching.roster import IndexedRoster
from tests.fixtures.directory.sample import prefixed, read_sample, write_csv, write_sample

pytestmark = pytest.mark.integration

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def newcomer() -> ChildQuery:
    """A child on no roster yet, and on no other test's: the PostgreSQL database is shared
    by the whole run, and the roster is every pupil in it."""
    tag = uuid.uuid4()
    family = "Q" + tag.hex[:8].translate(str.maketrans("0123456789", "ghijklmnop"))
    born = date(2012, 1, 1) + timedelta(days=tag.int % 2500)
    return ChildQuery("r1", "Wilhelmina", family, born, "TF3 4NT")


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def _import_sample(sessions: Sessions, folder: Path, prefix: str) -> None:
    paths = write_sample(folder, prefix)
    await import_directory(
        sessions,
        calendars=paths["calendars"],
        settings=paths["settings"],
        key_adults=paths["key_adults"],
        pupils=paths["pupils"],
    )


async def _import_with(sessions: Sessions, folder: Path, prefix: str, child: ChildQuery) -> None:
    """Import the sample roster again, ``child`` joining the first school."""
    joining = {
        "setting_id": "URN100001",
        "upn": "",
        "given_name": child.given_name,
        "family_name": child.family_name,
        "date_of_birth": str(child.date_of_birth),
        "postcode": child.postcode,
        "gender": "F",
    }
    pupils = [prefixed(row, prefix) for row in [*read_sample("pupils"), joining]]
    await import_directory(sessions, pupils=write_csv(folder / "pupils-2.csv", pupils))


async def _match(roster: IndexedRoster, sessions: Sessions, query: ChildQuery) -> MatchResult:
    return await roster.match(query)


async def test_a_new_pupil_matches_after_the_refresh(
    sessions: Sessions, tmp_path: Path, prefix: str, newcomer: ChildQuery
) -> None:
    # Given the sample roster imported and indexed by a roster that checks before every match
    await _import_sample(sessions, tmp_path, prefix)
    roster = IndexedRoster(sessions, check_every=0)
    await roster.warm()
    assert roster.builds == 1
    assert (await _match(roster, sessions, newcomer)).decision == Decision.NONE
    # When the roster is imported again with one more pupil
    await _import_with(sessions, tmp_path, prefix, newcomer)
    # then the next match notices and rebuilds in the background, the old index serving it
    assert (await _match(roster, sessions, newcomer)).decision == Decision.NONE
    await roster.wait_rebuilt()
    assert roster.builds == 2
    # and once rebuilt the new pupil is found, at her setting only.
    result = await _match(roster, sessions, newcomer)
    assert result.decision == Decision.MATCH
    assert result.setting_ids == (f"{prefix}URN100001",)
    async with sessions() as session:
        assert roster.version == await repo.roster_version(session)
    await roster.close()


async def test_nothing_changed_nothing_rebuilt(
    sessions: Sessions, tmp_path: Path, prefix: str, newcomer: ChildQuery
) -> None:
    # Given an indexed roster that checks the version before every match
    await _import_sample(sessions, tmp_path, prefix)
    roster = IndexedRoster(sessions, check_every=0)
    await _match(roster, sessions, newcomer)  # the first match loads the index
    version = roster.version
    # When children are matched and only settings (no pupils) are imported again
    for _ in range(3):
        await _match(roster, sessions, newcomer)
    paths = write_sample(tmp_path / "again", prefix)
    await import_directory(sessions, settings=paths["settings"])
    await _match(roster, sessions, newcomer)
    await roster.wait_rebuilt()
    # then the index was built once, for the version still current.
    assert roster.builds == 1
    assert roster.version == version
    await roster.close()


async def test_the_version_is_read_at_most_every_interval(
    sessions: Sessions, tmp_path: Path, prefix: str, newcomer: ChildQuery
) -> None:
    # Given a roster checking every 30 seconds, indexed at t
    await _import_sample(sessions, tmp_path, prefix)
    ticks = Ticks()
    roster = IndexedRoster(sessions, check_every=30, monotonic=ticks)
    await roster.warm()
    await _import_with(sessions, tmp_path, prefix, newcomer)
    # When children are matched within the 30 seconds, the import is not yet seen
    ticks.now += 29
    assert (await _match(roster, sessions, newcomer)).decision == Decision.NONE
    await roster.wait_rebuilt()
    assert roster.builds == 1
    # but the first match after them notices it, and the rebuilt index finds the newcomer.
    ticks.now += 2
    await _match(roster, sessions, newcomer)
    await roster.wait_rebuilt()
    assert roster.builds == 2
    assert (await _match(roster, sessions, newcomer)).decision == Decision.MATCH
    await roster.close()


async def test_a_failed_rebuild_leaves_the_old_index_serving(
    sessions: Sessions,
    tmp_path: Path,
    prefix: str,
    newcomer: ChildQuery,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an indexed roster, and a rebuild that will fail (the database gone, say)
    await _import_sample(sessions, tmp_path, prefix)
    roster = IndexedRoster(sessions, check_every=0)
    await roster.warm()
    version = roster.version
    await _import_with(sessions, tmp_path, prefix, newcomer)

    async def broken(*_args: object) -> None:
        raise ConnectionError("gone")

    monkeypatch.setattr(roster_module, "load_roster_index", broken)
    # When the change is noticed and the rebuild fails
    await _match(roster, sessions, newcomer)
    await roster.wait_rebuilt()
    # then matching goes on with the old index, and the next check tries again.
    assert roster.builds == 1 and roster.version == version
    assert (await _match(roster, sessions, newcomer)).decision == Decision.NONE
    monkeypatch.undo()
    await roster.wait_rebuilt()
    await _match(roster, sessions, newcomer)
    await roster.wait_rebuilt()
    assert roster.builds == 2
    assert (await _match(roster, sessions, newcomer)).decision == Decision.MATCH
    await roster.close()


async def test_a_failed_pupils_import_leaves_the_version(
    sessions: Sessions, tmp_path: Path, prefix: str
) -> None:
    await _import_sample(sessions, tmp_path, prefix)
    async with sessions() as session:
        before = await repo.roster_version(session)
    assert before
    bad = [prefixed(row, prefix) for row in read_sample("pupils")]
    bad[-1]["date_of_birth"] = "not a date"
    with pytest.raises(DirectoryImportError, match=r"pupils-bad.csv:9"):
        await import_directory(sessions, pupils=write_csv(tmp_path / "pupils-bad.csv", bad))
    async with sessions() as session:
        assert await repo.roster_version(session) == before


async def test_bootstrap_uses_the_indexed_roster(migrated_pg: str) -> None:
    settings = load_settings(database_url=migrated_pg, amqp_url="", roster_check_interval=5)
    container = await bootstrap(settings, signing_key=Ed25519PrivateKey.generate())
    try:
        assert isinstance(container.roster, IndexedRoster)
        assert container.roster._check_every == 5
    finally:
        await container.close()


async def test_the_kept_model_weighs_the_roster_and_an_import_refits_its_u(
    sessions: Sessions, tmp_path: Path, prefix: str, newcomer: ChildQuery
) -> None:
    # Given a model kept for the imported roster's version (m unlike the hand-set one)
    await _import_sample(sessions, tmp_path, prefix)
    m = tuple(tuple(reversed(c.prior_m)) for c in COMPARISONS)
    model = FittedModel(
        COMPARISONS, m, tuple(c.prior_u for c in COMPARISONS), 0.2, 10, 1_000, 5, True
    )
    async with sessions() as session:
        first = await repo.roster_version(session)
        await save_match_model(session, first, model_to_json(model), datetime.now(UTC))
        await session.commit()
    versions = [first]
    try:
        # When the roster is indexed, then its weights are the kept model's
        roster = IndexedRoster(sessions, check_every=0)
        await roster.warm()
        assert roster.index is not None
        assert roster.index.weights == model_weights(model, len(roster.index))
        # When a pupils import changes the roster
        await _import_with(sessions, tmp_path, prefix, newcomer)
        await _match(roster, sessions, newcomer)
        await roster.wait_rebuilt()
        # then the rebuilt index keeps m, refits u on the new roster, and keeps that model
        async with sessions() as session:
            second = await repo.roster_version(session)
            versions.append(second)
            kept = await latest_match_model(session)
        assert kept is not None and kept[0] == second == roster.version
        refitted = model_from_json(kept[1])
        assert refitted.m == model.m and refitted.u != model.u
        assert roster.index is not None
        assert roster.index.weights == model_weights(refitted, len(roster.index))
        await roster.close()
    finally:  # the database is shared: no other test should match with this model
        async with sessions() as session:
            await session.execute(
                delete(MatchModelRow).where(MatchModelRow.roster_version.in_(versions))
            )
            await session.commit()
