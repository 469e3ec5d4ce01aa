"""Session fixtures of the fault tests: our own RabbitMQ node, PostgreSQL cluster, webhook
receiver and template database (``tests/faults/stack.py``), removed at the end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.conftest import RUN_ID
from tests.faults.load import Tally
from tests.faults.proxy import FaultProxy
from tests.faults.servers import PgCluster, RabbitNode, postgres_bin, rabbit_available
from tests.faults.stack import Infra, Service, Stack

DEFAULT_IN_FLIGHT = 120


@pytest.fixture(scope="session")
def in_flight(request: pytest.FixtureRequest) -> int:
    """Incidents reported per fault: ``--faults-in-flight N`` or ENCOMPASS_FAULTS_IN_FLIGHT."""
    value = request.config.getoption("--faults-in-flight", default=None) or os.environ.get(
        "ENCOMPASS_FAULTS_IN_FLIGHT"
    )
    return int(value) if value else DEFAULT_IN_FLIGHT


@pytest.fixture(scope="session")
def fault_infra() -> Iterator[Infra]:
    if not rabbit_available():
        pytest.skip(
            "the RabbitMQ server package is not installed: the fault tests need a "
            "node of their own (apt-get install rabbitmq-server)"
        )
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip(
            "the PostgreSQL server binaries are not installed: the fault tests need "
            "a cluster of their own (apt-get install postgresql)"
        )
    base = Path(tempfile.mkdtemp(prefix=f"encompass-faults-{RUN_ID}-"))
    base.chmod(0o755)  # the cluster runs as the postgres user when we are root
    rabbit = RabbitNode(
        base / "rabbit", name=f"encompass-fault-{RUN_ID}", cookie=secrets.token_hex(20)
    )
    pg = PgCluster(base / "pg", bindir)
    infra = Infra(base, rabbit, pg)
    try:
        rabbit.start()
        pg.init()
        pg.start()
        infra.start_receiver()
        infra.prepare_template()
        yield infra
    finally:
        infra.close()
        rabbit.stop()
        with contextlib.suppress(Exception):
            pg.stop("immediate")
        if not os.environ.get("ENCOMPASS_FAULTS_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
async def service(fault_infra: Infra) -> AsyncIterator[Service]:
    """The API, a matcher and a dispatcher, each its own process, started once for every
    fault test (a test that kills or stops one leaves a replacement running)."""
    broker_link = FaultProxy(fault_infra.rabbit.amqp_port)
    database_link = FaultProxy(fault_infra.pg.port)
    await broker_link.start()
    await database_link.start()
    stack = Stack(
        fault_infra, "service", worker_amqp_port=broker_link.port, api_db_port=database_link.port
    )
    try:
        # In a thread: the proxies serve from this event loop meanwhile.
        await asyncio.to_thread(stack.start)
        yield Service(stack, broker_link, database_link)
    finally:
        await asyncio.to_thread(stack.close)
        await broker_link.close()
        await database_link.close()


@pytest.fixture(scope="session")
def fault_table() -> Iterator[list[Tally]]:
    """Every scenario's counts; printed as one table at the end (``pytest -s``) and
    appended to the file ENCOMPASS_FAULTS_REPORT names, when set."""
    rows: list[Tally] = []
    yield rows
    if not rows:
        return
    lines = [
        "| fault | attempted | accepted | lost | duplicated | unexpected | late | "
        "redelivered | HTTP answers | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [row.row() for row in rows]
    print("\n" + "\n".join(lines))
    target = os.environ.get("ENCOMPASS_FAULTS_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
