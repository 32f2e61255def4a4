"""A job's log link: the job on GitHub Actions where its id is known, else the run."""

import pytest

from hud.reports import job_log_url

RUN = "https://github.com/org/repo/actions/runs/123"


@pytest.mark.parametrize(
    ("run_url", "check_run_id", "expected"),
    [
        (RUN, "456", f"{RUN}/job/456"),
        (f"{RUN}/", "456", f"{RUN}/job/456"),
        (f"{RUN}/attempts/2", "456", f"{RUN}/job/456"),  # job ids are unique across attempts
        (RUN, "run-1-build", RUN),  # not GitHub's job id
        (RUN, "", RUN),
        (RUN, None, RUN),
        (
            "https://gitlab.example/org/repo/-/pipelines/9",
            "456",
            "https://gitlab.example/org/repo/-/pipelines/9",
        ),
        (
            "https://github.com.evil/org/repo/actions/runs/1",
            "4",
            "https://github.com.evil/org/repo/actions/runs/1",
        ),
        (
            "https://github.com/org/repo/actions/runs/1?x=1",
            "4",
            "https://github.com/org/repo/actions/runs/1?x=1",
        ),
        ("", "456", ""),
        (None, "456", ""),
    ],
)
def test_the_log_link_is_the_job_only_on_a_github_actions_run(run_url, check_run_id, expected):
    assert job_log_url(run_url, check_run_id) == expected
