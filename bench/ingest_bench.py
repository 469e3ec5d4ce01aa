"""The first half of the pipeline under load, against raw aio-pika on the same broker.

    python -m bench.ingest_bench [--incidents 2000] [--concurrency 16] [--admin-url URL]
        [--amqp-url URL]

Creates a scratch PostgreSQL database and queue names of its own, imports a roster, then
reports incidents over HTTP (one child each) as fast as ``--concurrency`` clients can, while
the matcher worker consumes them from RabbitMQ, matches and schedules. Prints incidents per
second accepted (202, i.e. confirmed by the broker) and processed end to end, beside raw
aio-pika publish (confirms) and consume (acks) of as many 2 kB messages, and the ratios.
Everything runs in one process on one event loop, as the demo does.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from sqlalchemy import func, select

from bench.import_bench import write_directory
from bench.raw_amqp import measure
from encompass.adapters.db.tables import IncidentVersion
from encompass.adapters.topology import Topology
from encompass.api.app import create_app
from encompass.bootstrap import bootstrap
from encompass.config import load_settings
from encompass.logging import configure_logging
from encompass.services.access.credentials import add_force
from encompass.services.directory.importer import import_directory
from encompass.workers.main import start_workers
from tests.cleanup import delete_topologies


def incident(n: int, pupil: dict[str, str]) -> dict[str, Any]:
    return {
        "incident_ref": f"BENCH-{n:07d}",
        "version": 1,
        "occurred_at": "2026-11-20T22:10:00+00:00",
        "location": "the family home",
        "circumstances": "Argument between adults. " * 20,
        "police_actions": "Attended.",
        "officer": {"name": "PC 1 Bench", "contact": "0300 000 0000"},
        "children": [
            {
                "given_name": pupil["given_name"],
                "family_name": pupil["family_name"],
                "date_of_birth": pupil["date_of_birth"],
                "postcode": pupil["postcode"],
                "upn": pupil["upn"] or None,
                "gender": None,
                "present": True,
                "where_during": None,
                "voice": None,
                "injured": False,
                "school_hint": None,
            }
        ],
    }


async def run(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    name = f"encompass_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(args.admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = args.admin_url.rsplit("/", 1)[0].removeprefix("postgresql://")
    settings = load_settings(
        database_url=f"postgresql+asyncpg://{base}/{name}",
        amqp_url=args.amqp_url,
        queue_prefix=f"{name}.",
        now="2026-11-20T23:30:00+00:00",
        # measuring throughput, not the door's rate limit
        rate_limit_credential=0,
        rate_limit_address=0,
    )
    configure_logging("console", "warning")
    container = await bootstrap(settings)
    runner = None
    try:
        with tempfile.TemporaryDirectory() as folder:
            settings_csv, pupils_csv = write_directory(Path(folder), 20_000, 200, "B")
            await import_directory(container.sessions, settings=settings_csv, pupils=pupils_csv)
            with pupils_csv.open(encoding="utf-8") as handle:
                # Only children under 18 on the night can be reported.
                pupils = [p for p in csv.DictReader(handle) if p["date_of_birth"] > "2009-01-01"]
        force = await add_force(container.sessions, container.clock, "BENCH", "Bench Police")
        runner = web.AppRunner(create_app(container), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        consumers = await start_workers(container, ["matcher"])
        reports = [incident(n, pupils[(n * 7919) % len(pupils)]) for n in range(args.incidents)]
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for report in reports:
            queue.put_nowait(report)

        async def client() -> None:
            async with aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {force.token}"}
            ) as session:
                while not queue.empty():
                    body = queue.get_nowait()
                    async with session.post(
                        f"http://{host}:{port}/v1/incidents", json=body
                    ) as response:
                        if response.status != 202:
                            raise RuntimeError(f"refused: {await response.text()}")

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(args.concurrency)))
        accepted = time.perf_counter() - started
        while True:
            async with container.sessions() as session:
                pending = await session.scalar(
                    select(func.count())
                    .select_from(IncidentVersion)
                    .where(IncidentVersion.processed_at.is_(None))
                )
            if not pending:
                break
            await asyncio.sleep(0.05)
        processed = time.perf_counter() - started
        for consumer in consumers:
            await consumer.cancel()
        raw = await measure(args.amqp_url, args.incidents)
    finally:
        if runner is not None:
            await runner.cleanup()
        await container.close()
        await delete_topologies([(args.amqp_url, Topology(settings.queue_prefix))])
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    n = args.incidents
    return [
        ("raw aio-pika publish (confirms)", raw.published_per_s, "1.00"),
        ("raw aio-pika consume (acks)", raw.consumed_per_s, "1.00"),
        ("raw aio-pika publish + consume", raw.round_trip_per_s, "1.00"),
        (
            "ingest: HTTP 202 after confirm",
            n / accepted,
            f"{n / accepted / raw.published_per_s:.2f} of raw publish",
        ),
        (
            "end to end: HTTP -> matched, scheduled",
            n / processed,
            f"{n / processed / raw.round_trip_per_s:.2f} of raw publish + consume",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    print(f"{'what':42} {'per second':>12}  ratio")
    for what, rate, ratio in rows:
        print(f"{what:42} {rate:12,.0f}  {ratio}")


if __name__ == "__main__":
    main()
