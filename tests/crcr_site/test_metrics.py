"""GET /metrics: every family there and moving after a webhook, a dispatch, callbacks and
refusals, the same whichever of several gunicorn workers answers (multiprocess mode); and who
may read it."""

import re

import pytest
import requests

from sandbox.downstream import reporter_body
from sandbox.oidc import SimulatedIssuer
from tests.stack import relay_stack, send_callback, trusting, upstream_event

REPO = "org/alpha"
FAMILIES = (
    "crcr_webhooks_total",
    "crcr_dispatches_total",
    "crcr_webhook_to_dispatch_seconds_count",
    "crcr_callbacks_total",
    "crcr_oidc_failures_total",
    "crcr_rate_limited_total",
    "crcr_github_calls_total",
    "crcr_github_rate_limit_remaining",
    "crcr_outbox_depth",
    "crcr_outbox_oldest_seconds",
    "crcr_zombie_sweep_jobs_total",
    "crcr_hud_page_seconds_count",
    "crcr_hud_store_up",
)


def samples(text: str) -> dict[str, float]:
    """`name{labels}` → value, from the exposition format."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            found[key] = float(value)
    return found


def total(found: dict[str, float], family: str, **labels: str) -> float:
    wanted = [f'{name}="{value}"' for name, value in labels.items()]
    return sum(
        value
        for key, value in found.items()
        if re.match(rf"{family}(\{{|$)", key) and all(w in key for w in wanted)
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    issuer = SimulatedIssuer("github").start()
    multiproc = tmp_path_factory.mktemp("prometheus")
    extra = trusting(issuer) | {
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "CRCR_RATE_LIMIT_PER_MIN": "3",  # the fourth callback of a minute is refused
    }
    try:
        with relay_stack(workers=3, extra_env=extra) as running:
            running.set_allowlist([REPO])
            yield running, issuer
    finally:
        issuer.stop()


def scrape(url: str) -> dict[str, float]:
    response = requests.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return samples(response.text)


def test_every_family_is_there_and_moves_under_several_workers(stack):
    running, issuer = stack
    url = running.server.url
    before = scrape(url)

    answered = running.send_event(upstream_event(), "metrics-1")
    assert answered is not None
    assert answered.status_code == 200
    payload = running.client_payloads("metrics-1")[REPO]
    codes = [
        send_callback(url, issuer, REPO, reporter_body(payload, "in_progress", job=f"j{n}"))
        for n in range(4)
    ]
    bad = requests.post(f"{url}/github/callback", json={}, timeout=10,
                        headers={"Authorization": "Bearer not-a-token"})  # fmt: skip
    requests.get(f"{url}/crcr", timeout=10)

    assert [c.status_code for c in codes] == [200, 200, 200, 429]
    assert bad.status_code == 401
    # Each scrape may be answered by another worker: all agree, and every family is there.
    scrapes = [scrape(url) for _ in range(6)]
    assert all(s == scrapes[0] or _only_gauges_differ(s, scrapes[0]) for s in scrapes)
    after = scrapes[0]
    for family in FAMILIES:
        assert any(re.match(rf"{family}(\{{|$)", key) for key in after), family

    def moved(family: str, **labels: str) -> float:
        return total(after, family, **labels) - total(before, family, **labels)

    assert moved("crcr_webhooks_total", event="pull_request", outcome="dispatched") == 1
    assert moved("crcr_dispatches_total", outcome="sent", attempt="1") == 1
    assert moved("crcr_webhook_to_dispatch_seconds_count") == 1
    assert moved("crcr_callbacks_total", outcome="accepted", reason="recorded:in_progress") == 3
    assert moved("crcr_callbacks_total", outcome="refused", reason="rate_limited") == 1
    assert moved("crcr_rate_limited_total", scope="rate_limited") == 1
    assert moved("crcr_oidc_failures_total") == 1
    assert moved("crcr_github_calls_total", endpoint="POST /repos/{owner}/{repo}/dispatches",
                 status="204") == 1  # fmt: skip
    assert total(after, "crcr_github_rate_limit_remaining") > 0
    assert moved("crcr_hud_page_seconds_count", page="index") == 1
    assert total(after, "crcr_outbox_depth", outbox="dispatches") == 0


def _only_gauges_differ(one: dict[str, float], other: dict[str, float]) -> bool:
    """Outbox ages grow between two scrapes; everything else is the same."""
    keys = set(one) | set(other)
    return all(one.get(k) == other.get(k) for k in keys if "outbox_oldest" not in k)


@pytest.mark.django_db
def test_only_loopback_or_the_token_may_read(settings, client):
    settings.CRCR_METRICS_TOKEN = "s3cret"
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    allowed = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret")
    assert allowed.status_code == 200
    settings.CRCR_METRICS_TOKEN = ""
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.9").json()["error"] == "forbidden"
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    settings.CRCR_METRICS = False
    assert client.get("/metrics").status_code == 404


@pytest.mark.django_db(transaction=True)  # the worker commits its rows: flushed after
def test_a_worker_serves_its_own_metrics_without_the_web_s(child_env):
    import signal
    import subprocess
    import sys

    from tests.paths import ROOT
    from tests.servers import free_port
    from tests.waiting import wait_until

    port = free_port()
    env = {k: v for k, v in child_env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env |= {"CRCR_WORKER_METRICS_PORT": str(port)}
    worker = subprocess.Popen([sys.executable, "manage.py", "worker", "--interval", "0.2"],
                              cwd=ROOT, env=env)  # fmt: skip
    try:

        def scraped() -> str | None:
            try:
                return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except requests.RequestException:
                return None

        text = wait_until(scraped, timeout=30) or ""
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert "# TYPE crcr_dispatches_total counter" in text
    assert "crcr_zombie_sweep_jobs_total" in text
    assert "crcr_outbox_depth" not in text  # the web's, read from the database once


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "page"),
    [("/api/crcr/summary", "api_summary"), ("/api/crcr/prs", "api_prs"),
     ("/api/crcr/metrics", "api_metrics"), ("/api/crcr/prs/7", "api_pr"),
     ("/api/crcr/repos/org/none", "api_repo")],
)  # fmt: skip
def test_the_json_api_is_timed_as_the_pages_are(client, path, page):
    from prometheus_client import REGISTRY

    def count() -> float:
        found = REGISTRY.get_sample_value("crcr_hud_page_seconds_count", {"page": page})
        return found or 0.0

    before = count()
    answered = client.get(path)

    assert answered.status_code in (200, 404)  # a repo that never reported: 404, timed too
    assert count() == before + 1
