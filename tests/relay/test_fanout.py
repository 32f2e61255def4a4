"""Fan-out against the simulated GitHub, real PostgreSQL and the run's own Redis.

These tests commit (transaction=True): the fan-out's threads use their own connections.
"""

import json
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from hud.models import UpstreamCommit
from relay import dispatch_payload, dispatch_token, fanout, redis_keys, sending, tasks
from relay.github import GitHubApp
from relay.models import Delivery, Dispatch
from tests.relay.support import PARTICIPANTS, post_webhook, webhook_payload
from tests.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis_cluster]

PR = webhook_payload("pull_request.opened")


def statuses() -> dict[str, str]:
    return dict(Dispatch.objects.values_list("repo_key", "status"))


def run_worker_when_due(timeout: float = 10) -> None:
    """Run worker rounds until nothing is pending any more."""

    def worker_round_leaves_nothing_pending() -> bool:
        call_command("worker", "--once")
        return not Dispatch.objects.filter(status="pending").exists()

    wait_until(worker_round_leaves_nothing_pending, timeout=timeout, interval=0.1)


def test_a_pr_is_dispatched_once_to_every_participating_repo(client, github, downstream):
    response = post_webhook(client, "pull_request", PR, delivery="guid-1")

    assert response.status_code == 200
    body = response.json()
    assert [d["repo"].casefold() for d in body["dispatched"]] == PARTICIPANTS
    assert (body["failed"], body["queued"], body["skipped"]) == ([], [], [])
    assert sorted(c.repo for c in github.dispatches()) == PARTICIPANTS  # not the nightly-only one
    assert set(statuses().values()) == {"sent"}


def test_the_dispatch_body_is_the_contracts(client, github, downstream):
    post_webhook(client, "pull_request", PR, delivery="guid-1")

    body = github.dispatches("org-b/l3")[0].body
    assert body["event_type"] == "pull_request"
    client_payload = body["client_payload"]
    assert sorted(client_payload) == ["crcr", "delivery_id", "event_type", "payload"]
    assert client_payload["delivery_id"] == "guid-1"
    assert client_payload["payload"] == PR  # verbatim
    assert client_payload["crcr"]["truncated"] is False
    claims = dispatch_token.verify(client_payload["crcr"]["token"])
    assert claims == dispatch_token.DispatchClaims(
        "guid-1", "org-b/l3", 2, PR["pull_request"]["head"]["sha"]
    )


def test_the_record_and_the_redis_state_exist_before_github_is_called(
    client, github, downstream, redis_server
):
    seen = []
    r = redis_server.client()

    def observe(call):
        if call.route == "dispatch":
            state = r.get(redis_keys.dispatched("guid-1", call.repo))
            row = Dispatch.objects.filter(
                repo_key=call.repo, delivery__delivery_id="guid-1"
            ).first()
            connection.close()  # this runs in the simulator's request thread
            seen.append((call.repo, json.loads(state)["state"] if state else None, row is not None))

    github.observer = observe
    post_webhook(client, "pull_request", PR, delivery="guid-1")

    assert sorted(seen) == [(repo, "DISPATCHED", True) for repo in PARTICIPANTS]
    assert r.ttl(redis_keys.dispatched("guid-1", "org-a/l1")) > 3 * 24 * 3600 - 60


def test_the_delivery_keeps_what_the_hud_shows_later(client, github, downstream):
    post_webhook(client, "pull_request", PR, delivery="guid-1")

    delivery = Delivery.objects.get()
    assert (delivery.event, delivery.action, delivery.pr_number) == ("pull_request", "opened", 2)
    assert delivery.head_sha == PR["pull_request"]["head"]["sha"]
    assert (delivery.title, delivery.author) == (
        "Update the README with new information.",
        "Codertocat",
    )
    assert json.loads(delivery.body) == PR


def test_the_upstream_repository_matches_in_any_spelling(client, github, downstream):
    response = post_webhook(
        client, "pull_request", webhook_payload("pull_request.opened", "PyTorch/PyTorch")
    )

    assert len(response.json()["dispatched"]) == 4


def test_a_push_is_dispatched_and_the_ref_filter_applies(client, github, downstream, settings):
    push = webhook_payload("push.with-new-branch")
    assert len(post_webhook(client, "push", push, delivery="p-1").json()["dispatched"]) == 4
    assert github.dispatches()[0].body["event_type"] == "push"

    settings.CRCR_PUSH_REFS = ["refs/tags/ciflow/*", "refs/heads/main"]
    ignored = post_webhook(client, "push", push, delivery="p-2")
    assert ignored.json()["ignored"] is True
    tagged = post_webhook(
        client, "push", push | {"ref": "refs/tags/ciflow/crcr/123"}, delivery="p-3"
    )
    assert len(tagged.json()["dispatched"]) == 4


