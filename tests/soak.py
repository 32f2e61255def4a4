"""Mixed traffic for a long while: the relay's memory and Redis stay flat, and every Redis key
expires (bench/soak.py runs it and says what it measures; tests/relay/test_soak.py runs a short
variant)."""

import statistics
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests

from sandbox.downstream import reporter_body
from sandbox.oidc import SimulatedIssuer
from tests.stack import Stack, children, relay_stack, send_callback, trusting, upstream_event

REPOS = [f"soak-{n}/backend" for n in range(5)]
NEW_DELIVERY_EVERY = 10.0  # seconds: a new upstream event, so that dispatches keep coming
Running = tuple[float, str, dict, str]  # a job in progress: when it completes, repo, payload, job


@dataclass
class Sample:
    at: float
    rss_mb: float  # the gunicorn workers', together
    keys: int
    redis_mb: float


@dataclass
class SoakReport:
    seconds: float
    rate: float
    ttl: int
    samples: list[Sample]
    answers: dict[int | None, int]
    refusals: Counter[str]  # callbacks not answered 200, by status and error
    keys_without_ttl: list[str] = field(default_factory=list)

    def _thirds(self, pick) -> tuple[float, float]:
        """The mean of the middle and of the last third (the first is warm-up)."""
        third = max(1, len(self.samples) // 3)
        middle = [pick(s) for s in self.samples[third : 2 * third]] or [0.0]
        last = [pick(s) for s in self.samples[2 * third :]] or [0.0]
        return statistics.fmean(middle), statistics.fmean(last)

    def growth(self, pick) -> float:
        middle, last = self._thirds(pick)
        return (last - middle) / middle if middle else 0.0

    @property
    def clean(self) -> bool:
        errors = sum(n for code, n in self.answers.items() if code is None or code >= 500)
        return (
            not self.keys_without_ttl and errors == 0
            and self.growth(lambda s: s.rss_mb) < 0.10 and self.growth(lambda s: s.keys) < 0.10
        )  # fmt: skip

    def lines(self) -> list[str]:
        answers = ", ".join(f"{code or 'no answer'} x {n}" for code, n in sorted(
            self.answers.items(), key=lambda item: item[0] or 0))  # fmt: skip
        rss, keys = self._thirds(lambda s: s.rss_mb), self._thirds(lambda s: s.keys)
        return [
            f"{self.seconds:.0f} s at {self.rate:g} callbacks/s (+ webhooks and HUD reads); "
            f"Redis keys live CRCR_DISPATCH_TTL = {self.ttl} s",
            f"  answers: {answers}; refused callbacks: {dict(self.refusals) or 'none'}",
            f"  workers' RSS, middle third -> last third: {rss[0]:.1f} -> {rss[1]:.1f} MB "
            f"({self.growth(lambda s: s.rss_mb):+.1%})",
            f"  Redis keys: {keys[0]:.0f} -> {keys[1]:.0f} ({self.growth(lambda s: s.keys):+.1%});"
            f" keys without a TTL: {len(self.keys_without_ttl)} {self.keys_without_ttl[:5]}",
            f"  -> {'CLEAN' if self.clean else 'FAILED'}",
        ]


def _rss_mb(stack: Stack) -> float:
    total = 0
    for pid in children(stack.server.process.pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def _keys_without_ttl(client: redis.Redis) -> list[str]:
    return [key.decode() for key in client.scan_iter(count=1000) if client.ttl(key) == -1]


class _Traffic:
    def __init__(self, stack: Stack, issuer: SimulatedIssuer) -> None:
        self.stack, self.issuer = stack, issuer
        self.payloads: dict[str, dict] = {}
        self.answers: dict[int | None, int] = {}
        self.refusals: Counter[str] = Counter()
        self.lock = threading.Lock()

    def count(self, code: int | None) -> None:
        with self.lock:
            self.answers[code] = self.answers.get(code, 0) + 1

    def new_delivery(self, n: int) -> None:
        event = upstream_event("pull_request.synchronize", head_sha=f"{n:040x}")
        self.stack.send_event(event, f"soak-{n}")
        self.payloads.update(self.stack.client_payloads(f"soak-{n}"))

    def start(self, repo: str, job: str, running: "deque[Running]") -> None:
        """A job's in_progress; its completed is due a second after the answer (as a reporter
        sends it: after the job's first step has reported), for the same dispatch."""
        payload = self.payloads[repo]
        self.callback(repo, payload, "in_progress", job)
        running.append((time.monotonic() + 1.0, repo, payload, job))

    def callback(self, repo: str, payload: dict, status: str, job: str) -> None:
        body = reporter_body(
            payload, status, job=job, check_run_id=job,
            conclusion="success" if status == "completed" else None,
        )  # fmt: skip
        try:
            response = send_callback(self.stack.server.url, self.issuer, repo, body)
            self.count(response.status_code)
            if response.status_code != 200:
                with self.lock:
                    self.refusals[f"{status} {response.json().get('error')}"] += 1
        except requests.RequestException:
            self.count(None)

    def read_hud(self, n: int) -> None:
        path = "/crcr" if n % 2 else f"/crcr/{REPOS[n % len(REPOS)]}"
        try:
            self.count(requests.get(f"{self.stack.server.url}{path}", timeout=10).status_code)
        except requests.RequestException:
            self.count(None)


def _ticks(rate: float, seconds: float) -> Iterator[int]:
    start = time.monotonic()
    for n in range(int(rate * seconds)):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield n


def soak(*, seconds: float, rate: float = 50.0, ttl: int = 120, every: float = 10.0) -> SoakReport:
    issuer = SimulatedIssuer("github").start()
    extra = trusting(issuer) | {
        "CRCR_DISPATCH_TTL": str(ttl),
    }
    samples: list[Sample] = []
    try:
        with relay_stack(workers=4, extra_env=extra) as stack:
            stack.set_allowlist(REPOS)
            traffic = _Traffic(stack, issuer)
            traffic.new_delivery(0)
            client = redis.Redis.from_url(stack.env["REDIS_URL"])
            stop = threading.Event()

            def sample() -> None:
                start = time.monotonic()
                while not stop.wait(every):
                    memory = client.info("memory")["used_memory"] / 2**20
                    at = time.monotonic() - start
                    samples.append(Sample(at, _rss_mb(stack), client.dbsize(), memory))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            deliveries = 1
            started = time.monotonic()
            running: deque[Running] = deque()
            with ThreadPoolExecutor(max_workers=64) as pool:
                for n in _ticks(rate / 2, seconds):  # a job: in_progress now, completed in 1 s
                    now = time.monotonic()
                    if now - started > deliveries * NEW_DELIVERY_EVERY:
                        pool.submit(traffic.new_delivery, deliveries)
                        deliveries += 1
                    while running and running[0][0] <= now:  # (appended in order, near enough)
                        _, done_repo, payload, done_job = running.popleft()
                        pool.submit(traffic.callback, done_repo, payload, "completed", done_job)
                    repo = REPOS[n % len(REPOS)].casefold()
                    if repo in traffic.payloads:
                        pool.submit(traffic.start, repo, f"job-{n}", running)
                    if n % 25 == 0:
                        pool.submit(traffic.read_hud, n)
                time.sleep(1.5)  # the last in_progress answered
                for _, done_repo, payload, done_job in list(running):
                    pool.submit(traffic.callback, done_repo, payload, "completed", done_job)
            stop.set()
            sampler.join()
            unexpiring = _keys_without_ttl(client)
            return SoakReport(
                seconds, rate, ttl, samples, traffic.answers, traffic.refusals, unexpiring
            )
    finally:
        issuer.stop()
