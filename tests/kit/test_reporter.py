"""The kit's reporter (kit/report/crcr_report.py) against a live relay, in every mode, and
through a faulty path to it: what it sends, what the relay keeps, and what the job is told."""

import json
import subprocess

import pytest

from tests.fakes.faulty_relay import Answer, FaultyRelay, Withhold
from tests.fakes.token_service import TokenService
from tests.kit.support import REPO, RUN_ID, report
from tests.paths import FIXTURES, PYTHON, ROOT

SHA = "3f786850e387550fdab836ed7e6dc881de23001b"
PYTORCH_REPORTER = ROOT / "tests/downstream/report_callback.py"
JUNIT = FIXTURES / "junit" / "pytest.xml"


@pytest.fixture
def proxy(relay):
    faulty = FaultyRelay(target=relay.url).start()
    yield faulty
    faulty.stop()


def through(proxy: FaultyRelay) -> dict[str, str]:
    return {"CALLBACK_URL": f"{proxy.url}/github/callback"}


def test_a_job_reports_in_progress_then_completed_and_both_are_recorded(relay, tmp_path):
    dispatch = relay.dispatch()

    started = report(relay, dispatch, tmp_path, "--status", "in_progress", "--job-name", "build")
    finished = report(
        relay, dispatch, tmp_path, "--status", "completed", "--conclusion", "failure",
        "--job-name", "build", "--test-results", '{"passed": 10, "failed": 2, "skipped": 1}',
        "--artifact-url", "https://example.com/logs/7001",
    )  # fmt: skip

    assert (started.code, started.out) == (0, "CRCR: in_progress recorded\n")
    assert (finished.code, finished.out) == (0, "CRCR: completed recorded\n")
    assert finished.outputs == {"outcome": "recorded", "http-status": "200"}
    [record] = relay.records(dispatch["delivery_id"])
    assert (record["status"], record["conclusion"], record["run_id"]) == (
        "completed",
        "failure",
        RUN_ID,
    )
    assert (record["tests_passed"], record["tests_failed"], record["tests_total"]) == (10, 2, 13)
    assert (record["check_run_id"], record["artifact_url"]) == (
        "7001-1",
        "https://example.com/logs/7001",
    )
    assert None not in (record["queue_time"], record["execution_time"])


def test_a_junit_report_becomes_the_test_counts_and_failed_tests(relay, tmp_path):
    dispatch = relay.dispatch()
    report(relay, dispatch, tmp_path, "--status", "in_progress", "--job-name", "test")

    finished = report(
        relay, dispatch, tmp_path, "--status", "completed", "--conclusion", "failure",
        "--job-name", "test", "--failed-tests", f"{tmp_path}/missing/*.xml\n{JUNIT}",
    )  # fmt: skip

    assert finished.code == 0
    assert "::warning title=CRCR report::failed-tests: no file matches" in finished.out
    [record] = relay.records(dispatch["delivery_id"])
    counts = ("tests_passed", "tests_failed", "tests_skipped", "tests_total")
    assert tuple(record[name] for name in counts) == (2, 2, 2, 6)
    assert record["failed_tests_detail"] == [
        {
            "name": "test_sample.TestOps.test_matmul[bfloat16]",
            "message": "AssertionError: matmul on bfloat16 is off by 0.5\n"
            "assert 'bfloat16' == 'float32'\n  \n  - float32\n  + bfloat16",
        },
        {
            "name": "test_sample.test_to_device",
            "message": 'failed on setup with "RuntimeError: no NPU found"',
        },
    ]


@pytest.mark.parametrize("event", ["nightly", "periodic"])
def test_a_self_report_is_recorded_against_the_upstream_commit(relay, tmp_path, event):
    verdict = {"category": "upstream", "confidence": "high", "summary": "aten::foo changed"}

    ran = report(
        relay, None, tmp_path, "--status", "completed", "--conclusion", "failure",
        "--job-name", f"{event}-job", "--delivery-id", SHA, "--event-type", event,
        "--triage-verdict", json.dumps(verdict),
    )  # fmt: skip

    assert (ran.code, ran.out) == (0, "CRCR: completed recorded\n")
    record = next(r for r in relay.records(SHA) if r["job_name"] == f"{event}-job")
    assert (record["event_type"], record["pr_number"], record["head_sha"]) == (event, 0, SHA)
    assert record["triage_verdict"] == verdict | {"links": []}


