"""The AMQP intake's naming convention, the broker permissions it prints, and the record a
refused message leaves behind."""

from __future__ import annotations

import json
import re
import shlex

from encompass.adapters.topology import Topology
from encompass.services.intake import force_of_user, force_user, rabbitmqctl_commands, shown_id
from workers.intake import dead_record


def test_a_force_user_is_named_by_its_code_and_back() -> None:
    assert force_user("CH") == "encompass-force-CH"
    assert force_of_user("encompass-force-CH") == "CH"
    assert force_of_user("encompass-force-WEST-MERCIA") == "WEST-MERCIA"
    for user in (None, "guest", "encompass-force-", "encompass-admin-CH", "x-encompass-force-CH"):
        assert force_of_user(user) is None


def test_the_commands_grant_writing_the_prefixed_exchange_only() -> None:
    add, permit = rabbitmqctl_commands("CH", Topology("blue."), vhost="/police",
                                       password="abc123")
    assert shlex.split(add) == ["rabbitmqctl", "add_user", "encompass-force-CH", "abc123"]
    words = shlex.split(permit)
    assert words[:5] == ["rabbitmqctl", "set_permissions", "-p", "/police",
                         "encompass-force-CH"]
    configure, write, read = words[5:]
    assert (configure, read) == ("", "")
    assert re.fullmatch(write, "blue.encompass.incidents")
    for other in ("encompass.incidents", "blue.encompass.incidentsX", "blue.incidents",
                  "amq.default", "", "blue.encompass.dlx"):
        assert not re.fullmatch(write, other)


def test_a_generated_password_is_never_read_as_an_option() -> None:
    for _ in range(50):
        add, _permit = rabbitmqctl_commands("CH", Topology(""))
        assert not shlex.split(add)[3].startswith("-")


def test_a_dead_record_names_message_user_and_reason_only() -> None:
    record = json.loads(dead_record("msg-1", "encompass-force-CH", "no message_id"))
    assert record == {"message_id": "msg-1", "user_id": "encompass-force-CH",
                      "reason": "no message_id"}
    assert json.loads(dead_record("", None, "r"))["message_id"] is None
    # An id that is free text (a child's name, say) is not repeated
    assert shown_id("Amelia Smith 2015-03-02") == "(not shown)"
