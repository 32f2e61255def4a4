"""The job's transitions in Redis, the rate limit charged with them, and what Redis lost
(relay/callbacks/moves.py)."""

import json
import time

import pytest

from hud.models import JobRecord
from relay import redis_keys
from relay.models import ReplayKey
from tests.relay.callbacks.support import PR, accepted, token_for
from tests.relay.support import post_callback, reporter_body

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis_cluster]


def test_a_dispatched_state_without_the_dispatch_facts_is_read_from_the_database(
    client, actions, dispatched, redis_server
):
    """As a relay before this one wrote it: the callback is still accepted, on our record."""
    r = redis_server.client()
    key = redis_keys.dispatched("guid-1", "org-b/l3")
    r.set(key, json.dumps({"state": "DISPATCHED", "timestamp": time.time() - 5}))

    accepted(client, actions, dispatched, "old-state")

    record = JobRecord.objects.get()
    assert (record.pr_number, record.head_sha) == (2, PR["pull_request"]["head"]["sha"])
    assert record.queue_time is not None
    assert record.queue_time >= 5


def test_a_second_completed_with_another_conclusion_is_a_duplicate(client, actions, dispatched):
    """(A repeat of what is recorded is answered as success: test_callback_recovery.py.)"""
    post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    post_callback(
        client, reporter_body(dispatched, "completed", conclusion="failure"), token_for(actions)
    )
    second = post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    third = post_callback(
        client, reporter_body(dispatched, "completed", conclusion="success"), token_for(actions)
    )

    assert (second.status_code, second.json().get("already_recorded")) == (200, True)
    assert (third.status_code, third.json()["error"]) == (409, "duplicate")
    assert JobRecord.objects.get().conclusion == "failure"


def test_a_rerun_is_a_new_attempt_and_starts_fresh(client, actions, dispatched):
    for attempt in ("1", "2"):
        token = token_for(actions, run_attempt=attempt)
        body = reporter_body(
            dispatched, "in_progress", run_attempt=attempt, check_run_id=f"cr-{attempt}"
        )
        assert post_callback(client, body, token).status_code == 200
    assert sorted(JobRecord.objects.values_list("run_attempt", flat=True)) == [1, 2]


def test_a_lost_dispatched_state_is_restored_from_the_database(
    client, actions, dispatched, redis_server
):
    r = redis_server.client()
    r.delete(redis_keys.dispatched("guid-1", "org-b/l3"))

    response = post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))

    assert response.status_code == 200
    restored = json.loads(r.get(redis_keys.dispatched("guid-1", "org-b/l3")) or "null")
    assert restored["dispatch"] == {
        "pr_number": 2,
        "head_sha": PR["pull_request"]["head"]["sha"],
        "upstream_repo": "pytorch/pytorch",
        "event": "pull_request",
    }


def test_the_rate_limit_answers_429_with_retry_after(client, actions, dispatched, settings):
    settings.CRCR_RATE_LIMIT_PER_MIN = 2
    answers = [
        post_callback(
            client,
            reporter_body(dispatched, "in_progress", check_run_id=str(n), job=f"job-{n}"),
            token_for(actions),
        ).status_code
        for n in range(3)
    ]
    last = post_callback(
        client, reporter_body(dispatched, "in_progress", job="x"), token_for(actions)
    )

    assert answers == [200, 200, 429]
    assert last.status_code == 429
    assert 1 <= int(last["Retry-After"]) <= 60
    # The refused in_progress changed nothing: job-2 has not started, and may start later.
    settings.CRCR_RATE_LIMIT_PER_MIN = 100
    job_2 = dict(check_run_id="2", job="job-2")
    early = post_callback(
        client,
        reporter_body(dispatched, "completed", conclusion="success", **job_2),
        token_for(actions),
    )
    assert (early.status_code, early.json()["error"]) == (409, "not_started")
    assert JobRecord.objects.count() == 2
    again = post_callback(
        client, reporter_body(dispatched, "in_progress", **job_2), token_for(actions)
    )
    assert again.status_code == 200


def _charges(redis_server) -> int:
    return int(redis_server.client().get(redis_keys.rate("org-b/l3")) or 0)


def test_a_callback_left_to_the_full_path_is_charged_once(
    client, actions, dispatched, settings, redis_server
):
    """A DISPATCHED state without the dispatch's facts sends an accepted callback through both
    paths: one charge, so a limit of one lets it through."""
    settings.CRCR_RATE_LIMIT_PER_MIN = 1
    key = redis_keys.dispatched("guid-1", "org-b/l3")
    redis_server.client().set(key, json.dumps({"state": "DISPATCHED", "timestamp": time.time()}))

    response = post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))

    assert response.status_code == 200
    assert _charges(redis_server) == 1


