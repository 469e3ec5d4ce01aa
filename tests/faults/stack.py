"""The whole service as separate OS processes, over our own RabbitMQ node and PostgreSQL.

:class:`Infra` is made once per session: the node, the cluster, a webhook receiver
process, and a template database holding the schema, a force and a small directory (set up
with the public commands). Each scenario gets a :class:`Stack`: a copy of that database,
a queue prefix of its own, and its API, matcher and dispatcher processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.faults.proxy import FaultProxy
from tests.faults.servers import PgCluster, RabbitNode, free_port, wait_for

# The service's clock in every process: a Wednesday in term, 10:00 in London, running at
# real speed from when the session began, so that every notice is due at once.
FAKE_START = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]
PUPILS = 24
SETTING = "URN900001"
RECIPIENT = "KA-FAULT-1"


@dataclass
class Proc:
    role: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_has(self, text: str) -> bool:
        try:
            return text in self.log.read_text(errors="replace")
        except FileNotFoundError:
            return False


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def _cli_env(extra: dict[str, str]) -> dict[str, str]:
    # Only our own settings: nothing the developer exported may point these processes at
    # the shared services.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCOMPASS_")}
    env.update({"PYTHONPATH": str(REPO), "ENCOMPASS_LOG_FORMAT": "json"})
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> str:
    result = subprocess.run(
        _python("-m", "encompass.cli", *args),
        env=_cli_env(env),
        capture_output=True,
        timeout=180,
        cwd=cwd,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"encompass {' '.join(args[:2])} failed: "
            f"{result.stderr.decode(errors='replace')[-2000:]}"
        )
    return result.stdout.decode()


@dataclass
class Infra:
    base: Path
    rabbit: RabbitNode
    pg: PgCluster
    receiver_port: int = field(default_factory=free_port)
    receiver: Proc | None = None
    force_token: str = ""
    signing_key: Path = field(init=False)
    started: float = field(default_factory=time.time)
    scenarios: int = 0

    def __post_init__(self) -> None:
        self.signing_key = self.base / "signing-key.pem"

    def clock_start(self) -> str:
        """``ENCOMPASS_NOW`` for a process started now: the shared fake clock's reading."""
        return (FAKE_START + timedelta(seconds=time.time() - self.started)).isoformat()

    def now(self) -> datetime:
        return FAKE_START + timedelta(seconds=time.time() - self.started)

    def psql(self, sql: str) -> str:
        return subprocess.run(
            [
                str(self.pg.bindir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.pg.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ],
            capture_output=True,
            check=True,
            timeout=60,
            cwd="/",
        ).stdout.decode()

    def start_receiver(self) -> None:
        log = self.base / "receiver.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                _python("-m", "tests.faults.receiver", "--port", str(self.receiver_port)),
                env=_cli_env({}),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.base,
            )
        self.receiver = Proc("receiver", popen, log)
        wait_for(lambda: _http_ok(f"{self.receiver_url}/records"), "the webhook receiver", 30)

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}"

    def prepare_template(self) -> None:
        """The template database: schema, one force, one setting with one Key Adult who
        receives by webhook, and a roster of ``PUPILS`` children."""
        self.psql("CREATE DATABASE encompass_template")
        env = {
            "ENCOMPASS_DATABASE_URL": self.pg.url("encompass_template"),
            "ENCOMPASS_SIGNING_KEY": str(self.signing_key),
        }
        run_cli(["migrate"], env, self.base)
        keys = self.base / "ka"
        run_cli(["keys", "generate", "--out", str(keys)], env, self.base)
        public = next(p for p in keys.iterdir() if "public" in p.name)
        folder = self.base / "directory"
        folder.mkdir()
        (folder / "settings.csv").write_text(
            "setting_id,name,kind,nation,postcode,day_starts,day_ends,dispatch_at,"
            "calendar_id,holiday_policy\n"
            f"{SETTING},Fault Primary School,school,england,TF3 4NT,08:45,23:30,07:30,"
            "fault-year,hold\n"
        )
        (folder / "calendars.csv").write_text(
            "calendar_id,first_day,last_day,kind\nfault-year,2026-09-01,2027-07-21,term\n"
        )
        (folder / "key_adults.csv").write_text(
            "key_adult_id,setting_id,name,role,email,webhook_url,public_key\n"
            f"{RECIPIENT},{SETTING},Ms Key Adult,key_adult,ka@settings.example,"
            f"{self.receiver_url}/hooks/{RECIPIENT},{public}\n"
        )
        (folder / "pupils.csv").write_text(
            "setting_id,upn,given_name,family_name,date_of_birth,postcode,gender\n"
            + "".join(
                f"{SETTING},,{given},{family},{born},{postcode},\n"
                for given, family, born, postcode in roster()
            )
        )
        run_cli(
            [
                "directory",
                "import",
                "--settings",
                str(folder / "settings.csv"),
                "--calendars",
                str(folder / "calendars.csv"),
                "--key-adults",
                str(folder / "key_adults.csv"),
                "--pupils",
                str(folder / "pupils.csv"),
            ],
            env,
            self.base,
        )
        out = run_cli(["forces", "add", "FX", "--name", "Fault Constabulary"], env, self.base)
        self.force_token = next(
            line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("token:")
        )

    def close(self) -> None:
        if self.receiver is not None:
            _stop(self.receiver)


