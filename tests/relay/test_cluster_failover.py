"""A master of the Redis Cluster dies while downstream jobs report to the relay under gunicorn,
and its replica takes over: every callback answered 200 is recorded, the others are answered
503 with Retry-After (never 500), and once the replica serves the dead master's slots (and the
old master is back as its replica) every job reports as before."""

import json
import queue
import threading
import time
from dataclasses import dataclass

import pytest
import requests

from hud.models import JobRecord
from relay import redis_keys
from relay.models import CallbackAudit
from tests.relay.support import post_webhook, relay_env, reporter_body, webhook_payload
from tests.servers import Gunicorn, RedisCluster

pytestmark = pytest.mark.django_db(transaction=True)

PR = webhook_payload("pull_request.opened")
DELIVERIES = [f"guid-{n}" for n in range(6)]
REPOS = ("org-a/l2", "org-b/l3")
# A job whose transition ran on the master as it died (its reply lost, so the reporter was
# told 503) may have reached the replica: its retry is then a "duplicate" until the relay
# takes the transition for an orphan. The test's relay waits this long for that, not 60 s.
ORPHAN_AFTER = 2


@pytest.fixture
def redis_server(tmp_path):
    """This module's own cluster, three masters with a replica each: one master is killed."""
    cluster = RedisCluster(tmp_path / "cluster", replicas=1).start()
    yield cluster
    cluster.destroy()


@dataclass(frozen=True)
class Answer:
    job: tuple[str, str, str]  # (delivery, repo, job name)
    status: str  # the callback's: in_progress or completed
    code: int
    error: str | None
    retry_after: str | None
    again: bool  # 200 already_recorded: nothing written
    unsure: bool  # sent again after a 503


class Reporter:
    """Downstream jobs reporting over HTTP, several at once, each in_progress then completed.
    A callback answered 503 is sent again (after 0.2 s, not its Retry-After: the test has no
    time to lose), as a re-run of the reporter would, with a fresh token."""

    def __init__(self, url: str, actions, payloads: dict[tuple[str, str], dict]) -> None:
        self.url, self.actions, self.payloads = url, actions, payloads
        self.answers: list[Answer] = []
        self._lock = threading.Lock()

    def report(self, jobs: list[tuple[str, str, str]], *, threads: int = 4) -> None:
        todo: queue.Queue[tuple[str, str, str]] = queue.Queue()
        for job in jobs:
            todo.put(job)

        def work() -> None:
            session = requests.Session()
            while True:
                try:
                    job = todo.get_nowait()
                except queue.Empty:
                    return
                for status in ("in_progress", "completed"):
                    self._until_taken(session, job, status)
                time.sleep(0.05)  # a stream, not a burst: the failover happens while it flows

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def _until_taken(self, session: requests.Session, job: tuple[str, str, str], status: str):
        delivery, repo, name = job
        conclusion = "success" if status == "completed" else None
        body = reporter_body(
            self.payloads[delivery, repo],
            status,
            job=name,
            check_run_id=name,
            conclusion=conclusion,
        )
        deadline = time.monotonic() + 60
        unsure = False
        while time.monotonic() < deadline:
            response = session.post(
                f"{self.url}/github/callback",
                data=json.dumps(body),
                timeout=30,
                headers={
                    "Authorization": f"Bearer {self.actions.mint(repo=repo)}",
                    "Content-Type": "application/json",
                },
            )
            answer = response.json()
            with self._lock:
                self.answers.append(
                    Answer(
                        job,
                        status,
                        response.status_code,
                        answer.get("error"),
                        response.headers.get("Retry-After"),
                        bool(answer.get("already_recorded")),
                        unsure,
                    )
                )
            if response.status_code == 503:
                unsure = True
                time.sleep(0.2)
            elif unsure and answer.get("error") == "duplicate":
                time.sleep(ORPHAN_AFTER / 2)
            else:
                return
        raise AssertionError(f"{job} {status} was never taken")


def _health(url: str) -> tuple[int, str]:
    response = requests.get(f"{url}/healthz", timeout=10)
    return response.status_code, response.json()["redis"]


def test_a_master_failing_over_during_callbacks_loses_no_accepted_result(
    client, github, downstream, actions, settings, child_env, redis_server: RedisCluster
):
    for delivery in DELIVERIES:
        assert post_webhook(client, "pull_request", PR, delivery=delivery).status_code == 200
    payloads = {
        (call.body["client_payload"]["delivery_id"], repo): call.body["client_payload"]
        for repo in REPOS
        for call in github.dispatches(repo)
    }
    masters = {
        dispatch: redis_server.primary_of(redis_keys.dispatched(*dispatch)) for dispatch in payloads
    }
    victim = max(set(masters.values()), key=list(masters.values()).count)
    replica_ports = set(redis_server.live()) - set(redis_server.primaries())
    env = relay_env(
        child_env,
        github,
        settings,
        CRCR_ORPHAN_AFTER=str(ORPHAN_AFTER),
        CRCR_RATE_LIMIT_PER_MIN="100000",
    )
    server = Gunicorn(env, workers=2, threads=4).wait_ready()
    reporter = Reporter(server.url, actions, payloads)

    def jobs(name: str) -> list[tuple[str, str, str]]:
        return [(delivery, repo, name) for delivery, repo in payloads]

    try:
        reporter.report(jobs("before"))
        assert _health(server.url) == (200, "ok")

        redis_server.kill(victim)
        during = threading.Thread(target=reporter.report, args=(jobs("during") + jobs("also"),))
        during.start()
        health = [_health(server.url)]
        while not (redis_server.healthy() and health[-1][0] == 200):
            assert len(health) < 300, "no replica took over within 30 s"
            time.sleep(0.1)
            health.append(_health(server.url))
        during.join()
        promoted = set(redis_server.primaries()) & replica_ports

        reporter.report(jobs("after"))
        redis_server.restart(victim)  # it comes back as the replica of the one that took over
        redis_server.wait_ok()
        reporter.report(jobs("back"))
    finally:
        server.stop()

    answers = reporter.answers
    assert {a.code for a in answers} <= {200, 503, 409}, {a.code for a in answers}
    assert all(a.error == "unavailable" and a.retry_after == "5" for a in answers if a.code == 503)
    assert all(a.unsure and a.error == "duplicate" for a in answers if a.code == 409)
    assert any(a.code == 503 for a in answers)  # the failover was felt,
    assert (503, "unreachable") in health  # and /healthz said so while it lasted
    assert len(promoted) == 1
    assert redis_server.roles()[victim] == "slave"
    # Every job reported, once each, as it was answered: nothing answered 200 was lost.
    names = ("before", "during", "also", "after", "back")
    records = JobRecord.objects.filter(job_name__in=names)
    assert records.count() == len(payloads) * len(names)
    assert {(r.status, r.conclusion) for r in records} == {("completed", "success")}
    written = sum(1 for a in answers if a.code == 200 and not a.again)
    assert CallbackAudit.objects.filter(decision="accepted").count() == written
    assert written == 2 * records.count()
    # The dead master's dispatches were among them, after the replica took over too.
    assert any(master == victim for master in masters.values())
