"""Upstream check runs against the simulated GitHub: who gets them, what they say, and that
GitHub's failures lose nothing and make nothing twice."""

from datetime import timedelta

import pytest
from django.utils import timezone

from relay import zombies
from relay.models import CheckRun
from relay.upstream_pr import check_runs
from tests.relay.support import post_callback, post_webhook, reporter_body, webhook_payload
from tests.relay.upstream_pr.support import (
    HEAD,
    L3,
    L4,
    PR,
    creates,
    report,
    sent_all,
    shown,
)
from tests.waiting import wait_until


def test_an_l4_repo_is_queued_at_dispatch_then_runs_and_concludes(signal, client, actions):
    wait_until(sent_all)
    queued = shown(signal, f"crcr/{L4}")
    assert queued is not None
    assert (queued["status"], queued["external_id"]) == ("queued", ":2")
    assert queued["output"]["title"].startswith("queued")

    report(client, actions, signal, L4, "in_progress")
    wait_until(sent_all)
    job = shown(signal, f"crcr/{L4}/CI/build")
    assert job is not None
    assert (job["status"], job["external_id"]) == ("in_progress", "1111:2")
    assert job["details_url"] == "https://github.com/org/repo/actions/runs/1111"
    assert job["head_sha"] == HEAD
    assert shown(signal, f"crcr/{L4}")["status"] == "in_progress"

    report(
        client, actions, signal, L4, "completed", conclusion="success",
        test_results={"passed": 120, "failed": 0, "skipped": 3, "total": 123},
    )  # fmt: skip
    wait_until(sent_all)
    job = shown(signal, f"crcr/{L4}/CI/build")
    assert (job["status"], job["conclusion"]) == ("completed", "success")
    assert "120 passed" in job["output"]["title"]
    assert "/crcr/pr/2" in job["output"]["summary"]
    aggregate = shown(signal, f"crcr/{L4}")
    assert (aggregate["status"], aggregate["conclusion"]) == ("completed", "success")
    assert len(creates(signal)) == 2  # one per check run, updated in place since
    tokens = {c.headers["authorization"] for c in signal.calls_to("check_run")}
    assert all(t.startswith("Bearer ghs_") for t in tokens), tokens


@pytest.mark.parametrize(
    ("conclusions", "expected"),
    [
        (["success", "failure"], "failure"),
        (["success", "cancelled"], "success"),
        (["cancelled", "timed_out"], "neutral"),
    ],
)
def test_the_aggregate_concludes_from_its_jobs(signal, client, actions, conclusions, expected):
    for n, conclusion in enumerate(conclusions):
        report(client, actions, signal, L4, "in_progress", job=f"job-{n}")
        report(client, actions, signal, L4, "completed", job=f"job-{n}", conclusion=conclusion)

    wait_until(sent_all)

    assert shown(signal, f"crcr/{L4}")["conclusion"] == expected


def test_timed_out_jobs_block_when_set(signal, client, actions, settings):
    settings.CRCR_TIMED_OUT_BLOCKS = True
    report(client, actions, signal, L4, "in_progress")
    report(client, actions, signal, L4, "completed", conclusion="timed_out")

    wait_until(sent_all)

    assert shown(signal, f"crcr/{L4}")["conclusion"] == "failure"


def test_l2_and_nightly_repos_get_none_and_l3_waits_for_its_label(signal, client, actions):
    report(client, actions, signal, "org-a/l2", "in_progress")
    report(client, actions, signal, L3, "in_progress")

    wait_until(sent_all)

    names = {run["name"] for run in signal.check_runs()}
    assert names == {f"crcr/{L4}"}
    assert CheckRun.objects.get(repo=L3).status == CheckRun.Status.HELD


def labeled(client, *devices: str, delivery: str = "label-1"):
    payload = webhook_payload("pull_request.labeled")
    payload["number"] = payload["pull_request"]["number"] = PR["number"]
    payload["pull_request"]["head"]["sha"] = HEAD
    payload["label"] = {"name": f"ciflow/crcr/{devices[0]}"}
    payload["pull_request"]["labels"] = [{"name": f"ciflow/crcr/{d}"} for d in devices]
    return post_webhook(client, "pull_request", payload, delivery=delivery)


