"""Settings from the environment, read once at start (docs/configuration.md).

A bad value stops the program with one line naming the variable: see :func:`load_settings`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./encompass.db"


class ConfigError(Exception):
    """A setting has a bad value; the message is one line naming the variable."""


def normalise_database_url(url: str) -> str:
    """Accept the plain ``sqlite:///`` and ``postgresql://`` forms and add the async driver."""
    url = url.strip()
    for plain, driver in (
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    if url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        return url
    raise ValueError(
        "must start with sqlite+aiosqlite:///, sqlite:///, postgresql+asyncpg:// or postgresql://"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ENCOMPASS_", extra="ignore", frozen=True)

    amqp_url: str | None = None
    database_url: str = DEFAULT_DATABASE_URL
    http_host: str = "127.0.0.1"
    http_port: Annotated[int, Field(ge=1, le=65535)] = 8080
    # Lets several ``encompass serve`` processes listen on one port (SO_REUSEPORT): the
    # kernel spreads connections between them, and the API scales by adding processes.
    # Only with RabbitMQ: the embedded broker lives inside one process.
    http_reuse_port: bool = False
    signing_key: Path | None = None
    # The key-encryption key of the data at rest (adapters/data_keys.py); unset: the file
    # ``encompass-data-key`` beside the signing key, generated on first start.
    data_key: Path | None = None
    # Days after an incident's last notice reached a final status before its data key is
    # destroyed (services/records/retention.py).
    retention_days: Annotated[int, Field(ge=0, le=36500)] = 90
    log_format: Literal["console", "json"] = "console"
    now: AwareDatetime | None = None
    # Names every queue with a prefix, so that test runs and side-by-side deployments on
    # one broker never see each other's messages.
    queue_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]*$", max_length=64)] = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Delivery (the dispatcher worker). E-mail pointers are sent only when smtp_host is
    # set; without it Key Adults with no webhook still fetch from the portal.
    smtp_host: str | None = None
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 25
    smtp_from: str = "encompass@localhost"
    portal_url: str = "http://127.0.0.1:8080"
    webhook_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    delivery_max_attempts: Annotated[int, Field(ge=1, le=50)] = 6
    dispatch_interval: Annotated[float, Field(gt=0, le=60)] = 0.5
    # Matching: seconds between two checks of the roster version by a matcher worker that
    # holds the roster in memory (0: before every child). A pupils import reaches matching
    # within this time plus the index build.
    roster_check_interval: Annotated[float, Field(ge=0, le=3600)] = 30.0
    # The door (api/door.py): requests per second and burst, per credential (bearer token)
    # and per client address; a rate of 0 turns that limit off. A force's system reporting
    # a backlog after an outage sends 200 at once, then 20 a second (72,000 an hour).
    rate_limit_credential: Annotated[float, Field(ge=0, le=100_000)] = 20.0
    rate_limit_credential_burst: Annotated[int, Field(ge=1, le=1_000_000)] = 200
    rate_limit_address: Annotated[float, Field(ge=0, le=100_000)] = 50.0
    rate_limit_address_burst: Annotated[int, Field(ge=1, le=1_000_000)] = 500
    # Batching (workers/runner.py): a worker takes up to batch_size messages, waiting at
    # most batch_wait_ms after the first, and commits them in one transaction.
    batch_size: Annotated[int, Field(ge=1, le=1000)] = 64
    batch_wait_ms: Annotated[float, Field(ge=0, le=10_000)] = 10.0
    # Worker processes a dispatcher seals large release batches in, off its event loop
    # (services/delivery/seal_pool.py); 0, the default, seals in the event loop. Worth it
    # only with cores to spare: the CPU per envelope does not fall.
    seal_workers: Annotated[int, Field(ge=0, le=64)] = 0
    # Ingest (services/intake/ingest_batch.py): after a batch of several reports, the
    # longest the next waits for as many to arrive (0: never waits).
    ingest_wait_ms: Annotated[float, Field(ge=0, le=1_000)] = 2.0

    @field_validator("amqp_url")
    @classmethod
    def _amqp(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        if not value.startswith(("amqp://", "amqps://")):
            raise ValueError("must start with amqp:// or amqps://")
        return value.strip()

    @field_validator("smtp_host")
    @classmethod
    def _smtp_host(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str) -> str:
        return normalise_database_url(value or DEFAULT_DATABASE_URL)

    @property
    def database_kind(self) -> Literal["postgresql", "sqlite"]:
        return "postgresql" if self.database_url.startswith("postgresql") else "sqlite"


def load_settings(**overrides: object) -> Settings:
    """Read the environment (plus ``overrides``); raise :class:`ConfigError` on a bad value."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"ENCOMPASS_{field.upper()}: {message}") from None


def start_instant(settings: Settings) -> datetime | None:
    return settings.now
