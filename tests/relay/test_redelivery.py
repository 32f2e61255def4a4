import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from relay import redis_keys
from relay.models import Delivery, Dispatch
from relay.redelivery import missed_deliveries, redeliver_missed
from tests.relay.support import PARTICIPANTS, post_webhook, webhook_payload
from tests.waiting import wait_until

PR = webhook_payload("pull_request.opened")


@pytest.mark.django_db
def test_only_failed_unrecorded_recent_dispatched_deliveries_count_as_missed(
    client, github, downstream
):
    old = datetime.now(UTC) - timedelta(days=4)
    github.log_delivery("too-old", "push", None, 0, delivered_at=old)  # the list is newest first
    github.log_delivery("missed", "pull_request", "opened", 502)
    github.log_delivery("repaired", "pull_request", "opened", 500)
    github.log_delivery("repaired", "pull_request", "opened", 200, redelivery=True)
    github.log_delivery("not-ours", "issues", "opened", 500)
    github.log_delivery("ignored-action", "pull_request", "converted_to_draft", 500)
    github.log_delivery("recorded", "push", None, 504)
    post_webhook(client, "push", webhook_payload("push.1"), delivery="recorded")
    # The newest 150 are fine; the missed one is on the second page.
    for n in range(150):
        github.log_delivery(f"ok-{n}", "pull_request", "synchronize", 200)

    missed = missed_deliveries()

    assert [m.guid for m in missed] == ["missed"]
    assert len(github.calls_to("deliveries")) == 2


@pytest.mark.django_db
def test_a_lost_label_or_re_run_delivery_is_missed_too(github, downstream):
    github.log_delivery("lost-label", "pull_request", "labeled", 502)
    github.log_delivery("lost-rerun", "check_run", "rerequested", 502)
    github.log_delivery("lost-button", "check_run", "requested_action", 0)
    github.log_delivery("lost-suite", "check_suite", "rerequested", 503)
    github.log_delivery("not-handled", "check_run", "completed", 500)

    missed = missed_deliveries()

    assert sorted(m.guid for m in missed) == [
        "lost-button",
        "lost-label",
        "lost-rerun",
        "lost-suite",
    ]


@pytest.mark.django_db
def test_a_missed_delivery_is_not_asked_for_again_at_once(github, downstream):
    github.log_delivery("missed", "pull_request", "opened", 502)
    out = io.StringIO()

    call_command("redeliver_missed", stdout=out)
    assert redeliver_missed() == []

    assert "asked for missed" in out.getvalue()
    assert len(github.calls_to("redeliver")) == 1


@pytest.mark.django_db
def test_a_redelivery_github_failed_to_take_is_asked_for_again_at_the_next_check(
    github, downstream
):
    """(The hour between two asks starts when GitHub took one: chaos found the marker set
    before a request that failed, and the webhook lost for that hour.)"""
    github.log_delivery("missed", "pull_request", "opened", 502)
    github.fail("redeliver", "5xx", times=1)

    with pytest.raises(Exception, match="502"):
        redeliver_missed()
    again = redeliver_missed()

    assert again == ["missed"]
    assert [c.status for c in github.calls_to("redeliver")] == [502, 202]


@pytest.mark.django_db
def test_after_a_complete_check_the_next_reads_only_what_is_new(github, downstream):
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    github.log_delivery("missed", "pull_request", "opened", 502, delivered_at=an_hour_ago)
    for n in range(150):
        github.log_delivery(f"ok-{n}", "pull_request", "synchronize", 200, delivered_at=an_hour_ago)

    first = redeliver_missed()
    github.log_delivery("missed-later", "pull_request", "opened", 502)
    second = redeliver_missed()

    assert (first, second) == (["missed"], ["missed-later"])
    assert len(github.calls_to("deliveries")) == 3  # two pages, then one
    assert len(github.calls_to("redeliver")) == 2


@pytest.mark.django_db(transaction=True)
def test_a_webhook_our_server_never_got_is_redelivered_and_dispatched(
    live_server, github, downstream, settings
):
    settings.ALLOWED_HOSTS = ["*"]
    github.webhook_url = f"{live_server.url}/github/webhook"
    body = json.dumps(PR).encode()
    github.log_delivery(
        "lost-guid",
        "pull_request",
        "opened",
        0,
        sent=(github.webhook_url, github.webhook_secret, "pull_request", body),
    )

    assert redeliver_missed() == ["lost-guid"]

    def answered() -> bool:  # the simulator logs the redelivery once our answer is back
        return github.hook_deliveries[0]["redelivery"] and Dispatch.objects.count() == 4

    wait_until(answered, timeout=10)
    assert Delivery.objects.get().delivery_id == "lost-guid"
    assert sorted(c.repo for c in github.dispatches()) == PARTICIPANTS
    assert github.hook_deliveries[0]["guid"] == "lost-guid"
    assert github.hook_deliveries[0]["status_code"] == 200
    assert github.hook_deliveries[0]["redelivery"] is True


@pytest.mark.django_db
def test_a_page_of_deliveries_github_fails_once_is_read_again(github, downstream):
    github.log_delivery("missed", "pull_request", "opened", 502)
    github.fail("deliveries", "5xx", times=1)

    assert [m.guid for m in missed_deliveries()] == ["missed"]
    assert [c.status for c in github.calls_to("deliveries")] == [502, 200]


@pytest.mark.django_db
@pytest.mark.redis_cluster
def test_a_redelivery_that_failed_too_is_asked_for_again_ever_less_often(
    github, downstream, redis_server
):
    """(Chaos found a redelivery that reached the relay while it restarted, and the webhook lost
    for the hour the marker lived.)"""
    github.log_delivery("missed", "pull_request", "opened", 502)
    shared = redis_server.client()

    assert redeliver_missed() == ["missed"]
    first_wait = shared.ttl(redis_keys.redelivery("missed"))
    shared.delete(redis_keys.redelivery("missed"))  # that wait is over; the redelivery failed
    assert redeliver_missed() == ["missed"]
    second_wait = shared.ttl(redis_keys.redelivery("missed"))

    assert 0 < first_wait <= 60
    assert 60 < second_wait <= 120
    assert len(github.calls_to("redeliver")) == 2
