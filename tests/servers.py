"""Real servers a test run owns: its own redis-server and Redis Cluster, the relay under
gunicorn, and its own scratch databases on the shared PostgreSQL."""

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
from redis.cluster import ClusterNode

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


def _redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    return binary


# Every redis-server a run starts: loopback only, nothing kept on disk.
_REDIS_ARGS = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "yes")


def _answers(port: int, process: subprocess.Popen[bytes], seconds: float = 10) -> bool:
    """Whether the redis-server on `port` answers PING within `seconds` (False as soon as it
    exits: it could not bind, say)."""
    client = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                return bool(client.ping())
            except redis.RedisError:
                time.sleep(0.05)
        return False
    finally:
        client.close()


class RedisServer:
    """A redis-server process of this test run, never the machine's shared one."""

    cluster = False  # what REDIS_CLUSTER says for it

    def __init__(self) -> None:
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def env(self) -> dict[str, str]:
        """The environment that points a process of the relay here."""
        return {"REDIS_URL": self.url, "REDIS_CLUSTER": "false", "REDIS_CLUSTER_NODES": ""}

    def configure(self, settings) -> None:
        """Point this process's relay here (pytest-django's `settings`)."""
        settings.REDIS_URL, settings.REDIS_CLUSTER, settings.REDIS_CLUSTER_NODES = (
            self.url,
            False,
            (),
        )

    def running(self) -> bool:
        return self.process is not None

    def client(self) -> redis.Redis:
        """A client for the test's own looks (bytes, as the server holds them)."""
        return redis.Redis.from_url(self.url)

    def keys(self, pattern: str) -> set[bytes]:
        with self.client() as client:
            return set(client.keys(pattern))

    def flush(self) -> None:
        with self.client() as client:
            client.flushdb()

    def start(self) -> "RedisServer":
        binary = _redis_server_binary()
        for _ in range(5):  # another run may take the free port between probe and bind
            self.port = self.port or free_port()
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), *_REDIS_ARGS],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if _answers(self.port, self.process):
                return self
            self.stop()
            self.port = 0
        raise RuntimeError("could not start redis-server on a free port")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