def test_a_label_during_a_run_backfills_its_jobs_with_their_current_state(signal, client, actions):
    report(client, actions, signal, L3, "in_progress")
    report(client, actions, signal, L3, "completed", conclusion="failure")
    report(client, actions, signal, L3, "in_progress", job="test")
    wait_until(sent_all)
    assert shown(signal, f"crcr/{L3}/CI/build") is None

    answer = labeled(client, "npu")

    assert answer.json() == {"ok": True, "labelled": ["npu"], "backfilled": 2}
    wait_until(sent_all)
    build, test = shown(signal, f"crcr/{L3}/CI/build"), shown(signal, f"crcr/{L3}/CI/test")
    assert (build["status"], build["conclusion"]) == ("completed", "failure")
    assert build["actions"][0]["identifier"] == "crcr_rerun_failed"
    assert test["status"] == "in_progress"
    assert len(creates(signal)) == 3  # the aggregate of L4, and these two, once each


def test_a_label_after_the_run_backfills_its_finished_jobs(signal, client, actions):
    report(client, actions, signal, L3, "in_progress")
    report(client, actions, signal, L3, "completed", conclusion="success")
    wait_until(sent_all)

    assert labeled(client, "npu").json()["backfilled"] == 1
    wait_until(sent_all)

    build = shown(signal, f"crcr/{L3}/CI/build")
    assert (build["status"], build["conclusion"]) == ("completed", "success")
    assert [c.method for c in signal.calls_to("check_run") if "/build" in c.body["name"]] == [
        "POST"
    ]  # made once, with its final state


def test_a_label_before_the_run_shows_the_first_callback(signal, client, actions):
    labeled(client, "npu")

    report(client, actions, signal, L3, "in_progress")
    wait_until(sent_all)

    assert shown(signal, f"crcr/{L3}/CI/build")["status"] == "in_progress"


def test_a_label_for_another_device_or_not_crcr_does_nothing(signal, client, actions):
    report(client, actions, signal, L3, "in_progress")
    other = labeled(client, "gpu")
    plain = post_webhook(client, "pull_request", webhook_payload("pull_request.labeled"))

    wait_until(sent_all)

    assert other.json()["backfilled"] == 0
    assert plain.json() == {"ok": True, "labelled": [], "backfilled": 0}
    assert shown(signal, f"crcr/{L3}/CI/build") is None


def test_a_label_that_comes_with_a_later_pull_request_event_counts(signal, client, actions):
    sync = webhook_payload("pull_request.synchronize")
    sync["number"] = sync["pull_request"]["number"] = PR["number"]
    sync["pull_request"]["labels"] = [{"name": "ciflow/crcr/NPU"}]
    post_webhook(client, "pull_request", sync, delivery="sync-1")
    sync_head = sync["pull_request"]["head"]["sha"]
    body = reporter_body(signal.dispatches("org-b/l3")[-1].body["client_payload"], "in_progress")

    assert post_callback(client, body, actions.mint(repo=L3)).status_code == 200
    wait_until(sent_all)

    assert {r["name"] for r in signal.check_runs(sync_head)} == {
        f"crcr/{L4}", f"crcr/{L3}/CI/build"
    }  # fmt: skip


def test_a_rerun_attempt_gets_a_check_run_of_its_own(signal, client, actions):
    report(client, actions, signal, L4, "in_progress")
    report(client, actions, signal, L4, "completed", conclusion="failure")
    report(client, actions, signal, L4, "in_progress", run_attempt="2")
    wait_until(sent_all)

    runs = [r for r in signal.check_runs(HEAD) if r["name"] == f"crcr/{L4}/CI/build"]

    assert sorted((r["status"], r.get("conclusion") or "") for r in runs) == [
        ("completed", "failure"), ("in_progress", "")
    ]  # fmt: skip
    assert shown(signal, f"crcr/{L4}")["status"] == "in_progress"


def test_a_lost_answer_to_a_create_does_not_make_a_second_check_run(signal, client, actions):
    signal.fail("check_run", "late", times=1)  # created, then the answer never comes

    wait_until(sent_all, timeout=20)

    assert len([r for r in signal.check_runs(HEAD) if r["name"] == f"crcr/{L4}"]) == 1
    assert len(signal.calls_to("check_runs")) == 1  # looked for before making it again
    assert CheckRun.objects.get(name=f"crcr/{L4}").github_id == shown(signal, f"crcr/{L4}")["id"]


