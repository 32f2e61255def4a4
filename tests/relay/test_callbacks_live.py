"""Callbacks over real HTTP to the relay under gunicorn with several workers."""

import json
import os
import subprocess
import threading
from collections import Counter

import pytest
import requests

from hud.models import JobRecord
from relay.models import CallbackAudit
from tests.paths import PYTHON, ROOT
from tests.relay.support import relay_env, reporter_body, webhook_payload
from tests.servers import Gunicorn

pytestmark = pytest.mark.django_db(transaction=True)

PR = webhook_payload("pull_request.opened")


@pytest.fixture
def relay_server(child_env, github, actions, settings, client, downstream):
    """gunicorn (4 workers x 4 threads) sharing this test's database, Redis and issuers."""
    from tests.relay.support import post_webhook

    post_webhook(client, "pull_request", PR, delivery="guid-1")
    server = Gunicorn(relay_env(child_env, github, settings), workers=4, threads=4).wait_ready()
    yield server
    server.stop()


def _at_once(url: str, body: bytes, token: str, copies: int = 100) -> Counter[str]:
    """The answers of `copies` identical callbacks sent at once: "200" (written), "200 again"
    (the same outcome already recorded: nothing written) or the status code."""
    start = threading.Barrier(copies)
    statuses: list[str] = []

    def send() -> None:
        session = requests.Session()
        start.wait()
        response = session.post(
            f"{url}/github/callback",
            data=body,
            timeout=30,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        again = response.status_code == 200 and response.json().get("already_recorded")
        statuses.append(f"{response.status_code}{' again' if again else ''}")

    threads = [threading.Thread(target=send) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Counter(statuses)


@pytest.mark.redis_cluster
def test_of_100_identical_callbacks_sent_at_once_exactly_one_wins(relay_server, github, actions):
    """Twice: first on workers that have not read the allowlist yet (the full path), then on
    workers that have (the fast path, decided on what they read last). One is written; the
    others are told it was recorded already, or (while the winner's write is not committed
    yet) that it is a duplicate."""
    client_payload = github.dispatches("org-b/l3")[0].body["client_payload"]

    for job in ("cold", "warm"):
        body = reporter_body(client_payload, "in_progress", job=job, check_run_id=job)
        statuses = _at_once(
            relay_server.url, json.dumps(body).encode(), actions.mint(repo="org-b/l3")
        )

        assert statuses["200"] == 1, (job, statuses)
        assert set(statuses) <= {"200", "200 again", "409"}, (job, statuses)
        assert sum(statuses.values()) == 100
        assert JobRecord.objects.filter(job_name=job).count() == 1
    assert CallbackAudit.objects.filter(decision="accepted").count() == 2


def test_pytorchs_reporter_works_unchanged_end_to_end(relay_server, github, actions):
    client_payload = github.dispatches("org-b/l3")[0].body["client_payload"]
    base = os.environ | {
        "CALLBACK_URL": f"{relay_server.url}/github/callback/",
        "SCHEMA_VERSION": "1",
        "WORKFLOW_NAME": "OOT CI",
        "WORKFLOW_URL": "https://github.com/org-b/l3/actions/runs/1111",
        "RUN_ID": "1111",
        "RUN_ATTEMPT": "1",
        "JOB_NAME": "test (npu, 1, 2)",
        "CLIENT_PAYLOAD": json.dumps(client_payload),
        "MAX_TIME": "10",
    }

    def report(status: str, **extra: str) -> subprocess.CompletedProcess[str]:
        env = base | {"STATUS": status, "OIDC_TOKEN": actions.mint(repo="org-b/l3")} | extra
        return subprocess.run(
            [PYTHON, str(ROOT / "tests/downstream/report_callback.py")],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    started = report("in_progress")
    finished = report(
        "completed", CONCLUSION="failure", TEST_RESULTS='{"passed": 120, "failed": 3, "skipped": 7}'
    )
    again = report("completed", CONCLUSION="success")

    assert started.returncode == 0, started.stderr
    assert finished.returncode == 0, finished.stderr
    assert again.returncode != 0  # --fail-with-body: a duplicate fails the step, as upstream
    record = JobRecord.objects.get()
    assert (record.job_name, record.check_run_id) == ("test (npu, 1, 2)", "1111-1")
    assert (record.status, record.conclusion, record.tests_total) == ("completed", "failure", 130)


def _chunked(data: bytes):
    """A body requests sends with Transfer-Encoding: chunked (a generator has no length)."""
    yield from (data[i : i + 1000] for i in range(0, len(data), 1000))


def test_chunked_bodies_are_read_as_sent(relay_server, github, actions):
    """A chunked callback, webhook and envelope mean what they say (gunicorn hands the body
    over whole); they were read as empty: a valid callback answered 400, a webhook 401."""
    from tests.relay.support import SECRET, signed_headers

    client_payload = github.dispatches("org-b/l3")[0].body["client_payload"]
    body = json.dumps(reporter_body(client_payload, "in_progress", job="chunked")).encode()
    headers = {"Authorization": f"Bearer {actions.mint(repo='org-b/l3')}"}
    hook = json.dumps(webhook_payload("pull_request.synchronize")).encode()

    json_type = {"Content-Type": "application/json"}
    signed = signed_headers(hook, "pull_request", "guid-chunked", SECRET) | json_type

    def post(path: str, data: bytes, sent: dict[str, str]) -> requests.Response:
        return requests.post(relay_server.url + path, data=_chunked(data), headers=sent, timeout=10)

    called = post("/github/callback", body, headers | json_type)
    hooked = post("/github/webhook", hook, signed)
    oversized = post("/github/callback", b"x" * 2_000_000, headers)

    assert (called.status_code, called.json()["status"]) == (200, "in_progress")
    assert hooked.status_code in (200, 202), hooked.content
    assert (oversized.status_code, oversized.json()["error"]) == (413, "too_large")
    assert JobRecord.objects.filter(job_name="chunked").exists()


@pytest.mark.parametrize("path", ["/github/callback", "/github/webhook", "/api/crcr/results"])
def test_a_chunked_body_a_server_cannot_hand_over_whole_is_411(client, settings, path):
    """Without wsgi.input_terminated (runserver, the test client) it would read as empty."""
    settings.HUD_BOT_TOKEN = "bot"
    headers = {"Transfer-Encoding": "chunked", "x-hud-internal-bot": "bot"}

    response = client.post(path, b"{}", content_type="application/json", headers=headers)

    assert (response.status_code, response.json()["error"]) == (411, "length_required")
