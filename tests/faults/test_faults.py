"""Nothing lost, nothing doubled: each test reports incidents over HTTP at a steady rate to
the service running as separate processes, injects one fault, recovers, waits for quiet and
counts (``tests/faults/load.py``).

After every fault: every accepted incident has exactly its notice and it reached the
receiver, no notice arrived under two idempotency keys, nothing unexpected arrived, no
queue holds anything (dead-letter queues included), and the API answered only 202, or 503
with ``Retry-After`` while a dependency was away: never a 500, never a hang.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

import pytest

from encompass.adapters.topology import DELIVERIES, INCIDENTS
from tests.faults.load import CLIENT_TIMEOUT, Load, Tally, say, tally, wait_for_quiet
from tests.faults.proxy import FaultProxy
from tests.faults.servers import wait_for
from tests.faults.stack import Service, Stack, receiver_call

pytestmark = [pytest.mark.faults, pytest.mark.integration]

Inject = Callable[[Stack, Load], Awaitable[str | None]]
ALLOWED = {202, 429, 503}
SCENARIOS = itertools.count(1)


def rate_for(count: int) -> float:
    """A steady rate that spreads the incidents over about eight seconds (15 to 100 a second)."""
    return max(15.0, min(count / 8.0, 100.0))


async def sent(load: Load, fraction: float) -> None:
    await load.reached(fraction)


async def run_scenario(service: Service, name: str, count: int, inject: Inject) -> Tally:
    """Report ``count`` incidents while ``inject`` injects a fault and heals it; wait for
    quiet; count."""
    stack = service.stack
    service.broker_link.heal()
    service.database_link.heal()
    # One of each, as a test before may have left more or fewer (in a thread: the proxies
    # serve from this event loop meanwhile).
    for role in ("matcher", "dispatcher"):
        await asyncio.to_thread(stack.scale, role, 1)
    await asyncio.to_thread(receiver_call, stack.infra, "/reset", {})
    number = next(SCENARIOS)
    load = Load(stack, count, rate_for(count), tag=f"{stack.prefix}S{number}")
    say(f"{name}: reporting {count} incidents at {load.rate:.0f}/s")
    load.start()
    try:
        note = await inject(stack, load)
        say(f"{name}: healed ({note or 'no note'})")
    finally:
        service.broker_link.heal()
        service.database_link.heal()
        load.fault_begun.set()
        load.healed.set()
    healed_at = time.time()
    await load.wait()
    say(f"{name}: all reported; waiting for quiet")
    await wait_for_quiet(stack, load, seconds=120 + count / 10)
    assert await asyncio.to_thread(stack.readyz) == (200, None), "not ready after healing"
    result = await tally(stack, load, name, healed_at=healed_at)
    result.note = note or ""
    return result


def check(result: Tally, allowed: set[int] = ALLOWED) -> None:
    print(result.row())
    problems = result.detail[:10]
    assert result.accepted == result.attempted, (result.row(), problems)
    assert (result.lost, result.duplicated, result.unexpected) == (0, 0, 0), (
        result.row(),
        problems,
    )
    assert not result.leftovers, f"messages left in queues: {result.leftovers}"
    assert set(result.statuses) <= allowed, result.row()
    assert result.missing_retry_after == 0, "a 503 without Retry-After"
    assert result.hangs == 0, f"{result.hangs} requests hung for {CLIENT_TIMEOUT:.0f}s"


async def restart_after_kill(stack: Stack, load: Load, role: str, queue: str) -> str:
    """Kill the worker while it holds messages, restart it; a note of how many it held.

    A burst of incidents just before makes a batch in hand likely; the broker's count of
    unacknowledged messages (refreshed every half second) says whether it was."""
    await sent(load, 0.3)
    load.burst(24)
    held, deadline = 0, time.monotonic() + 3.0
    while not held and time.monotonic() < deadline:
        held = await asyncio.to_thread(stack.unacked, queue)
    victim = stack.running(role)[0]
    say(f"kill -9 {role} {victim.pid} holding {held}")
    await asyncio.to_thread(stack.kill, victim)
    load.fault_begun.set()
    await asyncio.sleep(1.0)
    await asyncio.to_thread(stack.wait_ready, stack.spawn(role))
    return f"killed holding {held} unacked {queue}"


async def test_matcher_killed_mid_batch(
    service: Service, in_flight: int, fault_table: list[Tally]
) -> None:
    async def inject(stack: Stack, load: Load) -> str:
        return await restart_after_kill(stack, load, "matcher", INCIDENTS)

    result = await run_scenario(service, "kill -9 matcher", in_flight, inject)
    fault_table.append(result)
    check(result)


async def test_dispatcher_killed_mid_delivery(
    service: Service, in_flight: int, fault_table: list[Tally]
) -> None:
    async def inject(stack: Stack, load: Load) -> str:
        # A slow receiver keeps deliveries in flight when the dispatcher dies.
        await asyncio.to_thread(receiver_call, stack.infra, "/control", {"latency": 0.5})
        note = await restart_after_kill(stack, load, "dispatcher", DELIVERIES)
        await asyncio.to_thread(receiver_call, stack.infra, "/control", {"latency": 0.0})
        return note

    result = await run_scenario(service, "kill -9 dispatcher", in_flight, inject)
    fault_table.append(result)
    check(result)


async def test_one_of_two_api_processes_killed(
    service: Service, in_flight: int, fault_table: list[Tally]
) -> None:
    """Two API processes share the port; one is killed mid-load. The police system sees
    a dropped connection for the requests that process held and sends them again; the
    other process answers, and every report is stored once."""

    async def inject(stack: Stack, load: Load) -> str:
        first = stack.running("api")[0]
        second = stack.spawn("api")
        await asyncio.to_thread(
            wait_for, lambda: second.log_has("serve.listening"), "the second API", 60
        )
        await sent(load, 0.3)
        say(f"kill -9 api {first.pid}; api {second.pid} serves on")
        await asyncio.to_thread(stack.kill, first)
        load.fault_begun.set()
        return f"killed api {first.pid} of two"

    result = await run_scenario(service, "kill -9 one of two APIs", in_flight, inject)
    fault_table.append(result)
    # 0: the connection the killed process held was dropped (the client sent it again).
    check(result, allowed=ALLOWED | {0})
    assert len(service.stack.running("api")) == 1


async def test_broker_stopped_and_started(
    service: Service, in_flight: int, fault_table: list[Tally]
) -> None:
    async def inject(stack: Stack, load: Load) -> None:
        await sent(load, 0.3)
        await asyncio.to_thread(stack.infra.rabbit.stop_app)
        load.fault_begun.set()
        began = time.monotonic()
        assert await asyncio.to_thread(stack.readyz) == (503, "5")
        await asyncio.sleep(5 - (time.monotonic() - began))
        load.healed.set()  # the rest are sent while it starts again
        await asyncio.to_thread(stack.infra.rabbit.start_app)

    result = await run_scenario(service, "RabbitMQ stop_app 5 s", in_flight, inject)
    fault_table.append(result)
    assert 503 in result.statuses, "the API never said 503 while RabbitMQ was down"
    check(result)


async def test_database_restarted(
    service: Service, in_flight: int, fault_table: list[Tally]
) -> None:
    async def inject(stack: Stack, load: Load) -> None:
        await sent(load, 0.3)
        await asyncio.to_thread(stack.infra.pg.stop, "fast")
        load.fault_begun.set()
        began = time.monotonic()
        assert await asyncio.to_thread(stack.readyz) == (503, "5")
        await asyncio.sleep(5 - (time.monotonic() - began))
        load.healed.set()
        await asyncio.to_thread(stack.infra.pg.start)

    result = await run_scenario(service, "PostgreSQL stopped 5 s", in_flight, inject)
    fault_table.append(result)
    assert 503 in result.statuses, "the API never said 503 while PostgreSQL was down"
    check(result)


async def network_faults(proxy: FaultProxy, load: Load) -> None:
    """Delay, reset, drop and black-hole in turn, each for a moment, then heal."""
    await sent(load, 0.3)
    proxy.delay(0.1)
    load.fault_begun.set()
    await asyncio.sleep(1.5)
    proxy.reset()
    await asyncio.sleep(1.5)
    proxy.heal()
    await asyncio.sleep(1.0)
    proxy.drop()
    await asyncio.sleep(1.5)
    proxy.heal()
    await asyncio.sleep(1.0)
    proxy.blackhole()
    await asyncio.sleep(3.0)
    proxy.heal()


async def test_network_faults_between_workers_and_broker(
    service: Service, in_flight: int, fault_table: list[Tally]
) -> None:
    async def inject(stack: Stack, load: Load) -> None:
        await network_faults(service.broker_link, load)

    result = await run_scenario(service, "proxy workers-broker", in_flight, inject)
    fault_table.append(result)
    check(result)


async def test_network_faults_between_api_and_database(
    service: Service, in_flight: int, fault_table: list[Tally]
) -> None:
    async def inject(stack: Stack, load: Load) -> None:
        await network_faults(service.database_link, load)

    result = await run_scenario(service, "proxy API-database", in_flight, inject)
    fault_table.append(result)
    check(result)


async def test_webhook_receiver_fails_times_out_and_recovers(
    service: Service, in_flight: int, fault_table: list[Tally]
) -> None:
    async def inject(stack: Stack, load: Load) -> None:
        await sent(load, 0.3)
        await asyncio.to_thread(receiver_call, stack.infra, "/control", {"mode": "fail"})
        load.fault_begun.set()
        await asyncio.sleep(3)
        # Longer than the sender's 2 s timeout: the request arrived, the answer did not.
        await asyncio.to_thread(
            receiver_call, stack.infra, "/control", {"mode": "timeout", "hang": 3}
        )
        await asyncio.sleep(3)
        await asyncio.to_thread(receiver_call, stack.infra, "/control", {"mode": "ok"})

    result = await run_scenario(service, "webhook 500 then timeouts", in_flight, inject)
    fault_table.append(result)
    check(result)