def test_callbacks_refused_before_the_rate_limit_are_not_charged(
    client, actions, dispatched, redis_server
):
    """As the full path never charged them, even when the fast path tried them first."""
    token = token_for(actions)
    accepted(client, actions, dispatched, "warm")
    assert post_callback(client, reporter_body(dispatched, "in_progress"), token).status_code == 200
    charged = _charges(redis_server)
    another_job = reporter_body(dispatched, "in_progress", job="other", check_run_id="other")
    never = reporter_body(dispatched | {"delivery_id": "never"}, "in_progress", job="n")

    replayed = post_callback(client, another_job, token)
    undispatched = post_callback(client, never, token_for(actions))

    assert (replayed.status_code, replayed.json()["error"]) == (409, "replayed")
    assert (undispatched.status_code, undispatched.json()["error"]) == (409, "no_dispatch")
    assert _charges(redis_server) == charged
    job = redis_keys.job("guid-1", "org-b/l3", "1111", 1, "other")
    assert not redis_server.client().exists(job)


def test_a_delivery_id_that_would_empty_the_hash_tag_is_no_dispatch_not_503(
    client, actions, dispatched
):
    """`crcr:{}...` would hash each key whole: on a cluster, the transition's two keys in two
    slots, a script Redis refuses. Decided after the transition (a warm process), it is 409."""
    accepted(client, actions, dispatched, "warm")
    echoed = {k: v for k, v in dispatched.items() if k != "crcr"}  # no token of another's
    never = reporter_body(echoed | {"delivery_id": "}never"}, "in_progress", job="n")

    response = post_callback(client, never, token_for(actions))

    assert (response.status_code, response.json()["error"]) == (409, "no_dispatch")


def test_a_completed_over_the_rate_limit_leaves_the_job_in_progress(
    client, actions, dispatched, settings
):
    assert (
        post_callback(
            client, reporter_body(dispatched, "in_progress"), token_for(actions)
        ).status_code
        == 200
    )
    settings.CRCR_RATE_LIMIT_PER_MIN = 1
    completed = reporter_body(dispatched, "completed", conclusion="success")

    refused = post_callback(client, completed, token_for(actions))
    settings.CRCR_RATE_LIMIT_PER_MIN = 100
    accepted = post_callback(client, completed, token_for(actions))

    assert (refused.status_code, refused.json()["error"]) == (429, "rate_limited")
    assert accepted.status_code == 200
    assert JobRecord.objects.get().status == "completed"


def test_a_rate_limit_that_fails_after_the_transition_leaves_no_trace(
    client, actions, dispatched, redis_server
):
    """The rate limit and the transition go to Redis together: when the rate script fails,
    the transition that ran beside it is undone, so the reporter's retry is not a duplicate."""
    shared = redis_server.client()
    shared.hset(redis_keys.rate("org-b/l3"), "not", "a counter")  # INCR now fails

    failed = post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    shared.delete(redis_keys.rate("org-b/l3"))
    retried = post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))

    assert failed.status_code == 503
    assert retried.status_code == 200
    assert JobRecord.objects.count() == 1


def test_a_transition_that_fails_gives_its_charge_back(client, actions, dispatched, redis_server):
    """Its reporter is told 503 and sends it again: that one is charged, the failed one not."""
    shared = redis_server.client()
    key = redis_keys.dispatched("guid-1", "org-b/l3")
    shared.delete(key)
    shared.hset(key, "not", "a state")  # the transition's GET now fails

    failed = post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    charged_for_it = _charges(redis_server)
    shared.delete(key)  # Redis lost it: the retry restores it from the database
    retried = post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))

    assert failed.status_code == 503
    assert charged_for_it == 0
    assert retried.status_code == 200
    assert _charges(redis_server) == 1
    assert JobRecord.objects.count() == 1


def test_redis_down_is_503_and_records_nothing(client, actions, dispatched, settings, own_redis):
    own_redis.configure(settings)
    own_redis.stop()

    response = post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert JobRecord.objects.count() == 0
    assert ReplayKey.objects.count() == 0


def test_a_job_in_progress_too_long_times_out_and_a_late_completed_replaces_it(
    client, actions, dispatched, settings
):
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    JobRecord.objects.update(updated_at=timezone.now() - timedelta(hours=7))

    call_command("sweep_zombies")

    record = JobRecord.objects.get()
    assert (record.status, record.conclusion) == ("completed", "timed_out")
    late = post_callback(
        client, reporter_body(dispatched, "completed", conclusion="success"), token_for(actions)
    )
    assert late.status_code == 200
    record.refresh_from_db()
    assert (record.status, record.conclusion) == ("completed", "success")


def test_on_clickhouse_a_job_in_progress_too_long_times_out_too(
    on_chdb, client, actions, dispatched, settings
):
    from relay import zombies

    post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    settings.CRCR_ZOMBIE_TIMEOUT = 0  # everything in progress is past it

    swept = zombies.sweep()

    cell = client.get("/api/crcr/repos/org-b/l3").json()["matrix"]["rows"][0]["cells"]["build"]
    assert swept == 1
    assert (cell["status"], cell["conclusion"]) == ("completed", "timed_out")
    assert JobRecord.objects.count() == 0  # it went through the ClickHouse store
