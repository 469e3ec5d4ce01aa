"""Reporting incidents at a steady rate over HTTP, and counting what became of them.

The counts follow RabbitMQ's Jepsen suite: *attempted* incidents, *accepted* (202),
*lost* (accepted, but a notice missing or never received), *duplicated* (a child given two
notices, or one notice delivered under two idempotency keys), *unexpected* (a delivery
for no incident accepted), *late* (every notice received, the last more than
``late_after`` seconds after both its acceptance and the end of the fault). A request
posted twice under one idempotency key is the redelivery the webhook contract allows:
counted as *redelivered*, not duplicated.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from tests.faults.stack import Stack, receiver_call, roster

# An answer slower than this is a hang (generous: the machine is small and shared).
CLIENT_TIMEOUT = 30.0
GIVE_UP_AFTER = 60.0  # a police system retrying a 503 this long, then giving up


@dataclass
class Attempt:
    ref: str
    statuses: list[int] = field(default_factory=list)
    missing_retry_after: int = 0
    hangs: int = 0
    slowest: float = 0.0
    incident_id: str | None = None
    accepted_at: float | None = None


@dataclass
class Tally:
    fault: str
    attempted: int = 0
    accepted: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    late: int = 0
    redelivered: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    missing_retry_after: int = 0
    hangs: int = 0
    slowest: float = 0.0
    leftovers: dict[str, tuple[int, int]] = field(default_factory=dict)
    detail: list[str] = field(default_factory=list)
    note: str = ""

    def row(self) -> str:
        codes = ",".join(f"{k}x{v}" for k, v in sorted(self.statuses.items()))
        hung = f"; {self.hangs} unanswered in {CLIENT_TIMEOUT:.0f}s" if self.hangs else ""
        return (
            f"| {self.fault} | {self.attempted} | {self.accepted} | {self.lost} | "
            f"{self.duplicated} | {self.unexpected} | {self.late} | {self.redelivered} | "
            f"{codes}; slowest {self.slowest:.1f}s{hung} | {self.note} |"
        )


def say(line: str) -> None:
    """Progress on stderr (seen with ``pytest -s``): where a slow run spends its time."""
    print(f"[faults {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def report(ref: str, n: int, occurred: datetime) -> dict[str, Any]:
    given, family, born, postcode = roster()[n % len(roster())]
    return {
        "incident_ref": ref,
        "version": 1,
        "occurred_at": occurred.isoformat(),
        "location": "the family home",
        "circumstances": "Fault drill: nothing happened.",
        "police_actions": "None; a drill.",
        "officer": {"name": "PC 0 Drill", "contact": "0"},
        "children": [
            {
                "given_name": given,
                "family_name": family,
                "date_of_birth": born,
                "postcode": postcode,
                "upn": None,
                "gender": None,
                "present": True,
                "where_during": None,
                "voice": None,
                "injured": False,
                "school_hint": None,
            }
        ],
    }


class Load:
    """Reports ``count`` incidents at ``rate`` a second; each is retried after a 503 or
    429 (``Retry-After``, capped at a second to keep runs short) until accepted or
    ``GIVE_UP_AFTER`` seconds pass.

    The first 30 % go before the fault, the next 40 % only once ``fault_begun`` is set (so
    they meet the fault, however long injecting it took), the rest once ``healed`` is."""

    def __init__(self, stack: Stack, count: int, rate: float, tag: str) -> None:
        self.stack, self.count, self.rate, self.tag = stack, count, rate, tag
        self.attempts: list[Attempt] = []
        self.fault_begun = asyncio.Event()
        self.healed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._marks: dict[int, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._http: aiohttp.ClientSession | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def wait(self) -> None:
        assert self._task is not None
        await self._task

    @property
    def sent(self) -> int:
        return len(self.attempts)

    async def reached(self, fraction: float) -> None:
        """Return once ``fraction`` of the incidents have been sent."""
        mark = int(self.count * fraction)
        if self.sent < mark:
            await self._marks.setdefault(mark, asyncio.Event()).wait()

    def burst(self, n: int) -> None:
        """Report ``n`` more incidents at once (counted as attempted like the rest)."""
        for _ in range(n):
            self._launch()

    def _launch(self) -> None:
        assert self._http is not None, "the load is not running"
        n = len(self.attempts)
        attempt = Attempt(ref=f"{self.tag}-{n:05d}")
        self.attempts.append(attempt)
        for mark, event in self._marks.items():
            if self.sent >= mark:
                event.set()
        self._tasks.append(asyncio.create_task(self._one(self._http, attempt, n)))

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
        headers = {"Authorization": f"Bearer {self.stack.infra.force_token}"}
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(
            timeout=timeout, headers=headers, connector=connector
        ) as http:
            self._http = http
            start = time.monotonic()
            gates = {int(self.count * 0.3): self.fault_begun, int(self.count * 0.7): self.healed}
            for n in range(self.count):
                if n in gates and not gates[n].is_set():
                    await gates[n].wait()
                    start = time.monotonic() - n / self.rate
                delay = start + n / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                self._launch()
            while not all(task.done() for task in self._tasks):
                await asyncio.gather(*self._tasks)
            self._http = None

    async def _one(self, http: aiohttp.ClientSession, attempt: Attempt, n: int) -> None:
        body = report(attempt.ref, n, self.stack.infra.now() - timedelta(hours=1))
        url = f"{self.stack.api_url}/v1/incidents"
        deadline = time.monotonic() + GIVE_UP_AFTER
        while time.monotonic() < deadline:
            pause, began = 0.5, time.monotonic()
            try:
                async with http.post(url, json=body) as response:
                    attempt.statuses.append(response.status)
                    answer = await response.json(content_type=None)
                    if response.status == 202:
                        attempt.incident_id = answer["incident_id"]
                        attempt.accepted_at = time.time()
                        return
                    if response.status not in (429, 503):
                        return  # refused for good: counted as an unexpected answer
                    if response.status in (429, 503):
                        retry_after = response.headers.get("Retry-After")
                        if retry_after is None:
                            attempt.missing_retry_after += 1
                        else:
                            pause = min(float(retry_after), 1.0)
            except TimeoutError:
                attempt.hangs += 1
            except aiohttp.ClientError:
                attempt.statuses.append(0)  # the API process itself was unreachable
            finally:
                attempt.slowest = max(attempt.slowest, time.monotonic() - began)
            await asyncio.sleep(pause)


async def wait_for_quiet(stack: Stack, load: Load, seconds: float) -> None:
    """Until every accepted incident's notice reached the receiver and the scenario's
    queues are empty, or ``seconds`` pass (then the counts will show what is missing)."""
    accepted = sum(1 for a in load.attempts if a.incident_id)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        applied = len(receiver_call(stack.infra, "/records")["applied"])
        if applied >= accepted and not stack.queue_leftovers():
            # A last look shortly after: a straggler or a duplicate would show now.
            await asyncio.sleep(1.0)
            return
        await asyncio.sleep(0.5)


async def tally(  # noqa: C901 (one branch per outcome counted)
    stack: Stack, load: Load, fault: str, *, healed_at: float, late_after: float = 30.0
) -> Tally:
    """Count what became of every attempted incident (see the module docstring)."""
    result = Tally(fault=fault, attempted=len(load.attempts))
    records = receiver_call(stack.infra, "/records")
    requests_per_key = Counter(r["key"] for r in records["requests"])
    result.redelivered = sum(1 for n in requests_per_key.values() if n > 1)
    keys_per_notice: dict[str, set[str]] = {}
    first_at: dict[str, float] = {}
    for applied in records["applied"]:
        keys_per_notice.setdefault(applied["notice_id"], set()).add(applied["key"])
        first_at[applied["notice_id"]] = min(
            first_at.get(applied["notice_id"], 1e18), applied["at"]
        )
    known_notices: set[str] = set()
    headers = {"Authorization": f"Bearer {stack.infra.force_token}"}
    semaphore = asyncio.Semaphore(8)

    async with aiohttp.ClientSession(
        headers=headers, timeout=aiohttp.ClientTimeout(total=30)
    ) as http:

        async def follow(attempt: Attempt) -> dict[str, Any] | None:
            if attempt.incident_id is None:
                return None
            async with (
                semaphore,
                http.get(f"{stack.api_url}/v1/incidents/{attempt.incident_id}") as response,
            ):
                return dict(await response.json()) if response.status == 200 else None

        states = await asyncio.gather(*(follow(a) for a in load.attempts))

    ids_by_ref = {}
    for attempt, state in zip(load.attempts, states, strict=True):
        result.statuses.update(attempt.statuses)
        result.missing_retry_after += attempt.missing_retry_after
        result.hangs += attempt.hangs
        result.slowest = max(result.slowest, attempt.slowest)
        if attempt.incident_id is None:
            continue
        result.accepted += 1
        ids_by_ref[attempt.ref] = attempt.incident_id
        notices = (
            [] if state is None else [n for child in state["children"] for n in child["notices"]]
        )
        ids = [n["notice_id"] for n in notices]
        known_notices.update(ids)
        if state is None or len(state["children"]) != 1:
            result.lost += 1
            result.detail.append(f"{attempt.ref}: incident not found or not matched")
            continue
        if len(ids) > 1:
            result.duplicated += 1
            result.detail.append(f"{attempt.ref}: {len(ids)} notices for one child")
        if not ids or any(i not in keys_per_notice for i in ids):
            result.lost += 1
            result.detail.append(
                f"{attempt.ref}: notice never received ({[n['status'] for n in notices]})"
            )
            continue
        if any(len(keys_per_notice[i]) > 1 for i in ids):
            result.duplicated += 1
            result.detail.append(f"{attempt.ref}: one notice under several idempotency keys")
        assert attempt.accepted_at is not None
        due = max(attempt.accepted_at, healed_at) + late_after
        if max(first_at[i] for i in ids) > due:
            result.late += 1
    # An incident the client gave up on (503 for GIVE_UP_AFTER seconds) is unknown to us
    # by id: a delivery for it would count as unexpected here, and must not happen either.
    for notice_id in keys_per_notice:
        if notice_id not in known_notices:
            result.unexpected += 1
    result.leftovers = stack.queue_leftovers()
    return result