class RedisCluster:
    """A Redis Cluster of this test run: `masters` masters with `replicas` replicas each, every
    node a redis-server with its client and cluster-bus ports free on loopback, its
    `nodes.conf` in a directory of its own under `directory`. stop() and start() again bring
    the same cluster back (empty: nothing is kept on disk but the cluster's own configuration).

    A node is judged failed after NODE_TIMEOUT_MS, and then any replica may take over, however
    long it was cut off (validity factor 0), so a failover takes a few seconds."""

    cluster = True
    NODE_TIMEOUT_MS = 1000
    SLOTS = 16384

    def __init__(self, directory: Path, *, masters: int = 3, replicas: int = 0) -> None:
        self.directory = directory
        self.masters, self.replicas = masters, replicas
        self.ports: list[int] = []
        self.bus_ports: list[int] = []
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """Where a process of the relay starts: the first node (it finds the rest)."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    @property
    def seeds(self) -> tuple[str, ...]:
        """REDIS_CLUSTER_NODES: the other nodes."""
        return tuple(f"127.0.0.1:{port}" for port in self.ports[1:])

    def env(self) -> dict[str, str]:
        return {
            "REDIS_URL": self.url,
            "REDIS_CLUSTER": "true",
            "REDIS_CLUSTER_NODES": ",".join(self.seeds),
        }

    def configure(self, settings) -> None:
        settings.REDIS_URL, settings.REDIS_CLUSTER, settings.REDIS_CLUSTER_NODES = (
            self.url,
            True,
            self.seeds,
        )

    def running(self) -> bool:
        return bool(self.live())

    def client(self) -> redis.RedisCluster:
        """A client for the test's own looks (bytes, as the servers hold them)."""
        return redis.RedisCluster(
            startup_nodes=[ClusterNode("127.0.0.1", port) for port in self.live()],
            socket_timeout=2,
            socket_connect_timeout=2,
        )

    def keys(self, pattern: str) -> set[bytes]:
        """Every master's keys matching `pattern`."""
        found: set[bytes] = set()
        for port in self.primaries():
            with redis.Redis(port=port) as node:
                found |= set(node.keys(pattern))
        return found

    def live(self) -> list[int]:
        return [port for port, process in self.processes.items() if process.poll() is None]

    def flush(self) -> None:
        for port in self.primaries():
            with redis.Redis(port=port) as node:
                node.flushall()

    def start(self) -> "RedisCluster":
        created = bool(self.ports)
        if not created:
            self.directory.mkdir(parents=True, exist_ok=True)
        for index in range(self.masters * (1 + self.replicas)):
            self._start_node(index)
        if not created:
            self._create()
        self.wait_ok()
        return self

    def _start_node(self, index: int) -> None:
        binary = _redis_server_binary()
        for _ in range(5):  # another run may take a free port between probe and bind
            if index == len(self.ports):  # a new node: ports and a directory of its own
                self.ports.append(free_port())
                self.bus_ports.append(free_port())
            port, bus = self.ports[index], self.bus_ports[index]
            where = self.directory / f"node-{index}"
            where.mkdir(exist_ok=True)
            process = subprocess.Popen(
                [
                    binary, "--port", str(port), *_REDIS_ARGS, "--dir", str(where),
                    "--cluster-enabled", "yes", "--cluster-port", str(bus),
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(self.NODE_TIMEOUT_MS),
                    "--cluster-replica-validity-factor", "0",
                    "--logfile", str(where / "redis.log"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            if _answers(port, process):
                self.processes[port] = process
                return
            process.kill()
            process.wait()
            if (where / "nodes.conf").exists():  # a member of the cluster keeps its ports
                raise RuntimeError(f"cluster node {index} could not start again on {port}")
            self.ports.pop()
            self.bus_ports.pop()
        raise RuntimeError("could not start a cluster node on free ports")

    def _create(self) -> None:
        subprocess.run(
            [
                "redis-cli", "--cluster", "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas", str(self.replicas), "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )  # fmt: skip

    def info(self, port: int) -> dict[str, str]:
        """CLUSTER INFO of one node."""
        with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as node:
            text = str(node.execute_command("CLUSTER", "INFO"))
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def roles(self) -> dict[int, str]:
        """Each live node's port → "master" or "slave", as the node itself says."""
        roles = {}
        for port in self.live():
            with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as node:
                roles[port] = str(node.info("replication")["role"])
        return roles

    def primaries(self) -> list[int]:
        return [port for port, role in self.roles().items() if role == "master"]

    def primary_of(self, key: str) -> int:
        """The port of the live master serving `key`'s slot."""
        for port in self.primaries():
            with redis.Redis(port=port, socket_timeout=1) as node:
                slot = int(node.execute_command("CLUSTER", "KEYSLOT", key))
                for start, end, owner, *_ in node.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        return int(owner[1])
        raise LookupError(key)

    def healthy(self) -> bool:
        """Every live node says the cluster is ok, with every slot served, and every live
        replica is in sync with its master."""
        try:
            for port in self.live():
                info = self.info(port)
                if info.get("cluster_state") != "ok":
                    return False
                if int(info.get("cluster_slots_ok", 0)) != self.SLOTS:
                    return False
                with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as node:
                    replication = node.info("replication")
                if replication["role"] == "slave" and replication["master_link_status"] != "up":
                    return False
            return len(self.primaries()) == self.masters
        except redis.RedisError:
            return False

    def wait_ok(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not self.healthy():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Redis Cluster in {self.directory} did not become ok")
            time.sleep(0.1)

    def kill(self, port: int) -> None:
        """SIGKILL to one node: gone at once, as a crashed host is."""
        process = self.processes[port]
        process.kill()
        process.wait()

    def restart(self, port: int) -> None:
        """Start a killed node again (a master that was failed over comes back as a replica)."""
        self._start_node(self.ports.index(port))

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            process.wait(timeout=10)
        self.processes = {}

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


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
        done = subprocess.run(command, check=False, capture_output=True, timeout=120)
        if check and done.returncode:  # what pg_ctl said, and the server's own log
            log = self.data / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no server.log)"
            raise RuntimeError(
                f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.decode(errors='replace')}"
                f"\n{tail}"
            )
        return done

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
