"""The morning burst: many notices due at the same instant, released, sealed and delivered.

    python -m bench.morning_burst [--notices 20000] [--amqp-url URL] [--database-url URL]

The first school morning after a long weekend releases several days of notices at once (the
peak after a long weekend). This creates a scratch PostgreSQL database
(``encompass_bench_<random>``, dropped afterwards), inserts that many notices due now across
settings whose Key Adults hold real X25519 keys and receive by webhook on a loopback aiohttp
server, then runs the real dispatcher worker — release and seal, outbox relay, RabbitMQ
``deliveries``, webhook POST — until every notice is ``delivered``. In the same run it
measures raw aio-pika on the same broker (persistent messages on a quorum queue, publisher
confirms, consumer acks) and prints both, with the ratio. One dispatcher (this process) does
all the work; the receiver runs in a process of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import func, insert, select

from bench.raw_amqp import measure
from encompass.adapters.data_keys import DataKeys, seal_value
from encompass.adapters.db.migrate import migrate
from encompass.adapters.db.tables import (
    Child,
    Force,
    Incident,
    IncidentKey,
    IncidentVersion,
    KeyAdultRow,
    Notice,
    NoticeEvent,
    SettingRow,
)
from encompass.adapters.key_files import generate_key_adult_keys, public_keys_pem
from encompass.adapters.topology import Topology
from encompass.adapters.webhook import WEBHOOK_KEY_PURPOSE, signature_key
from encompass.bootstrap import bootstrap
from encompass.clock import Clock
from encompass.config import load_settings, normalise_database_url
from encompass.logging import configure_logging
from encompass.services.records.at_rest import CANDIDATES, PAYLOAD
from encompass.workers import dispatcher
from tests.cleanup import delete_topologies
from tests.databases import scratch_database

NOTICES_PER_SETTING = 40
CHILDREN_PER_INCIDENT = 2
_CHUNK = 2_000


class Receiver:
    """The settings' systems: answers 200 and remembers each envelope id it was given."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.posts = 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.posts += 1
        self.seen.add(request.headers.get("Idempotency-Key", ""))
        return web.Response(status=200)

    async def stats(self, _request: web.Request) -> web.Response:
        return web.json_response({"posts": self.posts, "distinct": len(self.seen)})