def test_a_429_is_sent_again_once_its_retry_after_has_passed(relay, proxy, tmp_path):
    proxy.faults = [Answer(429, {"Retry-After": "1"})]

    ran = report(
        relay, relay.dispatch(), tmp_path, "--status", "in_progress", "--job-name", "j",
        **through(proxy),
    )  # fmt: skip

    assert ran.code == 0
    assert (
        "CRCR: the relay answered HTTP 429 injected (by the faulty relay); trying again in"
        in ran.out
    )
    assert ran.out.endswith("CRCR: in_progress recorded after 2 attempts\n")
    first, second = proxy.carried
    assert (first.answered, second.answered) == (429, 200)
    assert second.at - first.at >= 1.0


def test_a_5xx_without_retry_after_is_sent_again_after_a_backoff(relay, proxy, tmp_path):
    proxy.faults = [Answer(502)]
    dispatch = relay.dispatch()

    ran = report(relay, dispatch, tmp_path, "--status", "in_progress", "--job-name", "j",
                 **through(proxy))  # fmt: skip

    assert ran.out.endswith("CRCR: in_progress recorded after 2 attempts\n")
    assert [seen.answered for seen in proxy.carried] == [502, 200]
    assert proxy.carried[1].at - proxy.carried[0].at >= 1.0
    assert len(relay.records(dispatch["delivery_id"])) == 1


def test_a_callback_recorded_but_timed_out_is_answered_as_recorded_when_sent_again(
    relay, proxy, tmp_path
):
    dispatch = relay.dispatch()
    report(relay, dispatch, tmp_path, "--status", "in_progress", "--job-name", "j")
    proxy.faults = [Withhold()]

    ran = report(
        relay, dispatch, tmp_path, "--status", "completed", "--conclusion", "success",
        "--job-name", "j", "--max-time", "1", **through(proxy),
    )  # fmt: skip

    assert ran.code == 0
    assert "no answer from the relay (TimeoutError: timed out); trying again" in ran.out
    assert ran.out.endswith(
        "CRCR: completed recorded (already recorded: an earlier attempt got through) "
        "after 2 attempts\n"
    )
    assert ran.outputs["outcome"] == "already_recorded"
    assert [(s.relay_status, s.answered) for s in proxy.carried] == [(200, None), (200, 200)]
    [record] = relay.records(dispatch["delivery_id"])
    assert (record["status"], record["conclusion"]) == ("completed", "success")


@pytest.mark.parametrize(
    ("fail_on_error", "code", "level"), [("false", 0, "warning"), ("true", 1, "error")]
)
def test_a_report_that_is_not_recorded_fails_the_step_only_with_fail_on_error(
    relay, proxy, tmp_path, fail_on_error, code, level
):
    proxy.faults = [Answer(503, {"Retry-After": "3600"})] * 3  # longer than the budget

    ran = report(
        relay, relay.dispatch(), tmp_path, "--status", "in_progress", "--job-name", "j",
        "--retry-budget", "30", "--fail-on-error", fail_on_error, **through(proxy),
    )  # fmt: skip

    assert ran.code == code
    assert ran.out == (
        f"::{level} title=CRCR report::in_progress not recorded: "
        "the relay answered HTTP 503 injected (by the faulty relay)\n"
    )
    assert ran.outputs == {"outcome": "failed", "http-status": "503"}
    assert len(proxy.carried) == 1  # given up at once: the wait would outlast the budget


def test_a_refusal_is_not_sent_again_and_says_what_to_do(relay, proxy, tmp_path):
    never_sent = {"event_type": "pull_request", "delivery_id": "never-dispatched", "payload": {}}

    ran = report(relay, never_sent, tmp_path, "--status", "in_progress", "--job-name", "j",
                 **through(proxy))  # fmt: skip

    assert ran.code == 0
    assert ran.out.startswith(
        "::warning title=CRCR report::in_progress not recorded: the relay answered HTTP 409 "
        "no_dispatch ("
    )
    assert "report only from runs its repository_dispatch started" in ran.out
    assert len(proxy.carried) == 1


