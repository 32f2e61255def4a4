"""Reading a downstream's workflow file as GitHub does (relay/doctor/workflow.py)."""

import pytest

from relay.doctor.workflow import read

STEPS = "jobs:\n  ci:\n    runs-on: x\n    steps: [{run: make}]\n"


@pytest.mark.parametrize(
    ("on", "types"),
    [
        ("on: repository_dispatch", None),
        ("on: [push, repository_dispatch]", None),
        ("on:\n  repository_dispatch:", None),
        ("'on':\n  repository_dispatch:\n    types: push", frozenset({"push"})),
        (
            "on: {repository_dispatch: {types: [pull_request, push]}}",
            frozenset({"pull_request", "push"}),
        ),
    ],
    ids=["string", "list", "map without types", "quoted key, one type", "flow map"],
)
def test_every_form_of_on_is_read(on, types):
    found = read("w.yml", f"{on}\n{STEPS}")

    assert (found.listens, found.types, found.error) == (True, types, "")


def test_a_workflow_on_other_events_does_not_listen():
    assert read("w.yml", f"on: [push, pull_request]\n{STEPS}").listens is False


def test_a_job_level_permission_grants_the_token():
    text = "on: repository_dispatch\njobs:\n  a: {permissions: {id-token: write}}\n  b: {}\n"

    assert read("w.yml", text).id_token is True


def test_a_job_level_permission_replaces_the_workflows():
    text = (
        "on: repository_dispatch\npermissions: {id-token: write}\njobs:\n  a: {permissions: {}}\n"
    )

    assert read("w.yml", text).id_token is False


def test_write_all_grants_the_token():
    assert read("w.yml", f"on: repository_dispatch\npermissions: write-all\n{STEPS}").id_token


def test_a_file_that_is_not_yaml_says_so():
    found = read("w.yml", "on: [unclosed\n")

    assert found.listens is False
    assert found.error.startswith("not valid YAML (")
