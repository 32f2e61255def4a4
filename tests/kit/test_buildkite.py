"""The kit's Buildkite wrapper (kit/report/buildkite.sh) in a Buildkite job: Buildkite's
variables for the run, a token from `buildkite-agent oidc request-token` (a fake agent on PATH,
signing as the simulated Buildkite issuer), against the live relay."""

import json
import subprocess
import uuid

import pytest
from cryptography.hazmat.primitives import serialization

from tests.kit.support import BUILDKITE_REPO
from tests.paths import PYTHON, ROOT

WRAPPER = ROOT / "kit" / "report" / "buildkite.sh"
BUILD_ID = str(uuid.uuid4())


@pytest.fixture
def agent(relay, tmp_path):
    """A bin directory with the fake buildkite-agent, and the environment it reads."""
    kid, key = next(iter(relay.buildkite.keys.items()))
    pem = tmp_path / "buildkite.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))  # fmt: skip
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "buildkite-agent"
    fake.write_text(f'#!/bin/sh\nexec {PYTHON} {ROOT}/tests/fakes/buildkite_agent.py "$@"\n')
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    env = {
        # A job of its own: tokens of one job asked for in the same second with the same
        # lifetime are the same token (buildkite.sh), so jobs of two tests must differ.
        "BUILDKITE_JOB_ID": str(uuid.uuid4()),
        "FAKE_BUILDKITE_KEY": str(pem),
        "FAKE_BUILDKITE_KID": kid,
        "FAKE_BUILDKITE_ISSUER": relay.buildkite.url,
        "FAKE_BUILDKITE_CALLS": str(calls),
    }
    return bin_dir, env, calls


def _step(relay, agent, tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    """The wrapper in a job of the pipeline mapped to BUILDKITE_REPO: its second attempt."""
    bin_dir, agent_env, _ = agent
    buildkite = {
        "PATH": f"{bin_dir}:/usr/bin:/bin", "TMPDIR": str(tmp_path), "BUILDKITE": "true",
        "BUILDKITE_BUILD_ID": BUILD_ID, "BUILDKITE_RETRY_COUNT": "1",
        "BUILDKITE_LABEL": ":pytorch: test (npu, 1)", "BUILDKITE_PIPELINE_SLUG": "pipe",
        "BUILDKITE_BUILD_URL": "https://buildkite.com/org/pipe/builds/42",
        "CALLBACK_URL": relay.callback_url,
    }  # fmt: skip
    return subprocess.run(["/bin/bash", str(WRAPPER)], env=buildkite | agent_env | env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_a_buildkite_job_reports_with_its_own_ids_and_a_buildkite_token(relay, agent, tmp_path):
    dispatch = json.dumps(relay.dispatch(BUILDKITE_REPO))

    started = _step(relay, agent, tmp_path, STATUS="in_progress", CLIENT_PAYLOAD=dispatch)
    finished = _step(relay, agent, tmp_path, BUILDKITE_COMMAND_EXIT_STATUS="1",
                     CLIENT_PAYLOAD=dispatch)  # fmt: skip

    assert (started.returncode, started.stdout) == (0, "CRCR: in_progress recorded\n")
    assert (finished.returncode, finished.stdout) == (0, "CRCR: completed recorded\n")
    [record] = relay.records(json.loads(dispatch)["delivery_id"])
    assert (record["downstream_repo"], record["run_id"], record["run_attempt"]) == (
        BUILDKITE_REPO, BUILD_ID, 2
    )  # fmt: skip
    assert (record["job_name"], record["check_run_id"]) == (
        ":pytorch: test (npu, 1)", agent[1]["BUILDKITE_JOB_ID"]
    )  # fmt: skip
    assert (record["workflow_name"], record["conclusion"]) == ("pipe", "failure")
    assert record["workflow_run_url"] == "https://buildkite.com/org/pipe/builds/42"
    calls = [json.loads(line) for line in agent[2].read_text().splitlines()]
    assert calls == [
        ["oidc", "request-token", "--audience", "pytorch-cross-repo-ci-relay",
         "--lifetime", str(300 + n), "--claim", "organization_id,pipeline_id"]
        for n in range(2)
    ]  # fmt: skip


def test_a_buildkite_nightly_is_recorded_against_the_upstream_commit(relay, agent, tmp_path):
    sha = "9f3182061f1e2cca4702c368cbc039b7dc9d4485"

    ran = _step(relay, agent, tmp_path, CONCLUSION="success", DELIVERY_ID_OVERRIDE=sha,
                EVENT_TYPE_OVERRIDE="nightly")  # fmt: skip

    assert (ran.returncode, ran.stdout) == (0, "CRCR: completed recorded\n")
    record = next(r for r in relay.records(sha) if r["downstream_repo"] == BUILDKITE_REPO)
    assert (record["event_type"], record["conclusion"]) == ("nightly", "success")


@pytest.mark.parametrize(("fail_on_error", "code"), [("", 0), ("true", 1)])
def test_outside_buildkite_the_wrapper_says_so_and_passes(
    relay, agent, tmp_path, fail_on_error, code
):
    ran = _step(relay, agent, tmp_path, BUILDKITE_BUILD_ID="", FAIL_ON_ERROR=fail_on_error)

    assert ran.returncode == code
    assert ran.stdout == (
        "CRCR: warning: nothing was reported: BUILDKITE_BUILD_ID is not set: not a Buildkite job\n"
    )
    assert not agent[2].exists()


def test_an_agent_that_cannot_mint_a_token_is_a_warning(relay, agent, tmp_path):
    bin_dir = agent[0]
    (bin_dir / "buildkite-agent").write_text("#!/bin/sh\necho 'no Job API socket' >&2\nexit 1\n")

    ran = _step(relay, agent, tmp_path, STATUS="in_progress")

    assert ran.returncode == 0
    assert ran.stdout.endswith(
        "CRCR: warning: nothing was reported: buildkite-agent oidc request-token failed\n"
    )
