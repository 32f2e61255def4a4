"""The onboarding doctor (relay/doctor/) against the simulated GitHub: each failure it
diagnoses, one repo set up right, the command's output and exit, and the admin's page."""

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from allowlist.models import DownstreamRepo
from relay.doctor.report import diagnose
from relay.models import CallbackAudit, Delivery, Dispatch

pytestmark = pytest.mark.django_db

REPO = "org-a/backend"
WORKFLOW = ".github/workflows/crcr.yml"
GOOD = """
name: CRCR
on:
  repository_dispatch:
    types: [pull_request, push]
permissions:
  id-token: write
  contents: read
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
"""


def states(report) -> dict[str, str]:
    return {check.name: check.state.value for check in report.checks}


def check(report, name: str):
    return next(c for c in report.checks if c.name == name)


def dispatched(status: str = "sent", error: str = "") -> Dispatch:
    delivery = Delivery.objects.create(
        delivery_id="guid-7",
        event="pull_request",
        action="opened",
        upstream_repo="pytorch/pytorch",
        pr_number=7,
        head_sha="ab" * 20,
        body="{}",
    )
    return Dispatch.objects.create(
        delivery=delivery,
        repo=REPO,
        repo_key=REPO,
        level="L2",
        status=status,
        attempts=1,
        last_error=error,
        sent_at=timezone.now() if status == "sent" else None,
    )


def audited(decision: str, status: int, reason: str = "", detail: str = "", **more) -> None:
    CallbackAudit.objects.create(
        at=timezone.now(),
        decision=decision,
        status=status,
        reason=reason,
        detail=detail,
        repo=REPO,
        delivery_id="guid-7",
        callback_status="completed",
        job="CI / build (1, 1)",
        **more,
    )


@pytest.fixture
def entry(db) -> DownstreamRepo:
    return DownstreamRepo.objects.create(repo=REPO, level="L2")


@pytest.fixture
def healthy(github, entry) -> DownstreamRepo:
    """Allowlisted, installed, its workflow in place, dispatched to and answered."""
    github.put_file(REPO, WORKFLOW, GOOD)
    dispatched()
    audited("accepted", 200)
    return entry


def test_a_repo_set_up_right_passes_every_check(healthy):
    report = diagnose(REPO)

    assert set(states(report).values()) == {"pass"}
    assert check(report, "workflow").finding == (
        f"{WORKFLOW} runs on repository_dispatch (pull_request, push)"
    )
    assert check(report, "last callback").finding.startswith("accepted ")


def test_the_command_prints_every_line_and_succeeds_when_nothing_fails(healthy, capsys):
    call_command("crcr_doctor", REPO)

    out = capsys.readouterr().out
    assert out.count("\nPASS  ") == 9
    assert out.rstrip().endswith("No check failed.")


def test_the_command_exits_non_zero_naming_what_failed(github, entry, capsys):
    with pytest.raises(CommandError, match=r"^1 check\(s\) failed: workflow$"):
        call_command("crcr_doctor", REPO)

    assert "FAIL  workflow: no workflow files on main" in capsys.readouterr().out


def test_the_command_refuses_what_is_not_a_repo_name(db):
    with pytest.raises(CommandError, match="is not owner/name"):
        call_command("crcr_doctor", "not a repo")


def test_an_app_not_installed_fails_and_says_how_to_install_it(healthy, github):
    github.uninstall(REPO)

    report = diagnose(REPO)

    assert check(report, "GitHub App").state == "fail"
    assert "is not installed on org-a/backend" in check(report, "GitHub App").finding
    assert check(report, "GitHub App").next_step.startswith("install it on org-a/backend")
    assert states(report)["workflow"] == "warn"  # not checked


def test_an_installation_without_contents_write_fails(healthy, github):
    github.set_permissions("org-a", {"contents": "read", "metadata": "read"})

    found = check(diagnose(REPO), "Contents: write")

    assert found.state == "fail"
    assert found.finding.startswith("the installation's Contents permission is read")


def test_an_installation_that_may_not_read_files_fails_the_workflow_line(healthy, github):
    github.set_permissions("org-a", {"metadata": "read"})

    found = check(diagnose(REPO), "workflow")

    assert found.state == "fail"
    assert "the App may not read org-a/backend's files" in found.finding


def test_a_repo_outside_the_allowlist_fails(github):
    found = check(diagnose(REPO), "allowlist")

    assert (found.state, found.finding) == ("fail", "org-a/backend is not in the allowlist")


def test_an_l1_repo_is_warned_that_its_callbacks_are_ignored(github, entry):
    entry.level = "L1"
    entry.save()

    found = check(diagnose(REPO), "allowlist")

    assert found.state == "warn"
    assert "callbacks are ignored" in found.finding


def test_a_workflow_not_on_repository_dispatch_fails(healthy, github):
    github.put_file(REPO, WORKFLOW, GOOD.replace("repository_dispatch", "push"))

    found = check(diagnose(REPO), "workflow")

    assert found.state == "fail"
    assert found.finding == "none of its 1 workflows on main runs on repository_dispatch"


def test_a_workflow_on_other_dispatch_types_fails(healthy, github):
    github.put_file(REPO, WORKFLOW, GOOD.replace("[pull_request, push]", "[deploy]"))

    found = check(diagnose(REPO), "workflow")

    assert found.state == "fail"
    assert "types deploy, none of the relay's" in found.finding


def test_a_workflow_taking_pull_requests_only_is_warned_about_pushes(healthy, github):
    github.put_file(REPO, WORKFLOW, GOOD.replace("[pull_request, push]", "pull_request"))

    found = check(diagnose(REPO), "workflow")

    assert (found.state, found.next_step) == ("warn", "add push to its repository_dispatch types")