def test_states_that_pile_up_are_sent_once_as_the_newest(signal, client, actions):
    report(client, actions, signal, L4, "in_progress")
    report(client, actions, signal, L4, "completed", conclusion="success")

    wait_until(sent_all)

    job_calls = [c for c in signal.calls_to("check_run") if c.body["name"].endswith("/build")]
    assert [(c.method, c.body["status"]) for c in job_calls] == [("POST", "completed")]


def test_a_github_outage_during_a_pr_loses_no_check_run_state(signal, client, actions):
    signal.fail("check_run", "5xx")
    report(client, actions, signal, L4, "in_progress")
    report(client, actions, signal, L4, "completed", conclusion="failure")
    report(client, actions, signal, L4, "in_progress", job="test")
    check_runs.send_due()
    assert signal.check_runs() == []
    assert CheckRun.objects.filter(status=CheckRun.Status.PENDING).count() == 3

    signal.heal()
    wait_until(sent_all, timeout=20)

    assert shown(signal, f"crcr/{L4}/CI/build")["conclusion"] == "failure"
    assert shown(signal, f"crcr/{L4}/CI/test")["status"] == "in_progress"
    assert shown(signal, f"crcr/{L4}")["status"] == "in_progress"


def test_a_check_run_deleted_on_github_is_made_again(signal, client, actions):
    report(client, actions, signal, L4, "in_progress")
    wait_until(sent_all)
    signal.delete_check_run(shown(signal, f"crcr/{L4}/CI/build")["id"])

    report(client, actions, signal, L4, "completed", conclusion="success")
    wait_until(sent_all)

    assert shown(signal, f"crcr/{L4}/CI/build")["conclusion"] == "success"


def test_the_zombie_sweep_finishes_check_runs_and_a_silent_aggregate(
    signal, client, actions, settings
):
    report(client, actions, signal, L4, "in_progress")
    wait_until(sent_all)
    settings.CRCR_ZOMBIE_TIMEOUT = -1  # everything in progress is a zombie now

    assert zombies.sweep() == 1
    wait_until(sent_all)

    job = shown(signal, f"crcr/{L4}/CI/build")
    assert (job["status"], job["conclusion"]) == ("completed", "timed_out")
    assert shown(signal, f"crcr/{L4}")["conclusion"] == "neutral"


def test_an_aggregate_nothing_called_back_for_times_out(signal, settings):
    wait_until(sent_all)
    settings.CRCR_ZOMBIE_TIMEOUT = -1

    zombies.sweep()
    wait_until(sent_all)

    aggregate = shown(signal, f"crcr/{L4}")
    assert (aggregate["status"], aggregate["conclusion"]) == ("completed", "timed_out")
    assert "no job called back" in aggregate["output"]["title"]


def test_the_aggregate_waits_for_its_actions_runs_to_complete(signal, client, actions):
    signal.running_runs.add(1111)  # the run has jobs yet to start, though these are done
    report(client, actions, signal, L4, "in_progress")
    report(client, actions, signal, L4, "completed", conclusion="success")
    wait_until(lambda: check_runs.send_due() >= 0 and signal.calls_to("workflow_run"))
    assert shown(signal, f"crcr/{L4}")["status"] == "in_progress"
    assert signal.calls_to("workflow_run")[-1].headers["authorization"].startswith("Bearer ghs_")

    signal.running_runs.clear()
    CheckRun.objects.filter(name=f"crcr/{L4}").update(next_attempt_at=timezone.now())
    wait_until(sent_all)

    assert shown(signal, f"crcr/{L4}")["conclusion"] == "success"


def test_the_aggregate_settles_when_github_cannot_say_how_its_runs_are(
    signal, client, actions, settings
):
    settings.CRCR_CHECK_SETTLE = 3600
    signal.fail("workflow_run", "5xx")
    report(client, actions, signal, L4, "in_progress")
    report(client, actions, signal, L4, "completed", conclusion="failure")
    check_runs.send_due()
    check_runs.send_due()

    aggregate = CheckRun.objects.get(name=f"crcr/{L4}")
    assert aggregate.state["status"] == "in_progress"
    assert aggregate.next_attempt_at > timezone.now() + timedelta(minutes=59)
