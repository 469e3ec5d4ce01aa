"""schemathesis against the live app on the real PostgreSQL and RabbitMQ.

Every operation of the OpenAPI document is called with generated requests, valid and
invalid (negative mode), once with each kind of token (a force's, a Key Adult's, an
admin's): nothing may answer 5xx, and every error must be ``{"error": {"code",
"message"}}``. The run is deterministic (hypothesis derandomized, no example database)
and small (``EXAMPLES`` per operation and mode under the token the route serves, fewer
under the others) so that it stays within seconds.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from encompass.adapters.topology import Topology
from encompass.api.app import create_app
from encompass.api.openapi import build_openapi
from encompass.bootstrap import bootstrap
from encompass.clock import Clock
from encompass.config import load_settings
from encompass.demo.directory import write_directory
from encompass.services.access.credentials import add_admin, add_force
from encompass.services.directory.importer import import_directory
from encompass.services.receiving.portal import issue_key_adult_credentials
from tests.cleanup import delete_topologies
from tests.conftest import RabbitTarget
from tests.loop_thread import LoopThread
from tests.receiving_fixtures import add_child, add_notice, own_database, send_due

pytestmark = pytest.mark.integration

NIGHT = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)  # a Friday
TUESDAY = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)  # Oakfield's next open day
# Examples per operation and mode: many under the token the route serves, a few under the
# others (those stop at 403, so more would test nothing new).
EXAMPLES, OTHER_EXAMPLES = 15, 2
OWNER = (
    ("/v1/incidents", "force"),
    ("/v1/notices", "key_adult"),
    ("/v1/admin", "admin"),
    ("/admin", "admin"),
)


def _owner(path: str) -> str | None:
    return next((role for prefix, role in OWNER if path.startswith(prefix)), None)


@dataclass
class Live:
    url: str
    tokens: dict[str, str]
    # Real ids for path parameters: a sent notice of the Key Adult, its incident (the
    # force's), a child in review; so that generated bodies reach past "not found".
    ids: dict[str, str]


@pytest.fixture(scope="module")
def live(
    admin_pg_url: str, rabbit: RabbitTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    thread, stack = LoopThread(), AsyncExitStack()
    prefix = f"{rabbit.prefix}fuzz.{secrets.token_hex(3)}."

    async def start() -> Live:
        url = await stack.enter_async_context(own_database(admin_pg_url, "fuzz"))
        # Rate limits off: this test is about what each request does, not how many.
        config = load_settings(
            database_url=url,
            amqp_url=rabbit.url,
            queue_prefix=prefix,
            signing_key=folder / "service.pem",
            rate_limit_credential=0,
            rate_limit_address=0,
        )
        container = await bootstrap(config, clock=Clock(NIGHT))
        stack.push_async_callback(delete_topologies, [(rabbit.url, Topology(prefix))])
        stack.push_async_callback(container.close)
        await import_directory(container.sessions, **write_directory(folder / "directory"))
        force = await add_force(container.sessions, container.clock, "FUZZ", "Fuzz Police")
        admin = await add_admin(container.sessions, container.clock, "Fuzz Admin", "all")
        key_adult = await issue_key_adult_credentials(
            container.sessions, container.clock, "KA-OAK-1"
        )
        placed = await add_child(container.sessions, force_id=force.subject_id, reported_at=NIGHT)
        notice_id = await add_notice(container.sessions, placed, "URN100001", NIGHT)
        review = await add_child(
            container.sessions,
            force_id=force.subject_id,
            reported_at=NIGHT,
            decision="review",
            score=0.5,
        )
        container.clock.set(TUESDAY)
        await send_due(container)
        runner = web.AppRunner(create_app(container), access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        return Live(
            f"http://{host}:{port}",
            {"force": force.token, "admin": admin.token, "key_adult": key_adult.token},
            {
                "incident_id": placed.incident_id,
                "notice_id": notice_id,
                "item_id": review.child_id,
                "alert_id": "1",
                "queue": "deliveries",
                "message_id": "not-a-dead-letter",
            },
        )

    live = thread.run(start())
    yield live
    thread.run(stack.aclose())
    thread.close()


def _problem(response: requests.Response) -> str | None:
    """Why ``response`` breaks the rules (no 5xx; errors in the JSON shape), or None."""
    if response.status_code >= 500:
        return f"HTTP {response.status_code}"
    if response.status_code < 400:
        return None
    if response.headers.get("Content-Type", "").startswith("text/html"):
        # A console page shows its error in the page, for the person reading it.
        return None
    try:
        error = json.loads(response.content)["error"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code} without a JSON error body"
    if not (
        isinstance(error, dict)
        and isinstance(error.get("code"), str)
        and isinstance(error.get("message"), str)
    ):
        return f"HTTP {response.status_code} with a malformed error body"
    return None


def _runs(operation: Any, live: Live, role: str) -> list[tuple[int, dict[str, str] | None]]:
    """(examples, fixed path parameters) for each pass over ``operation`` under ``role``."""
    if _owner(operation.path) not in (None, role):
        return [(OTHER_EXAMPLES, None)]
    names = re.findall(r"{(\w+)}", operation.path)
    if not names:
        return [(EXAMPLES, None)]
    return [(EXAMPLES, None), (EXAMPLES, {name: live.ids[name] for name in names})]


def _fuzz(
    schema: Any,
    live: Live,
    role: str,
    mode: GenerationMode,
    session: requests.Session,
    problems: list[str],
) -> int:
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for examples, path_parameters in _runs(operation, live, role):
            calls += _fuzz_one(
                operation, live, role, mode, session, problems, examples, path_parameters
            )
    return calls


def _fuzz_one(
    operation: Any,
    live: Live,
    role: str,
    mode: GenerationMode,
    session: requests.Session,
    problems: list[str],
    examples: int,
    path_parameters: dict[str, str] | None,
) -> int:
    calls = 0

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    def call(case: Any) -> None:
        nonlocal calls
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {live.tokens[role]}"}
        response = case.call(base_url=live.url, session=session, timeout=30)
        calls += 1
        problem = _problem(response)
        if problem:
            problems.append(
                f"{role} {mode.value} {case.method} {case.formatted_path}: "
                f"{problem}: {response.text[:200]!r}"
            )

    try:
        call()
    except Unsatisfiable:
        # An operation with no parameters and no body has nothing to make invalid.
        assert not mode.is_positive, operation.label
    return calls


def test_no_operation_answers_5xx_or_a_bare_error(live: Live) -> None:
    # Given the app's own OpenAPI document,
    schema = schemathesis.openapi.from_dict(build_openapi())
    problems: list[str] = []
    calls = 0
    # when every operation is called with generated valid and invalid requests under
    # each kind of token,
    with requests.Session() as session:
        # The force goes last: its withdrawals change what the others would see.
        for role in ("key_adult", "admin", "force"):
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                calls += _fuzz(schema, live, role, mode, session, problems)
    # then none answered 5xx and every error was {"error": {"code", "message"}}.
    assert calls >= 100
    assert problems == [], "\n".join(problems[:20])
