"""What the service's own queues carry: one typed model per queue, used by the producer,
the consumer and the tests alike. Ids only: never personal data.

``incidents`` carries the id of a stored incident version, nothing more. The report
itself, and the force that sent it, stay in the database row written by the ingest use
case. A message therefore carries neither trust nor personal data: whoever can publish to
the queue can at most name a version we already hold, which the matcher then processes
once, exactly as if ingest had published it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

VersionId = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]


class VersionQueued(BaseModel):
    """The body of a message on ``incidents``: ``{"version_id": "<uuid>"}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version_id: VersionId

    def to_bytes(self) -> bytes:
        """The message body as published."""
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, body: bytes) -> VersionQueued:
        """Parse a message body; raises pydantic's ValidationError for anything else."""
        return cls.model_validate_json(body)


DeliveryChannel = Literal["webhook", "email"]
"""How an envelope reaches its recipient: posted to the setting's webhook, or an e-mail
pointer to the inbox."""

# Envelope ids one ``deliveries`` message may name: enough for a whole delivery batch, small
# enough that a message stays a few kilobytes.
MAX_ENVELOPES_PER_MESSAGE = 1000


class DeliveryQueued(BaseModel):
    """The body of a message on ``deliveries``: envelopes to send through one channel.

    Two forms, both accepted by the consumer: one envelope,
    ``{"outbox_id": n, "envelope_id": "<id>", "channel": "webhook"|"email"}``, or many,
    ``{"envelope_ids": ["<id>", ...], "channel": ...}``, which the outbox relay publishes
    for a batch of entries (one broker message instead of one per envelope). Exactly one
    of ``envelope_id`` and ``envelope_ids`` is given.

    ``outbox_id`` names the outbox entry that published a single-envelope message (the
    message id repeats it); the handler needs only the envelopes and the channel."""

    model_config = ConfigDict(frozen=True)

    outbox_id: int | None = None
    envelope_id: str | None = None
    envelope_ids: (
        Annotated[tuple[str, ...], Field(min_length=1, max_length=MAX_ENVELOPES_PER_MESSAGE)] | None
    ) = None
    channel: DeliveryChannel

    @model_validator(mode="after")
    def _one_form(self) -> DeliveryQueued:
        if (self.envelope_id is None) == (self.envelope_ids is None):
            raise ValueError("give exactly one of envelope_id and envelope_ids")
        return self

    @classmethod
    def of(cls, envelope_ids: Sequence[str], channel: DeliveryChannel) -> DeliveryQueued:
        """The message for ``envelope_ids``: the single form for one id (what every
        consumer understands), the list form for more."""
        if len(envelope_ids) == 1:
            return cls(envelope_id=envelope_ids[0], channel=channel)
        return cls(envelope_ids=tuple(envelope_ids), channel=channel)

    @property
    def ids(self) -> tuple[str, ...]:
        """The envelopes named, in either form."""
        if self.envelope_ids is not None:
            return self.envelope_ids
        assert self.envelope_id is not None  # the validator saw to it
        return (self.envelope_id,)

    def to_bytes(self) -> bytes:
        """The message body as published (unset fields left out)."""
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_bytes(cls, body: bytes) -> DeliveryQueued:
        """Parse a message body; raises pydantic's ValidationError for anything else."""
        return cls.model_validate_json(body)