def test_the_workflow_is_read_from_the_default_branch(healthy, github):
    github.set_default_branch(REPO, "trunk")

    assert check(diagnose(REPO), "workflow").finding == "no workflow files on trunk"


def test_a_workflow_without_id_token_write_fails(healthy, github):
    github.put_file(REPO, WORKFLOW, GOOD.replace("id-token: write", "actions: read"))

    found = check(diagnose(REPO), "id-token: write")

    assert found.state == "fail"
    assert "does not grant `id-token: write`" in found.finding


@pytest.mark.parametrize("kind", ["5xx", "timeout"])
def test_github_failing_is_a_failed_line_not_a_traceback(healthy, github, settings, kind):
    settings.GITHUB_TIMEOUT = 0.5
    github.hang_seconds = 1.0
    github.fail("installation", kind)

    report = diagnose(REPO)

    assert check(report, "GitHub App").state == "fail"
    assert check(report, "GitHub App").finding.startswith("GitHub did not answer")
    assert states(report)["last callback"] == "pass"  # the relay's own records still speak


def test_no_dispatch_yet_is_warned_with_the_command_to_send_one(github, entry):
    github.put_file(REPO, WORKFLOW, GOOD)

    found = check(diagnose(REPO), "last dispatch")

    assert (found.state, found.finding) == ("warn", "none yet")
    assert found.next_step.endswith("manage.py redispatch --pr N --repo org-a/backend")


def test_a_failed_dispatch_fails_with_what_github_said(healthy):
    Dispatch.objects.update(status="failed", last_error="HTTP 403 Resource not accessible")

    found = check(diagnose(REPO), "last dispatch")

    assert found.state == "fail"
    assert "HTTP 403 Resource not accessible" in found.finding
    assert found.next_step.endswith("manage.py redispatch --pr 7 --repo org-a/backend")


def test_a_dispatch_unanswered_for_long_fails(github, entry, settings):
    github.put_file(REPO, WORKFLOW, GOOD)
    dispatched()
    Dispatch.objects.update(sent_at=timezone.now() - timedelta(days=1))

    found = check(diagnose(REPO), "last callback")

    assert found.state == "fail"
    assert found.finding.startswith("none since the dispatch at ")
    assert found.finding.endswith("(1\xa0day ago)")


def test_the_last_refusals_are_shown_with_their_reasons(healthy):
    audited("refused", 409, "no_dispatch", "no dispatch of guid-9 to org-a/backend on record")
    audited("refused", 401, "token_invalid", "Audience doesn't match", verified=False)

    report = diagnose(REPO)

    assert check(report, "last callback").state == "fail"
    assert "401 token_invalid" in check(report, "last callback").finding
    assert "audience pytorch-cross-repo-ci-relay" in check(report, "last callback").next_step
    assert [line.split(": ", 1)[1] for line in check(report, "refusals").details] == [
        "401 token_invalid, Audience doesn't match [CI / build (1, 1)]",
        "409 no_dispatch, no dispatch of guid-9 to org-a/backend on record [CI / build (1, 1)]",
    ]


BUILDKITE = GOOD.replace(
    "      - uses: actions/checkout@v4",
    "      - uses: buildkite/trigger-pipeline-action@v2\n        with: {pipeline: org/pipe}",
).replace("  id-token: write\n", "")


def test_a_workflow_starting_buildkite_without_a_mapped_pipeline_fails(healthy, github):
    github.put_file(REPO, WORKFLOW, BUILDKITE)
    CallbackAudit.objects.create(
        at=timezone.now(),
        decision="refused",
        status=403,
        reason="pipeline_not_registered",
        detail="Buildkite pipeline org-uuid/pipe-uuid is not registered",
        verified=False,
    )

    report = diagnose(REPO)

    assert check(report, "Buildkite pipeline").state == "fail"
    assert (
        check(report, "Buildkite pipeline")
        .details[0]
        .endswith("org-uuid/pipe-uuid is not registered")
    )
    assert check(report, "id-token: write").state == "pass"  # Buildkite mints its own


def test_a_mapped_buildkite_pipeline_passes(healthy, github, settings, tmp_path):
    providers = tmp_path / "ci_providers.yml"
    providers.write_text(
        f"providers:\n  buildkite:\n    repo_map:\n      org-uuid/pipe-uuid: {REPO}\n"
    )
    settings.CRCR_CI_PROVIDERS = str(providers)
    github.put_file(REPO, WORKFLOW, BUILDKITE)

    found = check(diagnose(REPO), "Buildkite pipeline")

    assert (found.state, found.finding) == (
        "pass",
        "CRCR_CI_PROVIDERS maps org-uuid/pipe-uuid to it",
    )


def test_the_admin_shows_the_report_of_an_allowlisted_repo(healthy, admin_client):
    url = reverse("admin:allowlist_downstreamrepo_doctor", args=[healthy.pk])

    response = admin_client.get(url)

    assert response.status_code == 200
    page = response.content.decode()
    assert "No check failed." in page
    assert f"{WORKFLOW} runs on repository_dispatch (pull_request, push)" in page
    assert page.count('<tr class="pass">') == 9


def test_the_allowlist_entry_links_to_its_doctor(healthy, admin_client):
    page = admin_client.get(reverse("admin:allowlist_downstreamrepo_change", args=[healthy.pk]))

    assert (
        reverse("admin:allowlist_downstreamrepo_doctor", args=[healthy.pk]) in page.content.decode()
    )


def test_the_doctor_page_is_for_staff_only(healthy, client, django_user_model):
    user = django_user_model.objects.create_user("someone", password="pw", is_staff=False)
    client.force_login(user)

    response = client.get(reverse("admin:allowlist_downstreamrepo_doctor", args=[healthy.pk]))

    assert response.status_code == 302
    assert response.url.startswith("/admin/login/")