def test_a_push_to_a_branch_tells_the_hud_its_commit_once(client, github, downstream):
    """The HUD's baseline (hud/baseline.py) and its nightly rows name commits from here."""
    push = webhook_payload("push.with-new-branch")  # to master, the repo's default branch
    post_webhook(client, "push", push, delivery="p-1")
    post_webhook(client, "push", push, delivery="p-1")  # a redelivery
    post_webhook(client, "push", push | {"ref": "refs/heads/dev"}, delivery="p-2")
    deleted = push | {"ref": "refs/heads/gone", "after": "0" * 40, "deleted": True}
    post_webhook(client, "push", deleted, delivery="p-3")
    post_webhook(client, "push", push | {"ref": "refs/tags/v1"}, delivery="p-4")

    commits = UpstreamCommit.objects.order_by("ref")
    assert [(c.ref, c.on_default_branch) for c in commits] == [
        ("refs/heads/dev", False),
        ("refs/heads/master", True),
    ]
    master = commits.get(ref="refs/heads/master")
    assert (master.sha, master.title, master.author) == (
        push["after"],
        "Initial commit",
        "Codertocat",
    )
    assert Delivery.objects.get(delivery_id="p-1").title == "Initial commit"


def test_shadow_mode_records_everything_and_sends_nothing(client, github, downstream, settings):
    settings.CRCR_DISPATCH_ENABLED = False

    response = post_webhook(client, "pull_request", PR)

    assert response.status_code == 200
    assert "shadow mode" in response.json()["deferred"]
    assert len(response.json()["skipped"]) == 4
    assert set(statuses().values()) == {"shadow"}
    assert github.calls == []


def test_a_redelivery_never_resends_but_repairs_what_failed(client, github, downstream):
    github.fail("installation", "not_installed", repo="org-a/l2", times=1)
    first = post_webhook(client, "pull_request", PR, delivery="guid-1").json()
    assert [f["repo"] for f in first["failed"]] == ["org-a/l2"]
    assert "not installed" in first["failed"][0]["error"]

    again = post_webhook(client, "pull_request", PR, delivery="guid-1").json()

    assert [d["repo"] for d in again["dispatched"]] == ["org-a/l2"]
    assert len(again["skipped"]) == 3
    assert {repo: len(github.dispatches(repo)) for repo in PARTICIPANTS} == dict.fromkeys(
        PARTICIPANTS, 1
    )
    assert Delivery.objects.get().times_received == 2


def test_github_down_queues_the_dispatches_and_the_worker_delivers_once_it_recovers(
    client, github, downstream
):
    github.fail("dispatch", "5xx")

    response = post_webhook(client, "pull_request", PR)

    assert response.status_code == 202
    assert len(response.json()["queued"]) == 4
    assert "HTTP 502" in response.json()["queued"][0]["reason"]
    assert set(statuses().values()) == {"pending"}
    github.heal()
    run_worker_when_due()
    assert set(statuses().values()) == {"sent"}
    assert {repo: len(github.dispatches(repo)) for repo in PARTICIPANTS} == dict.fromkeys(
        PARTICIPANTS, 1
    )


def test_the_sweep_sends_stale_dispatches_without_starting_another_task_chain(
    client, github, downstream
):
    from django_tasks_db.models import DBTaskResult

    github.fail("dispatch", "5xx")
    post_webhook(client, "pull_request", PR)  # pending, with its retry task queued
    tasks = DBTaskResult.objects.count()
    overdue = timezone.now() - fanout.SWEEP_GRACE - timedelta(seconds=1)
    Dispatch.objects.update(next_attempt_at=overdue)  # as if that task had been lost

    still_down = fanout.sweep()
    github.heal()
    Dispatch.objects.update(next_attempt_at=overdue)
    recovered = fanout.sweep()

    assert still_down == {"pending": 4}
    assert recovered == {"sent": 4}
    assert DBTaskResult.objects.count() == tasks
    assert {repo: len(github.dispatches(repo)) for repo in PARTICIPANTS} == dict.fromkeys(
        PARTICIPANTS, 1
    )


def test_a_secondary_rate_limit_waits_as_long_as_github_asks(client, github, downstream):
    github.fail("dispatch", "rate_limit", retry_after=30)

    before = timezone.now()
    post_webhook(client, "pull_request", PR)

    for row in Dispatch.objects.all():
        assert row.status == "pending"
        assert row.next_attempt_at is not None
        assert row.next_attempt_at >= before + timedelta(seconds=30)
        assert "secondary rate limit" in row.last_error