def test_a_result_from_a_repo_the_relay_does_not_keep_results_of_is_a_notice(relay, tmp_path):
    stranger = relay.token(repo="org/not-allowlisted", run_id=RUN_ID)

    ran = report(relay, relay.dispatch(), tmp_path, "--status", "in_progress",
                 "--job-name", "j", OIDC_TOKEN=stranger)  # fmt: skip

    assert ran.code == 0
    assert ran.out.startswith("::notice title=CRCR report::the relay ignored this result")
    assert ran.outputs["outcome"] == "ignored"


def test_the_token_is_minted_for_each_attempt_from_the_jobs_token_service(relay, proxy, tmp_path):
    service = TokenService(mint=lambda audience: relay.token(aud=audience, run_id=RUN_ID))
    service.start()
    proxy.faults = [Answer(503, {"Retry-After": "1"})]
    job = {"OIDC_TOKEN": "", "ACTIONS_ID_TOKEN_REQUEST_URL": service.request_url,
           "ACTIONS_ID_TOKEN_REQUEST_TOKEN": service.request_token}  # fmt: skip
    try:
        ran = report(relay, relay.dispatch(), tmp_path, "--status", "in_progress",
                     "--job-name", "j", **job, **through(proxy))  # fmt: skip
    finally:
        service.stop()

    assert ran.out.endswith("CRCR: in_progress recorded after 2 attempts\n")
    assert service.audiences == ["pytorch-cross-repo-ci-relay"] * 2
    assert ran.out.startswith("::add-mask::ey")  # the token never shows in the log
    first, second = (seen.headers["Authorization"] for seen in proxy.carried)
    assert first != second


def test_without_a_token_nothing_is_sent_and_the_job_is_told_how_to_get_one(relay, proxy, tmp_path):
    ran = report(relay, relay.dispatch(), tmp_path, "--status", "in_progress",
                 "--job-name", "j", OIDC_TOKEN="", **through(proxy))  # fmt: skip

    assert (ran.code, proxy.carried) == (0, [])
    assert ran.out == (
        "::warning title=CRCR report::nothing was reported: no OIDC token: give the job "
        "`permissions: id-token: write` (GitHub Actions), or set OIDC_TOKEN\n"
    )


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--status", "done"], "status must be in_progress or completed, not 'done'"),
        (["--status", "completed", "--delivery-id", SHA], "delivery-id and event-type go"),
        (["--status", "completed", "--delivery-id", SHA, "--event-type", "weekly"],
         "event-type must be nightly or periodic, not 'weekly'"),
        (["--status", "in_progress", "--delivery-id", SHA, "--event-type", "nightly"],
         "a nightly report is completed only"),
        (["--status", "in_progress", "--callback-url", "file:///etc/passwd"],
         "callback-url must be an http(s) URL"),
        (["--status", "in_progress", "--job-name", ""], "job-name not set"),
    ],
)  # fmt: skip
def test_bad_inputs_are_named_and_nothing_is_sent(relay, proxy, tmp_path, argv, said):
    ran = report(relay, relay.dispatch(), tmp_path, "--job-name", "j", *argv, **through(proxy))

    assert ran.code == 0
    assert ran.out.startswith("::warning title=CRCR report::nothing was reported: ")
    assert said in ran.out
    assert proxy.carried == []


def test_a_run_the_relay_did_not_start_is_told_so(relay, tmp_path):
    ran = report(relay, None, tmp_path, "--status", "in_progress", "--job-name", "j")

    assert "nothing was reported: no client_payload: this run was not started by" in ran.out


