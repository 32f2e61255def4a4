"""Callbacks under load while the relay's parts fail (bench/faults.py runs it, and says what
it measures; tests/relay/test_faults.py runs its short variant)."""

import contextlib
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import requests

from sandbox.downstream import reporter_body
from sandbox.oidc import SimulatedIssuer
from tests.servers import PostgresServer
from tests.stack import Stack, children, relay_stack, send_callback, trusting, upstream_event

REPO = "org/backend"
FAULTS = ("redis", "postgres", "workers")
REPORTER_TIMEOUT = 10.0  # PyTorch's reporter gives up after 10 s
ANSWER_BUDGET = 3.0  # every answer, a 503 included, within about this


@dataclass
class Answer:
    code: int | None  # None: no answer (timeout, connection reset)
    seconds: float
    retry_after: bool
    already: bool = False


@dataclass
class Job:
    name: str
    conclusion: str
    answers: dict[str, list[Answer]] = field(
        default_factory=lambda: {"in_progress": [], "completed": []}
    )

    def accepted(self, status: str) -> bool:
        return any(a.code == 200 for a in self.answers[status])


@dataclass
class Report:
    fault: str
    codes: Counter[str]
    slowest: float
    slowest_503: float
    bare_503: int  # 503 without Retry-After
    lost: list[str]
    flipped: list[str]
    not_accepted: list[str]  # still refused after every resend
    resent: int

    @property
    def clean(self) -> bool:
        return not (
            self.codes.get("500") or self.lost or self.flipped or self.not_accepted
            or self.bare_503 or self.slowest_503 > ANSWER_BUDGET
        )  # fmt: skip

    def lines(self) -> list[str]:
        codes = ", ".join(f"{code} x {n}" for code, n in sorted(self.codes.items()))
        return [
            f"{self.fault}: {codes}",
            f"  slowest answer {self.slowest:.2f} s, slowest 503 {self.slowest_503:.2f} s, "
            f"503 without Retry-After {self.bare_503}",
            f"  resent {self.resent}; lost {len(self.lost)}, flipped {len(self.flipped)}, "
            f"never accepted {len(self.not_accepted)}  ->  {'CLEAN' if self.clean else 'FAILED'}",
        ]


class Traffic:
    """Callbacks of distinct jobs at `rate` a second (half in_progress, half completed, each
    job's completed `gap` seconds after its in_progress), as PyTorch's reporter sends them."""

    def __init__(self, url: str, issuer: SimulatedIssuer, client_payload: dict, prefix: str):
        self.url, self.issuer, self.client_payload, self.prefix = (
            url,
            issuer,
            client_payload,
            prefix,
        )
        self.jobs: list[Job] = []
        self._lock = threading.Lock()

    def send(self, job: Job, status: str) -> Answer:
        body = reporter_body(
            self.client_payload, status, job=job.name, check_run_id=job.name,
            conclusion=job.conclusion if status == "completed" else None,
        )  # fmt: skip
        started = time.monotonic()
        try:
            response = send_callback(self.url, self.issuer, REPO, body, REPORTER_TIMEOUT)
        except requests.RequestException:
            answer = Answer(None, time.monotonic() - started, False)
        else:
            already = response.status_code == 200 and bool(response.json().get("already_recorded"))
            answer = Answer(
                response.status_code, time.monotonic() - started,
                "Retry-After" in response.headers, already,
            )  # fmt: skip
        with self._lock:
            job.answers[status].append(answer)
        return answer

    def run(self, rate: float, seconds: float, gap: float = 1.0) -> None:
        """Send for `seconds` (then wait for the last answers)."""
        jobs_per_second = rate / 2
        count = int(jobs_per_second * seconds)
        self.jobs = [
            Job(f"{self.prefix}-{n}", "success" if n % 3 else "failure") for n in range(count)
        ]
        start = time.monotonic()
        schedule = sorted(
            [(n / jobs_per_second, job, "in_progress") for n, job in enumerate(self.jobs)]
            + [(n / jobs_per_second + gap, job, "completed") for n, job in enumerate(self.jobs)],
            key=lambda item: item[0],
        )
        with ThreadPoolExecutor(max_workers=128) as pool:
            for at, job, status in schedule:
                delay = start + at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(self.send, job, status)

    def resend(self, deadline: float = 60.0) -> int:
        """Send again, in order, every callback not answered 200 (the reporter's retry),
        until it is or `deadline` passes; how many were sent."""
        sent = 0
        until = time.monotonic() + deadline
        for job in self.jobs:
            for status in ("in_progress", "completed"):
                while not job.accepted(status) and time.monotonic() < until:
                    answer = self.send(job, status)
                    sent += 1
                    if answer.code != 200:
                        time.sleep(0.2)
        return sent


