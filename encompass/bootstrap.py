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
from encompass.adapters.data_keys import DataKeys, load_or_create_data_keys
from encompass.adapters.db.engine import make_engine, make_sessions
from encompass.adapters.db.migrate import migrate
from encompass.adapters.key_files import KeyFileError, load_or_create_signing_key
from encompass.adapters.smtp import SmtpSender
from encompass.adapters.topology import Topology
from encompass.adapters.webhook import WebhookSender
from encompass.clock import Clock
from encompass.config import Settings
from encompass.services.matching.roster import IndexedRoster, Roster
from encompass.services.records.at_rest import check_key_file, seal_clear_values


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
    # The key-encryption key of the data at rest; every session carries it too.
    data_keys: DataKeys
    # Webhooks: one HTTP client, opened on first use.
    webhook: WebhookSender
    # E-mail (pointers, overdue and failed-delivery e-mails); None without ENCOMPASS_SMTP_HOST.
    mailer: SmtpSender | None = None

    async def close(self) -> None:
        await self.webhook.close()
        await self.roster.close()
        await self.broker.close()
        await self.engine.dispose()


DEFAULT_SIGNING_KEY = Path("encompass-signing-key.pem")
DATA_KEY_NAME = "encompass-data-key"


def data_key_path(settings: Settings) -> Path:
    """``ENCOMPASS_DATA_KEY``, else ``encompass-data-key`` beside the signing key."""
    if settings.data_key is not None:
        return settings.data_key
    return (settings.signing_key or DEFAULT_SIGNING_KEY).parent / DATA_KEY_NAME


@dataclass
class Database:
    """The database alone: for a command that only reads the directory."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    async def close(self) -> None:
        await self.engine.dispose()


def open_database(settings: Settings) -> Database:
    """The database of ``settings``, with no migration, no broker and no key files, for
    ``encompass match``: a dry run reads the roster (stored readable) and writes nothing."""
    engine = make_engine(settings.database_url)
    return Database(engine=engine, sessions=make_sessions(engine))


def make_mailer(settings: Settings) -> SmtpSender | None:
    """The SMTP sender when ``ENCOMPASS_SMTP_HOST`` is set (it connects per message)."""
    if settings.smtp_host is None:
        return None
    return SmtpSender(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.smtp_from,
        portal_url=settings.portal_url,
    )


def make_broker(settings: Settings) -> Broker:
    topology = Topology(settings.queue_prefix)
    if settings.amqp_url is None:
        from encompass.adapters.embedded_broker import EmbeddedBroker

        return EmbeddedBroker(topology)
    from encompass.adapters.rabbit import RabbitBroker

    return RabbitBroker(settings.amqp_url, topology)


async def bootstrap(
    settings: Settings,
    *,
    clock: Clock | None = None,
    broker: Broker | None = None,
    run_migrations: bool = True,
    signing_key: Ed25519PrivateKey | None = None,
    roster: Roster | None = None,
    data_keys: DataKeys | None = None,
) -> Container:
    """Build every adapter for ``settings``, migrate the database and start the broker.

    The roster is ``roster`` when given (e.g. a ``DatabaseRoster``), else an
    ``IndexedRoster`` checking the roster version every ``settings.roster_check_interval``
    seconds; it loads nothing until warmed or first asked.

    The signing key is ``signing_key`` when given (tests), else read from
    ``ENCOMPASS_SIGNING_KEY`` (default ``./encompass-signing-key.pem``), generated there on
    first start; a file that is not an Ed25519 key stops the start with KeyFileError.
    The data keys likewise: ``data_keys`` when given, else the file of
    :func:`data_key_path`, generated on first start (mode 0600); KeyFileError when the
    database holds data sealed under another key file (a lost or swapped file).
    """
    key = signing_key or load_or_create_signing_key(settings.signing_key or DEFAULT_SIGNING_KEY)
    path = data_key_path(settings)
    created = data_keys is None and not path.exists()
    keys = data_keys or load_or_create_data_keys(path)
    if run_migrations:
        await migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_sessions(engine, keys)
    try:
        await check_key_file(sessions, keys, str(path))
    except KeyFileError:
        await engine.dispose()
        if created:  # ours, just made: leave the place free for the real one
            path.unlink(missing_ok=True)
        raise
    clock = clock or Clock(settings.now)
    if run_migrations:
        # A database from before data at rest: seal what it still holds in clear.
        await seal_clear_values(sessions, clock.now())
    broker = broker or make_broker(settings)
    await broker.start()
    roster = roster or IndexedRoster(sessions, check_every=settings.roster_check_interval)
    return Container(
        settings=settings,
        clock=clock,
        engine=engine,
        sessions=sessions,
        broker=broker,
        roster=roster,
        signing_key=key,
        data_keys=keys,
        webhook=WebhookSender(timeout=settings.webhook_timeout, signing_key=key),
        mailer=make_mailer(settings),
    )
