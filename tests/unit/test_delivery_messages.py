"""The ``deliveries`` message in its two forms, and how the outbox relay groups entries."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from encompass.domain.queued import DeliveryQueued
from encompass.services.scheduling.outbox import Pending, delivery_messages


def test_the_one_envelope_form_still_parses() -> None:
    body = b'{"outbox_id": 7, "envelope_id": "e-1", "channel": "webhook"}'
    queued = DeliveryQueued.from_bytes(body)
    assert queued.ids == ("e-1",)
    assert queued.channel == "webhook"


def test_the_list_form_round_trips() -> None:
    queued = DeliveryQueued.of(["e-1", "e-2"], "email")
    assert json.loads(queued.to_bytes()) == {"envelope_ids": ["e-1", "e-2"], "channel": "email"}
    assert DeliveryQueued.from_bytes(queued.to_bytes()).ids == ("e-1", "e-2")


def test_one_id_is_sent_in_the_form_every_consumer_reads() -> None:
    assert json.loads(DeliveryQueued.of(["e-1"], "webhook").to_bytes()) == {
        "envelope_id": "e-1",
        "channel": "webhook",
    }


@pytest.mark.parametrize(
    "body",
    [
        b'{"channel": "webhook"}',
        b'{"envelope_id": "e-1", "envelope_ids": ["e-2"], "channel": "webhook"}',
        b'{"envelope_ids": [], "channel": "webhook"}',
        b'{"envelope_ids": ["e-1"], "channel": "fax"}',
    ],
)
def test_a_body_with_neither_both_or_no_envelopes_is_refused(body: bytes) -> None:
    with pytest.raises(ValidationError):
        DeliveryQueued.from_bytes(body)


def test_the_relay_groups_entries_by_channel_a_batch_to_a_message() -> None:
    entries = [Pending(n, f"e-{n}", "webhook" if n % 3 else "email") for n in range(1, 11)]
    messages = delivery_messages(entries, per_message=4)
    bodies = [(json.loads(body), mid, ids) for body, mid, ids in messages]
    assert bodies == [
        (
            {"envelope_ids": ["e-1", "e-2", "e-4", "e-5"], "channel": "webhook"},
            "outbox-1..5",
            [1, 2, 4, 5],
        ),
        (
            {"envelope_ids": ["e-7", "e-8", "e-10"], "channel": "webhook"},
            "outbox-7..10",
            [7, 8, 10],
        ),
        ({"envelope_ids": ["e-3", "e-6", "e-9"], "channel": "email"}, "outbox-3..9", [3, 6, 9]),
    ]


def test_a_lone_entry_keeps_its_outbox_id_and_the_one_envelope_form() -> None:
    ((body, message_id, ids),) = delivery_messages([Pending(5, "e-5", "webhook")])
    assert json.loads(body) == {"outbox_id": 5, "envelope_id": "e-5", "channel": "webhook"}
    assert (message_id, ids) == ("outbox-5", [5])
