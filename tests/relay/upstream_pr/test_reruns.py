"""Re-runs asked for on the upstream PR (relay/upstream_pr/reruns.py), against the simulated
GitHub: the webhook records and answers at once, the worker's step sends."""

from datetime import timedelta

import pytest
from django.utils import timezone

from hud.storage import HudRecord, RecordKey, get_store
from relay.models import CheckRun, Rerun
from relay.periodic import run_due_jobs
from relay.upstream_pr import check_runs
from relay.upstream_pr.reruns import send_due
from tests.relay.support import APP_ID, post_callback, post_webhook, reporter_body, webhook_payload
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db

HEAD = "ab" * 20
UPSTREAM = "pytorch/pytorch"


def check_run_webhook(name, external_id="", *, app_id=APP_ID, action="rerequested"):
    """A recorded check_run webhook about a check run of this name and external_id."""
    payload = webhook_payload(f"check_run.{action}")
    payload["check_run"] |= {"name": name, "external_id": external_id, "head_sha": HEAD}
    payload["check_run"]["app"]["id"] = int(app_id)
    return payload


def rerequest(client, name, external_id="", *, delivery="d-1", **options):
    payload = check_run_webhook(name, external_id, **options)
    return post_webhook(client, "check_run", payload, delivery=delivery)


def reruns(github):
    """The re-runs GitHub was asked for and took: (path, status)."""
    return [(c.path, c.status) for c in github.calls_to("rerun")]


def record_job(repo, run_id, job, conclusion, *, head=HEAD, attempt=1):
    key = RecordKey(repo.casefold(), f"d-{head}", "CI", job, f"cr-{run_id}-{job}-{attempt}")
    record = HudRecord(key, repo, head_sha=head, run_id=str(run_id), run_attempt=attempt,
                       status="completed", conclusion=conclusion)  # fmt: skip
    get_store().upsert(record, now=timezone.now())


# --- check_run.rerequested on a job's check run -----------------------------------------------


def test_a_jobs_check_run_re_runs_the_failed_jobs_of_its_run_through_the_worker(
    client, github, downstream
):
    response = rerequest(client, "crcr/org-b/l3/CI/build (npu, 1)", "5551:42")

    assert response.status_code == 202
    assert response.json()["queued"] == [
        {"kind": "failed_jobs", "repo": "org-b/l3", "run_id": 5551}
    ]
    assert github.calls == []  # answered at once: GitHub is the worker's business

    assert send_due() == {"re-run": 1}
    assert reruns(github) == [("/repos/org-b/l3/actions/runs/5551/rerun-failed-jobs", 201)]
    row = Rerun.objects.get()
    assert (row.status, row.outcome, row.last_error) == ("sent", "re-run", "")


def test_the_name_is_matched_to_the_allowlist_in_any_case_and_sent_in_its_spelling(
    client, github, downstream
):
    rerequest(client, "crcr/ORG-C/l4/CI/test/linux", "77:1")

    send_due()

    assert reruns(github) == [("/repos/Org-C/L4/actions/runs/77/rerun-failed-jobs", 201)]


def test_a_run_already_running_is_answered_as_done(client, github, downstream):
    github.running_runs.add(5551)
    rerequest(client, "crcr/org-b/l3/CI/build", "5551:42")

    assert send_due() == {"already running": 1}
    assert send_due() == {}

    assert reruns(github) == [("/repos/org-b/l3/actions/runs/5551/rerun-failed-jobs", 403)]
    row = Rerun.objects.get()
    assert (row.status, row.outcome) == ("sent", "already running")


def test_the_rerun_button_does_what_rerequested_does(client, github, downstream):
    payload = check_run_webhook("crcr/org-b/l3/CI/build", "5551:42", action="requested_action")
    payload["requested_action"] = {"identifier": "crcr_rerun_failed"}

    response = post_webhook(client, "check_run", payload, delivery="d-button")
    send_due()

    assert response.status_code == 202
    assert reruns(github) == [("/repos/org-b/l3/actions/runs/5551/rerun-failed-jobs", 201)]


def test_a_redelivered_webhook_re_runs_nothing_twice(client, github, downstream):
    first = rerequest(client, "crcr/org-b/l3/CI/build", "5551:42", delivery="d-again")
    again = rerequest(client, "crcr/org-b/l3/CI/build", "5551:42", delivery="d-again")
    send_due()
    late = rerequest(client, "crcr/org-b/l3/CI/build", "5551:42", delivery="d-again")
    send_due()

    assert (first.status_code, again.status_code, late.status_code) == (202, 200, 200)
    assert again.json() == {
        "ok": True,
        "queued": [],
        "already_asked": [{"kind": "failed_jobs", "repo": "org-b/l3", "run_id": 5551}],
    }
    assert len(reruns(github)) == 1
    assert Rerun.objects.count() == 1


