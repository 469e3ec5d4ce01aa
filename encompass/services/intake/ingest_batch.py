"""Group commit for ingest: reports that arrive together are stored in one transaction.

A report arriving while no batch is being written starts one at once, so a lone report
never waits; those arriving while a batch is being written (stored, published, marked
queued) wait for it and then go together as the next batch, up to ``ENCOMPASS_BATCH_SIZE``
of them. The busier the service, the larger the batches and the less each report costs.
After a batch of several, the next waits a moment (``ENCOMPASS_INGEST_WAIT_MS`` at most)
until as many have arrived: the callers just answered are about to send their next
reports, and without the wait a steady load splits into one large batch and one of the
stragglers, in turn.

A batch holds at most one report per incident (force + ``incident_ref``): a second report
of the same incident, another version or the same one again, waits for the next batch, so
it sees the first one stored, exactly as if it had come after it.

Each caller gets its own answer from :func:`~encompass.services.intake.ingest.report_incidents`:
its Accepted, or its own refusal or failure, never another report's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.broker import Broker
from encompass.clock import Clock
from encompass.domain.incident import IncidentReport
from encompass.services.intake.ingest import Accepted, Channel, Reported, report_incidents

_T = TypeVar("_T")
_In = TypeVar("_In")
_Out = TypeVar("_Out")


def take_batch(
    waiting: Sequence[_T], size: int, key: Callable[[_T], Hashable]
) -> tuple[list[_T], list[_T]]:
    """The next batch (the oldest first, at most ``size``, no two with the same ``key``)
    and the rest, in their order."""
    batch: list[_T] = []
    rest: list[_T] = []
    keys: set[Hashable] = set()
    for item in waiting:
        if len(batch) < size and key(item) not in keys:
            keys.add(key(item))
            batch.append(item)
        else:
            rest.append(item)
    return batch, rest


@dataclass(frozen=True)
class _Waiting(Generic[_In, _Out]):
    item: _In
    answer: asyncio.Future[_Out]


class GroupCommit(Generic[_In, _Out]):
    """Hands the items submitted together to ``write`` as one batch, one batch at a time:
    the first item submitted while nothing is being written starts a batch at once; the
    items submitted meanwhile wait and go together in the next (at most ``max_batch``, no
    two with the same ``key``); after a batch of several, the next waits up to
    ``company_wait`` seconds for as many. ``write`` returns one answer per item, in order:
    a result, or an exception for that item's caller alone; an exception it raises is
    every one's."""

    def __init__(
        self,
        write: Callable[[list[_In]], Awaitable[Sequence[_Out | Exception]]],
        *,
        max_batch: int,
        key: Callable[[_In], Hashable],
        company_wait: float = 0.0,
    ) -> None:
        self._write, self._max_batch, self._key = write, max_batch, key
        self._company_wait = company_wait
        self._waiting: list[_Waiting[_In, _Out]] = []
        self._writer: asyncio.Task[None] | None = None
        self._enough: asyncio.Future[None] | None = None
        self._wanted = 0

    async def submit(self, item: _In) -> _Out:
        """``item``'s answer, once the batch it went in is written."""
        answer: asyncio.Future[_Out] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(item, answer))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_while_waiting())
        elif len(self._waiting) >= self._wanted:
            _resolve(self._enough)
        return await answer

    async def _write_while_waiting(self) -> None:
        written = 0
        try:
            while True:
                if written > 1:
                    await self._company(min(written, self._max_batch))
                if not self._waiting:
                    break
                # A caller that gave up before its batch began has nothing written.
                live = [w for w in self._waiting if not w.answer.done()]
                batch, self._waiting = take_batch(live, self._max_batch, self._keyed)
                written = len(batch)
                if batch:
                    await self._write_batch(batch)
        finally:
            self._writer = None
            for waiting in self._waiting:  # only when cancelled: nobody is left to write
                waiting.answer.cancel()
            self._waiting = []

    async def _company(self, wanted: int) -> None:
        """Until ``wanted`` items wait, or ``company_wait`` seconds have passed."""
        if len(self._waiting) >= wanted or self._company_wait <= 0:
            return
        loop = asyncio.get_running_loop()
        self._enough, self._wanted = loop.create_future(), wanted
        timer = loop.call_later(self._company_wait, _resolve, self._enough)
        try:
            await self._enough
        finally:
            timer.cancel()
            self._enough, self._wanted = None, 0

    def _keyed(self, waiting: _Waiting[_In, _Out]) -> Hashable:
        return self._key(waiting.item)

    async def _write_batch(self, batch: list[_Waiting[_In, _Out]]) -> None:
        try:
            answers = await self._write([w.item for w in batch])
        except Exception as exc:
            answers = [exc] * len(batch)
        except BaseException:
            for waiting in batch:
                waiting.answer.cancel()
            raise
        for waiting, answer in zip(batch, answers, strict=True):
            if waiting.answer.done():  # its caller gave up (cancelled)
                continue
            if isinstance(answer, Exception):
                waiting.answer.set_exception(answer)
            else:
                waiting.answer.set_result(answer)


def _resolve(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def _incident(item: Reported) -> Hashable:
    return (item.force_id, item.report.incident_ref)


class IngestBatcher:
    """Ingests reports as :func:`~encompass.services.intake.ingest.report_incident` does,
    many at once when many arrive together (see the module)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        broker: Broker,
        clock: Clock,
        *,
        max_batch: int,
        company_wait: float = 0.0,
    ) -> None:
        async def write(batch: list[Reported]) -> list[Accepted | Exception]:
            return await report_incidents(sessions, broker, clock, batch)

        self._group = GroupCommit(
            write, max_batch=max_batch, key=_incident, company_wait=company_wait
        )

    async def report(
        self, force_id: str, report: IncidentReport, *, channel: Channel = "http"
    ) -> Accepted:
        """Store, publish and mark queued one report with whatever arrives with it; raises
        what :func:`~encompass.services.intake.ingest.report_incident` raises for it."""
        return await self._group.submit(Reported(force_id, report, channel))
