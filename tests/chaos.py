"""Upstream events fanned out while GitHub fails a share of its calls at random and the web
process is killed mid-run (bench/chaos.py runs it and says what it measures;
tests/relay/test_chaos.py runs its short variant)."""

import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg

from tests.servers import ROOT, Gunicorn
from tests.stack import Stack, relay_stack, upstream_event

# Retries and recovery quick enough for a run of minutes (the defaults are for production).
CHAOS_ENV = {
    "GITHUB_TIMEOUT": "1",
    "CRCR_RETRY_FIRST": "0.5",
    "CRCR_RETRY_CAP": "4",
    "CRCR_DISPATCH_LEASE": "15",
    "CRCR_FANOUT_DEADLINE": "3",
    "CRCR_REDELIVERY_INTERVAL": "3",
}


@dataclass
class ChaosReport:
    events: int
    repos: int
    kills: int
    webhook_codes: Counter[str]
    missing: list[tuple[str, str]]  # (delivery, repo) never dispatched
    # Dispatched more than once because GitHub took one and the relay could not know: its answer
    # timed out, or the web process was killed between GitHub's answer and its record.
    twice_late: int
    twice_other: list[tuple[str, str]]  # more than once for another reason
    gave_up: int  # dispatches the relay gave up on (failed)
    github_calls: int
    github_faults: int
    seconds: float

    @property
    def clean(self) -> bool:
        return not (self.missing or self.twice_other or self.gave_up)

    def lines(self) -> list[str]:
        codes = ", ".join(f"{code} x {n}" for code, n in sorted(self.webhook_codes.items()))
        return [
            f"{self.events} events x {self.repos} repos = {self.events * self.repos} dispatches; "
            f"web process killed {self.kills} times; {self.seconds:.0f} s until settled",
            f"  webhook answers: {codes}",
            f"  GitHub: {self.github_calls} calls, {self.github_faults} failed on purpose",
            f"  never dispatched {len(self.missing)}, given up {self.gave_up}; dispatched twice: "
            f"{self.twice_late} where GitHub took one the relay could not know of (answer timed "
            "out, or the sender killed before recording it), "
            f"{len(self.twice_other)} otherwise  ->  {'CLEAN' if self.clean else 'FAILED'}",
        ]


def _settled(url: str, events: int, repos: int) -> bool:
    with psycopg.connect(url) as db:
        deliveries, open_ = db.execute(
            "SELECT (SELECT count(*) FROM relay_delivery), "
            "(SELECT count(*) FROM relay_dispatch WHERE status = 'pending')"
        ).fetchone() or (0, 0)
    return deliveries == events and open_ == 0


def chaos_run(
    *, events: int, repos: int, failure: float, kills: int, workers: int = 2, threads: int = 4,
    senders: int = 16, settle: float = 240.0,
) -> ChaosReport:  # fmt: skip
    names = [f"chaos-{n}/backend" for n in range(repos)]
    started = time.monotonic()
    with relay_stack(workers=workers, threads=threads, extra_env=CHAOS_ENV) as stack:
        stack.set_allowlist(names)
        stack.github.hang_seconds = 1.5
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "worker", "--interval", "0.2"],
            cwd=ROOT, env=stack.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            stack.github.chaos = failure
            codes, killed = _send(stack, events, kills, senders)
            deadline = time.monotonic() + settle
            while time.monotonic() < deadline and not _settled(
                stack.env["DATABASE_URL"], events, repos
            ):
                time.sleep(1)
            stack.github.chaos = 0.0
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        return _report(stack, events, names, killed, codes, time.monotonic() - started)


def _send(stack: Stack, events: int, kills: int, senders: int) -> tuple[Counter[str], list[float]]:
    """Send every event, killing the web process (and starting it again on its port) `kills`
    times along the way; the webhook answers by status."""
    codes: Counter[str] = Counter()
    lock = threading.Lock()

    def send(n: int) -> None:
        event = upstream_event("pull_request.synchronize", number=1 + n % 50, head_sha=f"{n:040x}")
        response = stack.send_event(event, f"chaos-{n}")
        with lock:
            codes["no answer" if response is None else str(response.status_code)] += 1

    kill_at = {events * (k + 1) // (kills + 1) for k in range(kills)}
    killed: list[float] = []  # when (wall clock, as the simulator's log)
    in_flight = threading.BoundedSemaphore(senders)  # the kills land mid-run, with a few in flight

    def paced(n: int) -> None:
        try:
            send(n)
        finally:
            in_flight.release()

    with ThreadPoolExecutor(max_workers=senders) as pool:
        for n in range(events):
            in_flight.acquire()
            if n in kill_at:
                killed.append(time.time())
                stack.server.kill()
                old = stack.server
                stack.server = Gunicorn(
                    stack.env, workers=old.workers, threads=old.threads, port=old.port
                ).wait_ready()
            pool.submit(paced, n)
    return codes, killed


# A dispatch GitHub answered this shortly before a kill may have lost its record with the
# process (a sender records within milliseconds of the answer): the relay cannot know it went.
KILL_WINDOW = 0.5


def _report(
    stack: Stack,
    events: int,
    names: list[str],
    killed: list[float],
    codes: Counter[str],
    seconds: float,
) -> ChaosReport:
    accepted: Counter[tuple[str, str]] = Counter()
    late: set[tuple[str, str]] = set()
    for call in stack.github.dispatches():
        pair = (call.body["client_payload"]["delivery_id"], call.repo)
        accepted[pair] += 1
        at_a_kill = any(-0.1 <= kill - call.answered_at <= KILL_WINDOW for kill in killed)
        if call.taken or at_a_kill:
            late.add(pair)
    wanted = [(f"chaos-{n}", name) for n in range(events) for name in names]
    with psycopg.connect(stack.env["DATABASE_URL"]) as db:
        row = db.execute("SELECT count(*) FROM relay_dispatch WHERE status = 'failed'").fetchone()
    calls = len(stack.github.calls)
    faults = sum(1 for call in stack.github.calls if call.status in (502, 504, 403) or call.taken)
    return ChaosReport(
        events=events,
        repos=len(names),
        kills=len(killed),
        webhook_codes=codes,
        missing=[pair for pair in wanted if not accepted[pair]],
        twice_late=sum(1 for pair in wanted if accepted[pair] > 1 and pair in late),
        twice_other=[pair for pair in wanted if accepted[pair] > 1 and pair not in late],
        gave_up=int(row[0]) if row else 0,
        github_calls=calls,
        github_faults=faults,
        seconds=seconds,
    )
