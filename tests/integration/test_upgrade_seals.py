"""A database from before data at rest (revision 0003) holds the personal fields in clear;
the first start after upgrading seals them, and they read back the same."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import pool
from sqlalchemy.engine import Connection

from encompass.adapters.broker import Poison
from encompass.adapters.data_keys import load_or_create_data_keys
from encompass.adapters.db.engine import make_engine
from encompass.adapters.db.migrate import alembic_config
from encompass.adapters.db.tables import Child, Force, Incident, IncidentVersion
from encompass.adapters.key_files import KeyFileError
from encompass.bootstrap import bootstrap
from encompass.config import load_settings
from encompass.domain.queued import VersionQueued
from encompass.services.matching.match_incident import MatchIncident
from encompass.services.records.at_rest import incident_data_key, open_candidates, open_payload

PAYLOAD = '{"incident_ref":"OLD-1","children":[{"given_name":"Amelia"}]}'
CANDIDATES = [{"setting_id": "URN1", "given_name": "Amelia", "score": 0.9}]
AT = "2026-11-20 22:00:00.000000"
NOW = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)


def _to_0003(connection: Connection, config: Config) -> None:
    config.attributes["connection"] = connection
    command.upgrade(config, "0003")


async def test_the_first_start_after_upgrading_seals_clear_values(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{path}"
    engine = make_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_to_0003, alembic_config(url))
        await connection.commit()
    await engine.dispose()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO forces VALUES ('OLD', 'Old Constabulary', 'h', ?)", (AT,))
        db.execute(
            "INSERT INTO incidents VALUES ('i-1', 'OLD', 'OLD-1', 1, 'active', ?, ?)", (AT, AT)
        )
        db.execute(
            "INSERT INTO incident_versions VALUES ('v-1', 'i-1', 1, ?, 'x', ?, ?, ?)",
            (PAYLOAD, AT, AT, AT),
        )
        db.execute(
            "INSERT INTO children (child_id, version_id, position, decision, score, "
            "reasons, candidates, reported_at) VALUES ('c-1', 'v-1', 0, 'review', 0.5, "
            "'[]', ?, ?)",
            (json.dumps(CANDIDATES), AT),
        )
    container = await bootstrap(
        load_settings(database_url=url, amqp_url=""), signing_key=Ed25519PrivateKey.generate()
    )
    try:
        async with container.sessions() as session:
            version = await session.get(IncidentVersion, "v-1")
            child = await session.get(Child, "c-1")
            assert version is not None and child is not None
            assert version.payload.startswith("ev1.") and child.candidates.startswith("ev1.")
            assert (
                await open_payload(
                    session, incident_id="i-1", version_id="v-1", stored=version.payload
                )
                == PAYLOAD
            )
            assert (
                await open_candidates(
                    session, incident_id="i-1", child_id="c-1", stored=child.candidates
                )
                == CANDIDATES
            )
        # and the clear text is gone from the file too, not left in a free page
        files = await asyncio.to_thread(lambda: [p.read_bytes() for p in tmp_path.glob("old*")])
        assert files and not any(b"Amelia" in data for data in files)
    finally:
        await container.close()


async def test_a_lost_or_swapped_data_key_file_stops_the_start(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'e.db'}"
    first = await bootstrap(
        load_settings(database_url=url, amqp_url="", data_key=tmp_path / "right-key"),
        signing_key=Ed25519PrivateKey.generate(),
    )
    try:
        async with first.sessions.begin() as session:
            session.add(Force(force_id="F", name="F", token_hash="h", created_at=NOW))
            session.add(
                Incident(
                    incident_id="i-1",
                    force_id="F",
                    incident_ref="R",
                    latest_version=1,
                    status="active",
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
            await session.flush()
            await incident_data_key(session, "i-1", create_at=NOW)
    finally:
        await first.close()
    lost = tmp_path / "lost-key"
    with pytest.raises(KeyFileError, match="restore that file") as refused:
        await bootstrap(
            load_settings(database_url=url, amqp_url="", data_key=lost),
            signing_key=Ed25519PrivateKey.generate(),
        )
    assert "\n" not in str(refused.value)
    assert not lost.exists()  # the key it made in place of the lost one is not left there
    load_or_create_data_keys(tmp_path / "other-key")
    with pytest.raises(KeyFileError, match="is not the one the database's data was sealed"):
        await bootstrap(
            load_settings(database_url=url, amqp_url="", data_key=tmp_path / "other-key"),
            signing_key=Ed25519PrivateKey.generate(),
        )
    again = await bootstrap(
        load_settings(database_url=url, amqp_url="", data_key=tmp_path / "right-key"),
        signing_key=Ed25519PrivateKey.generate(),
    )
    await again.close()


async def test_a_report_written_in_clear_behind_the_service_is_never_matched(
    tmp_path: Path,
) -> None:
    # Given a running service, and a version row someone wrote straight into the database
    # in clear (no data key of the service's, so it cannot be sealed under one)
    url = f"sqlite+aiosqlite:///{tmp_path / 'e.db'}"
    container = await bootstrap(
        load_settings(database_url=url, amqp_url=""), signing_key=Ed25519PrivateKey.generate()
    )
    try:
        async with container.sessions.begin() as session:
            session.add(Force(force_id="F", name="F", token_hash="h", created_at=NOW))
            session.add(
                Incident(
                    incident_id="i-1",
                    force_id="F",
                    incident_ref="R",
                    latest_version=0,
                    status="active",
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
            await session.flush()
            await incident_data_key(session, "i-1", create_at=NOW)
            session.add(
                IncidentVersion(
                    version_id="0b7c3f0e-0000-4000-8000-000000000001",
                    incident_id="i-1",
                    version=1,
                    payload=PAYLOAD,
                    payload_sha256="x",
                    received_at=NOW,
                    queued_at=NOW,
                    processed_at=None,
                )
            )
        handler = MatchIncident(container.sessions, container.roster, container.clock)
        queued = VersionQueued(version_id="0b7c3f0e-0000-4000-8000-000000000001")
        # When its id reaches the matcher, then it is refused, keeping nothing of it
        with pytest.raises(Poison, match="cannot be read") as refused:
            await handler(queued)
        assert refused.value.keep_body is False and "Amelia" not in refused.value.reason
    finally:
        await container.close()
