"""Group commit for ingest (``services/intake/ingest_batch.py``), without I/O: which items
go together, who waits, and whose answer is whose."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from encompass.services.intake.ingest_batch import GroupCommit, take_batch


def test_a_batch_takes_the_oldest_first_up_to_its_size() -> None:
    batch, rest = take_batch(list(range(10)), 4, key=lambda n: n)
    assert (batch, rest) == ([0, 1, 2, 3], [4, 5, 6, 7, 8, 9])


def test_a_second_item_with_the_same_key_waits_for_the_next_batch() -> None:
    waiting = ["a1", "b1", "a2", "c1", "a3", "b2"]
    batch, rest = take_batch(waiting, 10, key=lambda item: item[0])
    assert (batch, rest) == (["a1", "b1", "c1"], ["a2", "a3", "b2"])
    batch, rest = take_batch(rest, 10, key=lambda item: item[0])
    assert (batch, rest) == (["a2", "b2"], ["a3"])


class Writer:
    """Records each batch; holds it until released; answers ``str(item)``, or the
    exception ``fail`` names for an item."""

    def __init__(self, fail: dict[int, Exception] | None = None) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.fail = fail or {}
        self.raise_: Exception | None = None

    async def __call__(self, batch: list[int]) -> Sequence[str | Exception]:
        self.batches.append(batch)
        await self.release.wait()
        if self.raise_ is not None:
            raise self.raise_
        return [self.fail.get(item, str(item)) for item in batch]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_lone_item_is_written_at_once() -> None:
    writer = Writer()
    writer.release.set()
    group = GroupCommit(writer, max_batch=8, key=lambda n: n)
    assert await asyncio.wait_for(group.submit(1), timeout=1) == "1"
    assert writer.batches == [[1]]


async def test_items_arriving_during_a_write_go_together_in_the_next() -> None:
    writer = Writer()
    group = GroupCommit(writer, max_batch=3, key=lambda n: n)
    first = asyncio.create_task(group.submit(0))
    await settle()
    assert writer.batches == [[0]]  # started without waiting for company
    others = [asyncio.create_task(group.submit(n)) for n in range(1, 6)]
    await settle()
    writer.release.set()
    assert await first == "0"
    assert [await task for task in others] == ["1", "2", "3", "4", "5"]
    assert writer.batches == [[0], [1, 2, 3], [4, 5]]


async def test_an_items_own_failure_is_its_callers_alone() -> None:
    writer = Writer(fail={2: LookupError("two")})
    writer.release.set()
    group = GroupCommit(writer, max_batch=8, key=lambda n: n)
    results = await asyncio.gather(*(group.submit(n) for n in range(4)), return_exceptions=True)
    assert results[:2] == ["0", "1"] and results[3] == "3"
    assert isinstance(results[2], LookupError)


async def test_a_failed_write_fails_its_batch_and_the_next_goes_on() -> None:
    writer = Writer()
    group = GroupCommit(writer, max_batch=8, key=lambda n: n)
    first = asyncio.create_task(group.submit(0))
    await settle()
    later = asyncio.create_task(group.submit(1))
    writer.raise_ = RuntimeError("database said no")
    writer.release.set()
    with pytest.raises(RuntimeError):
        await first
    with pytest.raises(RuntimeError):
        await later  # the same writer fails again: each batch has its own try
    writer.raise_ = None
    assert await group.submit(2) == "2"


async def test_a_caller_that_gave_up_before_its_batch_is_not_written() -> None:
    writer = Writer()
    group = GroupCommit(writer, max_batch=8, key=lambda n: n)
    first = asyncio.create_task(group.submit(0))
    await settle()
    gone = asyncio.create_task(group.submit(1))
    kept = asyncio.create_task(group.submit(2))
    await settle()
    gone.cancel()
    writer.release.set()
    assert (await first, await kept) == ("0", "2")
    assert writer.batches == [[0], [2]]


async def test_after_a_batch_of_several_the_next_waits_a_moment_for_as_many() -> None:
    writer = Writer()
    writer.release.set()
    group = GroupCommit(writer, max_batch=8, key=lambda n: n, company_wait=0.5)
    first = [asyncio.create_task(group.submit(n)) for n in range(3)]
    await settle()
    # The batch of three is written; one caller comes back at once, two a little later
    late = asyncio.create_task(group.submit(3))
    await asyncio.sleep(0.01)
    later = [asyncio.create_task(group.submit(n)) for n in (4, 5)]
    assert await asyncio.gather(*first, late, *later) == ["0", "1", "2", "3", "4", "5"]
    assert writer.batches == [[0, 1, 2], [3, 4, 5]]


async def test_the_wait_for_company_is_bounded_and_a_lone_report_never_waits() -> None:
    writer = Writer()
    writer.release.set()
    group = GroupCommit(writer, max_batch=8, key=lambda n: n, company_wait=0.05)
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await group.submit(0) == "0"  # idle: written at once
    assert loop.time() - began < 0.04
    first = [asyncio.create_task(group.submit(n)) for n in (1, 2)]
    await settle()
    alone = asyncio.create_task(group.submit(3))
    began = loop.time()
    assert await alone == "3"  # after a batch of two: waited, but not for ever
    assert 0.04 <= loop.time() - began < 1
    await asyncio.gather(*first)
    assert writer.batches == [[0], [1, 2], [3]]