def report(fault: str, traffic: Traffic, database_url: str, first: int, resent: int) -> Report:
    """What the answers (the first `first` of each callback: the load's, not the resends')
    and the database say."""
    codes: Counter[str] = Counter()
    slowest = slowest_503 = 0.0
    bare_503 = 0
    for job in traffic.jobs:
        for answers in job.answers.values():
            for answer in answers[:first]:
                code = "no answer" if answer.code is None else str(answer.code)
                codes[code + (" (already recorded)" if answer.already else "")] += 1
                slowest = max(slowest, answer.seconds)
                if answer.code == 503:
                    slowest_503 = max(slowest_503, answer.seconds)
                    bare_503 += not answer.retry_after
    names = [job.name for job in traffic.jobs]
    with psycopg.connect(database_url) as db:
        rows = db.execute(
            "SELECT job_name, status, conclusion FROM hud_jobrecord WHERE job_name = ANY(%s)",
            [names],
        ).fetchall()
    stored = {name: (status, conclusion) for name, status, conclusion in rows}
    lost, flipped, not_accepted = [], [], []
    for job in traffic.jobs:
        if not (job.accepted("in_progress") and job.accepted("completed")):
            not_accepted.append(job.name)
        held = stored.get(job.name)
        if (job.accepted("completed") and (held is None or held[0] != "completed")) or (
            job.accepted("in_progress") and held is None
        ):
            lost.append(job.name)
        elif held is not None and held[0] == "completed" and held[1] != job.conclusion:
            flipped.append(job.name)
    return Report(fault, codes, slowest, slowest_503, bare_503, lost, flipped, not_accepted, resent)


@contextlib.contextmanager
def fault_stack(
    directory: Path, *, workers: int = 4
) -> Iterator[tuple[Stack, SimulatedIssuer, dict]]:
    """The relay on a PostgreSQL cluster of its own, one repo allowlisted and dispatched to;
    yields the stack, the trusted issuer and the client_payload the repo received."""
    cluster = PostgresServer(directory / "postgres").start()
    issuer = SimulatedIssuer("github").start()
    extra = trusting(issuer) | {
        "CRCR_ORPHAN_AFTER": "5",  # under gunicorn's 30 s timeout, but nothing here lives 5 s
    }
    try:
        with relay_stack(database=cluster.url, workers=workers, extra_env=extra) as stack:
            stack.cluster = cluster  # type: ignore[attr-defined]
            stack.set_allowlist([REPO])
            stack.send_event(upstream_event(), "faults")
            yield stack, issuer, stack.client_payloads("faults")[REPO]
    finally:
        issuer.stop()
        cluster.destroy()


def _kill_workers(stack: Stack) -> None:
    for pid in children(stack.server.process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def inject(fault: str, stack: Stack, cluster: PostgresServer, down: float) -> None:
    """Make `fault` happen for `down` seconds (workers: killed twice, `down` apart)."""
    if fault == "redis":
        assert stack.redis.process is not None
        stack.redis.process.kill()
        stack.redis.process.wait()
        time.sleep(down)
        stack.redis.start()  # the same port, and empty
    elif fault == "postgres":
        cluster.stop()
        time.sleep(down)
        cluster.start()
    elif fault == "workers":
        _kill_workers(stack)
        time.sleep(down)
        _kill_workers(stack)
    else:
        raise ValueError(fault)


def run_fault(
    fault: str,
    stack: Stack,
    issuer: SimulatedIssuer,
    client_payload: dict,
    *,
    rate: float,
    seconds: float,
    fault_at: float,
    down: float,
    then: Callable[[], None] = lambda: None,
) -> Report:
    traffic = Traffic(stack.server.url, issuer, client_payload, fault)
    cluster: PostgresServer = stack.cluster  # type: ignore[attr-defined]
    timer = threading.Timer(fault_at, inject, args=(fault, stack, cluster, down))
    timer.start()
    traffic.run(rate, seconds)
    timer.join()
    then()
    time.sleep(2)  # (past the fail-fast window and gunicorn's new workers)
    resent = traffic.resend()
    return report(fault, traffic, stack.env["DATABASE_URL"], 1, resent)
