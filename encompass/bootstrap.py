"""The one place where adapters are built and handed to the services (cosmicpython style).

Nothing connects at import time: :func:`bootstrap` builds a :class:`Container` from the
settings, and the app, the workers, the CLI and the tests all go through it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from encompass.adapters.broker import Broker
from encompass.adapters.db.engine import make_engine, make_sessions
from encompass.adapters.db.migrate import migrate
from encompass.adapters.topology import Topology
from encompass.clock import Clock
from encompass.config import Settings
from encompass.services.roster import DatabaseRoster, Roster


@dataclass
class Container:
    settings: Settings
    clock: Clock
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    broker: Broker
    roster: Roster

    async def close(self) -> None:
        await self.broker.close()
        await self.engine.dispose()


def make_broker(settings: Settings) -> Broker:
    topology = Topology(settings.queue_prefix)
    if settings.amqp_url is None:
        from encompass.adapters.embedded_broker import EmbeddedBroker

        return EmbeddedBroker(topology)
    from encompass.adapters.rabbit import RabbitBroker

    return RabbitBroker(settings.amqp_url, topology)


async def bootstrap(settings: Settings, *, clock: Clock | None = None,
                    broker: Broker | None = None, run_migrations: bool = True) -> Container:
    """Build every adapter for ``settings``, migrate the database and start the broker."""
    if run_migrations:
        await migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    broker = broker or make_broker(settings)
    await broker.start()
    return Container(settings=settings, clock=clock or Clock(settings.now), engine=engine,
                     sessions=make_sessions(engine), broker=broker, roster=DatabaseRoster())