def test_another_rerequest_of_the_same_check_run_is_sent_again(client, github, downstream):
    rerequest(client, "crcr/org-b/l3/CI/build", "5551:42", delivery="d-1")
    send_due()
    rerequest(client, "crcr/org-b/l3/CI/build", "5551:42", delivery="d-2")
    send_due()

    assert len(reruns(github)) == 2


# --- the L4 aggregate -----------------------------------------------------------------------


def test_the_l4_aggregate_re_runs_the_failed_jobs_of_each_run_of_the_repo_on_the_head(
    client, github, downstream
):
    record_job("Org-C/L4", 701, "build", "success")
    record_job("Org-C/L4", 701, "test", "failure")
    record_job("Org-C/L4", 702, "lint", "success")
    record_job("Org-C/L4", 703, "test", "timed_out")
    record_job("Org-C/L4", 704, "test", "failure", head="cd" * 20)  # another head
    record_job("org-b/l3", 705, "test", "failure")  # another repo

    response = rerequest(client, "crcr/Org-C/L4", "aggregate")
    counts = send_due()

    assert response.status_code == 202
    assert [q["run_id"] for q in response.json()["queued"]] == [701, 703]
    assert counts == {"re-run": 2}
    assert sorted(reruns(github)) == [
        ("/repos/Org-C/L4/actions/runs/701/rerun-failed-jobs", 201),
        ("/repos/Org-C/L4/actions/runs/703/rerun-failed-jobs", 201),
    ]


def test_an_aggregate_whose_runs_passed_re_runs_nothing(client, github, downstream):
    record_job("Org-C/L4", 701, "test", "failure")
    record_job("Org-C/L4", 701, "test", "success", attempt=2)  # re-run already, and passed

    response = rerequest(client, "crcr/Org-C/L4")

    assert response.status_code == 200
    assert response.json()["ignored"] is True
    assert "has failed jobs" in response.json()["reason"]
    assert Rerun.objects.count() == 0


# --- what is ignored ------------------------------------------------------------------------

IGNORED = [
    # (case, name, external_id, overrides)
    ("another App's check run", "crcr/org-b/l3/CI/build", "1:1", {"app_id": "2"}),
    ("not a crcr name", "lint", "1:1", {}),
    ("crcr/ with no repo", "crcr/org-b", "1:1", {}),
    ("an L2 repo", "crcr/org-a/l2/CI/build", "1:1", {}),
    ("an L1 repo", "crcr/org-a/l1/CI/build", "1:1", {}),
    ("a repo not on the allowlist", "crcr/someone/else/CI/build", "1:1", {}),
    ("an external_id naming no run", "crcr/org-b/l3/CI/build", "run-1:1", {}),
    ("an external_id of zero", "crcr/org-b/l3/CI/build", "0:1", {}),
    ("a run id past GitHub's", "crcr/org-b/l3/CI/build", "99999999999999999999:1", {}),
]


@pytest.mark.parametrize(
    ("name", "external_id", "overrides"), [r[1:] for r in IGNORED], ids=[r[0] for r in IGNORED]
)
def test_an_ignored_rerequest_is_200_and_records_nothing(
    client, github, downstream, name, external_id, overrides
):
    response = rerequest(client, name, external_id, **overrides)

    assert response.status_code == 200
    assert response.json()["ignored"] is True
    assert Rerun.objects.count() == 0
    assert send_due() == {}
    assert github.calls == []


@pytest.mark.parametrize(
    ("event", "fixture", "field", "value"),
    [
        ("check_run", "check_run.rerequested", "check_run", "not an object"),
        ("check_run", "check_run.requested_action", "requested_action", ["crcr_rerun_failed"]),
        ("check_suite", "check_suite.rerequested", "check_suite", None),
    ],
)
def test_a_malformed_re_run_webhook_is_ignored_not_a_500(
    client, github, downstream, event, fixture, field, value
):
    payload = webhook_payload(fixture) | {field: value}

    response = post_webhook(client, event, payload)

    assert response.status_code == 200
    assert response.json()["ignored"] is True
    assert Rerun.objects.count() == 0


def test_a_head_sha_postgresql_cannot_hold_is_stored_readable(client, github, downstream):
    payload = check_run_webhook("crcr/org-b/l3/CI/build", "5551:42")
    payload["check_run"]["head_sha"] = "ab\x00cd"

    response = post_webhook(client, "check_run", payload)

    assert response.status_code == 202
    assert Rerun.objects.get().head_sha == "ab\ufffdcd"


def test_another_requested_action_is_ignored(client, github, downstream):
    payload = check_run_webhook("crcr/org-b/l3/CI/build", "5551:42", action="requested_action")
    payload["requested_action"] = {"identifier": "something_else"}

    response = post_webhook(client, "check_run", payload)

    assert response.json()["ignored"] is True
    assert Rerun.objects.count() == 0


