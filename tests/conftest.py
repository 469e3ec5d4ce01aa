"""Fixtures for the real services.

With a Docker engine (a developer's laptop) the services come from testcontainers; without
one (CI, these machines) from the URLs in the environment, defaulting to the loopback
services. When neither answers, the tests fail with a clear message: they never skip.
Every run gets its own PostgreSQL database and its own RabbitMQ queue names.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

RUN_ID = uuid.uuid4().hex[:10]
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--faults-in-flight",
        type=int,
        default=None,
        help="incidents reported per fault in tests/faults (default 120)",
    )


def _docker_available() -> bool:
    if os.environ.get("ENCOMPASS_TEST_NO_DOCKER") or shutil.which("docker") is None:
        return False
    import docker  # type: ignore[import-untyped]

    with warnings.catch_warnings():
        # docker-py leaks its socket when no daemon answers: collect it here, where its
        # ResourceWarning cannot fail the whole run (filterwarnings = error).
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            docker.from_env().ping()
            available = True
        except Exception:
            available = False
        gc.collect()
    return available


@pytest.fixture(scope="session", autouse=True)
def _data_key_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every service built in this run seals its data at rest under one key file of the
    run's own (generated on first use), never one in the working directory."""
    saved = os.environ.get("ENCOMPASS_DATA_KEY")
    os.environ["ENCOMPASS_DATA_KEY"] = str(tmp_path_factory.mktemp("data-key") / "data-key")
    yield
    if saved is None:
        os.environ.pop("ENCOMPASS_DATA_KEY", None)
    else:
        os.environ["ENCOMPASS_DATA_KEY"] = saved


@dataclass(frozen=True)
class RabbitTarget:
    url: str
    prefix: str


@pytest.fixture(scope="session")
def _containers() -> Iterator[dict[str, str]]:
    """Start PostgreSQL and RabbitMQ containers once per session when Docker is there."""
    if os.environ.get("ENCOMPASS_TEST_DATABASE_URL") or not _docker_available():
        yield {}
        return
    from testcontainers.postgres import PostgresContainer
    from testcontainers.rabbitmq import RabbitMqContainer

    with PostgresContainer("postgres:16") as pg, RabbitMqContainer("rabbitmq:4-management") as mq:
        host, port = mq.get_container_host_ip(), mq.get_exposed_port(5672)
        yield {
            "pg": pg.get_connection_url(driver=None),
            "amqp": f"amqp://guest:guest@{host}:{port}/",
        }


@pytest.fixture(scope="session")
def admin_pg_url(_containers: dict[str, str]) -> str:
    return _containers.get("pg") or os.environ.get("ENCOMPASS_TEST_DATABASE_URL", DEFAULT_PG)


@pytest.fixture(scope="session")
def rabbit(_containers: dict[str, str]) -> RabbitTarget:
    """The broker URL and a queue-name prefix of this run's own."""
    url = _containers.get("amqp") or os.environ.get("ENCOMPASS_TEST_AMQP_URL", DEFAULT_AMQP)
    _check_rabbit(url)
    return RabbitTarget(url=url, prefix=f"t{RUN_ID}.")


def _check_rabbit(url: str) -> None:
    import aio_pika

    async def probe() -> None:
        connection = await aio_pika.connect(url, timeout=10)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        pytest.fail(
            f"RabbitMQ does not answer at {url} ({exc.__class__.__name__}: {exc}); "
            "start it (rabbitmq-server -detached) or set ENCOMPASS_TEST_AMQP_URL",
            pytrace=False,
        )


@pytest.fixture(scope="session")
async def pg_url(admin_pg_url: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database for this run, dropped at the end."""
    import asyncpg

    name = f"encompass_test_{RUN_ID}"
    dsn = admin_pg_url.replace("postgresql+asyncpg://", "postgresql://")
    try:
        admin = await asyncpg.connect(dsn, timeout=10)
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL does not answer at {dsn} ({exc.__class__.__name__}: {exc}); "
            "start it or set ENCOMPASS_TEST_DATABASE_URL",
            pytrace=False,
        )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = dsn.rsplit("/", 1)[0]
    yield f"postgresql+asyncpg://{base.removeprefix('postgresql://')}/{name}"
    admin = await asyncpg.connect(dsn, timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