def test_a_slow_github_does_not_hold_the_answer_past_the_deadline(
    client, github, downstream, settings
):
    settings.CRCR_FANOUT_DEADLINE = 0.3
    github.latency = 1.0

    started = time.monotonic()
    response = post_webhook(client, "pull_request", PR)
    answered = time.monotonic() - started

    assert answered < 1.0
    assert response.status_code == 202
    assert len(response.json()["queued"]) == 4
    # The sends in flight finish on their own and are not sent again by the worker.
    wait_until(lambda: not Dispatch.objects.filter(status="pending").exists(), timeout=15)
    call_command("worker", "--once")
    assert set(statuses().values()) == {"sent"}
    assert len(github.dispatches()) == 4


def test_a_hanging_github_times_out_and_is_retried(client, github, downstream, settings):
    settings.GITHUB_TIMEOUT = 0.3
    github.hang_seconds = 1.0
    github.fail("dispatch", "timeout", repo="org-a/l1", times=1)

    response = post_webhook(client, "pull_request", PR)

    assert [q["repo"] for q in response.json()["queued"]] == ["org-a/l1"]
    assert "timed out" in response.json()["queued"][0]["reason"]
    run_worker_when_due()
    assert statuses()["org-a/l1"] == "sent"


def test_a_dispatch_is_given_up_as_failed_after_the_give_up_time(
    client, github, downstream, settings
):
    github.fail("dispatch", "5xx")
    post_webhook(client, "pull_request", PR)
    Dispatch.objects.update(
        pending_since=timezone.now() - timedelta(hours=25), next_attempt_at=timezone.now()
    )

    run_worker_when_due()

    assert set(statuses().values()) == {"failed"}
    assert Dispatch.objects.filter(last_error__startswith="gave up after 86400 s").count() == 4


def test_redis_down_defers_every_dispatch_and_nothing_is_lost(
    client, github, downstream, settings, own_redis
):
    own_redis.configure(settings)
    own_redis.stop()

    response = post_webhook(client, "pull_request", PR)

    assert response.status_code == 202
    assert "Redis unavailable" in response.json()["deferred"]
    assert len(response.json()["queued"]) == 4
    assert Delivery.objects.count() == 1
    assert github.calls_to("dispatch") == []

    own_redis.start()  # the same ports (a cluster: the same nodes), empty
    time.sleep(settings.CRCR_RETRY_FIRST)  # on purpose: the deferred rows are due after it
    run_worker_when_due()
    assert set(statuses().values()) == {"sent"}
    assert own_redis.client().exists(redis_keys.dispatched("d-1", "org-a/l1"))


def test_two_senders_claiming_the_same_dispatches_send_each_once(client, github, downstream):
    github.fail("dispatch", "5xx", times=4)
    post_webhook(client, "pull_request", PR)
    Dispatch.objects.update(next_attempt_at=timezone.now())
    ids = list(Dispatch.objects.values_list("pk", flat=True))
    github.latency = 0.2

    def sender() -> None:
        try:
            tasks.send_dispatches.call(ids)
        finally:
            connection.close()

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert {repo: len(github.dispatches(repo)) for repo in PARTICIPANTS} == dict.fromkeys(
        PARTICIPANTS, 1
    )


def test_github_is_reached_through_the_proxy_the_environment_names(
    client, github, downstream, monkeypatch
):
    from tests.fakes.http_proxy import HttpProxy

    proxy = HttpProxy().start()
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:  # the App client for this test's GitHub is made (and reads the environment) now
        post_webhook(client, "pull_request", PR)
    finally:
        proxy.stop()

    assert set(statuses().values()) == {"sent"}
    assert sum(url.endswith("/dispatches") for url in proxy.carried) == len(PARTICIPANTS)
    assert all(url.startswith(github.url) for url in proxy.carried)


def test_installation_tokens_are_minted_once_and_shared_through_redis(client, github, downstream):
    post_webhook(client, "pull_request", PR, delivery="guid-1")
    post_webhook(client, "pull_request", PR, delivery="guid-2")
    assert len(github.calls_to("token")) == 3  # one per installation (org-a, org-b, org-c)

    other_process = GitHubApp(
        api_url=github.url, app_id=github.app_id, private_key=github.private_key, timeout=2
    )
    other_process.dispatch("org-a/l1", {"event_type": "pull_request", "client_payload": {}})

    assert len(github.calls_to("token")) == 3
    assert len(github.calls_to("installation")) == 4


