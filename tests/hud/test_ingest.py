"""POST /api/crcr/results: envelopes from PyTorch's relay (contract section 3)."""

import json

import pytest

from hud.models import JobRecord
from tests.hud.support import PR, TOKEN, envelope, send
from tests.relay.support import webhook_payload

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _bot_token(settings):
    settings.HUD_BOT_TOKEN = TOKEN


def test_an_envelope_becomes_a_record(client):
    response = send(client, envelope(queue_time=12.5))

    assert response.status_code == 200
    assert response.json() == {"ok": True, "status": "in_progress"}
    record = JobRecord.objects.get()
    assert (record.downstream_repo, record.repo_display, record.level) == (
        "org/backend",
        "Org/Backend",
        "L2",
    )
    assert (record.pr_number, record.head_sha, record.upstream_repo) == (
        2,
        PR["pull_request"]["head"]["sha"],
        "pytorch/pytorch",
    )
    assert (record.queue_time, record.source) == (12.5, "ingest")


def test_a_later_record_changes_only_what_it_carries(client):
    send(client, envelope(queue_time=12.5))
    first = JobRecord.objects.get()

    send(
        client,
        envelope(
            "completed",
            execution_time=300.0,
            conclusion="failure",
            test_results={"passed": 10, "failed": 2, "skipped": 1},
        ),
    )

    record = JobRecord.objects.get()
    assert (record.status, record.conclusion) == ("completed", "failure")
    assert (record.queue_time, record.execution_time) == (12.5, 300.0)
    assert record.started_at == first.started_at  # the completed call's null erased nothing
    assert (record.tests_passed, record.tests_failed, record.tests_total) == (10, 2, 13)
    assert record.received_at == first.received_at


@pytest.mark.parametrize(("token", "configured"), [(None, TOKEN), ("wrong", TOKEN), ("", "")])
def test_only_the_bot_token_is_accepted(client, settings, token, configured):
    settings.HUD_BOT_TOKEN = configured

    response = send(client, envelope(), token=token)

    assert response.status_code == 401
    assert JobRecord.objects.count() == 0


def test_over_two_megabytes_is_413(client):
    response = send(client, envelope(failed_tests_detail=[{"name": "x" * 3_000_000}]))

    assert response.status_code == 413


@pytest.mark.parametrize("missing", ["job_name", "check_run_id"])
def test_a_record_without_its_key_is_400(client, missing):
    response = send(client, envelope(**{missing: None}))

    assert response.status_code == 400
    assert f"workflow.{missing}" in response.json()["detail"]
    assert JobRecord.objects.count() == 0


def test_null_metrics_and_no_level_are_accepted(client):
    body = envelope(level=None)
    body["trusted"]["ci_metrics"] = None

    assert send(client, body).status_code == 200
    assert JobRecord.objects.get().level == ""


def test_a_push_takes_its_sha_from_after_and_a_nightly_from_head_sha(client):
    push = webhook_payload("push.with-new-branch")
    send(client, envelope(payload=push, check_run_id="1"))
    send(
        client,
        envelope(
            payload={"repository": {"full_name": "pytorch/pytorch"}, "head_sha": "c" * 40},
            check_run_id="2",
        ),
    )

    shas = dict(JobRecord.objects.values_list("check_run_id", "head_sha"))
    assert shas == {"1": push["after"], "2": "c" * 40}


def test_garbage_is_400_never_500(client):
    for body in (
        b"{nope",
        b"[]",
        json.dumps({"trusted": []}).encode(),
        json.dumps({"trusted": {"verified_repo": "x"}, "untrusted": {}}).encode(),
    ):
        assert send(client, body).status_code == 400


@pytest.mark.parametrize("repo", ["org/a/b", "org name/x", "org/<x>", "/x"])
def test_a_verified_repo_that_is_not_owner_slash_name_is_refused(client, repo):
    body = envelope()
    body["trusted"]["verified_repo"] = repo

    response = send(client, body)

    assert (response.status_code, response.json()["error"]) == (400, "invalid_body")
    assert not JobRecord.objects.exists()
