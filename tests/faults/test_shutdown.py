"""Graceful shutdown: SIGTERM lets a worker finish or hand back what it holds, within its
grace period, then exit 0; a rolling restart of every worker under load loses and doubles
nothing."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.load import Load, Tally
from tests.faults.stack import Service, Stack
from tests.faults.test_faults import check, run_scenario, sent

pytestmark = [pytest.mark.faults, pytest.mark.integration]

GRACE = 15.0  # seconds a worker may take to stop (its own grace is 10)


async def test_rolling_restart_of_every_worker(
    service: Service, in_flight: int, fault_table: list[Tally]
) -> None:
    exits: list[tuple[str, int | None, float]] = []

    async def inject(stack: Stack, load: Load) -> str:
        # A second worker of each kind, so that one always consumes during the roll.
        await asyncio.gather(
            *(
                asyncio.to_thread(stack.wait_ready, stack.spawn(role))
                for role in ("matcher", "dispatcher")
            )
        )
        await sent(load, 0.3)
        load.fault_begun.set()
        for old in stack.running("matcher") + stack.running("dispatcher"):
            began = time.monotonic()
            code = await asyncio.to_thread(stack.terminate, old, GRACE)
            exits.append((old.role, code, time.monotonic() - began))
            await asyncio.to_thread(stack.wait_ready, stack.spawn(old.role))
        return "stops: " + ", ".join(
            f"{role} exit {code} in {took:.1f}s" for role, code, took in exits
        )

    result = await run_scenario(service, "rolling restart (SIGTERM)", in_flight, inject)
    fault_table.append(result)
    assert [code for _, code, _ in exits] == [0] * len(exits), result.note
    check(result)