def test_malformed_optional_inputs_are_left_out_and_the_result_still_recorded(relay, tmp_path):
    dispatch = relay.dispatch()
    report(relay, dispatch, tmp_path, "--status", "in_progress", "--job-name", "j")
    hostile = tmp_path / "hostile.xml"
    hostile.write_text('<!DOCTYPE x [<!ENTITY a "aaaa">]><testsuite>&a;</testsuite>')

    ran = report(
        relay, dispatch, tmp_path, "--status", "completed", "--conclusion", "success",
        "--job-name", "j", "--test-results", "ten passed", "--triage-verdict", "[1]",
        "--failed-tests", str(hostile), "--max-time", "soon",
    )  # fmt: skip

    assert ran.out.splitlines() == [
        "::warning title=CRCR report::test-results is not JSON (Expecting value: line 1 "
        "column 1 (char 0)); left out",
        f"::warning title=CRCR report::failed-tests: {hostile} left out: it declares a document "
        "type (<!DOCTYPE>), which a test report does not",
        "::warning title=CRCR report::triage-verdict must be a JSON dict; left out",
        "::warning title=CRCR report::max-time: 'soon' is not a number of seconds; 10 used",
        "CRCR: completed recorded",
    ]
    [record] = relay.records(dispatch["delivery_id"])
    assert (record["conclusion"], record["tests_total"], record["triage_verdict"]) == (
        "success", None, None
    )  # fmt: skip


def _pytorchs(relay, dispatch: dict, status: str, job: str, **extra: str) -> int:
    """PyTorch's reporter (its re-creation, tests/downstream/), as its action runs it."""
    env = {
        "PATH": "/usr/bin:/bin", "STATUS": status, "CLIENT_PAYLOAD": json.dumps(dispatch),
        "SCHEMA_VERSION": "1", "WORKFLOW_NAME": "Backend CI", "RUN_ID": RUN_ID,
        "WORKFLOW_URL": f"https://github.com/{REPO}/actions/runs/{RUN_ID}", "RUN_ATTEMPT": "1",
        "JOB_NAME": job, "OIDC_TOKEN": relay.token(run_id=RUN_ID), "MAX_TIME": "10",
    } | extra  # fmt: skip
    return subprocess.run([PYTHON, str(PYTORCH_REPORTER)], env=env, check=False).returncode


def _masked(body: bytes) -> dict:
    """A callback body with its clock readings and its job's name set aside."""
    parsed = json.loads(body)
    flow = parsed["workflow"]
    flow |= {k: "<time>" for k in ("started_at", "completed_at") if flow[k] is not None}
    flow["job_name"] = "<job>"
    return parsed


def test_pytorchs_reporter_and_ours_send_the_same_body_and_are_recorded_alike(
    relay, proxy, tmp_path
):
    dispatch = relay.dispatch()
    url = f"{proxy.url}/github/callback/"
    results = '{"passed": 5, "failed": 1, "skipped": 0}'
    for status, conclusion in (("in_progress", ""), ("completed", "failure")):
        assert _pytorchs(relay, dispatch, status, "pytorch", CALLBACK_URL=url,
                         CONCLUSION=conclusion, TEST_RESULTS=results,
                         ARTIFACT_URL="https://example.com/a") == 0  # fmt: skip
        ours = report(relay, dispatch, tmp_path, "--status", status, "--conclusion", conclusion,
                      "--job-name", "kit", "--test-results", results,
                      "--artifact-url", "https://example.com/a", CALLBACK_URL=url)  # fmt: skip
        assert ours.code == 0

    bodies = [_masked(seen.body) for seen in proxy.carried]
    assert bodies[0] == bodies[1]
    assert bodies[2] == bodies[3]
    kit, theirs = relay.records(dispatch["delivery_id"])  # by job name: "kit", "pytorch"
    own = ("id", "job_name", "check_run_id", "received_at", "updated_at", "started_at",
           "completed_at", "queue_time", "execution_time")  # fmt: skip
    assert {k: v for k, v in theirs.items() if k not in own} == {
        k: v for k, v in kit.items() if k not in own
    }


def test_a_token_service_that_refuses_the_job_is_named_and_nothing_is_sent(relay, proxy, tmp_path):
    service = TokenService().start()
    job = {"OIDC_TOKEN": "", "ACTIONS_ID_TOKEN_REQUEST_URL": service.request_url,
           "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "another job's"}  # fmt: skip
    try:
        ran = report(relay, relay.dispatch(), tmp_path, "--status", "in_progress",
                     "--job-name", "j", **job, **through(proxy))  # fmt: skip
    finally:
        service.stop()

    assert (ran.code, proxy.carried) == (0, [])
    assert ran.out == (
        "::warning title=CRCR report::nothing was reported: GitHub's OIDC token service "
        'answered HTTP 401 {"message": "bad request token"}\n'
    )
