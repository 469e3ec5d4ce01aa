"""Police systems over AMQP: a report published to ``encompass.incidents`` by a force's own
RabbitMQ user goes through the same ingest use case as ``POST /v1/incidents``.

Who sent it is the message's ``user_id`` property and nothing else: RabbitMQ refuses a
message whose ``user_id`` is not the user the publishing connection logged in as (unless
that user has the ``impersonator`` tag, which no Encompass user may have), so it is as
trustworthy as the password behind it. A force's user is named by a fixed convention,
``encompass-force-<CODE>`` (the code exactly as registered), and may write to the incidents
exchange only: it can neither read nor declare anything, nor publish to any queue directly.

The body is validated exactly as over HTTP (the same :class:`IncidentReport`, against the
same clock), idempotency is the same (force + ``incident_ref`` + ``version``), and
``message_id`` is required. What is refused raises :class:`Refused`, whose reason holds no
personal data and never quotes the body.
"""

from __future__ import annotations

import re
import secrets
import shlex
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.broker import Broker, Message
from encompass.adapters.db.tables import Force
from encompass.adapters.topology import Topology
from encompass.clock import Clock
from encompass.domain.incident import describe_invalid, parse_report
from encompass.services.intake.ingest import Accepted, Reporter, VersionConflict, report_incident
from encompass.strict_json import JsonRefused, parse_json

FORCE_USER_PREFIX: Final = "encompass-force-"
# The same bound as an HTTP body: a report is a few kB; anything larger is a mistake.
MAX_REPORT_BYTES: Final = 256 * 1024
# What a dead-letter record may repeat of a message id; anything else is not shown.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")


class PublishProperties(BaseModel):
    """The AMQP message properties a force sets when it publishes a report (documented in
    the AsyncAPI document; the intake checks them as :func:`intake` says)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    message_id: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:/-]+$",
        description="Required. The force's own id for this message, "
        "unique per report it sends (a UUID is ideal); "
        "shown on a refused message's dead-letter record.",
        examples=["0b7e4c1e-6a0d-4d8e-9a55-2f1c3f4b9d21"],
    )
    user_id: str = Field(
        pattern=r"^encompass-force-[A-Za-z0-9_-]{1,32}$",
        description="Required. The force's own RabbitMQ user, "
        "encompass-force-<CODE>: RabbitMQ refuses a message "
        "whose user_id is not the publishing user, and the "
        "force is taken from it, never from the body.",
        examples=["encompass-force-CH"],
    )
    content_type: str = Field(
        "application/json",
        description="application/json; the body is UTF-8 JSON.",
        examples=["application/json"],
    )
    delivery_mode: int = Field(
        2,
        ge=1,
        le=2,
        description="2 (persistent), so that an accepted report survives a broker restart.",
        examples=[2],
    )


class Refused(Exception):
    """A message the service will never accept; ``reason`` holds no personal data."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def force_user(code: str) -> str:
    """The RabbitMQ user name of the force registered as ``code``."""
    return FORCE_USER_PREFIX + code


def force_of_user(user_id: str | None) -> str | None:
    """The force code a RabbitMQ user name stands for, or None if it names no force."""
    if user_id is None or not user_id.startswith(FORCE_USER_PREFIX):
        return None
    return user_id.removeprefix(FORCE_USER_PREFIX) or None


def shown_id(message_id: str) -> str:
    """A message id as a dead-letter record may repeat it: ours to show only when it looks
    like an id, never free text."""
    return message_id if _SAFE_ID.match(message_id) else "(not shown)"


async def intake(
    sessions: async_sessionmaker[AsyncSession],
    broker: Broker,
    clock: Clock,
    message: Message,
    *,
    reporter: Reporter | None = None,
) -> Accepted:
    """Ingest one report published by a force over AMQP (through ``reporter`` when given:
    an ``IngestBatcher``'s, which stores it with the reports arriving with it).

    Raises :class:`Refused` for a message that can never succeed (no ``message_id``, a user
    that is not a registered force's or whose force is revoked, a body the HTTP door would
    refuse or that is not a valid report, different content under a version already
    received); any other exception is transient (the database or
    the broker), and the message should be tried again.
    """
    if not message.message_id:
        raise Refused("no message_id: every report must carry one")
    if len(message.body) > MAX_REPORT_BYTES:
        raise Refused(f"the body is larger than {MAX_REPORT_BYTES} bytes")
    code = force_of_user(message.user_id)
    if code is None:
        raise Refused(
            "not published by a force's user: user_id is missing or is not "
            f"{FORCE_USER_PREFIX}<CODE>"
        )
    try:
        # The HTTP door's rules (too deep, huge numbers, repeated keys, NUL, lone
        # surrogates); plain syntax errors are left to the report's own parse below.
        parse_json(message.body)
    except JsonRefused as exc:
        if exc.code != "invalid_json":
            raise Refused(f"{exc} ({exc.code})") from None
    async with sessions() as session:
        force = await session.get(Force, code)
        if force is None:
            raise Refused("the publishing user's force is not registered")
        if force.revoked_at is not None:
            raise Refused("the publishing user's force is revoked")
    try:
        report = parse_report(message.body, now=clock.now())
    except ValidationError as exc:
        raise Refused(describe_invalid(exc)) from None
    try:
        if reporter is not None:
            return await reporter(code, report, channel="amqp")
        return await report_incident(sessions, broker, clock, code, report, channel="amqp")
    except VersionConflict:
        raise Refused(
            "version conflict: this incident_ref and version were already received "
            "with different content; send it as a new version"
        ) from None


def rabbitmqctl_commands(
    code: str, topology: Topology, *, vhost: str = "/", password: str | None = None
) -> list[str]:
    """The commands that create the force's RabbitMQ user with the right to publish to the
    incidents exchange and nothing else: configure none, write that exchange only, read
    none (an empty pattern grants nothing)."""
    user = force_user(code)
    # Hex, so it never starts with "-" and is never read as an option.
    secret = password or secrets.token_hex(24)
    write = f"^{re.escape(topology.incidents_exchange)}$"
    return [
        f"rabbitmqctl add_user {shlex.quote(user)} {shlex.quote(secret)}",
        f"rabbitmqctl set_permissions -p {shlex.quote(vhost)} {shlex.quote(user)} "
        f"'' {shlex.quote(write)} ''",
    ]
