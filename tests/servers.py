"""Real servers a test run owns: its own redis-server, the relay under gunicorn, and its own
scratch databases on the shared PostgreSQL."""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONFIG = ROOT / "deploy" / "gunicorn.conf.py"


# A test run takes minutes and a benchmark well under an hour: a scratch database older than this
# was left by a run that crashed (or was killed) before it could drop it.
STALE_AFTER = 12 * 3600
SCRATCH_PREFIXES = ("test_crcr", "crcr_bench")
# Exactly the names scratch_database makes, and nothing else.
_SCRATCH = re.compile(rf"(?:{'|'.join(SCRATCH_PREFIXES)})_(\d{{10}})_[0-9a-f]{{8}}")


def scratch_database(prefix: str) -> str:
    """A database name of this run's own, saying when it was made: `<prefix>_<unix time>_<random>`
    (a prefix of SCRATCH_PREFIXES), so that a later run can tell a forgotten one."""
    if prefix not in SCRATCH_PREFIXES:
        raise ValueError(f"scratch databases are named {SCRATCH_PREFIXES}_..., not {prefix}_...")
    return f"{prefix}_{int(time.time())}_{uuid.uuid4().hex[:8]}"


def drop_stale_databases(url: str) -> list[str]:
    """Drop the scratch databases (named by scratch_database) made over STALE_AFTER ago that
    nobody is connected to, on the server of `url`; the names dropped. Runs share the server
    (containers too, so process ids say nothing), hence the age and the plain DROP, which
    PostgreSQL refuses for a database in use. Names without a time are never touched."""
    now = time.time()
    dropped = []
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as db:
        names = [row[0] for row in db.execute("SELECT datname FROM pg_database")]
        for name in names:
            made = _SCRATCH.fullmatch(name)
            if made is None or now - int(made.group(1)) < STALE_AFTER:
                continue
            # In use (a live run after all), or another run dropped it first: leave it.
            with contextlib.suppress(psycopg.errors.ObjectInUse, psycopg.errors.InvalidCatalogName):
                db.execute(f'DROP DATABASE "{name}"')
                dropped.append(name)
    return dropped


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A redis-server process of this test run, never the machine's shared one."""

    def __init__(self) -> None:
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        for _ in range(5):  # another run may take the free port between probe and bind
            self.port = self.port or free_port()
            self.process = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--protected-mode",
                    "yes",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready():
                return self
            self.stop()
            self.port = 0
        raise RuntimeError("could not start redis-server on a free port")

    def _wait_ready(self) -> bool:
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                return bool(client.ping())
            except redis.RedisError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


class Gunicorn:
    """The relay as production runs it: gunicorn with the deployment's configuration
    (deploy/gunicorn.conf.py), one sync worker unless asked, on a free loopback port."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        workers: int = 1,
        threads: int = 1,
        port: int = 0,
        log: Path | None = None,
    ) -> None:
        """`log`: where the server's output goes (else this process's)."""
        self.env, self.workers, self.threads = env, workers, threads
        self.log = open(log, "ab") if log else None  # noqa: SIM115 (closed in stop)
        self.port = port or free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                str(GUNICORN_CONFIG),
                "-b",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=self.log,
            stderr=self.log,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, seconds: float = 30) -> "Gunicorn":
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.url}/healthz", timeout=1)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("gunicorn did not start")

    def kill(self) -> None:
        """SIGKILL to the whole process group: no cleanup, as a crash would be."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        if self.log:
            self.log.close()


def _postgres_bin(name: str) -> str:
    """A PostgreSQL server binary: on PATH, else the newest under Debian's /usr/lib/postgresql."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3])
    )
    if not candidates:
        raise RuntimeError(f"{name} is not installed (apt-get install postgresql)")
    return str(candidates[-1])


class PostgresServer:
    """A PostgreSQL cluster of this run's own, in a directory of its own on a free port, for
    the tests and benchmarks that stop and start the database: never the shared server.
    (As root, the server runs as the `postgres` user, as PostgreSQL insists.)"""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.port = 0

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        command = list(argv)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, timeout=120)

    def start(self) -> "PostgresServer":
        if not self.data.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(self.directory, "postgres", "postgres")
                for parent in self.directory.parents:  # the server must reach its directory
                    parent.chmod(parent.stat().st_mode | 0o001)
            self._run(
                _postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                "--auth=trust", "--no-sync", "-E", "UTF8",
            )  # fmt: skip
        self.port = self.port or free_port()
        self._run(
            _postgres_bin("pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data),
            "-l", str(self.data / "server.log"),
            "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
        )  # fmt: skip
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: its clients are disconnected; `immediate`: as a crash)."""
        self._run(_postgres_bin("pg_ctl"), "stop", "-w", "-m", mode, "-D", str(self.data))

    def destroy(self) -> None:
        self._run(_postgres_bin("pg_ctl"), "stop", "-m", "immediate", "-D", str(self.data),
                  check=False)  # fmt: skip
        shutil.rmtree(self.directory, ignore_errors=True)
