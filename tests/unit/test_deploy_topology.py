"""The deployed RabbitMQ definitions equal the topology the code declares (as GOV.UK Notify
checks its deployed queue list against the code). A queue added in code but not in
deploy/rabbitmq/definitions.json, or the other way round, fails here rather than in
production, where a declaration with other arguments is refused (PRECONDITION_FAILED).

To regenerate the file after changing the topology::

    python -c "import json; from encompass.adapters.topology import Topology; \
print(json.dumps(Topology('').definitions(), indent=2))" > deploy/rabbitmq/definitions.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from encompass.adapters.topology import Topology

DEFINITIONS = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "definitions.json"


def deployed() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DEFINITIONS.read_text(encoding="utf-8"))
    return loaded


def by_name(items: list[dict[str, Any]], key: str = "name") -> dict[str, dict[str, Any]]:
    return {item[key]: item for item in items}


def test_deployed_queues_equal_the_code() -> None:
    topology = Topology("")
    queues = by_name(deployed()["queues"])

    assert set(queues) == {topology.name(spec.name) for spec in topology.queues}
    for spec in topology.queues:
        queue = queues[topology.name(spec.name)]
        assert queue["arguments"] == topology.arguments(spec.name), spec.name
        assert (queue["durable"], queue["auto_delete"], queue["vhost"]) == (True, False, "/")


def test_deployed_exchange_and_bindings_equal_the_code() -> None:
    topology = Topology("")
    definitions = deployed()

    assert [(e["name"], e["type"], e["durable"]) for e in definitions["exchanges"]] == [
        (topology.dead_letter_exchange, "direct", True),
        (topology.incidents_exchange, "fanout", True),
    ]
    assert topology.incidents_exchange == "encompass.incidents"  # the public name
    assert sorted(
        (b["source"], b["destination"], b["routing_key"]) for b in definitions["bindings"]
    ) == sorted((b.exchange, b.queue, b.routing_key) for b in topology.bindings())


def test_the_whole_file_is_what_the_code_generates() -> None:
    assert deployed() == Topology("").definitions()


def test_every_work_queue_is_a_dead_lettering_quorum_queue() -> None:
    # The operational promises, read straight from the deployed file.
    queues = by_name(deployed()["queues"])
    for name in ("incidents", "deliveries", "intake"):
        args = queues[name]["arguments"]
        assert args["x-queue-type"] == "quorum"
        assert args["x-dead-letter-strategy"] == "at-least-once"
        assert args["x-overflow"] == "reject-publish"  # at-least-once needs it
        assert args["x-dead-letter-routing-key"] == f"{name}.dead"
        assert args["x-delivery-limit"] >= 1
        assert queues[f"{name}.dead"]["arguments"] == {"x-queue-type": "quorum"}


def test_the_police_exchange_feeds_the_intake_queue_only() -> None:
    bindings = [b for b in deployed()["bindings"] if b["source"] == "encompass.incidents"]
    assert [(b["destination"], b["destination_type"]) for b in bindings] == [("intake", "queue")]
