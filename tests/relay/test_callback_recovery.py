"""What a client was told was accepted stays accepted: through a Redis that lost its data, a
reporter retrying after a timeout, and envelopes reusing a verified record's key (issue 13,
items 2-4). Real PostgreSQL and the run's own Redis."""

import json
import time

import pytest

from hud.models import JobRecord
from relay.models import CallbackAudit, ReplayKey
from tests.relay.support import post_callback, reporter_body, webhook_payload

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis_cluster]

PR = webhook_payload("pull_request.opened")


@pytest.fixture
def lose_redis(redis_server):
    """Redis restarted without persistence: every key gone."""
    return redis_server.flush


def send(client, actions, dispatched, status, conclusion=None, token=None, **workflow):
    body = reporter_body(dispatched, status, conclusion=conclusion, **workflow)
    return post_callback(client, body, token or actions.mint(repo="org-b/l3"))


def record() -> JobRecord:
    return JobRecord.objects.get()


def test_a_job_running_when_redis_lost_its_data_can_still_complete(
    client, actions, dispatched, lose_redis
):
    assert send(client, actions, dispatched, "in_progress").status_code == 200
    lose_redis()

    done = send(client, actions, dispatched, "completed", "success")

    assert (done.status_code, done.json()["status"]) == (200, "completed")
    assert (record().status, record().conclusion) == ("completed", "success")
    assert record().execution_time is not None


def test_a_job_completed_before_redis_lost_its_data_keeps_its_result(
    client, actions, dispatched, lose_redis
):
    send(client, actions, dispatched, "in_progress")
    send(client, actions, dispatched, "completed", "failure")
    lose_redis()

    again = send(client, actions, dispatched, "in_progress")
    flipped = send(client, actions, dispatched, "completed", "success")

    assert (again.status_code, again.json().get("already_recorded")) == (200, True)
    assert (flipped.status_code, flipped.json()["error"]) == (409, "duplicate")
    assert (record().status, record().conclusion) == ("completed", "failure")


def test_after_redis_lost_its_data_a_new_job_of_the_dispatch_starts_as_usual(
    client, actions, dispatched, lose_redis
):
    send(client, actions, dispatched, "in_progress")
    lose_redis()

    job = {"job": "test", "check_run_id": "cr-2"}
    other = send(client, actions, dispatched, "in_progress", **job)
    done = send(client, actions, dispatched, "completed", "success", **job)

    assert (other.status_code, done.status_code) == (200, 200)
    assert JobRecord.objects.filter(job_name="test").get().conclusion == "success"


def test_a_completed_without_any_in_progress_is_still_not_started_after_redis_loss(
    client, actions, dispatched, lose_redis
):
    lose_redis()

    early = send(client, actions, dispatched, "completed", "success")

    assert (early.status_code, early.json()["error"]) == (409, "not_started")
    assert not JobRecord.objects.exists()


@pytest.mark.parametrize("same_token", [True, False], ids=["same token", "fresh token"])
def test_a_retry_of_a_recorded_completed_is_answered_as_success_and_writes_nothing(
    client, actions, dispatched, same_token
):
    """A reporter that timed out may have been recorded; its retry is told the truth."""
    send(client, actions, dispatched, "in_progress")
    token = actions.mint(repo="org-b/l3")
    first = send(client, actions, dispatched, "completed", "failure", token=token)
    before = (record().updated_at, ReplayKey.objects.count())

    retry = send(
        client,
        actions,
        dispatched,
        "completed",
        "failure",
        token=token if same_token else None,
        completed_at="2026-12-06T10:00:00Z",  # the client's times may differ
    )

    assert first.status_code == 200
    assert retry.status_code == 200
    assert retry.json() == {"ok": True, "status": "completed", "already_recorded": True}
    assert (record().updated_at, ReplayKey.objects.count()) == before
    assert record().conclusion == "failure"
    decisions = list(CallbackAudit.objects.order_by("id").values_list("decision", "reason"))
    assert decisions[-1] == ("ignored", "already_recorded")


def test_a_retry_of_a_recorded_in_progress_is_answered_as_success(client, actions, dispatched):
    send(client, actions, dispatched, "in_progress")

    retry = send(client, actions, dispatched, "in_progress")

    assert (retry.status_code, retry.json()["already_recorded"]) == (200, True)
    assert record().status == "in_progress"


