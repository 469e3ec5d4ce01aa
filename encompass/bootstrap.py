"""The one place where adapters are built and handed to the services (cosmicpython style).

Nothing connects at import time: :func:`bootstrap` builds a :class:`Container` from the
settings, and the app, the workers, the CLI and the tests all go through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from encompass.adapters.broker import Broker
from encompass.adapters.db.engine import make_engine, make_sessions
from encompass.adapters.db.migrate import migrate
from encompass.adapters.keys import load_or_create_signing_key
from encompass.adapters.topology import Topology
from encompass.clock import Clock
from encompass.config import Settings
from encompass.services.roster import IndexedRoster, Roster


@dataclass
class Container:
    settings: Settings
    clock: Clock
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    broker: Broker
    roster: Roster
    # The service's Ed25519 key: signs every sealed envelope (schemas/envelope.md).
    signing_key: Ed25519PrivateKey

    async def close(self) -> None:
        await self.roster.close()
        await self.broker.close()
        await self.engine.dispose()


DEFAULT_SIGNING_KEY = Path("encompass-signing-key.pem")


def make_broker(settings: Settings) -> Broker:
    topology = Topology(settings.queue_prefix)
    if settings.amqp_url is None:
        from encompass.adapters.embedded_broker import EmbeddedBroker

        return EmbeddedBroker(topology)
    from encompass.adapters.rabbit import RabbitBroker

    return RabbitBroker(settings.amqp_url, topology)


async def bootstrap(settings: Settings, *, clock: Clock | None = None,
                    broker: Broker | None = None, run_migrations: bool = True,
                    signing_key: Ed25519PrivateKey | None = None,
                    roster: Roster | None = None) -> Container:
    """Build every adapter for ``settings``, migrate the database and start the broker.

    The roster is ``roster`` when given (e.g. a ``DatabaseRoster``), else an
    ``IndexedRoster`` checking the roster version every ``settings.roster_check_interval``
    seconds; it loads nothing until warmed or first asked.

    The signing key is ``signing_key`` when given (tests), else read from
    ``ENCOMPASS_SIGNING_KEY`` (default ``./encompass-signing-key.pem``), generated there on
    first start; a file that is not an Ed25519 key stops the start with KeyFileError.
    """
    key = signing_key or load_or_create_signing_key(settings.signing_key or DEFAULT_SIGNING_KEY)
    if run_migrations:
        await migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_sessions(engine)
    broker = broker or make_broker(settings)
    await broker.start()
    roster = roster or IndexedRoster(sessions, check_every=settings.roster_check_interval)
    return Container(settings=settings, clock=clock or Clock(settings.now), engine=engine,
                     sessions=sessions, broker=broker, roster=roster, signing_key=key)
