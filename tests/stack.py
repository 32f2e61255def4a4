"""What every benchmark (and the fault tests) stand on: the relay as production runs it, on
this machine.

`relay_stack` starts the simulated GitHub, a redis-server of its own, a scratch PostgreSQL
database (created on DATABASE_URL's server, dropped afterwards) and gunicorn, and hands back
the environment every process of the run shares.
"""

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import requests

from sandbox.github import SimulatedGitHub, generate_app_key
from sandbox.oidc import SimulatedIssuer
from tests.servers import (
    ROOT,
    Gunicorn,
    RedisServer,
    drop_stale_databases,
    scratch_database,
)

SECRET = "bench-secret"
APP_ID = "1"
DEFAULT_DATABASE = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(child) for child in task.read_text().split()]
    return found


@dataclass
class Stack:
    github: SimulatedGitHub
    env: dict[str, str]
    server: Gunicorn
    redis_pid: int
    database: str
    redis: RedisServer

    def server_cpu(self) -> dict[str, float]:
        """CPU seconds used so far by the relay's side of the machine: the gunicorn workers,
        this run's PostgreSQL backends and its redis-server (subtract two readings)."""
        with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as db:
            backends = [
                pid
                for (pid,) in db.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                )
            ]
        master = self.server.process.pid
        return {
            "workers": sum(_cpu_seconds(pid) for pid in [master, *children(master)]),
            "postgres": sum(_cpu_seconds(pid) for pid in backends),
            "redis": _cpu_seconds(self.redis_pid),
        }

    def run_django(self, script: str, *args: str) -> None:
        """Run a snippet with Django set up against this stack (e.g. to set the allowlist)."""
        code = f"import sys, django; django.setup()\n{script}"
        subprocess.run([sys.executable, "-c", code, *args], env=self.env, cwd=ROOT, check=True)

    def send_event(self, payload: dict[str, Any], guid: str) -> requests.Response | None:
        """An upstream pull_request webhook from the simulated GitHub to the running relay,
        signed (None: no answer)."""
        self.github.webhook_secret = SECRET
        url = f"{self.server.url}/github/webhook"
        return self.github.send_webhook("pull_request", payload, guid=guid, url=url)

    def client_payloads(self, guid: str) -> dict[str, dict[str, Any]]:
        """repo -> the client_payload GitHub took for it from delivery `guid`."""
        return {
            call.repo: call.body["client_payload"]
            for call in self.github.dispatches()
            if call.body["client_payload"]["delivery_id"] == guid
        }

    def set_allowlist(self, repos: list[str], level: str = "L2") -> None:
        self.run_django(
            "from allowlist.models import DownstreamRepo as R\n"
            "for r in R.objects.all(): r.delete()\n"
            f"for n in sys.argv[1:]: R.objects.create(repo=n, level={level!r})",
            *repos,
        )


def upstream_event(fixture: str = "pull_request.opened", **pull_request: Any) -> dict[str, Any]:
    """A recorded GitHub webhook payload (tests/fixtures), from the upstream repository, with
    these fields of its pull_request changed (`head_sha` for pull_request.head.sha)."""
    payload: dict[str, Any] = json.loads(
        (ROOT / "tests/fixtures/github/webhooks" / f"{fixture}.json").read_text()
    )
    payload["repository"]["full_name"] = "pytorch/pytorch"
    if "head_sha" in pull_request:
        payload["pull_request"]["head"]["sha"] = pull_request.pop("head_sha")
    payload["pull_request"].update(pull_request)
    return payload


def send_callback(
    url: str, issuer: SimulatedIssuer, repo: str, body: dict[str, Any], timeout: float = 10.0
) -> requests.Response:
    """A callback as PyTorch's reporter sends it: `body` with a fresh token of `issuer` for
    `repo`, to the relay at `url` (requests' errors raised)."""
    headers = {
        "Authorization": f"Bearer {issuer.mint(repo=repo)}",
        "Content-Type": "application/json",
    }
    return requests.post(f"{url}/github/callback", data=json.dumps(body), timeout=timeout,
                         headers=headers)  # fmt: skip


def trusting(issuer: SimulatedIssuer) -> dict[str, str]:
    """The environment of a relay that trusts `issuer` (GitHub Actions tokens) and, for load
    from one caller a repo, does not rate-limit."""
    return {
        "CRCR_OIDC_ISSUERS": json.dumps({issuer.url: {"jwks": issuer.jwks_url, "kind": "github"}}),
        "CRCR_RATE_LIMIT_PER_MIN": "100000000",
    }


@contextlib.contextmanager
def relay_stack(
    *,
    database: str = DEFAULT_DATABASE,
    latency: float = 0.0,
    workers: int = 1,
    threads: int = 1,
    extra_env: dict[str, str] | None = None,
    server_log: Path | None = None,
) -> Iterator[Stack]:
    key = generate_app_key()
    github = SimulatedGitHub(app_id=APP_ID, private_key=key, latency=latency).start()
    redis_server = RedisServer().start()
    drop_stale_databases(database)  # what crashed benchmarks and test runs left behind
    name = scratch_database("crcr_bench")
    with psycopg.connect(database, autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    scratch = tempfile.TemporaryDirectory()
    key_file = Path(scratch.name) / "app.pem"
    key_file.write_text(key)
    env = (
        os.environ
        | {
            "DJANGO_SETTINGS_MODULE": "crcr_site.settings",
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": database.rsplit("/", 1)[0] + f"/{name}",
            "REDIS_URL": redis_server.url,
            "GITHUB_API_URL": github.url,
            "GITHUB_APP_ID": APP_ID,
            "GITHUB_APP_PRIVATE_KEY_FILE": str(key_file),
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
            "CRCR_ALLOWLIST_SYNC_INTERVAL": "0",
            "CRCR_REDELIVERY_INTERVAL": "0",
        }
        | (extra_env or {})
    )
    stack = None
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True
        )
        server = Gunicorn(env, workers=workers, threads=threads, log=server_log).wait_ready()
        assert redis_server.process is not None
        stack = Stack(github, env, server, redis_server.process.pid, name, redis_server)
        yield stack
    finally:
        if stack is not None:
            stack.server.stop()  # (the one running now: a run may have started another)
        github.stop()
        redis_server.stop()
        with psycopg.connect(database, autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        scratch.cleanup()
