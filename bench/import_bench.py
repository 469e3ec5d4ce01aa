"""How fast ``directory import`` loads a large roster.

    python -m bench.import_bench [--rows 100000] [--database-url postgresql://…]

Writes a made-up pupils.csv (and the settings it names) to a temporary folder, imports it
into a fresh SQLite file and, when ``--database-url`` or ``ENCOMPASS_DATABASE_URL`` names
one, into that database too (its own setting ids, removed afterwards). Each database gets
a first import and a re-import (which replaces every roster), and prints a table of rows,
seconds and rows per second.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import delete

from encompass.adapters.db.engine import make_engine, make_sessions
from encompass.adapters.db.migrate import migrate
from encompass.adapters.db.tables import PupilRow, SettingRow
from encompass.config import normalise_database_url
from encompass.services.directory.importer import import_directory

GIVEN = ["Amelia", "Oliver", "Isla", "Noah", "Freya", "Mohammed", "Zoë", "Leo", "Ava", "Jack"]
FAMILY = ["Example", "Sample", "Specimen", "O'Example-Smith", "Test", "Demo", "Model", "Pattern"]


def write_directory(folder: Path, rows: int, settings: int, prefix: str) -> tuple[Path, Path]:
    """Write settings.csv and pupils.csv (``rows`` pupils across ``settings`` settings)."""
    chance = random.Random(2026)
    settings_path, pupils_path = folder / "settings.csv", folder / "pupils.csv"
    with settings_path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "setting_id",
                "name",
                "kind",
                "nation",
                "postcode",
                "day_starts",
                "day_ends",
                "dispatch_at",
                "calendar_id",
                "holiday_policy",
            ]
        )
        for n in range(settings):
            writer.writerow(
                [
                    f"{prefix}{n}",
                    f"Bench School {n}",
                    "school",
                    "england",
                    "TF3 4NT",
                    "08:45",
                    "15:15",
                    "07:30",
                    "weekdays",
                    "hold",
                ]
            )
    born_from = date(2008, 9, 1)
    with pupils_path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "setting_id",
                "upn",
                "given_name",
                "family_name",
                "date_of_birth",
                "postcode",
                "gender",
            ]
        )
        for n in range(rows):
            born = born_from + timedelta(days=chance.randrange(16 * 365))
            postcode = f"TF{chance.randrange(1, 13)} {chance.randrange(10)}" + "".join(
                chance.choice("ABDEFGHJLNPQRSTUWXYZ") for _ in range(2)
            )
            writer.writerow(
                [
                    f"{prefix}{n % settings}",
                    f"A{n:012d}" if n % 4 else "",
                    chance.choice(GIVEN),
                    chance.choice(FAMILY),
                    born.isoformat(),
                    postcode,
                    chance.choice(["F", "M", ""]),
                ]
            )
    return settings_path, pupils_path


async def bench(
    url: str, settings_path: Path, pupils_path: Path, prefix: str
) -> list[tuple[str, int, float]]:
    """Import into ``url``: (what, rows, seconds) for the first import and the re-import."""
    await migrate(url)
    engine = make_engine(url)
    sessions = make_sessions(engine)
    results = []
    try:
        await import_directory(sessions, settings=settings_path)
        for what in ("import", "re-import"):
            started = time.perf_counter()
            report = await import_directory(sessions, pupils=pupils_path)
            results.append((what, report.pupils, time.perf_counter() - started))
    finally:
        # Leave a shared database as we found it.
        async with sessions.begin() as session:
            await session.execute(delete(PupilRow).where(PupilRow.setting_id.startswith(prefix)))
            await session.execute(
                delete(SettingRow).where(SettingRow.setting_id.startswith(prefix))
            )
        await engine.dispose()
    return results


async def main(rows: int, settings: int, database_url: str | None) -> None:
    prefix = f"bench-{uuid.uuid4().hex[:8]}-"
    with tempfile.TemporaryDirectory(prefix="encompass-bench-") as folder:
        settings_path, pupils_path = write_directory(Path(folder), rows, settings, prefix)
        targets = [("sqlite", f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}")]
        if database_url:
            url = normalise_database_url(database_url)
            targets.append((url.split("+", 1)[0], url))
        print(f"{'database':<12}{'run':<11}{'rows':>9}{'seconds':>10}{'rows/s':>10}")
        for name, url in targets:
            for what, count, seconds in await bench(url, settings_path, pupils_path, prefix):
                print(f"{name:<12}{what:<11}{count:>9}{seconds:>10.2f}{count / seconds:>10.0f}")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--settings", type=int, default=300, help="settings the rows span")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("ENCOMPASS_DATABASE_URL"),
        help="also import here (default: $ENCOMPASS_DATABASE_URL)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.settings, args.database_url))


if __name__ == "__main__":
    cli()
