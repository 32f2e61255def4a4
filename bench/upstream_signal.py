"""Upstream signal benchmark: how soon an accepted callback shows on the upstream PR, what it
costs in GitHub calls, and what writing check runs adds to a callback.

The relay runs under gunicorn (WORKERS sync workers) with PostgreSQL, its own Redis and one
`manage.py worker`; the simulated GitHub answers every call in LATENCY seconds (100 ms). Every
repo is L4, so every job callback brings its job's check run and touches its repo's aggregate.
Measured in one run:

- at a steady RATE callbacks/s (open loop, each job's completed after its in_progress's
  answer): from a callback's answer to the moment GitHub received a state at least as far on
  for that job's check run (p50, p99), and the GitHub calls made per callback (tokens, creates,
  updates, look-ups, the aggregates' updates included);
- the callback cost ratio (/livez requests/s over callbacks/s at full load, as
  bench/callbacks.py measures it) with check runs on (L4) and off (L2), in alternating rounds
  on the same stack, the worker stopped meanwhile so that both measure the callback's own path.

    .venv/bin/python bench/upstream_signal.py [--rate 100 --seconds 20 --rounds 4 --pairs 600]
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import urllib3
from callbacks import REPOS, closed_loop, pairs
from harness import DEFAULT_DATABASE, ROOT, relay_stack, trusting, upstream_event

from sandbox.downstream import reporter_body
from sandbox.github import SimulatedGitHub
from sandbox.oidc import SimulatedIssuer

RANK = {"in_progress": 1, "completed": 2}
GITHUB_ROUTES = (
    *("token", "installation", "check_run", "check_runs", "workflow_run"),
    *("comments", "comment_create", "comment_update"),
)


def paced(
    http: urllib3.PoolManager,
    issuer: SimulatedIssuer,
    payloads: dict[str, dict[str, Any]],
    url: str,
    *,
    rate: float,
    seconds: float,
) -> list[tuple[str, str, float]]:
    """Pairs at `rate` callbacks/s; [(job name, status, time its answer came)]."""
    answered: list[tuple[str, str, float]] = []
    failures: list[str] = []
    lock = threading.Lock()

    def pair(n: int) -> None:
        repo = REPOS[n % len(REPOS)]
        for status in ("in_progress", "completed"):
            body = reporter_body(
                payloads[repo], status, job=f"job-{n}", check_run_id=f"job-{n}",
                conclusion="success",
            )  # fmt: skip
            response = http.request(
                "POST", url, body=json.dumps(body).encode(), retries=False,
                headers={"Content-Type": "application/json",
                         "Authorization": f"Bearer {issuer.mint(repo=repo)}"},
            )  # fmt: skip
            with lock:
                if response.status == 200:
                    answered.append((f"crcr/{repo}/CI/job-{n}", status, time.time()))
                else:
                    failures.append(f"{response.status}: {response.data[:200]!r}")

    count = int(rate * seconds / 2)
    with ThreadPoolExecutor(32) as pool:
        start = time.perf_counter()
        for n in range(count):
            delay = start + n * 2 / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(pair, n)
    if failures:
        raise SystemExit(f"{len(failures)} callbacks failed, e.g. {failures[0]}")
    return answered


def shown_at(
    github: SimulatedGitHub, answered: list[tuple[str, str, float]], deadline: float
) -> list[float]:
    """Seconds from each answer to GitHub's receipt of that state (or a later one) of its
    job's check run; waits until every one has arrived or `deadline` passes."""
    while True:
        first: dict[tuple[str, int], float] = {}
        for call in github.calls_to("check_run"):
            if call.status not in (200, 201) or not isinstance(call.body, dict):
                continue
            rank = RANK.get(str(call.body.get("status")), 0)
            for reached in range(1, rank + 1):
                key = (call.body.get("name", ""), reached)
                at = call.answered_at or call.received_at  # (GitHub holds it once it answers)
                first[key] = min(first.get(key, at), at)
        missing = [a for a in answered if (a[0], RANK[a[1]]) not in first]
        if not missing or time.time() > deadline:
            break
        time.sleep(0.5)
    if missing:
        raise SystemExit(f"{len(missing)} callbacks never reached GitHub, e.g. {missing[0]}")
    return sorted(max(0.0, first[(name, RANK[status])] - at) for name, status, at in answered)


