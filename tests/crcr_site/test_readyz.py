"""GET /readyz: 503 for each dependency down and for an overdue or failing periodic job; the
workers' heartbeats, as a real `manage.py worker` writes and removes them."""

import signal
import subprocess
import sys
from datetime import timedelta

import pytest
import requests
from django.db import connection
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from relay.models import PeriodicJob, WorkerHeartbeat
from relay.periodic import run_due_jobs
from tests.paths import ROOT
from tests.servers import Gunicorn, PostgresServer, RedisServer, free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db


def _every_job_ran_once():
    run_due_jobs()  # the periodic jobs' first turn, as a worker's round takes it


def _problems(response):
    return response.json()["problems"]


def test_ready_when_every_dependency_answers_and_every_job_has_succeeded(client):
    _every_job_ran_once()
    WorkerHeartbeat.objects.create(
        worker_id="crcr-a", host="h", pid=1, started_at=timezone.now(), seen_at=timezone.now()
    )

    response = client.get("/readyz")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["ok"] is True
    assert body["dependencies"] == {"database": "ok", "redis": "ok", "tasks": "ok", "hud": "ok"}
    assert body["problems"] == []
    jobs = {job["name"]: job for job in body["periodic"]}
    assert jobs["dispatch_sweep"]["state"] == "ok"
    assert jobs["dispatch_sweep"]["last_success"] is not None
    assert {job["state"] for job in jobs.values()} <= {"ok", "off"}
    assert [(w["id"], w["state"]) for w in body["workers"]] == [("crcr-a", "ok")]


def test_a_periodic_job_that_has_not_succeeded_for_its_interval_and_grace_is_overdue(
    client, settings
):
    _every_job_ran_once()
    settings.CRCR_PERIODIC_GRACE = 60
    PeriodicJob.objects.filter(name="zombie_sweep").update(
        last_succeeded_at=timezone.now() - timedelta(seconds=60 + 60 + 5)  # every 60 s
    )

    response = client.get("/readyz")

    assert response.status_code == 503
    assert "periodic job zombie_sweep overdue (every 60 s)" in _problems(response)
    jobs = {job["name"]: job for job in response.json()["periodic"]}
    assert jobs["zombie_sweep"]["state"] == "overdue"
    assert jobs["dispatch_sweep"]["state"] == "ok"


def test_a_periodic_job_failing_on_every_run_is_never_ready(client, settings, tmp_path):
    settings.CRCR_ALLOWLIST = str(tmp_path / "missing.yml")  # the sync fails on every run
    _every_job_ran_once()

    response = client.get("/readyz")

    assert response.status_code == 503
    assert "periodic job allowlist_sync has never succeeded" in _problems(response)
    sync = next(job for job in response.json()["periodic"] if job["name"] == "allowlist_sync")
    assert sync["state"] == "never"
    assert sync["last_error"]  # what it raised, for whoever looks


def test_a_stale_heartbeat_is_reported_and_only_the_jobs_decide(client, settings):
    _every_job_ran_once()
    settings.CRCR_WORKER_STALE = 60
    long_ago = timezone.now() - timedelta(minutes=5)
    WorkerHeartbeat.objects.create(
        worker_id="crcr-gone", host="h", pid=2, started_at=long_ago, seen_at=long_ago
    )

    response = client.get("/readyz")

    assert response.status_code == 200  # the jobs ran; a killed worker alone is not unready
    assert [w["state"] for w in response.json()["workers"]] == ["stale"]
    assert "no worker heartbeat" in _problems(response)


@pytest.mark.django_db(transaction=True)  # the worker commits its rows: flushed after
def test_a_running_worker_beats_and_removes_its_heartbeat_when_stopped(client, child_env):
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "worker", "--interval", "0.2"], cwd=ROOT, env=child_env
    )
    try:
        wait_until(lambda: WorkerHeartbeat.objects.exists(), timeout=30)
        (beat,) = client.get("/readyz").json()["workers"]
        assert beat["pid"] == worker.pid
        assert beat["state"] == "ok"
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert not WorkerHeartbeat.objects.exists()


def test_redis_down_is_503(client, settings):
    _every_job_ran_once()
    own = RedisServer().start()
    settings.REDIS_URL = own.url
    own.stop()

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["dependencies"]["redis"] == "unavailable: ConnectionError"
    assert response.json()["dependencies"]["database"] == "ok"


def test_the_hud_store_down_is_503(client, settings):
    _every_job_ran_once()
    settings.HUD_BACKEND = "clickhouse"
    settings.HUD_STORE = "hud.storage.clickhouse.store.ClickHouseRecordStore"
    settings.HUD_CLICKHOUSE_URL = f"http://127.0.0.1:{free_port()}/"  # nothing listens

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["dependencies"]["hud"] == "unavailable: StoreUnavailable"
    assert "hud unavailable: StoreUnavailable" in _problems(response)


def test_the_task_backend_unreadable_is_503_and_the_other_checks_still_run(client):
    _every_job_ran_once()
    table = DBTaskResult._meta.db_table
    with connection.cursor() as cursor:  # undone with the test's transaction
        cursor.execute(f"ALTER TABLE {table} RENAME TO gone")

    response = client.get("/readyz")

    assert response.status_code == 503
    parts = response.json()["dependencies"]
    assert parts["tasks"] == "unavailable: ProgrammingError"
    assert parts["database"] == parts["redis"] == parts["hud"] == "ok"
    assert response.json()["periodic"]  # read after the failed check: its savepoint held


@pytest.mark.django_db(transaction=True)
def test_the_database_down_is_503_from_a_served_relay(child_env, tmp_path):
    cluster = PostgresServer(tmp_path / "postgres").start()
    env = child_env | {"DATABASE_URL": cluster.url, "DJANGO_ALLOWED_HOSTS": "127.0.0.1"}
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True
        )
        server = Gunicorn(env).wait_ready()
        try:
            cluster.stop()
            response = requests.get(f"{server.url}/readyz", timeout=10)
        finally:
            server.stop()
    finally:
        cluster.destroy()

    assert response.status_code == 503
    body = response.json()
    assert body["dependencies"]["database"] == "unavailable: OperationalError"
    assert body["dependencies"]["redis"] == "ok"
    assert body["periodic"] == []  # not read: the database is the one that is down
