"""What the service's own queues carry: one typed model per queue, used by the producer,
the consumer and the tests alike. Ids only: never personal data.

``incidents`` carries the id of a stored incident version, nothing more. The report
itself, and the force that sent it, stay in the database row written by the ingest use
case. A message therefore carries neither trust nor personal data: whoever can publish to
the queue can at most name a version we already hold, which the matcher then processes
once, exactly as if ingest had published it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

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


class DeliveryQueued(BaseModel):
    """The body of a message on ``deliveries``: one envelope to send through one channel,
    ``{"outbox_id": n, "envelope_id": "<id>", "channel": "webhook"|"email"}``.

    ``outbox_id`` names the outbox entry that published it (the message id repeats it);
    the handler needs only the envelope and the channel."""

    model_config = ConfigDict(frozen=True)

    outbox_id: int | None = None
    envelope_id: str
    channel: Literal["webhook", "email"]

    def to_bytes(self) -> bytes:
        """The message body as published."""
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, body: bytes) -> DeliveryQueued:
        """Parse a message body; raises pydantic's ValidationError for anything else."""
        return cls.model_validate_json(body)
