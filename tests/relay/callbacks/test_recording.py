"""Accepted callbacks and their records: the HUD row, the outbox, the allowlist they were
decided on (relay/callbacks/write.py, flow.py)."""

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hud.models import HudOutbox, JobRecord
from relay import redis_keys
from relay.models import CallbackAudit, ReplayKey
from tests.relay.callbacks.support import PR, accepted, change_elsewhere, token_for
from tests.relay.support import post_callback, post_webhook, reporter_body, webhook_payload

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis_cluster]


def test_a_job_reports_in_progress_then_completed_and_the_hud_has_it(client, actions, dispatched):
    started = post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    time.sleep(0.05)  # a measurable execution time (asserted below), not a wait for anything
    done = post_callback(
        client, reporter_body(dispatched, "completed", conclusion="success"), token_for(actions)
    )

    assert started.status_code == 200
    assert started.json() == {"ok": True, "status": "in_progress"}
    assert done.json() == {"ok": True, "status": "completed"}
    record = JobRecord.objects.get()
    assert (
        record.downstream_repo,
        record.delivery_id,
        record.workflow_name,
        record.job_name,
        record.check_run_id,
    ) == ("org-b/l3", "guid-1", "CI", "build", "99887766")
    assert (record.status, record.conclusion, record.level) == ("completed", "success", "L3")
    assert (record.pr_number, record.head_sha) == (2, PR["pull_request"]["head"]["sha"])
    assert record.queue_time is not None
    assert 0 <= record.queue_time < 5  # the relay's clock, from dispatch to in_progress
    assert record.execution_time is not None
    assert record.execution_time >= 0.05
    assert record.started_at is not None  # the completed call's null erased nothing
    assert list(CallbackAudit.objects.values_list("decision", flat=True)) == ["accepted"] * 2


def test_an_accepted_callback_is_on_the_hud_and_its_api_in_the_next_request(
    client, actions, dispatched
):
    post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    running = client.get("/crcr/org-b/l3").content.decode()
    api = client.get("/api/crcr/repos/org-b/l3").json()

    post_callback(
        client, reporter_body(dispatched, "completed", conclusion="success"), token_for(actions)
    )
    done = client.get("/api/crcr/repos/org-b/l3").json()

    assert '◔</span> <span class="words">running' in running
    (row,) = api["matrix"]["rows"]
    assert (row["pr_number"], row["cells"]["build"]["status"]) == (2, "in_progress")
    assert done["matrix"]["rows"][0]["cells"]["build"]["conclusion"] == "success"
    assert done["summary"]["counts"]["successes"] == 1


def test_a_callback_goes_through_the_outbox_and_shows_in_the_next_request(
    on_chdb, client, github, downstream, actions
):
    post_webhook(client, "pull_request", webhook_payload("pull_request.opened"), delivery="g-1")
    payload = github.dispatches("org-b/l3")[0].body["client_payload"]

    answer = post_callback(
        client, reporter_body(payload, "in_progress"), actions.mint(repo="org-b/l3")
    )
    queued = HudOutbox.objects.count()
    api = client.get("/api/crcr/repos/org-b/l3").json()

    assert answer.status_code == 200
    assert (queued, JobRecord.objects.count()) == (1, 0)  # not in the ORM's table
    assert api["matrix"]["rows"][0]["cells"]["build"]["status"] == "in_progress"
    assert HudOutbox.objects.count() == 0  # drained into ClickHouse

    post_callback(
        client,
        reporter_body(payload, "completed", conclusion="success"),
        token_for(actions),
    )
    cell = client.get("/api/crcr/repos/org-b/l3").json()["matrix"]["rows"][0]["cells"]["build"]
    assert (cell["conclusion"], cell["queue_time"] is not None) == ("success", True)  # kept


def test_the_record_names_our_dispatch_not_what_the_body_claims(client, actions, dispatched):
    forged = dispatched | {
        "payload": {
            "pull_request": {"number": 999, "head": {"sha": "f" * 40}},
            "repository": {"full_name": "evil/fork"},
        },
        "trusted": {"verified_repo": "pytorch/pytorch", "downstream_repo_level": "L4"},
    }

    post_callback(client, reporter_body(forged, "in_progress"), token_for(actions))

    record = JobRecord.objects.get()
    assert (record.pr_number, record.upstream_repo, record.level) == (2, "pytorch/pytorch", "L3")
    assert record.head_sha == PR["pull_request"]["head"]["sha"]