# --- check_suite.rerequested ----------------------------------------------------------------


def suite_webhook(suite_id, *, app_id=APP_ID):
    payload = webhook_payload("check_suite.rerequested")
    payload["check_suite"] |= {"id": suite_id, "head_sha": HEAD}
    payload["check_suite"]["app"]["id"] = int(app_id)
    return payload


def test_a_rerequested_suite_re_runs_every_distinct_run_behind_it_once(client, github, downstream):
    for n in range(60):  # two jobs' check runs per run: more than a page of GitHub's listing
        github.add_check_run(UPSTREAM, name=f"crcr/org-b/l3/CI/test-{n}", head_sha=HEAD,
                             external_id=f"{900 + n % 3}:42")  # fmt: skip
        github.add_check_run(UPSTREAM, name=f"crcr/ORG-C/l4/CI/test-{n}", head_sha=HEAD,
                             external_id="802:42")  # fmt: skip
    github.add_check_run(UPSTREAM, name="crcr/Org-C/L4", head_sha=HEAD, external_id="aggregate")
    github.add_check_run(UPSTREAM, name="crcr/org-a/l2/CI/build", head_sha=HEAD,
                         external_id="803:42")  # fmt: skip
    github.add_check_run(UPSTREAM, name="lint", head_sha=HEAD, external_id="804:42")
    suite = github.check_suite_of(UPSTREAM, HEAD)

    response = post_webhook(client, "check_suite", suite_webhook(suite), delivery="d-suite")
    assert response.status_code == 202
    assert response.json()["queued"] == [{"kind": "suite", "check_suite": suite}]
    assert github.calls == []

    assert send_due() == {"listed": 1, "re-run": 4}
    assert sorted(reruns(github)) == [
        ("/repos/Org-C/L4/actions/runs/802/rerun", 201),
        ("/repos/org-b/l3/actions/runs/900/rerun", 201),
        ("/repos/org-b/l3/actions/runs/901/rerun", 201),
        ("/repos/org-b/l3/actions/runs/902/rerun", 201),
    ]
    listing = github.calls_to("suite_check_runs")
    assert [c.status for c in listing] == [200, 200]  # two pages, with an installation token
    assert Rerun.objects.get(kind="suite").outcome == "4 downstream run(s) to re-run"


def test_a_suite_run_already_running_is_done_and_the_others_are_re_run(client, github, downstream):
    github.add_check_run(UPSTREAM, name="crcr/org-b/l3/CI/a", head_sha=HEAD, external_id="11:1")
    github.add_check_run(UPSTREAM, name="crcr/org-b/l3/CI/b", head_sha=HEAD, external_id="12:1")
    github.running_runs.add(11)
    suite = github.check_suite_of(UPSTREAM, HEAD)

    post_webhook(client, "check_suite", suite_webhook(suite))

    assert send_due() == {"listed": 1, "re-run": 1, "already running": 1}


def test_a_suite_of_another_app_is_ignored(client, github, downstream):
    github.add_check_run(UPSTREAM, name="crcr/org-b/l3/CI/a", head_sha=HEAD, external_id="11:1",
                         app_id="99")  # fmt: skip
    suite = github.check_suite_of(UPSTREAM, HEAD, app_id="99")

    response = post_webhook(client, "check_suite", suite_webhook(suite, app_id="99"))

    assert response.json()["ignored"] is True
    assert Rerun.objects.count() == 0
    assert github.calls == []


def test_a_redelivered_suite_webhook_re_runs_each_run_once(client, github, downstream):
    github.add_check_run(UPSTREAM, name="crcr/org-b/l3/CI/a", head_sha=HEAD, external_id="11:1")
    suite = github.check_suite_of(UPSTREAM, HEAD)

    post_webhook(client, "check_suite", suite_webhook(suite), delivery="d-suite")
    send_due()
    again = post_webhook(client, "check_suite", suite_webhook(suite), delivery="d-suite")
    send_due()

    assert again.status_code == 200
    assert len(reruns(github)) == 1
    assert len(github.calls_to("suite_check_runs")) == 1


# --- GitHub failing -------------------------------------------------------------------------


def test_a_github_failure_is_retried_until_the_re_run_is_taken(client, github, downstream):
    github.fail("rerun", "5xx", times=1)
    rerequest(client, "crcr/org-b/l3/CI/build", "5551:42")

    assert send_due() == {"retrying": 1}
    assert "502" in Rerun.objects.get().last_error
    wait_until(lambda: send_due().get("re-run"), timeout=5)

    assert [status for _, status in reruns(github)] == [502, 201]
    assert Rerun.objects.get().status == "sent"


