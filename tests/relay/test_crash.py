"""A relay process killed in the middle of a fan-out loses nothing (contract: at least once;
exactly once for every dispatch whose answer was recorded)."""

import collections
import subprocess
import threading

import pytest

from allowlist.models import DownstreamRepo
from relay.models import Dispatch
from tests.paths import PYTHON, ROOT
from tests.relay.support import APP_ID, SECRET, webhook_payload
from tests.servers import Gunicorn
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

REPOS = [f"owner-{n}/backend" for n in range(12)]


def test_a_server_killed_mid_fanout_loses_nothing_and_the_worker_finishes_it(
    github, child_env, tmp_path
):
    for repo in REPOS:
        DownstreamRepo.objects.create(repo=repo, level="L2")
    key_file = tmp_path / "app.pem"
    key_file.write_text(github.private_key)
    env = child_env | {
        "GITHUB_API_URL": github.url,
        "GITHUB_APP_ID": APP_ID,
        "GITHUB_APP_PRIVATE_KEY_FILE": str(key_file),
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "GITHUB_TIMEOUT": "0.3",
        "CRCR_DISPATCH_LEASE": "4",
        "CRCR_RETRY_FIRST": "0.2",
        "CRCR_FANOUT_THREADS": "3",
        "CRCR_FANOUT_DEADLINE": "30",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "CRCR_ALLOWLIST_SYNC_INTERVAL": "0",
    }
    github.latency = 0.15  # three calls a repo, three repos at a time: about 2 s in all
    server = Gunicorn(env)
    try:
        server.wait_ready()
        url = f"{server.url}/github/webhook"
        threading.Thread(
            target=github.send_webhook,
            args=("pull_request", webhook_payload("pull_request.opened")),
            kwargs={"url": url, "secret": SECRET, "guid": "g-kill"},
            daemon=True,
        ).start()
        wait_until(lambda: Dispatch.objects.filter(status="sent").count() >= 3, timeout=20)
    finally:
        server.kill()
    sent_before_kill = set(
        Dispatch.objects.filter(status="sent").values_list("repo_key", flat=True)
    )
    assert 3 <= len(sent_before_kill) < len(REPOS)

    worker = subprocess.Popen(
        [PYTHON, "manage.py", "worker", "--interval", "0.2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: Dispatch.objects.filter(status="sent").count() == len(REPOS), timeout=60)
    finally:
        worker.terminate()
        worker.wait(timeout=10)

    arrived = collections.Counter(call.repo for call in github.dispatches())
    assert set(arrived) == set(REPOS)
    assert all(arrived[repo] == 1 for repo in sent_before_kill)