GIVEN = [
    "Amelia",
    "Oliver",
    "Isla",
    "Noah",
    "Freya",
    "Arthur",
    "Ivy",
    "Leo",
    "Ava",
    "Theo",
    "Mia",
    "Oscar",
]
FAMILY = ["Okonkwo", "Kowalski", "Ashworth", "Nakamura", "Fairbairn", "Castellano"]


def roster() -> list[tuple[str, str, str, str]]:
    """The pupils: distinct names, dates of birth and postcodes, so each matches surely."""
    pupils = []
    for n in range(PUPILS):
        given, family = GIVEN[n % len(GIVEN)], FAMILY[n % len(FAMILY)]
        born = f"{2012 + n % 7}-{1 + n % 12:02d}-{1 + n:02d}"
        pupils.append((given, family, born, f"TF{1 + n % 9} {n % 10}AB"))
    return pupils


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except OSError:
        return False


def _stop(proc: Proc, timeout: float = 20) -> int | None:
    if proc.alive():
        proc.popen.send_signal(signal.SIGTERM)
        try:
            proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait(timeout=10)
    return proc.popen.returncode


class Stack:
    """The service's processes over a copy of the template database and queues of their
    own; ``worker_amqp_port``/``api_db_port`` put a proxy between the workers and the
    broker, and between the API and the database."""

    def __init__(
        self,
        infra: Infra,
        name: str,
        *,
        worker_amqp_port: int | None = None,
        api_db_port: int | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        infra.scenarios += 1
        self.infra, self.name = infra, name
        self.database = f"fault_{infra.scenarios}"
        self.prefix = f"f{infra.scenarios}."
        self.folder = infra.base / f"{infra.scenarios}-{name}"
        self.folder.mkdir()
        self.started = False
        self.http_port = free_port()
        self.worker_amqp_port = worker_amqp_port or infra.rabbit.amqp_port
        self.api_db_port = api_db_port or infra.pg.port
        self.procs: list[Proc] = []
        self._counts: dict[str, int] = {}
        # Extra ENCOMPASS_* settings for every process (a benchmark comparing settings).
        self._settings = dict(settings or {})
        infra.psql(f"CREATE DATABASE {self.database} TEMPLATE encompass_template")

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def env(self, role: str) -> dict[str, str]:
        via_amqp = self.infra.rabbit.amqp_port if role == "api" else self.worker_amqp_port
        via_db = self.api_db_port if role == "api" else self.infra.pg.port
        return {
            "ENCOMPASS_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{via_amqp}/",
            "ENCOMPASS_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{via_db}/{self.database}",
            "ENCOMPASS_QUEUE_PREFIX": self.prefix,
            "ENCOMPASS_SIGNING_KEY": str(self.infra.signing_key),
            "ENCOMPASS_HTTP_PORT": str(self.http_port),
            "ENCOMPASS_NOW": self.infra.clock_start(),
            "ENCOMPASS_WEBHOOK_TIMEOUT": "2",
            "ENCOMPASS_DELIVERY_MAX_ATTEMPTS": "12",
            "ENCOMPASS_DISPATCH_INTERVAL": "0.2",
            # The harness is one force at a steady rate above a force's default limit.
            "ENCOMPASS_RATE_LIMIT_CREDENTIAL": "0",
            "ENCOMPASS_RATE_LIMIT_ADDRESS": "0",
            "ENCOMPASS_LOG_LEVEL": "info",
            # More than one API process may listen on the port (the scale-out scenario).
            "ENCOMPASS_HTTP_REUSE_PORT": "true",
            **self._settings,
        }

    def spawn(self, role: str) -> Proc:
        """Start ``api``, ``matcher`` or ``dispatcher`` as its own process; wait until ready."""
        n = self._counts[role] = self._counts.get(role, 0) + 1
        log = self.folder / f"{role}-{n}.log"
        args = ["serve"] if role == "api" else ["worker", role]
        with log.open("ab") as out:
            popen = subprocess.Popen(
                _python("-m", "encompass.cli", *args),
                env=_cli_env(self.env(role)),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
            )
        proc = Proc(role, popen, log)
        self.procs.append(proc)
        return proc

    def wait_ready(self, proc: Proc, seconds: float = 60) -> None:
        def ready() -> bool:
            if not proc.alive():
                raise RuntimeError(
                    f"{proc.role} exited {proc.popen.returncode}: "
                    f"{proc.log.read_text(errors='replace')[-3000:]}"
                )
            if proc.role == "api":
                return _http_ok(f"{self.api_url}/healthz")
            return proc.log_has("worker.started")

        wait_for(ready, f"the {proc.role} to start", seconds)

    def start(self, *, matchers: int = 1, dispatchers: int = 1) -> None:
        procs = (
            [self.spawn("api")]
            + [self.spawn("matcher") for _ in range(matchers)]
            + [self.spawn("dispatcher") for _ in range(dispatchers)]
        )
        for proc in procs:
            self.wait_ready(proc)
        self.started = True

    def readyz(self) -> tuple[int, str | None]:
        """The API's ``/readyz``: (status, Retry-After)."""
        try:
            with urllib.request.urlopen(f"{self.api_url}/readyz", timeout=10) as response:
                return int(response.status), response.headers.get("Retry-After")
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.headers.get("Retry-After")

    def running(self, role: str) -> list[Proc]:
        return [p for p in self.procs if p.role == role and p.alive()]

    def scale(self, role: str, count: int) -> None:
        """Exactly ``count`` live processes of ``role``: stop the newest extras, start and
        wait for the missing ones."""
        live = self.running(role)
        for extra in live[count:]:
            self.terminate(extra)
        started = [self.spawn(role) for _ in range(count - len(live))]
        for proc in started:
            self.wait_ready(proc)

    def kill(self, proc: Proc) -> None:
        """``kill -9``: no chance to settle anything."""
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(timeout=10)

    def terminate(self, proc: Proc, timeout: float = 30) -> int | None:
        """SIGTERM and wait; the exit status (None if it had to be killed)."""
        proc.popen.send_signal(signal.SIGTERM)
        try:
            return proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait(timeout=10)
            return None

    def queue_leftovers(self) -> dict[str, tuple[int, int]]:
        """This scenario's queues holding anything (ready, unacknowledged)."""
        return {
            name: counts
            for name, counts in self.infra.rabbit.queue_counts().items()
            if name.startswith(self.prefix) and counts != (0, 0)
        }

    def unacked(self, logical: str) -> int:
        counts = self.infra.rabbit.queue_counts().get(self.prefix + logical, (0, 0))
        return counts[1]

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(Exception):
                _stop(proc)
        with contextlib.suppress(Exception):
            self.infra.psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")


def receiver_call(infra: Infra, path: str, body: dict[str, Any] | None = None) -> Any:
    """POST (with ``body``) or GET the receiver's control API."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{infra.receiver_url}{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@dataclass
class Service:
    """The running service, and the proxies between its workers and the broker and between
    its API and the database (forwarding until a test injects a fault)."""

    stack: Stack
    broker_link: FaultProxy
    database_link: FaultProxy
