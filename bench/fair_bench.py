"""The fair benchmark: the service as separate processes, against raw aio-pika, same run.

    python -m bench.fair_bench [--quick] [--incidents N] [--in-flight K] [--steady-seconds S]
                               [--set ENCOMPASS_NAME=VALUE ...]

Starts a RabbitMQ node and a PostgreSQL cluster of its own, a webhook receiver, and the API,
the matcher and the dispatcher each as its own OS process (the fault tests' harness); this
process is the load generator. The phases, in one run:

1. raw: aio-pika publishes ``N`` persistent messages of the report's size to a quorum queue
   with ``K`` confirms in flight, then consumes them with ``K`` unacknowledged: the baseline;
2. ingest: ``N`` incidents over HTTP with ``K`` in flight, until every one is matched and
   its notice scheduled (the dispatcher is paused meanwhile, so the notices wait);
3. steady: 100 incidents a second for ``S`` seconds; p50/p99 from the report sent to its
   notice seen scheduled (the database is polled every 10 ms);
4. matchers: ``N`` incidents queued while the matcher is stopped, then the time one
   matcher takes to drain them; again with two matchers (the scaling);
5. burst: the dispatcher resumes and every notice waiting (``M``, all due at once) is
   released, sealed and delivered to the receiver; raw aio-pika runs ``M`` messages too.

CPU is the user plus system time of every process of the service (API, matcher,
dispatcher), the RabbitMQ node and the PostgreSQL cluster (with the children each has
reaped), read from ``/proc`` before and after a phase; the load generator and the receiver
stand for the police and the settings and are counted apart. Prints a table, then one line
holding a JSON object (the last line). With ``BENCH_KEEP=1`` the run's directory (every
process's log) is kept and its path printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.raw_amqp import measure
from tests.faults.load import report
from tests.faults.servers import PgCluster, RabbitNode, postgres_bin, rabbit_available
from tests.faults.stack import Infra, Stack, receiver_call

STEADY_RATE = 100.0
POLL_SECONDS = 0.01
WARM_UP = 20
_TICKS = os.sysconf("SC_CLK_TCK")
_PARTS = ("api", "matcher", "dispatcher", "rabbitmq", "postgresql")


@dataclass(frozen=True)
class Sizes:
    incidents: int
    in_flight: int
    steady_seconds: float


FULL = Sizes(incidents=3000, in_flight=16, steady_seconds=20)
QUICK = Sizes(incidents=400, in_flight=16, steady_seconds=5)


@dataclass
class Phase:
    """One phase's count of items, wall time and CPU seconds (service and others)."""

    name: str
    items: int
    seconds: float
    service_cpu: float
    other_cpu: float = 0.0
    # The service's CPU seconds by part: api, matcher, dispatcher, rabbitmq, postgresql.
    parts: dict[str, float] = field(default_factory=dict)

    @property
    def per_s(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.service_cpu / self.items if self.items else 0.0


@dataclass
class Results:
    sizes: Sizes
    raw: Phase
    ingest: Phase
    raw_burst: Phase
    burst: Phase
    latencies_ms: list[float] = field(default_factory=list)
    steady_sent: int = 0
    report_bytes: int = 0
    # The incidents queue drained by one matcher, then by two (None: not measured).
    matchers: tuple[Phase, Phase] | None = None


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(results: Results) -> dict[str, Any]:
    """The JSON object the run ends with: the interface's keys and a few more."""

    def ratio(a: float, b: float) -> float:
        return round(a / b, 4) if b else 0.0

    return {
        "raw_publish_consume_per_s": round(results.raw.per_s, 1),
        "ingest_per_s": round(results.ingest.per_s, 1),
        "ingest_ratio": ratio(results.ingest.per_s, results.raw.per_s),
        "ingest_cpu_ms": round(results.ingest.cpu_ms, 2),
        "burst_notices": results.burst.items,
        "burst_seconds": round(results.burst.seconds, 2),
        "burst_ratio": ratio(results.burst.per_s, results.raw_burst.per_s),
        "burst_cpu_ms": round(results.burst.cpu_ms, 2),
        "burst_per_s": round(results.burst.per_s, 1),
        "burst_20000_on_4_cores_s": round(predicted_burst_seconds(results.burst), 1),
        "raw_burst_per_s": round(results.raw_burst.per_s, 1),
        "raw_cpu_ms": round(results.raw.cpu_ms, 3),
        "steady_rate_per_s": STEADY_RATE,
        "steady_incidents": results.steady_sent,
        "steady_p50_ms": round(_percentile(results.latencies_ms, 0.5), 1),
        "steady_p99_ms": round(_percentile(results.latencies_ms, 0.99), 1),
        **_scaling(results),
        "incidents": results.sizes.incidents,
        "in_flight": results.sizes.in_flight,
        "message_bytes": results.report_bytes,
    }


def predicted_burst_seconds(burst: Phase, notices: int = 20_000, cores: int = 4) -> float:
    """The seconds ``notices`` due at once would take on ``cores`` cores kept busy: the
    CPU per notice measured here, spread over them. A floor, not a promise: it holds when
    the work spreads over every core (several dispatchers, PostgreSQL and RabbitMQ
    beside them), which the processes here allow and two cores cannot show."""
    return notices * burst.cpu_ms / 1000 / cores


def _scaling(results: Results) -> dict[str, float]:
    if results.matchers is None:
        return {}
    one, two = results.matchers
    return {
        "matcher_1_per_s": round(one.per_s, 1),
        "matcher_2_per_s": round(two.per_s, 1),
        "matcher_scaling": round(two.per_s / one.per_s, 3) if one.per_s else 0.0,
        "matcher_cpu_ms": round(one.cpu_ms, 2),
    }


def table(results: Results) -> str:
    """The readable table printed before the JSON line."""
    s = summary(results)
    rows = [
        ("raw aio-pika, publish then consume", results.raw, "1"),
        ("ingest: HTTP -> matched, scheduled", results.ingest, f"{s['ingest_ratio']:.3f}"),
        ("raw aio-pika, burst's count", results.raw_burst, "1"),
        ("burst: released, sealed, delivered", results.burst, f"{s['burst_ratio']:.3f}"),
    ]
    lines = [
        f"{results.sizes.incidents} incidents, {results.sizes.in_flight} in flight, "
        f"{results.report_bytes}-byte messages for raw; CPU summed over API, matcher, "
        "dispatcher, RabbitMQ and PostgreSQL",
        "",
        "| phase | items | seconds | per s | ratio to raw | service CPU ms per item "
        "| client/receiver CPU s |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, phase, ratio in rows:
        lines.append(
            f"| {label} | {phase.items} | {phase.seconds:.2f} | {phase.per_s:.1f} | {ratio} "
            f"| {phase.cpu_ms:.2f} | {phase.other_cpu:.1f} |"
        )
    if results.matchers is not None:
        one, two = results.matchers
        for label, phase in (("1 matcher", one), ("2 matchers", two)):
            lines.append(
                f"| {label}: queued incidents drained | {phase.items} | {phase.seconds:.2f} | "
                f"{phase.per_s:.1f} | | {phase.cpu_ms:.2f} | {phase.other_cpu:.1f} |"
            )
    lines += ["", "| service CPU ms per item, by process | " + " | ".join(_PARTS) + " |"]
    lines.append("|---" * (len(_PARTS) + 1) + "|")
    parted = [("ingest", results.ingest), ("burst", results.burst)]
    if results.matchers is not None:
        parted.insert(1, ("1 matcher, drain", results.matchers[0]))
    for label, phase in parted:
        shares = [
            1000 * phase.parts.get(p, 0.0) / phase.items if phase.items else 0.0 for p in _PARTS
        ]
        lines.append(f"| {label} | " + " | ".join(f"{v:.2f}" for v in shares) + " |")
    lines.append("")
    lines.append(
        f"20,000 notices due at once on 4 cores kept busy, from the burst's CPU per notice: "
        f"{s['burst_20000_on_4_cores_s']} s"
    )
    lines.append("")
    lines.append(
        f"| steady {STEADY_RATE:.0f}/s, report -> scheduled | {results.steady_sent} | "
        f"p50 {s['steady_p50_ms']} ms | p99 {s['steady_p99_ms']} ms | | | |"
    )
    return "\n".join(lines)


# --- CPU from /proc -------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and the children it reaped)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    # After the name: state, ppid, ... utime (14th field of the line), stime, cutime, cstime.
    ticks = sum(int(v) for v in fields[11:15])
    return int(fields[1]), ticks / _TICKS


def tree_cpu(roots: Iterable[int]) -> float:
    """CPU seconds of every process under ``roots`` (the roots included)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            found = _stat(int(entry))
            if found is not None:
                stats[int(entry)] = found
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, seen, todo = 0.0, set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        total += stats[pid][1]
        todo.extend(children.get(pid, []))
    return total


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


class Meter:
    """Service CPU (stack processes, RabbitMQ, PostgreSQL) and the others' (this process,
    the receiver) between two readings."""

    def __init__(self, infra: Infra, stack: Stack) -> None:
        self.infra, self.stack = infra, stack

    def _service_roots(self) -> dict[str, list[int]]:
        assert self.infra.rabbit.process is not None
        postmaster = int((self.infra.pg.data / "postmaster.pid").read_text().split()[0])
        roots: dict[str, list[int]] = {
            "rabbitmq": [self.infra.rabbit.process.pid],
            "postgresql": [postmaster],
        }
        for proc in self.stack.procs:
            roots.setdefault(proc.role, []).append(proc.pid)
        return roots

    def read(self) -> tuple[dict[str, float], float]:
        receiver = [self.infra.receiver.pid] if self.infra.receiver is not None else []
        parts = {part: tree_cpu(pids) for part, pids in self._service_roots().items()}
        return parts, _own_cpu() + tree_cpu(receiver)

    async def phase(self, name: str, run: Callable[[], Awaitable[int]]) -> Phase:
        service, other = self.read()
        started = time.perf_counter()
        items = await run()
        seconds = time.perf_counter() - started
        service_after, other_after = self.read()
        parts = {k: v - service.get(k, 0.0) for k, v in service_after.items()}
        return Phase(name, items, seconds, sum(parts.values()), other_after - other, parts)


# --- the phases ---------------------------------------------------------------------------


class Load:
    """Reports incidents over HTTP and remembers when each was sent."""

    def __init__(self, infra: Infra, stack: Stack) -> None:
        self.infra, self.stack = infra, stack
        self.sent_at: dict[str, float] = {}
        self.refused = 0
        self._n = 0

    async def one(self, http: aiohttp.ClientSession, tag: str) -> None:
        n, self._n = self._n, self._n + 1
        body = report(f"{tag}-{n:06d}", n, self.infra.now() - timedelta(hours=1))
        for _ in range(50):
            began = time.perf_counter()
            async with http.post(f"{self.stack.api_url}/v1/incidents", json=body) as answer:
                data = await answer.json(content_type=None)
                if answer.status == 202:
                    self.sent_at[str(data["incident_id"])] = began
                    return
                if answer.status not in (429, 503):
                    break
            await asyncio.sleep(0.2)
        self.refused += 1

    def session(self) -> aiohttp.ClientSession:
        headers = {"Authorization": f"Bearer {self.infra.force_token}"}
        return aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=60),
            connector=aiohttp.TCPConnector(limit=256),
        )

    async def closed_loop(self, count: int, in_flight: int, tag: str) -> None:
        """``count`` incidents, ``in_flight`` at a time."""
        queue = iter(range(count))
        async with self.session() as http:

            async def client() -> None:
                for _ in queue:
                    await self.one(http, tag)

            await asyncio.gather(*(client() for _ in range(in_flight)))

    async def open_loop(self, rate: float, seconds: float, tag: str) -> int:
        """``rate`` incidents a second for ``seconds``, whatever the answers take."""
        count = int(rate * seconds)
        start = time.perf_counter()
        async with self.session() as http:
            tasks = []
            for n in range(count):
                delay = start + n / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(self.one(http, tag)))
            await asyncio.gather(*tasks)
        return count


async def _count(db: asyncpg.Connection, sql: str) -> int:
    return int(await db.fetchval(sql))


async def wait_notices(
    db: asyncpg.Connection, target: int, seconds: float, status: str | None = None
) -> None:
    """Until ``target`` notices exist (every incident so far matched and scheduled), or
    ``target`` notices hold ``status``."""
    sql = "SELECT count(*) FROM notices" + ("" if status is None else f" WHERE status = '{status}'")
    deadline = time.monotonic() + seconds
    while await _count(db, sql) < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {target} notices after {seconds:.0f}s")
        await asyncio.sleep(0.05)


async def watch_scheduled(
    db: asyncpg.Connection,
    load: Load,
    before: set[str],
    seen: dict[str, float],
    stop: asyncio.Event,
) -> None:
    """Note when each new incident's notice first appears, polling every ``POLL_SECONDS``
    for the incidents not seen yet (by the indexed incident id)."""
    while not stop.is_set():
        pending = [i for i in load.sent_at if i not in before and i not in seen]
        if pending:
            rows = await db.fetch(
                "SELECT incident_id FROM notices WHERE incident_id = ANY($1::text[])", pending
            )
            now = time.perf_counter()
            for row in rows:
                seen.setdefault(str(row["incident_id"]), now)
        await asyncio.sleep(POLL_SECONDS)


async def run(sizes: Sizes, infra: Infra, settings: dict[str, str] | None = None) -> Results:
    """Every phase over one stack (its processes given ``settings`` too); the stack is
    closed after."""
    stack = Stack(infra, "bench", settings=settings)
    try:
        await asyncio.to_thread(stack.start)
        dispatcher = next(p for p in stack.procs if p.role == "dispatcher")
        meter = Meter(infra, stack)
        load = Load(infra, stack)
        body = json.dumps(report("R-000000", 0, infra.now())).encode()
        db = await asyncpg.connect(
            host="127.0.0.1", port=infra.pg.port, user="postgres", database=stack.database
        )
        try:
            # A few incidents first, so no phase pays for the processes' first requests.
            await load.closed_loop(WARM_UP, 4, "WRM")
            await wait_notices(db, len(load.sent_at), 120, "delivered")
            raw = await meter.phase(
                "raw",
                lambda: _raw(infra.rabbit.url, sizes.incidents, len(body), sizes.in_flight),
            )
            warmed = len(load.sent_at)
            # Paused, the dispatcher keeps every notice waiting for the burst.
            os.kill(dispatcher.pid, signal.SIGSTOP)

            async def ingest() -> int:
                await load.closed_loop(sizes.incidents, sizes.in_flight, "ING")
                await wait_notices(db, len(load.sent_at), 600)
                return len(load.sent_at) - warmed

            ingest_phase = await meter.phase("ingest", ingest)

            seen: dict[str, float] = {}
            stop = asyncio.Event()
            before = set(load.sent_at)
            watch_db = await asyncpg.connect(
                host="127.0.0.1", port=infra.pg.port, user="postgres", database=stack.database
            )
            watcher = asyncio.create_task(watch_scheduled(watch_db, load, before, seen, stop))
            steady_sent = await load.open_loop(STEADY_RATE, sizes.steady_seconds, "STD")
            await wait_notices(db, len(load.sent_at), 120)
            await asyncio.sleep(0.05)
            stop.set()
            await watcher
            await watch_db.close()
            latencies = [
                1000 * (seen[i] - t)
                for i, t in load.sent_at.items()
                if i not in before and i in seen
            ]

            matchers = await _matchers(stack, meter, load, db, sizes)

            waiting = await _count(db, "SELECT count(*) FROM notices WHERE status = 'scheduled'")
            raw_burst = await meter.phase(
                "raw burst", lambda: _raw(infra.rabbit.url, waiting, len(body), sizes.in_flight)
            )

            delivered = await _count(db, "SELECT count(*) FROM notices WHERE status = 'delivered'")

            async def burst() -> int:
                os.kill(dispatcher.pid, signal.SIGCONT)
                deadline = time.monotonic() + 1800
                while (
                    await _count(db, "SELECT count(*) FROM notices WHERE status = 'delivered'")
                    < delivered + waiting
                ):
                    if not dispatcher.alive() or time.monotonic() > deadline:
                        raise RuntimeError("the burst did not finish; see the dispatcher log")
                    await asyncio.sleep(0.05)
                return waiting

            burst_phase = await meter.phase("burst", burst)
            applied = len(receiver_call(infra, "/records")["applied"])
            if applied < delivered + waiting:
                raise RuntimeError(f"the receiver holds {applied} of {waiting} notices")
        finally:
            await db.close()
        return Results(
            sizes,
            raw,
            ingest_phase,
            raw_burst,
            burst_phase,
            latencies,
            steady_sent,
            len(body),
            matchers,
        )
    finally:
        with contextlib.suppress(Exception):
            os.kill(next(p.pid for p in stack.procs if p.role == "dispatcher"), signal.SIGCONT)
        await asyncio.to_thread(stack.close)


async def _matchers(
    stack: Stack, meter: Meter, load: Load, db: asyncpg.Connection, sizes: Sizes
) -> tuple[Phase, Phase]:
    """The matchers alone: ``N`` incidents queued while the matchers are stopped, then the
    time for them to drain the queue, with one matcher and then with two."""

    async def drained(name: str, tag: str) -> Phase:
        matchers = stack.running("matcher")
        for proc in matchers:
            os.kill(proc.pid, signal.SIGSTOP)
        try:
            await load.closed_loop(sizes.incidents, sizes.in_flight, tag)
        finally:
            for proc in matchers:
                os.kill(proc.pid, signal.SIGCONT)
        target = len(load.sent_at)

        async def drain() -> int:
            await wait_notices(db, target, 600)
            return sizes.incidents

        return await meter.phase(name, drain)

    one = await drained("1 matcher", "M1")
    await asyncio.to_thread(stack.scale, "matcher", 2)
    two = await drained("2 matchers", "M2")
    await asyncio.to_thread(stack.scale, "matcher", 1)
    return one, two


async def _raw(url: str, count: int, size: int, window: int) -> int:
    await measure(url, count, size=size, window=window)
    return count


def start_infra() -> Infra:
    """Our own RabbitMQ node, PostgreSQL cluster, receiver and template database."""
    if not rabbit_available():
        raise SystemExit("the benchmark needs the RabbitMQ server package (rabbitmq-server)")
    bindir = postgres_bin()
    if bindir is None:
        raise SystemExit("the benchmark needs the PostgreSQL server binaries (postgresql)")
    tag = secrets.token_hex(4)
    base = Path(tempfile.mkdtemp(prefix=f"encompass-bench-{tag}-"))
    base.chmod(0o755)  # the cluster runs as the postgres user when we are root
    rabbit = RabbitNode(
        base / "rabbit", name=f"encompass-bench-{tag}", cookie=secrets.token_hex(20)
    )
    infra = Infra(base, rabbit, PgCluster(base / "pg", bindir))
    try:
        rabbit.start()
        infra.pg.init()
        infra.pg.start()
        infra.start_receiver()
        infra.prepare_template()
    except BaseException:
        stop_infra(infra)
        raise
    return infra


def stop_infra(infra: Infra) -> None:
    """Stop everything :func:`start_infra` started and remove its directory."""
    infra.close()
    infra.rabbit.stop()
    with contextlib.suppress(Exception):
        infra.pg.stop("immediate")
    if os.environ.get("BENCH_KEEP"):
        _say(f"kept {infra.base}")
    else:
        shutil.rmtree(infra.base, ignore_errors=True)


def _say(line: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def _setting(item: str, parser: argparse.ArgumentParser) -> tuple[str, str]:
    name, equals, value = item.partition("=")
    if not equals or not name.startswith("ENCOMPASS_"):
        parser.error(f"--set takes ENCOMPASS_NAME=VALUE, not {item!r}")
    return name, value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller counts (a few minutes)")
    parser.add_argument("--incidents", type=int, help="incidents in the ingest phase")
    parser.add_argument("--in-flight", type=int, help="requests and messages in flight")
    parser.add_argument("--steady-seconds", type=float, help="seconds at 100 incidents/s")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ENCOMPASS_NAME=VALUE",
        help="a setting for every service process (repeatable), to compare settings",
    )
    args = parser.parse_args(argv)
    settings = dict(_setting(item, parser) for item in args.set)
    base = QUICK if args.quick else FULL
    sizes = Sizes(
        incidents=args.incidents or base.incidents,
        in_flight=args.in_flight or base.in_flight,
        steady_seconds=args.steady_seconds or base.steady_seconds,
    )
    _say("starting RabbitMQ, PostgreSQL, the receiver and the template database")
    infra = start_infra()
    try:
        _say(f"running {sizes}" + (f" with {settings}" if settings else ""))
        results = asyncio.run(run(sizes, infra, settings))
    finally:
        stop_infra(infra)
    print(table(results))
    print(json.dumps(summary(results)))


if __name__ == "__main__":
    main()
