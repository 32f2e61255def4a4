"""/crcr/ops: staff only; what waits, what failed and why, the lag, the budget, the workers,
the jobs and the outboxes, on one page."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from relay import budget
from relay.models import Delivery, Dispatch, WorkerHeartbeat
from relay.periodic import run_due_jobs
from tests.chromium import log_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = User.objects.create_user("ops", password="x", is_staff=True)
    client.force_login(user)
    return client


def test_only_staff_see_it(client):
    assert client.get("/crcr/ops").status_code == 302  # to the admin's login
    client.force_login(User.objects.create_user("viewer", password="x"))
    assert client.get("/crcr/ops").status_code == 302


def test_it_shows_what_waits_what_failed_and_the_lag(staff):
    now = timezone.now()
    delivery = Delivery.objects.create(delivery_id="d-ops-1", event="pull_request", pr_number=7,
                                       upstream_repo="pytorch/pytorch", body="{}")  # fmt: skip
    Dispatch.objects.create(delivery=delivery, repo="Org/Failing", repo_key="org/failing",
                            level="L2", status="failed", attempts=5,
                            last_error="HTTP 422 Unprocessable")  # fmt: skip
    Dispatch.objects.create(delivery=delivery, repo="Org/Waiting", repo_key="org/waiting",
                            level="L2", status="pending", attempts=1,
                            next_attempt_at=now)  # fmt: skip
    sent = Dispatch.objects.create(delivery=delivery, repo="Org/Sent", repo_key="org/sent",
                                   level="L2", status="sent", attempts=1)  # fmt: skip
    Dispatch.objects.filter(pk=sent.pk).update(sent_at=delivery.received_at + timedelta(seconds=2))
    WorkerHeartbeat.objects.create(worker_id="crcr-w1", host="box", pid=42, started_at=now,
                                   seen_at=now)  # fmt: skip
    run_due_jobs()
    budget.note(77, {"X-RateLimit-Remaining": "12", "X-RateLimit-Limit": "5000",
                     "X-RateLimit-Reset": "1900000000"})  # fmt: skip

    response = staff.get("/crcr/ops")

    assert response.status_code == 200
    html = response.content.decode()
    assert "HTTP 422 Unprocessable" in html
    assert "Org/Waiting" in html
    assert "p50 2s, p99 2s" in html
    assert "crcr-w1" in html
    assert "dispatch_sweep" in html
    assert '<tr class="bad"><td>77</td><td>12</td><td>5000</td>' in html  # a low budget
    page = response.context["page"]
    assert {box.name: box.depth for box in page.outboxes}["dispatches"] == 1
    assert page.deliveries[0]["failed"] == 1
    assert page.deliveries[0]["pending"] == 1


def test_an_empty_relay_shows_an_empty_page(staff):
    response = staff.get("/crcr/ops")

    assert response.status_code == 200
    assert "No deliveries yet." in response.content.decode()
    assert "Not ready:" in response.content.decode()  # no job has run yet


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)  # the served relay reads what the test wrote
@pytest.mark.parametrize("width", [1024, 1440])
def test_the_page_fits_its_width_with_long_errors(browser, server, settings, width):
    from django.contrib.auth.hashers import make_password

    # The server runs production's hashers; the tests' fast one is not among them.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    User.objects.create(username="ops", is_staff=True,
                        password=make_password("password", hasher="pbkdf2_sha256"))  # fmt: skip
    delivery = Delivery.objects.create(delivery_id="d-" + "x" * 60, event="pull_request",
                                       pr_number=7, upstream_repo="pytorch/pytorch",
                                       body="{}")  # fmt: skip
    Dispatch.objects.create(delivery=delivery, repo="Org/" + "Long" * 20, repo_key="org/long",
                            level="L2", status="failed", attempts=5,
                            last_error="HTTP 422 " + "unprocessable-entity " * 40)  # fmt: skip
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    log_in(page, server.url, "ops", "password", then="/crcr/ops")

    assert "HTTP 422" in page.content()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    context.close()
