"""Fan-out benchmark: how long from a webhook until GitHub has taken the last dispatch.

The relay runs as in production (gunicorn, PostgreSQL, Redis) against the simulated GitHub
answering every call after LATENCY seconds. For N downstream repos (each its own owner, so its
own App installation) it sends a signed `pull_request` webhook and measures:

- fan-out: from sending the webhook until GitHub has answered the last dispatch (it arrived and
  GitHub took it), printed as the ratio to one GitHub round trip measured in the same run
  (floor 1.0: one call's latency; a serial relay is N; a
  relay minting a token per repo per event on 32 threads, as PyTorch's does, is about
  3·ceil(N/32));
- answer: how long the webhook took to answer.

Each N runs twice: cold (no installation or token cached) and warm (cached by the first run).

    python bench/fanout.py            # uses DATABASE_URL's server for a scratch database
    python bench/fanout.py --latency 0.1 --sizes 1,10,50,200
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relay.simulated_github import SimulatedGitHub, generate_app_key  # noqa: E402
from tests.servers import Gunicorn, RedisServer  # noqa: E402

SECRET = "bench-secret"  # noqa: S105 (the simulator's, for this run only)
APP_ID = "1"


def round_trip(github: SimulatedGitHub, samples: int = 5) -> float:
    """One GitHub call as the relay makes it: the median of a few POSTs to the simulator."""
    times = []
    with requests.Session() as session:
        for _ in range(samples):
            started = time.perf_counter()
            session.post(f"{github.url}/repos/o/r/dispatches", json={}, timeout=10)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def scratch_database(base_url: str) -> tuple[str, str]:
    name = f"crcr_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base_url, autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    return name, base_url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(base_url: str, name: str) -> None:
    with psycopg.connect(base_url, autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def set_allowlist(env: dict[str, str], repos: list[str]) -> None:
    script = (
        "import sys, django; django.setup();"
        "from allowlist.models import DownstreamRepo as R;"
        "[r.delete() for r in R.objects.all()];"
        "[R.objects.create(repo=n, level='L2') for n in sys.argv[1:]]"
    )
    subprocess.run([sys.executable, "-c", script, *repos], env=env, cwd=ROOT, check=True)


def measure(github: SimulatedGitHub, url: str, n: int) -> tuple[float, float]:
    """(answer seconds, seconds until GitHub answered the last dispatch) for one webhook."""
    guid = str(uuid.uuid4())
    payload = json.loads(
        (ROOT / "tests/fixtures/github/webhooks/pull_request.opened.json").read_text()
    )
    payload["repository"]["full_name"] = "pytorch/pytorch"
    started_wall = time.time()
    started = time.perf_counter()
    response = github.send_webhook("pull_request", payload, guid=guid, url=url, secret=SECRET)
    answered = time.perf_counter() - started
    if response is None or response.status_code not in (200, 202):
        raise SystemExit(f"the webhook failed: {response and response.text}")
    deadline = time.monotonic() + 60
    while True:
        arrivals = [
            c.answered_at
            for c in github.dispatches()
            if c.body["client_payload"]["delivery_id"] == guid
        ]
        if len(arrivals) >= n or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    if len(arrivals) != n:
        raise SystemExit(f"only {len(arrivals)} of {n} dispatches arrived")
    return answered, max(arrivals) - started_wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--sizes", default="1,10,50,200")
    parser.add_argument(
        "--database",
        default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    key = generate_app_key()
    github = SimulatedGitHub(app_id=APP_ID, private_key=key, latency=args.latency).start()
    redis_server = RedisServer().start()
    db_name, db_url = scratch_database(args.database)
    scratch = tempfile.TemporaryDirectory()
    key_file = Path(scratch.name) / "app.pem"
    key_file.write_text(key)
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "crcr_site.settings",
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_server.url,
        "GITHUB_API_URL": github.url,
        "GITHUB_APP_ID": APP_ID,
        "GITHUB_APP_PRIVATE_KEY_FILE": str(key_file),
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }
    server = None
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True
        )
        server = Gunicorn(env).wait_ready()
        url = f"{server.url}/github/webhook"
        rtt = round_trip(github)
        print(
            f"simulated GitHub latency {args.latency * 1000:.0f} ms; "
            f"one round trip measured {rtt * 1000:.1f} ms\n"
        )
        print(
            f"{'N':>4} {'caches':>6} {'answer s':>9} {'fan-out s':>10} {'÷ RTT':>7} "
            f"{'serial':>7} {'mint/32thr':>10}"
        )
        for n in sizes:
            set_allowlist(env, [f"bench-owner-{i}/backend" for i in range(n)])
            # Cold: nothing cached yet (each repo is a new installation). Warm: the median of
            # three runs once installation ids and tokens are cached.
            for caches, runs in (("cold", 1), ("warm", 3)):
                measured = [measure(github, url, n) for _ in range(runs)]
                answer = statistics.median(m[0] for m in measured)
                fanout = statistics.median(m[1] for m in measured)
                print(
                    f"{n:>4} {caches:>6} {answer:>9.3f} {fanout:>10.3f} {fanout / rtt:>7.2f} "
                    f"{n:>7} {3 * math.ceil(n / 32):>10}"
                )
    finally:
        if server is not None:
            server.stop()
        github.stop()
        redis_server.stop()
        drop_database(args.database, db_name)
        scratch.cleanup()


if __name__ == "__main__":
    main()