def _receive(port: Any) -> None:
    """The receiver's own process: like a real setting's system, it does not share our
    event loop (it still shares the machine's two cores)."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook/{setting}", receiver.handle)
    app.router.add_get("/stats", receiver.stats)

    async def run() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port.value = runner.addresses[0][1]
        await asyncio.Event().wait()

    asyncio.run(run())


@asynccontextmanager
async def serve() -> AsyncIterator[str]:
    """Start the receiver process; yields its base URL, stops it afterwards."""
    context = multiprocessing.get_context("spawn")
    port = context.Value("i", 0)
    process = context.Process(target=_receive, args=(port,), daemon=True)
    process.start()
    try:
        for _ in range(200):
            if port.value:
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError("the webhook receiver did not start")
        yield f"http://127.0.0.1:{port.value}"
    finally:
        process.terminate()
        process.join(5)


async def receiver_stats(base: str) -> dict[str, int]:
    async with aiohttp.ClientSession() as client, client.get(f"{base}/stats") as response:
        stats: dict[str, int] = await response.json()
        return stats


def _payload(ref: str, occurred: datetime, children: int) -> str:
    return json.dumps(
        {
            "incident_ref": ref,
            "version": 1,
            "occurred_at": occurred.isoformat(),
            "location": "the family home",
            "circumstances": "Argument between adults; " * 20,
            "police_actions": "Officers attended and gave safety advice.",
            "officer": {"name": "PC 1234 Example", "contact": "0300 000 0000"},
            "children": [
                {
                    "given_name": f"Child{n}",
                    "family_name": "Example",
                    "date_of_birth": "2016-04-05",
                    "postcode": "ZZ9 9ZZ",
                    "present": True,
                    "where_during": "upstairs",
                    "voice": "said they were scared",
                }
                for n in range(children)
            ],
        }
    )


async def seed(url: str, notices: int, hook: str, now: datetime, data_keys: DataKeys) -> int:
    """Insert the directory and ``notices`` scheduled notices due at ``now``; returns how
    many settings they span."""
    from encompass.adapters.db.engine import make_engine

    settings_count = max(1, notices // NOTICES_PER_SETTING)
    occurred = now - timedelta(hours=30)
    hmac_key = signature_key("whsec_bench")
    rows: dict[Any, list[dict[str, Any]]] = {
        table: []
        for table in (
            SettingRow,
            KeyAdultRow,
            Force,
            Incident,
            IncidentKey,
            IncidentVersion,
            Child,
            Notice,
            NoticeEvent,
        )
    }
    rows[Force].append(
        {
            "force_id": "BENCH",
            "name": "Bench Constabulary",
            "token_hash": uuid.uuid4().hex,
            "created_at": occurred,
        }
    )
    for s in range(settings_count):
        setting_id = f"B{s:06d}"
        rows[SettingRow].append(
            {
                "setting_id": setting_id,
                "name": f"Bench School {s}",
                "kind": "school",
                "nation": "england",
                "postcode": "ZZ9 9ZZ",
                "day_starts": datetime(2000, 1, 1, 8, 45).time(),
                "day_ends": datetime(2000, 1, 1, 15, 30).time(),
                "dispatch_at": datetime(2000, 1, 1, 7, 30).time(),
                "calendar_id": "weekdays",
                "holiday_policy": "hold",
            }
        )
        keys = generate_key_adult_keys(post_quantum=False)
        rows[KeyAdultRow].append(
            {
                "key_adult_id": f"{setting_id}-KA",
                "setting_id": setting_id,
                "name": "Bench KA",
                "role": "key_adult",
                "email": f"ka{s}@bench.example",
                "webhook_url": f"{hook}/{setting_id}",
                "public_key_pem": public_keys_pem(keys.public_keys()).decode(),
                "token_hash": None,
                "webhook_key_sealed": data_keys.seal_secret(
                    hmac_key, purpose=WEBHOOK_KEY_PURPOSE, subject=f"{setting_id}-KA"
                ),
            }
        )
    made = 0
    while made < notices:
        incident_id, version_id = str(uuid.uuid4()), str(uuid.uuid4())
        children = min(CHILDREN_PER_INCIDENT, notices - made)
        payload = _payload(f"B-{incident_id[:12]}", occurred, children)
        rows[Incident].append(
            {
                "incident_id": incident_id,
                "force_id": "BENCH",
                "incident_ref": f"B-{incident_id[:12]}",
                "latest_version": 1,
                "status": "active",
                "created_at": occurred,
                "updated_at": occurred,
            }
        )
        data_key = data_keys.new_data_key()
        rows[IncidentKey].append(
            {
                "incident_id": incident_id,
                "kek_id": data_keys.fingerprint,
                "wrapped_key": data_keys.wrap(data_key, incident_id=incident_id),
                "created_at": occurred,
                "purged_at": None,
            }
        )
        rows[IncidentVersion].append(
            {
                "version_id": version_id,
                "incident_id": incident_id,
                "version": 1,
                "payload": seal_value(
                    data_key, payload.encode(), purpose=PAYLOAD, subject=version_id
                ),
                "payload_sha256": hashlib.sha256(payload.encode()).hexdigest(),
                "received_at": occurred,
                "queued_at": occurred,
                "processed_at": occurred,
            }
        )
        for position in range(children):
            child_id, notice_id = str(uuid.uuid4()), str(uuid.uuid4())
            rows[Child].append(
                {
                    "child_id": child_id,
                    "version_id": version_id,
                    "position": position,
                    "decision": "match",
                    "score": 1.0,
                    "reasons": [],
                    "reported_at": occurred,
                    "candidates": seal_value(data_key, b"[]", purpose=CANDIDATES, subject=child_id),
                    "resolved_at": None,
                    "resolved_by": None,
                }
            )
            rows[Notice].append(
                {
                    "notice_id": notice_id,
                    "child_id": child_id,
                    "incident_id": incident_id,
                    "setting_id": f"B{made % settings_count:06d}",
                    "status": "scheduled",
                    "deliver_at": now,
                    "recipient": "key_adults",
                    "release_reason": "bench",
                    "created_at": occurred,
                    "updated_at": occurred,
                    "overdue_at": None,
                    "admins_alerted_at": None,
                }
            )
            rows[NoticeEvent].append(
                {
                    "notice_id": notice_id,
                    "from_status": None,
                    "to_status": "scheduled",
                    "at": occurred,
                    "cause": "bench",
                }
            )
            made += 1
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            for table, values in rows.items():  # in foreign-key order
                for start in range(0, len(values), _CHUNK):
                    await connection.execute(insert(table), values[start : start + _CHUNK])
    finally:
        await engine.dispose()
    return settings_count


async def burst(admin_url: str, amqp_url: str, notices: int) -> dict[str, float]:
    """Run the burst; returns the phase times in seconds and the counts."""
    now = datetime.now(UTC).replace(microsecond=0)
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    name = f"encompass_bench_{uuid.uuid4().hex[:10]}"
    async with scratch_database(normalise_database_url(admin_url), name) as url, serve() as base:
        await migrate(url)
        data_keys = DataKeys(DataKeys.new_data_key())
        settings_count = await seed(url, notices, f"{base}/hook", now, data_keys)
        settings = load_settings(database_url=url, amqp_url=amqp_url, queue_prefix=prefix)
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        container = await bootstrap(
            settings,
            clock=Clock(now + timedelta(seconds=1)),
            run_migrations=False,
            signing_key=Ed25519PrivateKey.generate(),
            data_keys=data_keys,
        )
        try:
            started = time.perf_counter()
            worker = await dispatcher.start(container, interval=0.05, sweep_every=3600)
            released_at = delivered_at = 0.0
            try:
                while True:
                    await asyncio.sleep(0.25)
                    async with container.sessions() as session:
                        counts = dict(
                            (
                                await session.execute(
                                    select(Notice.status, func.count()).group_by(Notice.status)
                                )
                            ).all()
                        )
                    elapsed = time.perf_counter() - started
                    if not released_at and not counts.get("scheduled"):
                        released_at = elapsed
                    if counts.get("delivered", 0) + counts.get("failed", 0) >= notices:
                        delivered_at = elapsed
                        break
                    if elapsed > 1800:
                        raise RuntimeError(f"not done after 30 minutes: {counts}")
            finally:
                await worker.cancel()
        finally:
            await container.close()
            await delete_topologies([(amqp_url, Topology(prefix))])
        received = await receiver_stats(base)
    return {
        "settings": settings_count,
        "released": released_at,
        "delivered": delivered_at,
        "failed": counts.get("failed", 0),
        "distinct": received["distinct"],
        "posts": received["posts"],
    }


async def main(notices: int, admin_url: str, amqp_url: str) -> None:
    configure_logging("console", "error")
    result = await burst(admin_url, amqp_url, notices)
    raw = await measure(amqp_url, notices, size=120)
    end_to_end = notices / result["delivered"]
    print(
        f"morning burst: {notices:,} notices due at once, {int(result['settings']):,} "
        f"settings, one webhook Key Adult each; RabbitMQ + PostgreSQL, one dispatcher"
    )
    print(f"{'stage':<48}{'seconds':>9}{'per s':>9}")
    print(
        f"{'released: sealed (HPKE X25519, Ed25519) + outbox':<48}"
        f"{result['released']:>9.2f}{notices / result['released']:>9.0f}"
    )
    print(
        f"{'end to end: released, relayed, POSTed, delivered':<48}"
        f"{result['delivered']:>9.2f}{end_to_end:>9.0f}"
    )
    print(
        f"{'raw aio-pika publish, confirms (quorum, persistent)':<48}"
        f"{notices / raw.published_per_s:>9.2f}{raw.published_per_s:>9.0f}"
    )
    print(
        f"{'raw aio-pika consume, acks':<48}"
        f"{notices / raw.consumed_per_s:>9.2f}{raw.consumed_per_s:>9.0f}"
    )
    print(
        f"{'raw aio-pika publish then consume':<48}"
        f"{notices / raw.round_trip_per_s:>9.2f}{raw.round_trip_per_s:>9.0f}"
    )
    print(f"ratio end to end / raw publish-then-consume: {end_to_end / raw.round_trip_per_s:.2f}")
    print(
        f"webhook POSTs {int(result['posts']):,}, distinct envelopes "
        f"{int(result['distinct']):,}, failed notices {int(result['failed'])}"
    )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--notices", type=int, default=20_000)
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "ENCOMPASS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL database to create the scratch one next to",
    )
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("ENCOMPASS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    args = parser.parse_args()
    asyncio.run(main(args.notices, args.database_url, args.amqp_url))


if __name__ == "__main__":
    cli()
