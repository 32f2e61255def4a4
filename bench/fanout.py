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
import statistics
import time
import uuid

import requests
from harness import DEFAULT_DATABASE, ROOT, SECRET, relay_stack

from sandbox.github import SimulatedGitHub


def round_trip(github: SimulatedGitHub, samples: int = 5) -> float:
    """One GitHub call as the relay makes it: the median of a few POSTs to the simulator."""
    times = []
    with requests.Session() as session:
        for _ in range(samples):
            started = time.perf_counter()
            session.post(f"{github.url}/repos/o/r/dispatches", json={}, timeout=10)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


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
        default=DEFAULT_DATABASE,
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    with relay_stack(database=args.database, latency=args.latency) as stack:
        github, url = stack.github, f"{stack.server.url}/github/webhook"
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
            stack.set_allowlist([f"bench-owner-{i}/backend" for i in range(n)])
            # Cold: nothing cached yet (each repo is a new installation). Warm: the median of
            # five runs once installation ids and tokens are cached.
            for caches, runs in (("cold", 1), ("warm", 5)):
                measured = [measure(github, url, n) for _ in range(runs)]
                answer = statistics.median(m[0] for m in measured)
                fanout = statistics.median(m[1] for m in measured)
                print(
                    f"{n:>4} {caches:>6} {answer:>9.3f} {fanout:>10.3f} {fanout / rtt:>7.2f} "
                    f"{n:>7} {3 * math.ceil(n / 32):>10}"
                )


if __name__ == "__main__":
    main()