def test_an_accepted_callback_is_one_write_once_the_allowlist_has_been_read(
    client, actions, dispatched
):
    """The common case reads nothing first: the allowlist this process read last decides, the
    dispatch's facts come with its DISPATCHED state, and the write is conditional on that
    allowlist still being the committed one."""
    accepted(client, actions, dispatched, "warm")
    forged = dispatched | {"payload": {"pull_request": {"number": 999, "head": {"sha": "f" * 40}}}}

    with CaptureQueriesContext(connection) as queries:
        response = post_callback(client, reporter_body(forged, "in_progress"), token_for(actions))

    assert response.status_code == 200
    [write] = [query["sql"] for query in queries.captured_queries]
    assert "WITH w0 AS (INSERT INTO" in write
    assert "allowlist_generation" in write
    record = JobRecord.objects.get(job_name="build")
    assert (record.pr_number, record.upstream_repo, record.level) == (2, "pytorch/pytorch", "L3")
    assert record.head_sha == PR["pull_request"]["head"]["sha"]


def test_a_callback_decided_on_an_older_allowlist_is_decided_again(
    client, actions, dispatched, redis_server
):
    accepted(client, actions, dispatched, "warm")
    change_elsewhere("org-b/l3", "L1")
    body = reporter_body(dispatched, "in_progress", job="late", check_run_id="late")

    response = post_callback(client, body, token_for(actions))

    assert response.json() == {"ok": True, "status": "ignored"}
    assert not JobRecord.objects.filter(job_name="late").exists()
    job = redis_keys.job("guid-1", "org-b/l3", "1111", 1, "late")
    assert not redis_server.client().exists(job)  # the transition was undone
    assert CallbackAudit.objects.filter(decision="ignored").count() == 1


def test_a_record_carries_the_level_of_the_allowlist_it_was_written_under(
    client, actions, dispatched
):
    accepted(client, actions, dispatched, "warm")
    change_elsewhere("org-b/l3", "L4")

    accepted(client, actions, dispatched, "after")

    assert JobRecord.objects.get(job_name="after").level == "L4"
    assert JobRecord.objects.get(job_name="warm").level == "L3"


def test_callbacks_during_an_allowlist_change_keep_their_order(client, actions, dispatched):
    """A transition decided on the older allowlist is written under the newer one, not undone
    and made again (which could let a job's completed overtake its in_progress)."""
    accepted(client, actions, dispatched, "warm")
    change_elsewhere("org-b/l3", "L4")

    started = post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    change_elsewhere("org-b/l3", "L3")
    done = reporter_body(dispatched, "completed", conclusion="success")
    finished = post_callback(client, done, token_for(actions))

    assert (started.status_code, finished.status_code) == (200, 200)
    record = JobRecord.objects.get(job_name="build")
    assert (record.status, record.level) == ("completed", "L3")


def test_nightly_results_are_written_once(client, actions, downstream):
    body = {
        "event_type": "nightly",
        "delivery_id": "a" * 40,
        "payload": {"repository": {"full_name": "pytorch/pytorch"}, "head_sha": "a" * 40},
    }

    first = post_callback(
        client, reporter_body(body, "completed", conclusion="success"), token_for(actions)
    )
    again = post_callback(
        client, reporter_body(body, "completed", conclusion="success"), token_for(actions)
    )
    running = post_callback(client, reporter_body(body, "in_progress"), token_for(actions))

    assert first.json() == {"ok": True, "status": "completed"}
    assert again.json() == {"ok": True, "status": "completed", "already_recorded": True}
    assert running.status_code == 400
    record = JobRecord.objects.get()
    assert (record.event_type, record.pr_number, record.head_sha) == ("nightly", 0, "a" * 40)


def test_used_replay_keys_are_pruned_after_a_day(client, actions, dispatched):
    from datetime import timedelta

    from django.utils import timezone

    from relay.periodic import JOBS

    post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    ReplayKey.objects.update(used_at=timezone.now() - timedelta(days=2))

    prune = next(job for job in JOBS if job.name == "prune")
    assert prune.run() == {
        "replay_keys": 1,
        "forwarded": 0,
        "audit": 0,
        "forwards_given_up": 0,
        "dispatched": 0,
        "heartbeats": 0,
    }
    assert ReplayKey.objects.count() == 0


def test_the_admin_shows_records_and_the_audit(admin_client, client, actions, dispatched):
    post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    for conclusion in ("failure", "success"):
        body = reporter_body(dispatched, "completed", conclusion=conclusion)
        post_callback(client, body, token_for(actions))

    audit = admin_client.get("/admin/relay/callbackaudit/").content.decode()
    records = admin_client.get("/admin/hud/jobrecord/").content.decode()

    # The list's cells, not the filter sidebar (which names every choice, rows or none).
    assert '<td class="field-decision">Accepted</td>' in audit
    assert '<td class="field-reason">duplicate</td>' in audit
    assert "org-b/l3" in records
