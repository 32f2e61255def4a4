"""Callback benchmark: what a callback costs the relay, next to Django's own per-request cost.

The relay runs under gunicorn (WORKERS sync workers) with PostgreSQL and its own Redis; callers
present real RS256 tokens from a simulated GitHub Actions issuer, minted beforehand. Three
measurements in one run:

- throughput: CLIENTS concurrent callers each sending in_progress + completed pairs as fast as
  answers come; callbacks/s. Every answer must be 200, and the records are counted afterwards;
- latency at a steady 100 callbacks/s (open loop): p50 and p99;
- the ratio of a callback's cost to a trivial JSON view (GET /livez) behind the same middleware,
  both at full load from the same callers: (requests/s of /livez) / (callbacks/s), in rounds
  (/livez, callbacks, /livez, callbacks, ..., /livez), each round's callbacks against the /livez
  rounds on either side; throughput and ratio are the medians over the rounds.

    .venv/bin/python bench/callbacks.py [--pairs 1000 --rounds 5 --clients 16 --workers 4]
"""

import argparse
import contextlib
import json
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import urllib3
from harness import DEFAULT_DATABASE, Stack, relay_stack, trusting, upstream_event

from sandbox.downstream import reporter_body
from sandbox.oidc import SimulatedIssuer

REPOS = [f"bench-{n}/backend" for n in range(20)]
Call = tuple[str, str, bytes | None, str]  # method, URL, body, bearer token


def closed_loop(
    http: urllib3.PoolManager, requests: list[Call], clients: int
) -> tuple[float, list[int]]:
    """Send `requests` (method, url, body, token) from `clients` threads; (seconds, statuses).

    A pair's two calls stay in order: each client takes whole pairs."""
    statuses: list[int] = []
    lock = threading.Lock()
    units = [requests[i : i + 2] for i in range(0, len(requests), 2)]  # whole pairs
    chunks = [[call for unit in units[i::clients] for call in unit] for i in range(clients)]

    def run(chunk: list[Call]) -> None:
        for method, url, body, token in chunk:
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
            status = http.request(method, url, body=body, headers=headers, retries=False).status
            with lock:
                statuses.append(status)

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(chunk,)) for chunk in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, statuses


def open_loop(http: urllib3.PoolManager, requests: list[Call], rate: float) -> list[float]:
    """Start a pair every 2/rate seconds whatever the answers do (its completed follows its
    in_progress's answer): `rate` callbacks/s in all. Returns each callback's latency."""
    latencies: list[float] = []
    failures: list[str] = []

    def pair(calls: list[Call]) -> None:
        for method, url, body, token in calls:
            started = time.perf_counter()
            response = http.request(
                method,
                url,
                body=body,
                retries=False,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            )
            latencies.append(time.perf_counter() - started)
            if response.status != 200:
                failures.append(f"{response.status}: {response.data[:200]!r}")

    units = [requests[i : i + 2] for i in range(0, len(requests), 2)]
    with ThreadPoolExecutor(32) as pool:
        start = time.perf_counter()
        for n, unit in enumerate(units):
            delay = start + n * 2 / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(pair, unit)
    if failures:
        raise SystemExit(f"{len(failures)} paced callbacks failed, e.g. {failures[0]}")
    return latencies