def test_another_conclusion_for_a_recorded_job_is_still_refused(client, actions, dispatched):
    token = actions.mint(repo="org-b/l3")
    send(client, actions, dispatched, "in_progress")
    send(client, actions, dispatched, "completed", "failure", token=token)

    fresh = send(client, actions, dispatched, "completed", "success")
    reused = send(client, actions, dispatched, "completed", "success", token=token)
    late_start = send(client, actions, dispatched, "in_progress")

    assert (fresh.status_code, fresh.json()["error"]) == (409, "duplicate")
    assert (reused.status_code, reused.json()["error"]) == (409, "replayed")
    assert (late_start.status_code, late_start.json().get("already_recorded")) == (200, True)
    assert record().conclusion == "failure"


def test_a_retried_nightly_result_is_answered_as_success(client, actions, downstream):
    body = reporter_body(
        {"event_type": "nightly", "delivery_id": "a" * 40}, "completed", conclusion="success"
    )
    first = post_callback(client, body, actions.mint(repo="org-a/l2"))
    retry = post_callback(client, body, actions.mint(repo="org-a/l2"))
    other = post_callback(
        client,
        body | {"workflow": body["workflow"] | {"conclusion": "failure"}},
        actions.mint(repo="org-a/l2"),
    )

    assert (first.status_code, retry.status_code) == (200, 200)
    assert retry.json()["already_recorded"] is True
    assert (other.status_code, other.json()["error"]) == (409, "duplicate")
    assert JobRecord.objects.get().conclusion == "success"


def test_an_envelope_cannot_overwrite_a_record_the_relay_verified(
    client, actions, dispatched, settings
):
    settings.HUD_BOT_TOKEN = "bot"
    send(client, actions, dispatched, "in_progress")
    send(client, actions, dispatched, "completed", "failure")
    verified = reporter_body(dispatched, "completed", conclusion="success")
    envelope = {
        "trusted": {"verified_repo": "org-b/l3", "downstream_repo_level": "L3"},
        "untrusted": {"callback_payload": verified},
    }

    answer = client.post(
        "/api/crcr/results",
        json.dumps(envelope),
        content_type="application/json",
        headers={"x-hud-internal-bot": "bot"},
    )

    assert (answer.status_code, answer.json()["error"]) == (409, "verified_record")
    assert (record().conclusion, record().source) == ("failure", "relay")


def _killed_midway(status: str) -> None:
    """What a process killed between its Redis transition and its database write leaves: the
    transition, two minutes old, and no record of it."""
    from relay import redis_keys, state

    move = state.start if status == "in_progress" else state.complete
    move(
        redis_keys.dispatched("guid-1", "org-b/l3"),
        redis_keys.job("guid-1", "org-b/l3", "1111", 1, "build"),
        now=time.time() - 120,
        tx="killed",
    )


@pytest.mark.parametrize("status", ["in_progress", "completed"])
def test_a_transition_whose_process_died_before_its_write_is_undone_when_the_job_calls_again(
    client, actions, dispatched, status
):
    if status == "completed":
        send(client, actions, dispatched, "in_progress")
    _killed_midway(status)

    again = send(client, actions, dispatched, status, "success" if status == "completed" else None)

    assert (again.status_code, again.json()) == (200, {"ok": True, "status": status})
    assert record().status == status


def test_an_in_progress_killed_before_its_write_is_recorded_once_its_job_completed(
    client, actions, dispatched
):
    """The reporter's in_progress got no answer (its process died after the transition), its
    completed was accepted over that transition: the in_progress, sent again, is recorded."""
    _killed_midway("in_progress")
    done = send(client, actions, dispatched, "completed", "success")

    retry = send(client, actions, dispatched, "in_progress")

    assert done.status_code == 200
    assert (retry.status_code, retry.json().get("already_recorded")) == (200, True)
    assert (record().status, record().conclusion) == ("completed", "success")


def test_a_recent_transition_not_yet_written_is_left_to_its_process(
    client, actions, dispatched, redis_server
):
    from relay import redis_keys, state

    state.start(
        redis_keys.dispatched("guid-1", "org-b/l3"),
        redis_keys.job("guid-1", "org-b/l3", "1111", 1, "build"),
        now=time.time(),
        tx="in-flight",
    )

    second = send(client, actions, dispatched, "in_progress")

    assert (second.status_code, second.json()["error"]) == (409, "duplicate")
