"""A matched setting with no calendar is never dropped without a word: the child carries the
reason, the admins get an alert, the log says so (ids only), and no notice is made for it.

SQLite and the embedded broker: the matcher's use case is called directly."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from structlog.testing import capture_logs

from encompass.adapters.db.tables import Alert, Child, Force, IncidentVersion, Notice
from encompass.bootstrap import bootstrap
from encompass.config import load_settings
from encompass.domain.incident import IncidentReport
from encompass.domain.match import ChildQuery, Decision, MatchResult
from encompass.domain.queued import VersionQueued
from encompass.services.intake.ingest import report_incident
from encompass.services.matching.match_incident import MatchIncident
from tests.integration.test_ingest_to_schedule import AMELIA, report


class _MatchesAGoneSetting:
    """A roster whose index still holds a setting the directory no longer does."""

    async def warm(self) -> None:
        """Nothing to load."""

    async def match(self, query: ChildQuery) -> MatchResult:
        return MatchResult(Decision.MATCH, ("URN-GONE",), 0.99, ("same name and birthday",))

    async def close(self) -> None:
        """Nothing to stop."""


async def test_a_matched_setting_with_no_calendar_is_recorded_and_alerted(
    tmp_path: Path,
) -> None:
    # Given a stored report whose child the roster places at a setting with no calendar
    settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", amqp_url="")
    container = await bootstrap(settings, signing_key=Ed25519PrivateKey.generate())
    try:
        now = container.clock.now()
        async with container.sessions.begin() as session:
            session.add(Force(force_id="F", name="F", token_hash="h", created_at=now))
        accepted = await report_incident(
            container.sessions,
            container.broker,
            container.clock,
            "F",
            IncidentReport.model_validate(report("NC-1", AMELIA), context={"now": now}),
        )
        async with container.sessions() as session:
            version_id = (await session.scalars(select(IncidentVersion.version_id))).one()
        handler = MatchIncident(container.sessions, _MatchesAGoneSetting(), container.clock)
        # When the matcher processes it
        with capture_logs() as logs:
            await handler(VersionQueued(version_id=version_id))
        # Then no notice was made, and the child, the admins and the log all say why
        async with container.sessions() as session:
            assert (await session.scalars(select(Notice))).all() == []
            (child,) = (await session.scalars(select(Child))).all()
            (alert,) = (await session.scalars(select(Alert))).all()
        assert child.decision == "match"
        assert any("URN-GONE has no calendar" in reason for reason in child.reasons)
        assert (alert.kind, alert.audience, alert.notice_id) == ("no_calendar", "admins", None)
        assert "URN-GONE" in alert.message and accepted.incident_id in alert.message
        assert "Amelia" not in alert.message
        (line,) = [entry for entry in logs if entry["event"] == "notice.no_calendar"]
        assert line["setting_id"] == "URN-GONE" and line["incident_id"] == accepted.incident_id
    finally:
        await container.close()
