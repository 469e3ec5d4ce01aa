"""The queues we run on, as typed specs, and the RabbitMQ arguments they declare with.

Every work queue is a durable quorum queue that dead-letters, at least once, through a
direct exchange to its own ``.dead`` queue (RabbitMQ's reliability guidance). A message
to be tried again later waits in one of the work queue's ``.retry.<N>s`` queues (durable
classic queues, which expire messages on a timer), whose messages expire after N seconds
and are dead-lettered back to the work queue: no consumer sleeps on it.
Police systems publish to the fanout exchange ``encompass.incidents`` (as their own
RabbitMQ user, allowed to write there and nowhere else), bound to the ``intake`` work queue;
the service itself publishes to its queues through the default exchange.

``deploy/rabbitmq/definitions.json`` is :func:`Topology.definitions` for the empty prefix,
and a test keeps the two equal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DEFAULT_DELIVERY_LIMIT = 5
DEAD_SUFFIX = ".dead"
RETRY_SUFFIX = ".retry"
# The delays (seconds) a message can wait out before another attempt, one queue per
# delay and work queue: a message published to ``<work>.retry.<N>s`` expires after N
# seconds and is dead-lettered back to ``<work>``. One queue per delay, because RabbitMQ
# expires messages only at the head of a queue: a long delay would hold up short ones.
RETRY_DELAYS = (1, 5, 30, 300)
# The work queues, by logical name: the only place the names are written.
INCIDENTS = "incidents"  # stored incident versions, for the matcher
DELIVERIES = "deliveries"  # envelopes to send, from the outbox relay
INTAKE = "intake"  # police reports over AMQP, fed by the police exchange
# Each gets a ``.dead`` companion.
WORK_QUEUES = (INCIDENTS, DELIVERIES, INTAKE)

_PREFIX = re.compile(r"^[A-Za-z0-9_.-]*$")


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """One queue: its logical name and how RabbitMQ must treat it."""

    name: str
    quorum: bool = True
    # Times a message may be redelivered before the broker dead-letters it. A backstop
    # only: the worker runner counts its own retries (see encompass/workers/runner.py).
    delivery_limit: int | None = None
    # Logical name of the queue that receives this queue's dead letters.
    dead_letter: str | None = None
    # Milliseconds a message waits here before it expires to ``dead_letter`` (retry queues).
    message_ttl: int | None = None


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    """An exchange, with its real name."""

    name: str
    type: str  # "direct" | "fanout"


@dataclass(frozen=True, slots=True)
class Binding:
    """A binding from an exchange to a queue, with real names."""

    exchange: str
    queue: str
    routing_key: str


def retry_queue_name(work: str, delay: int) -> str:
    """``incidents.retry.5s``: where a message of ``work`` waits ``delay`` seconds."""
    return f"{work}{RETRY_SUFFIX}.{delay}s"


class Topology:
    """The queue specs of one deployment, named with ``prefix`` so that test runs and
    side-by-side deployments on one broker never share a queue."""

    def __init__(self, prefix: str = "", *, delivery_limit: int = DEFAULT_DELIVERY_LIMIT) -> None:
        if not _PREFIX.match(prefix):
            raise ValueError(f"queue prefix {prefix!r} may hold only letters, digits, _ . -")
        self.prefix = prefix
        self.dead_letter_exchange = f"{prefix}encompass.dlx"
        # Where police systems publish reports; fanout, so the routing key is ignored.
        self.incidents_exchange = f"{prefix}encompass.incidents"
        specs: list[QueueSpec] = []
        for work in WORK_QUEUES:
            dead = work + DEAD_SUFFIX
            specs.append(QueueSpec(work, delivery_limit=delivery_limit, dead_letter=dead))
            # No delivery limit and no dead-letter target on a dead queue: a limit with
            # nowhere to go would make RabbitMQ drop the message outright.
            specs.append(QueueSpec(dead))
            # No consumer ever reads a retry queue: its messages expire back to the work
            # queue. Classic queues: a quorum queue with no consumer may never expire its
            # messages (RabbitMQ checks their TTL only on activity), a classic one expires
            # the head on a timer.
            specs += [
                QueueSpec(
                    retry_queue_name(work, delay),
                    quorum=False,
                    dead_letter=work,
                    message_ttl=delay * 1000,
                )
                for delay in RETRY_DELAYS
            ]
        self.queues: tuple[QueueSpec, ...] = tuple(specs)
        self._by_name = {spec.name: spec for spec in self.queues}

    def __repr__(self) -> str:
        return f"Topology(prefix={self.prefix!r})"

    def spec(self, logical: str) -> QueueSpec:
        """The spec of a logical queue name; ``ValueError`` for a name we do not declare."""
        try:
            return self._by_name[logical]
        except KeyError:
            raise ValueError(
                f"unknown queue {logical!r}; known: {', '.join(self._by_name)}"
            ) from None

    def name(self, logical: str) -> str:
        """The real (prefixed) name of a logical queue."""
        return self.prefix + self.spec(logical).name

    def dead_letter_of(self, logical: str) -> str | None:
        """The logical name of the queue's dead-letter queue, if it has one."""
        return self.spec(logical).dead_letter

    def retry_queue(self, logical: str, seconds: float) -> str | None:
        """The logical name of the retry queue for waiting about ``seconds`` before the next
        attempt at a message of ``logical``: the longest delay not above ``seconds`` (the
        shortest for less). None for a queue without retry queues."""
        if retry_queue_name(logical, RETRY_DELAYS[0]) not in self._by_name:
            return None
        chosen = RETRY_DELAYS[0]
        for delay in RETRY_DELAYS:
            if delay <= seconds:
                chosen = delay
        return retry_queue_name(logical, chosen)

    def arguments(self, logical: str) -> dict[str, str | int]:
        """The ``x-`` arguments RabbitMQ declares the queue with."""
        spec = self.spec(logical)
        args: dict[str, str | int] = {}
        if spec.quorum:
            args["x-queue-type"] = "quorum"
        if spec.dead_letter is not None:
            args["x-dead-letter-exchange"] = self.dead_letter_exchange
            args["x-dead-letter-routing-key"] = self.name(spec.dead_letter)
            if spec.quorum:
                # At-least-once dead-lettering keeps a message in the source queue until
                # the dead queue has confirmed it; RabbitMQ only honours it together with
                # reject-publish (with drop-head it silently falls back to at-most-once).
                args["x-dead-letter-strategy"] = "at-least-once"
                args["x-overflow"] = "reject-publish"
        if spec.delivery_limit is not None:
            args["x-delivery-limit"] = spec.delivery_limit
        if spec.message_ttl is not None:
            args["x-message-ttl"] = spec.message_ttl
        return args

    def exchanges(self) -> list[ExchangeSpec]:
        """The dead-letter exchange and the police systems' incidents exchange."""
        return [
            ExchangeSpec(self.dead_letter_exchange, "direct"),
            ExchangeSpec(self.incidents_exchange, "fanout"),
        ]

    def bindings(self) -> list[Binding]:
        """Dead-letter exchange → ``.dead`` queue (and, for expired retries, → the work
        queue), routed by the target's real name; the incidents exchange → ``intake``."""
        targets = sorted({s.dead_letter for s in self.queues if s.dead_letter is not None})
        return [Binding(self.dead_letter_exchange, self.name(t), self.name(t)) for t in targets] + [
            Binding(self.incidents_exchange, self.name(INTAKE), "")
        ]

    def definitions(self, vhost: str = "/") -> dict[str, Any]:
        """The topology in RabbitMQ's definitions format (``rabbitmqctl import_definitions``
        or ``load_definitions``): queues, exchanges and bindings."""
        return {
            "queues": [
                {
                    "name": self.name(spec.name),
                    "vhost": vhost,
                    "durable": True,
                    "auto_delete": False,
                    "arguments": self.arguments(spec.name),
                }
                for spec in self.queues
            ],
            "exchanges": [
                {
                    "name": e.name,
                    "vhost": vhost,
                    "type": e.type,
                    "durable": True,
                    "auto_delete": False,
                    "internal": False,
                    "arguments": {},
                }
                for e in self.exchanges()
            ],
            "bindings": [
                {
                    "source": b.exchange,
                    "vhost": vhost,
                    "destination": b.queue,
                    "destination_type": "queue",
                    "routing_key": b.routing_key,
                    "arguments": {},
                }
                for b in self.bindings()
            ],
        }