def test_a_rate_limit_waits_as_long_as_github_asks(client, github, downstream):
    github.fail("suite_check_runs", "rate_limit", times=1, retry_after=120)
    post_webhook(client, "check_suite", suite_webhook(github.check_suite_of(UPSTREAM, HEAD)))

    assert send_due() == {"retrying": 1}

    row = Rerun.objects.get()
    assert row.status == "pending"
    assert row.next_attempt_at >= timezone.now() + timedelta(seconds=110)
    assert send_due() == {}


def test_a_refused_re_run_is_kept_as_failed(client, github, downstream):
    github.fail("rerun", "not_installed", repo="org-b/l3")
    rerequest(client, "crcr/org-b/l3/CI/build", "5551:42")

    assert send_due() == {"failed": 1}

    row = Rerun.objects.get()
    assert row.status == "failed"
    assert "404" in row.last_error


def test_the_worker_sends_re_runs_on_its_own_schedule(client, github, downstream):
    rerequest(client, "crcr/org-b/l3/CI/build", "5551:42")

    run_due_jobs()  # what `manage.py worker` runs every round

    assert reruns(github) == [("/repos/org-b/l3/actions/runs/5551/rerun-failed-jobs", 201)]


def test_the_admin_lists_re_runs_and_what_github_answered(admin_client, client, github, downstream):
    github.running_runs.add(5551)
    rerequest(client, "crcr/org-b/l3/CI/build", "5551:42")
    send_due()

    listing = admin_client.get("/admin/relay/rerun/?status__exact=sent")
    row = admin_client.get(f"/admin/relay/rerun/{Rerun.objects.get().pk}/change/")

    assert listing.status_code == row.status_code == 200
    assert "already running" in listing.content.decode()


# --- on the check runs the relay made ---------------------------------------------------------


@pytest.fixture
def l4_failed(settings, client, github, downstream, actions):
    """A PR whose L4 run 3001 failed one of its two jobs, its check runs sent to GitHub; the
    check runs GitHub shows on the head, by name."""
    settings.CRCR_CHECK_SETTLE = 0
    pr = webhook_payload("pull_request.opened")
    post_webhook(client, "pull_request", pr, delivery="guid-1")
    echoed = github.dispatches("org-c/l4")[0].body["client_payload"]
    for job, conclusion in (("build", "success"), ("test", "failure")):
        for status in ("in_progress", "completed"):
            body = reporter_body(echoed, status, job=job, run_id="3001", conclusion=conclusion,
                                 check_run_id=f"3001-{job}")  # fmt: skip
            token = actions.mint(repo="Org-C/L4", run_id="3001")
            assert post_callback(client, body, token).status_code == 200
    wait_until(lambda: check_runs.send_due() == 0 and not pending_check_runs())
    head = pr["pull_request"]["head"]["sha"]
    return {run["name"]: run for run in github.check_runs(head)}


def pending_check_runs() -> bool:
    return CheckRun.objects.filter(status=CheckRun.Status.PENDING).exists()


def as_webhook(check_run: dict) -> dict:
    payload = webhook_payload("check_run.rerequested")
    payload["check_run"] |= {key: check_run[key] for key in ("id", "name", "head_sha")}
    payload["check_run"] |= {"external_id": check_run["external_id"], "app": check_run["app"]}
    return payload


def test_rerequesting_the_aggregate_the_relay_made_re_runs_its_failed_run(
    client, github, l4_failed
):
    aggregate = l4_failed["crcr/Org-C/L4"]

    response = post_webhook(client, "check_run", as_webhook(aggregate), delivery="d-agg")
    send_due()

    assert response.status_code == 202
    assert reruns(github) == [("/repos/Org-C/L4/actions/runs/3001/rerun-failed-jobs", 201)]


def test_the_failed_jobs_button_the_relay_offered_re_runs_its_run(client, github, l4_failed):
    failed = l4_failed["crcr/Org-C/L4/CI/test"]
    payload = as_webhook(failed) | {"action": "requested_action"}
    payload["requested_action"] = {"identifier": failed["actions"][0]["identifier"]}

    post_webhook(client, "check_run", payload, delivery="d-button")
    send_due()

    assert reruns(github) == [("/repos/Org-C/L4/actions/runs/3001/rerun-failed-jobs", 201)]


def test_rerequesting_the_suite_the_relay_made_re_runs_its_run_once(client, github, l4_failed):
    suite = l4_failed["crcr/Org-C/L4"]["check_suite"]["id"]

    post_webhook(client, "check_suite", suite_webhook(suite), delivery="d-suite")
    counts = send_due()

    assert counts == {"listed": 1, "re-run": 1}
    assert reruns(github) == [("/repos/Org-C/L4/actions/runs/3001/rerun", 201)]