def github_calls(github: SimulatedGitHub) -> int:
    return sum(len(github.calls_to(route)) for route in GITHUB_ROUTES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--latency", type=float, default=0.1, help="GitHub's, per call")
    parser.add_argument("--rounds", type=int, default=4, help="cost rounds of each kind")
    parser.add_argument("--pairs", type=int, default=600, help="pairs in a cost round")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    args = parser.parse_args()

    issuer = SimulatedIssuer("github").start()
    extra = trusting(issuer) | {"CRCR_CHECK_SETTLE": "2"}
    with relay_stack(
        database=args.database, workers=args.workers, latency=args.latency, extra_env=extra
    ) as stack:
        stack.set_allowlist(REPOS, level="L4")
        stack.send_event(upstream_event(), "signal-delivery")
        payloads = stack.client_payloads("signal-delivery")
        url = f"{stack.server.url}/github/callback"
        http = urllib3.PoolManager(maxsize=64)
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "worker", "--interval", "0.1"],
            cwd=ROOT, env=stack.env, start_new_session=True,
        )  # fmt: skip
        try:
            # Warm: every repo's installation token and aggregate made before timing.
            closed_loop(http, pairs(issuer, payloads, url, 40, "warm"), args.clients)
            time.sleep(3)
            before = github_calls(stack.github)
            answered = paced(http, issuer, payloads, url, rate=args.rate, seconds=args.seconds)
            delays = shown_at(stack.github, answered, time.time() + 120)
            time.sleep(2 * 2)  # the aggregates' last word (CRCR_CHECK_SETTLE) counted too
            calls = github_calls(stack.github) - before
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)

        p50 = statistics.median(delays)
        p99 = delays[int(len(delays) * 0.99) - 1]
        print(
            f"GitHub {args.latency * 1000:.0f} ms a call; {len(REPOS)} L4 repos; "
            f"{len(answered)} callbacks at {args.rate:.0f}/s\n"
        )
        print(f"answer -> GitHub  p50 {p50:6.2f} s   p99 {p99:6.2f} s  (targets 1 s, 5 s)")
        print(
            f"GitHub calls      {calls / len(answered):6.2f} a callback  ({calls} in all; "
            "target <= 1.1; PyTorch's relay: a token mint and a create, 2)"
        )

        ratios: dict[str, list[float]] = {"on": [], "off": []}
        trivial = [("GET", f"{stack.server.url}/livez", None, "x")] * 6 * args.pairs
        livez = len(trivial) / closed_loop(http, trivial, args.clients)[0]
        for round_ in range(args.rounds):
            # ABBA: each kind goes first in every other round, so neither gains from its place.
            kinds = (("on", "L4"), ("off", "L2"))
            for kind, level in kinds if round_ % 2 == 0 else kinds[::-1]:
                stack.set_allowlist(REPOS, level=level)
                load = pairs(issuer, payloads, url, args.pairs, f"cost-{kind}-{round_}")
                seconds, statuses = closed_loop(http, load, args.clients)
                if any(s != 200 for s in statuses):
                    raise SystemExit(f"answers not 200: {sorted(set(statuses))}")
                after = len(trivial) / closed_loop(http, trivial, args.clients)[0]
                ratios[kind].append((livez + after) / 2 / (len(load) / seconds))
                livez = after
        on, off = statistics.median(ratios["on"]), statistics.median(ratios["off"])
        print(
            f"cost ratio        {on:6.2f} with check runs, {off:.2f} without: "
            f"{(on / off - 1) * 100:+.1f} %  (target <= +5 %; rounds on "
            f"{', '.join(f'{r:.2f}' for r in ratios['on'])}, off "
            f"{', '.join(f'{r:.2f}' for r in ratios['off'])})"
        )
    issuer.stop()


if __name__ == "__main__":
    main()