def test_a_revoked_token_is_replaced_once(client, github, downstream):
    post_webhook(client, "pull_request", PR, delivery="guid-1")
    github.revoke_tokens()

    response = post_webhook(client, "pull_request", PR, delivery="guid-2")

    assert len(response.json()["dispatched"]) == 4
    assert len(github.calls_to("token")) == 6


def test_a_reinstalled_app_is_found_again_after_one_404(client, github, downstream):
    post_webhook(client, "pull_request", PR, delivery="guid-1")
    github.reinstall("org-b")

    response = post_webhook(client, "pull_request", PR, delivery="guid-2")

    assert len(response.json()["dispatched"]) == 4
    assert len(github.dispatches("org-b/l3")) == 2


def test_an_oversized_payload_is_slimmed_keeping_what_downstream_reads(client, github, downstream):
    big = webhook_payload("pull_request.opened")
    big["pull_request"]["body"] = "x" * 200_000

    post_webhook(client, "pull_request", big)

    sent = github.dispatches("org-a/l1")[0].body["client_payload"]
    assert len(json.dumps(sent).encode()) <= dispatch_payload.MAX_BYTES
    assert sent["crcr"]["truncated"] is True
    assert sent["payload"]["pull_request"]["body"] is None
    assert sent["payload"]["pull_request"]["head"]["sha"] == big["pull_request"]["head"]["sha"]
    assert Dispatch.objects.filter(truncated=True).count() == 4


def test_the_admin_retries_failed_dispatches_now(admin_client, client, github, downstream):
    github.fail("installation", "not_installed", repo="org-a/l2", times=1)
    post_webhook(client, "pull_request", PR)
    failed = Dispatch.objects.get(status="failed")

    response = admin_client.post(
        "/admin/relay/dispatch/",
        {"action": "retry_now", "_selected_action": [failed.pk]},
        follow=True,
    )

    assert "1 dispatch(es) queued" in response.content.decode()
    run_worker_when_due()
    assert statuses()["org-a/l2"] == "sent"


def test_the_admin_lists_deliveries_and_dispatches(admin_client, client, github, downstream):
    post_webhook(client, "pull_request", PR)

    for path in (
        "/admin/relay/delivery/",
        "/admin/relay/dispatch/?status__exact=sent",
        f"/admin/relay/delivery/{Delivery.objects.get().pk}/change/",
    ):
        response = admin_client.get(path)
        assert response.status_code == 200
        assert "org-b/l3" in response.content.decode() or "d-1" in response.content.decode()


def test_every_sending_slot_is_given_back_whatever_happened(client, github, downstream, settings):
    settings.GITHUB_TIMEOUT = 0.3
    github.hang_seconds = 0.6
    github.fail("dispatch", "timeout", repo="org-a/l1", times=1)
    github.fail("dispatch", "5xx", repo="org-a/l2", times=1)
    github.fail("installation", "not_installed", repo="org-b/l3", times=1)

    post_webhook(client, "pull_request", PR)

    free = sending.take_slots(settings.CRCR_FANOUT_THREADS + 1, block=0)
    sending.give_back_slots(free)
    assert free == settings.CRCR_FANOUT_THREADS


def test_a_sender_that_lost_its_lease_does_not_overwrite_the_new_senders_record(
    client, github, downstream, settings
):
    settings.CRCR_DISPATCH_ENABLED = False  # record only; this test drives the sends itself
    post_webhook(client, "pull_request", PR)
    Dispatch.objects.update(status="pending", next_attempt_at=timezone.now())
    first = sending.claim(Q(repo_key="org-a/l1"), 1)[0]
    Dispatch.objects.filter(pk=first.pk).update(lease_until=timezone.now())  # it expired
    second = sending.claim(Q(repo_key="org-a/l1"), 1)[0]

    sending.record_outcomes([(second, sending.Outcome("sent"))])
    sending.record_outcomes([(first, sending.Outcome("pending", "late timeout"))])

    assert Dispatch.objects.get(pk=first.pk).status == "sent"


def test_retry_now_leaves_dispatches_being_sent_alone(
    admin_client, client, github, downstream, settings
):
    settings.CRCR_DISPATCH_ENABLED = False
    post_webhook(client, "pull_request", PR)
    Dispatch.objects.update(status="pending", next_attempt_at=timezone.now())
    busy = sending.claim(Q(repo_key="org-a/l1"), 1)[0]

    admin_client.post(
        "/admin/relay/dispatch/", {"action": "retry_now", "_selected_action": [busy.pk]}
    )

    assert Dispatch.objects.get(pk=busy.pk).lease_owner == busy.lease_owner
    assert Dispatch.objects.get(pk=busy.pk).lease_until is not None