class Cpu:
    """Server-side CPU (gunicorn workers, this run's PostgreSQL backends, its Redis) spent
    over some requests: a cost the client's own load on the machine does not blur."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.requests = 0

    @contextlib.contextmanager
    def measure(self, stack: Stack, requests: int) -> Iterator[None]:
        before = stack.server_cpu()
        yield
        after = stack.server_cpu()
        for part, used in after.items():
            self.seconds[part] = self.seconds.get(part, 0.0) + used - before[part]
        self.requests += requests

    def per_request(self) -> float:
        return sum(self.seconds.values()) * 1000 / self.requests

    def __str__(self) -> str:
        return ", ".join(
            f"{part} {used * 1000 / self.requests:.2f}" for part, used in self.seconds.items()
        )


def pairs(
    issuer: SimulatedIssuer, payloads: dict[str, dict], url: str, count: int, prefix: str
) -> list[Call]:
    """`count` in_progress + completed pairs spread over the repos, each with its own token."""
    calls: list[Call] = []
    for n in range(count):
        repo = REPOS[n % len(REPOS)]
        for status in ("in_progress", "completed"):
            body = reporter_body(
                payloads[repo],
                status,
                job=f"{prefix}-{n}",
                check_run_id=f"{prefix}-{n}",
                conclusion="success",
            )
            calls.append(("POST", url, json.dumps(body).encode(), issuer.mint(repo=repo)))
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="callback rounds, /livez between")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="gunicorn gthread threads")
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    args = parser.parse_args()

    issuer = SimulatedIssuer("github").start()
    extra = trusting(issuer)  # the benchmark is one caller per repo, flat out
    with relay_stack(
        database=args.database, workers=args.workers, threads=args.threads, extra_env=extra
    ) as stack:
        stack.set_allowlist(REPOS)
        stack.send_event(upstream_event(), "bench-delivery")
        payloads = stack.client_payloads("bench-delivery")
        callback_url = f"{stack.server.url}/github/callback"
        http = urllib3.PoolManager(maxsize=64)

        print(
            f"gunicorn: {args.workers} workers x {args.threads} threads; "
            f"{args.clients} concurrent callers; "
            f"{args.pairs} in_progress + completed pairs over {len(REPOS)} repos\n"
        )
        warm = pairs(issuer, payloads, callback_url, 50, "warm")
        closed_loop(http, warm, args.clients)

        # A /livez round takes three times the requests of a callback round: about as long as
        # one, since a callback costs three to four times as much (the rounds were 2,000 requests,
        # a second or two here, and swung by half from one round to the next).
        trivial: list[Call] = [("GET", f"{stack.server.url}/livez", None, "x")] * 6 * args.pairs

        trivial_cpu = Cpu()

        def trivial_rate() -> float:
            with trivial_cpu.measure(stack, len(trivial)):
                return len(trivial) / closed_loop(http, trivial, args.clients)[0]

        # Rounds interleaved, /livez, callbacks, /livez, callbacks, ..., /livez: each round's
        # ratio sets its callbacks against the /livez rounds on either side, and the figures
        # printed are the medians over the rounds. This machine's speed drifts by up to 1.7x
        # for seconds at a time, and one round takes a few seconds.
        callback_cpu = Cpu()
        livez = [trivial_rate()]
        rates: list[float] = []
        for round_ in range(args.rounds):
            load = pairs(issuer, payloads, callback_url, args.pairs, f"load{round_}")
            with callback_cpu.measure(stack, len(load)):
                seconds, statuses = closed_loop(http, load, args.clients)
            bad = [s for s in statuses if s != 200]
            if bad:
                raise SystemExit(f"{len(bad)} answers were not 200: {sorted(set(bad))}")
            rates.append(len(load) / seconds)
            livez.append(trivial_rate())
        ratios = [(livez[n] + livez[n + 1]) / 2 / rate for n, rate in enumerate(rates)]

        paced = pairs(issuer, payloads, callback_url, 250, "paced")
        latencies = sorted(open_loop(http, paced, rate=100))
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000

        stack.run_django(
            "from hud.models import JobRecord\n"
            "n = JobRecord.objects.filter(status='completed').count()\n"
            f"assert n == {50 + args.rounds * args.pairs + 250}, n\n"
            "print(f'records checked: {n} completed jobs')"
        )
        print(
            f"throughput        {statistics.median(rates):8.0f} callbacks/s  (target >= 500; "
            f"rounds: {', '.join(f'{r:.0f}' for r in rates)})"
        )
        print(
            f"/livez            {statistics.median(livez):8.0f} requests/s  "
            f"(rounds: {', '.join(f'{r:.0f}' for r in livez)})"
        )
        print(
            f"cost ratio        {statistics.median(ratios):8.2f}  callback / trivial view "
            f"(target <= 4; rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
        )
        print(f"at 100/s          p50 {p50:6.1f} ms   p99 {p99:6.1f} ms  (target p99 <= 50 ms)")
        print(
            f"server CPU        {callback_cpu.per_request():8.2f} ms a callback ({callback_cpu}), "
            f"{trivial_cpu.per_request():.2f} ms a /livez: "
            f"{callback_cpu.per_request() / trivial_cpu.per_request():.2f} times"
        )
    issuer.stop()


if __name__ == "__main__":
    main()
