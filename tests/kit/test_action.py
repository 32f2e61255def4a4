"""The kit's GitHub Action (kit/report/action.yml): its steps run with a job's inputs against
the live relay, and the example workflows (kit/examples/, shown in the README) use it as it
is declared."""

import re
import shutil

import pytest
import yaml

from tests.fakes.token_service import TokenService
from tests.kit.runner import EXPRESSION, run_action
from tests.kit.support import REPO, RUN_ID
from tests.paths import FIXTURES, ROOT

ACTION_DIR = ROOT / "kit" / "report"
ACTION = yaml.safe_load((ACTION_DIR / "action.yml").read_text())
EXAMPLES = sorted((ROOT / "kit" / "examples").glob("*.yml"))
SYSTEM_PATH = "/usr/bin:/bin"  # the machine's python3, without this project's packages


@pytest.fixture
def token_service(relay):
    service = TokenService(mint=lambda audience: relay.token(aud=audience, run_id=RUN_ID))
    yield service.start()
    service.stop()


def _job(relay, token_service, dispatch, tmp_path, path=SYSTEM_PATH, **inputs):
    """The action run in a job of REPO dispatched `dispatch`, as the runner would run it."""
    github = {
        "workflow": "Backend CI", "server_url": "https://github.com", "repository": REPO,
        "run_id": RUN_ID, "run_attempt": "1", "job": "test",
        "event": {"client_payload": dispatch},
    }  # fmt: skip
    env = {
        "PATH": path, "HOME": str(tmp_path), "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(tmp_path), "GITHUB_RUN_ID": RUN_ID,
        "ACTIONS_ID_TOKEN_REQUEST_URL": token_service.request_url,
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": token_service.request_token,
    }  # fmt: skip
    inputs = {"callback-url": relay.callback_url} | inputs
    job = {"check_run_id": 55501, "status": "failure"}
    return run_action(ACTION_DIR, tmp_path, inputs=inputs, github=github, job=job, env=env)


def test_the_actions_steps_report_a_job_to_the_relay(relay, token_service, tmp_path):
    dispatch = relay.dispatch()
    junit = tmp_path / "reports" / "shard-1.xml"
    junit.parent.mkdir()
    shutil.copy(FIXTURES / "junit" / "pytest.xml", junit)

    started = _job(relay, token_service, dispatch, tmp_path, status="in_progress")
    finished = _job(
        relay, token_service, dispatch, tmp_path, status="completed", conclusion="failure",
        **{"failed-tests": "reports/*.xml"},
    )  # fmt: skip

    assert (started.code, started.outputs) == (0, {"outcome": "recorded", "http-status": "200"})
    assert (finished.code, finished.outputs["outcome"]) == (0, "recorded"), finished.out
    assert token_service.audiences == ["pytorch-cross-repo-ci-relay"] * 2
    [record] = relay.records(dispatch["delivery_id"])
    assert record["job_name"] == "test"  # job-name defaults to github.job
    assert (record["check_run_id"], record["workflow_run_url"]) == (
        "55501", f"https://github.com/{REPO}/actions/runs/{RUN_ID}"
    )  # fmt: skip
    assert (record["conclusion"], record["tests_failed"], record["tests_total"]) == (
        "failure", 2, 6
    )  # fmt: skip


@pytest.mark.parametrize(("fail_on_error", "code"), [("false", 0), ("true", 1)])
def test_on_a_runner_without_python3_the_action_warns_and_passes(
    relay, token_service, tmp_path, fail_on_error, code
):
    bin_dir = tmp_path / "bin"  # what the step runs besides bash's builtins, python3 missing
    bin_dir.mkdir()
    (bin_dir / "tr").symlink_to(shutil.which("tr"))

    ran = _job(relay, token_service, relay.dispatch(), tmp_path, path=str(bin_dir),
               status="in_progress", **{"fail-on-error": fail_on_error})  # fmt: skip

    assert ran.code == code
    assert ran.out == (
        "::warning title=CRCR report::nothing was reported: python3 is not installed on "
        "this runner\n"
    )


def test_no_input_is_spliced_into_the_actions_shell():
    """Inputs reach `run:` only through `env:`: a value is never read as shell."""
    scripts = [step["run"] for step in ACTION["runs"]["steps"]]

    assert [EXPRESSION.findall(script) for script in scripts] == [[] for _ in scripts]


def _uses_of_the_action(workflow: dict) -> list[dict]:
    return [
        step
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if step.get("uses", "").split("@")[0].endswith("/kit/report")
    ]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_an_example_workflow_gives_the_action_only_inputs_it_declares(example):
    workflow = yaml.safe_load(example.read_text())
    required = {name for name, spec in ACTION["inputs"].items() if spec.get("required")}

    reports = _uses_of_the_action(workflow)

    assert reports
    for step in reports:
        assert set(step["with"]) <= set(ACTION["inputs"]), step["name"]
        assert required <= set(step["with"]), step["name"]
    assert workflow["permissions"]["id-token"] == "write"
    assert reports[-1]["if"] == "always()"
    assert reports[-1]["with"]["conclusion"] == "${{ job.status }}"


def test_the_downstream_example_answers_dispatches_and_reports_each_matrix_leg():
    workflow = yaml.safe_load((ROOT / "kit/examples/downstream.yml").read_text())
    job = workflow["jobs"]["test"]
    started, finished = _uses_of_the_action(workflow)
    checkout = next(step for step in job["steps"] if step.get("with", {}).get("path") == "upstream")

    assert workflow[True]["repository_dispatch"]["types"] == ["pull_request", "push"]  # `on:`
    assert workflow["concurrency"]["cancel-in-progress"] is True
    assert "client_payload.payload.pull_request.number" in workflow["concurrency"]["group"]
    assert job["if"] == "github.event.client_payload.payload.action != 'closed'"
    assert (started["with"]["status"], finished["with"]["status"]) == ("in_progress", "completed")
    assert started["with"]["job-name"] == finished["with"]["job-name"] == "test-${{ matrix.shard }}"
    assert "client_payload.payload.pull_request.head.sha" in checkout["with"]["ref"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_the_readme_shows_each_example_workflow_as_it_is(example):
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)

    assert example.read_text() in blocks
