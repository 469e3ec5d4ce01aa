"""A RabbitMQ node and a PostgreSQL cluster of the fault tests' own.

Faults are injected only into these: the machine's shared RabbitMQ and PostgreSQL are never
stopped. Each lives in a temporary directory with its own node name and ports, and is
removed at the end of the session.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rabbit_available() -> bool:
    return (RABBIT_BIN / "rabbitmq-server").exists() or shutil.which("rabbitmq-server") is not None


def _rabbit_tool(name: str) -> str:
    local = RABBIT_BIN / name
    # The packaged wrapper in /usr/sbin switches to the rabbitmq user and its cookie; the
    # scripts themselves run as whoever calls them, with the HOME (and cookie) we give.
    return str(local) if local.exists() else (shutil.which(name) or name)


@dataclass
class RabbitNode:
    """One RabbitMQ node of our own: ``start``, ``stop_app``/``start_app``, ``stop``."""

    base: Path
    name: str
    cookie: str
    amqp_port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def nodename(self) -> str:
        return f"{self.name}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    def env(self) -> dict[str, str]:
        home = self.base / self.name
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))},
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(home / "log"),
            "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(home / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(home / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(home / "rabbit.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self, timeout: float = 90) -> None:
        """Start the node (first time: create its directory) and wait until it serves."""
        home = self.base / self.name
        if not home.exists():
            home.mkdir(parents=True)
            # No management or other plugins: nothing listens but AMQP and distribution.
            (home / "enabled_plugins").write_text("[].\n")
            (home / "rabbitmq.conf").write_text(
                "loopback_users = none\n"
                # Fresh queue counts for the checks (the default is every 5 s).
                "collect_statistics_interval = 500\n"
            )
            (home / "rabbitmq-env.conf").write_text("")
            cookie = home / ".erlang.cookie"
            cookie.write_text(self.cookie)
            cookie.chmod(0o400)
        log = (home / "server.out").open("ab")
        self.process = subprocess.Popen(
            [_rabbit_tool("rabbitmq-server")],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.await_startup(timeout)

    def await_startup(self, timeout: float = 90) -> None:
        """Wait until the node runs RabbitMQ (before it registers, ``await_startup`` fails
        at once, so ask again)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ctl("await_startup", "--timeout", "10", timeout=20)
                return
            except RuntimeError:
                if self.process is not None and self.process.poll() is not None:
                    out = (self.base / self.name / "server.out").read_text(errors="replace")
                    raise RuntimeError(f"rabbitmq-server exited: {out[-2000:]}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """``rabbitmqctl -n NODE ARGS``; raise with its output when it fails."""
        return _run([_rabbit_tool("rabbitmqctl"), "-n", self.nodename, *args], self.env(), timeout)

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.await_startup(60)

    def queue_counts(self) -> dict[str, tuple[int, int]]:
        """Every queue on the node: (ready, unacknowledged) messages."""
        out = self.ctl(
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        )
        counts: dict[str, tuple[int, int]] = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit():
                counts[parts[0]] = (int(parts[1]), int(parts[2]))
        return counts

    def stop(self) -> None:
        """Stop the node (and its Erlang VM)."""
        with contextlib.suppress(Exception):
            self.ctl("stop", timeout=60)
        if self.process is not None:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=10)
            self.process = None


def _run(
    argv: list[str], env: dict[str, str] | None, timeout: float, user: str | None = None
) -> str:
    if user is not None:
        argv = ["runuser", "-u", user, "--", *argv]
    result = subprocess.run(
        argv, env=env, capture_output=True, timeout=timeout, check=False, cwd="/"
    )
    out = result.stdout.decode(errors="replace")
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:4])}… exited {result.returncode}: "
            f"{out}{result.stderr.decode(errors='replace')}"
        )
    return out


def postgres_bin() -> Path | None:
    """The newest PostgreSQL server binaries installed, if any."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    return Path(found[-1]).parent if found else None


@dataclass
class PgCluster:
    """A PostgreSQL cluster of our own (``initdb`` + ``pg_ctl``) on a free port."""

    base: Path
    bindir: Path
    port: int = field(default_factory=free_port)

    @property
    def user(self) -> str | None:
        # initdb refuses to run as root: run the cluster as the postgres OS user then.
        return "postgres" if os.geteuid() == 0 else None

    @property
    def data(self) -> Path:
        return self.base / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            shutil.chown(self.base, self.user)
        _run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            None,
            120,
            self.user,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=200"
        )
        _run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.base / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ],
            None,
            90,
            self.user,
        )

    def stop(self, mode: str = "fast") -> None:
        _run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                mode,
                "-w",
                "-t",
                "60",
                "stop",
            ],
            None,
            90,
            self.user,
        )


def wait_for(check: object, what: str, seconds: float) -> None:
    """Poll ``check()`` until true or fail naming ``what``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise TimeoutError(f"waited {seconds:.0f}s for {what}")
