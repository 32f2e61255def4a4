# ruff: noqa: E501 (the figures are tables, one criterion a line)
"""Level automation (hud/levels.py): proposals from the readiness figures, accepting and
dismissing them, temporary demotions, and how the HUD and the admin show them."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import IntegrityError
from django.urls import reverse
from django.utils import timezone

from allowlist import lookup
from allowlist.entry import Entry
from allowlist.models import Change, DownstreamRepo, Generation
from hud import levels
from hud.models import LevelProposal
from tests.allowlist.support import run_sync, write
from tests.hud.dataset import recent_noon, seed, steady

pytestmark = pytest.mark.django_db


def _entry(repo: str) -> Entry:
    """The repo's entry in the lookup's snapshot (it must be listed)."""
    entry = lookup.snapshot().get(repo)
    assert entry is not None, repo
    return entry


# alpha at L2, beta at L3 on npu, both from the file (so the file owns their rows).
FILE = "L2:\n  - org/alpha\nL3:\n  npu:\n    org/beta: [beta-oncall]\n"


@pytest.fixture
def synced(tmp_path):
    """The file synced, tests/hud/dataset.py's records recent: beta's last 7 days fail (pass
    rate 2 of 3); alpha's fail too, but L2 is as low as a demotion goes."""
    location = write(tmp_path, FILE)
    run_sync(location)
    seed(now=recent_noon())
    return location


def _at_level_since(repo: str, days: int) -> None:
    # The history a repo would have: the change log put it at its level `days` ago.
    Change.objects.filter(repo__iexact=repo).update(at=timezone.now() - timedelta(days=days))


@pytest.fixture
def ready():
    """org/ready: at L2 for 40 days (no device), every criterion met."""
    DownstreamRepo.objects.create(repo="org/ready", level="L2")
    _at_level_since("org/ready", 40)
    steady("org/ready", "L2", now=timezone.now())


def _open(repo: str) -> list[LevelProposal]:
    return list(LevelProposal.objects.filter(repo_key=repo.casefold(), state="open"))


def test_a_repo_failing_a_demotion_criterion_is_proposed_for_demotion_with_its_figures(synced):
    report = levels.evaluate()

    (proposal,) = LevelProposal.objects.all()
    assert report.opened == ["org/beta"]
    assert (proposal.repo, proposal.direction, proposal.from_level, proposal.to_level) == (
        "org/beta", "demote", "L3", "L2",
    )  # fmt: skip
    assert proposal.figures == [
        {"name": "Pass rate", "needs": "≥ 90%", "value": 2 / 3, "unit": "rate", "met": False, "days": 7},
        {"name": "Timeout rate", "needs": "< 1%", "value": 0.0, "unit": "rate", "met": True, "days": 7},
        {"name": "p50 end to end", "needs": "< 3 h", "value": 1800.0, "unit": "seconds", "met": True, "days": 7},
        {"name": "Average queue", "needs": "< 30 min", "value": 200.0, "unit": "seconds", "met": True, "days": 7},
    ]  # fmt: skip
    assert proposal.reason == "Pass rate 66.7% (needs ≥ 90%) over 7 days"
    assert proposal.blocker == ""
    assert _entry("org/beta").suspended is False  # the setting is off


def test_a_repo_meeting_every_criterion_is_proposed_for_promotion_with_its_figures(ready):
    levels.evaluate()

    (proposal,) = _open("org/ready")
    assert (proposal.direction, proposal.from_level, proposal.to_level) == ("promote", "L2", "L3")
    assert proposal.figures == [
        {"name": "Pass rate", "needs": "≥ 90%", "value": 1.0, "unit": "rate", "met": True, "days": 14},
        {"name": "Timeout rate", "needs": "< 1%", "value": 0.0, "unit": "rate", "met": True, "days": 14},
        {"name": "p50 end to end", "needs": "< 3 h", "value": 660.0, "unit": "seconds", "met": True, "days": 14},
        {"name": "Average queue", "needs": "< 30 min", "value": 60.0, "unit": "seconds", "met": True, "days": 14},
        {"name": "Days at L2", "needs": "≥ 30", "value": 40.0, "unit": "days", "met": True, "days": None},
    ]  # fmt: skip
    assert proposal.reason.startswith("every criterion met: Pass rate 100.0% (needs ≥ 90%)")


def test_a_promotion_to_l3_without_a_device_is_proposed_but_cannot_be_accepted(ready):
    levels.evaluate()
    (proposal,) = _open("org/ready")
    changes = Change.objects.count()

    with pytest.raises(levels.ProposalRefused, match="L3 needs a device"):
        levels.accept(proposal.pk, actor="admin")

    assert proposal.blocker == "L3 needs a device; set it on the row"
    assert _entry("org/ready").level == "L2"
    assert Change.objects.count() == changes
    assert _open("org/ready") == [proposal]


def test_a_promotion_waits_for_its_days_at_the_level(ready):
    _at_level_since("org/ready", 29)

    levels.evaluate()

    assert _open("org/ready") == []


def test_an_l3_repo_waits_at_l3_before_l4_whatever_its_days_at_l2(ready):
    row = DownstreamRepo.objects.get(repo="org/ready")
    row.device = "npu"
    row.level = "L3"
    row.save()  # at L3 from now on; it was at L2 for 40 days

    levels.evaluate()

    assert _open("org/ready") == []
    _at_level_since("org/ready", 31)
    levels.evaluate()
    (proposal,) = _open("org/ready")
    assert (proposal.from_level, proposal.to_level) == ("L3", "L4")
    assert proposal.figures[-1]["name"] == "Days at L3"


def test_an_open_proposal_is_kept_up_to_date_never_made_twice(synced):
    first = levels.evaluate()
    second = levels.evaluate()

    assert (first.opened, second.opened, second.kept) == (["org/beta"], [], ["org/beta"])
    assert LevelProposal.objects.count() == 1
    with pytest.raises(IntegrityError):  # and the database holds it so, whoever writes
        LevelProposal.objects.create(
            repo="org/beta", repo_key="org/beta", direction="demote", from_level="L3",
            to_level="L2", reason="again", opened_at=timezone.now(), evaluated_at=timezone.now(),
        )  # fmt: skip


def test_a_proposal_the_next_evaluation_no_longer_makes_lapses(synced):
    levels.evaluate()
    steady("org/beta", "L3", now=timezone.now())  # 12 of 13 green over 7 days

    report = levels.evaluate()

    assert report.lapsed == ["org/beta"]
    assert LevelProposal.objects.get().state == "lapsed"
    assert LevelProposal.objects.get().closed_by == "levels"


def test_accepting_sets_the_level_over_the_file_in_the_change_log_with_the_yaml_diff(synced):
    levels.evaluate()
    proposal = LevelProposal.objects.get()

    accepted = levels.accept(proposal.pk, actor="admin")

    row = DownstreamRepo.objects.get(repo="org/beta")
    assert (row.level, row.override, row.source) == ("L2", True, "yaml")
    assert _entry("org/beta").level == "L2"
    change = Change.objects.filter(repo="org/beta")[0]
    assert (change.actor, change.old_level, change.new_level) == ("admin", "L3", "L2")
    assert change.fields["override"] == [False, True]
    assert (accepted.state, accepted.closed_by) == ("accepted", "admin")
    assert accepted.diff == (
        "--- a/.github/allowlist.yml\n"
        "+++ b/.github/allowlist.yml\n"
        "@@ -5,7 +5,6 @@\n"
        " L1: []\n"
        " L2:\n"
        " - org/alpha\n"
        "-L3:\n"
        "-  npu:\n"
        "-    org/beta: [beta-oncall]\n"
        "+- org/beta: beta-oncall\n"
        "+L3: {}\n"
        " L4: []\n"
    )
    assert LevelProposal.objects.get().diff == accepted.diff
    run_sync(synced)  # the file still says L3: the override holds until it catches up
    assert _entry("org/beta").level == "L2"


def test_a_proposal_is_accepted_once_and_not_after_the_level_moved(synced):
    levels.evaluate()
    proposal = LevelProposal.objects.get()
    levels.accept(proposal.pk, actor="admin")

    with pytest.raises(levels.ProposalRefused, match="accepted already"):
        levels.accept(proposal.pk, actor="admin")


def test_dismissing_closes_it_and_it_is_not_made_again_within_its_window(synced):
    levels.evaluate()
    proposal = LevelProposal.objects.get()

    levels.dismiss(proposal.pk, actor="admin")
    report = levels.evaluate()

    assert (LevelProposal.objects.get().state, report.held) == ("dismissed", ["org/beta"])
    assert _entry("org/beta").level == "L3"
    later = levels.evaluate(now=timezone.now() + timedelta(days=8))  # no results at all then
    assert later.opened == ["org/beta"]


def test_auto_demotion_stands_a_temporary_demotion_the_lookup_carries(synced, settings):
    settings.CRCR_LEVELS_AUTO_DEMOTE = True
    token = Generation.objects.get().token

    report = levels.evaluate()

    entry = _entry("org/beta")
    assert (entry.suspended, entry.level) == (True, "L3")  # the level stays the file's
    assert report.suspended == ["org/beta"]
    assert Generation.objects.get().token != token
    row = DownstreamRepo.objects.get(repo="org/beta")
    assert row.suspended_reason.startswith("temporary demotion L3→L2 (")
    assert row.suspended_reason.endswith("): Pass rate 66.7% (needs ≥ 90%) over 7 days")
    change = Change.objects.filter(repo="org/beta")[0]
    assert (change.actor, change.fields["suspended"]) == ("levels", [False, True])
    assert LevelProposal.objects.get().suspended_at is not None
    assert _entry("org/alpha").suspended is False


def test_promotions_are_never_applied_automatically(ready, settings):
    settings.CRCR_LEVELS_AUTO_DEMOTE = True

    levels.evaluate()

    entry = _entry("org/ready")
    assert (entry.level, entry.suspended, len(_open("org/ready"))) == ("L2", False, 1)


def test_a_temporary_demotion_ends_when_the_demotion_is_no_longer_proposed(synced, settings):
    settings.CRCR_LEVELS_AUTO_DEMOTE = True
    levels.evaluate()
    steady("org/beta", "L3", now=timezone.now())

    report = levels.evaluate()

    assert (report.lapsed, report.lifted) == (["org/beta"], ["org/beta"])
    assert _entry("org/beta").suspended is False


@pytest.mark.parametrize("decide", [levels.accept, levels.dismiss])
def test_accepting_or_dismissing_the_demotion_ends_the_temporary_one(synced, settings, decide):
    settings.CRCR_LEVELS_AUTO_DEMOTE = True
    levels.evaluate()

    decide(LevelProposal.objects.get().pk, actor="admin")

    assert _entry("org/beta").suspended is False


def test_a_temporary_demotion_an_admin_lifted_is_not_stood_again_for_the_same_proposal(
    synced, settings, admin_client
):
    settings.CRCR_LEVELS_AUTO_DEMOTE = True
    levels.evaluate()
    row = DownstreamRepo.objects.get(repo="org/beta")

    response = admin_client.post(
        reverse("admin:allowlist_downstreamrepo_changelist"),
        {"action": "lift", "_selected_action": [row.pk]},
        follow=True,
    )
    report = levels.evaluate()

    assert "Temporary demotion lifted: org/beta." in response.content.decode()
    assert _entry("org/beta").suspended is False
    assert (report.kept, report.suspended) == (["org/beta"], [])
    assert Change.objects.filter(repo="org/beta")[0].actor == "admin"


def test_a_sync_leaves_a_temporary_demotion_alone_and_the_export_has_no_trace_of_it(
    synced, settings, tmp_path, capsys
):
    settings.CRCR_LEVELS_AUTO_DEMOTE = True
    levels.evaluate()

    run_sync(write(tmp_path, FILE.replace("beta-oncall", "new-oncall")))
    call_command("allowlist_export")

    entry = _entry("org/beta")
    assert (entry.suspended, entry.oncalls) == (True, ("new-oncall",))
    assert "suspend" not in capsys.readouterr().out


def test_the_periodic_job_evaluates(synced, settings):
    from relay.periodic import JOBS, take_turn

    job = next(job for job in JOBS if job.name == "levels_evaluate")

    assert take_turn(job)
    job.run()

    assert [p.repo for p in _open("org/beta")] == ["org/beta"]
    settings.CRCR_LEVELS_EVERY = 0
    assert job.interval() == 0


def test_the_command_reports_and_running_it_twice_changes_nothing(synced, capsys):
    call_command("levels_evaluate")
    call_command("levels_evaluate")

    assert capsys.readouterr().out.splitlines() == ["opened: org/beta", "kept: org/beta"]
    assert LevelProposal.objects.count() == 1


# -- the HUD and the admin -----------------------------------------------------------------------


def test_crcr_marks_proposed_and_temporarily_demoted_repos(client, synced, ready, settings):
    settings.CRCR_LEVELS_AUTO_DEMOTE = True
    levels.evaluate()

    page = client.get("/crcr").content.decode()
    summary = client.get("/api/crcr/summary").json()

    assert page.count(">↓ L2 proposed</a>") == 2  # registered, and among the results
    assert page.count(">temporarily demoted</a>") == 2
    assert page.count(">↑ L3 proposed</a>") == 2
    marks = {r["repo"]: r["marks"] for block in summary["blocks"] for r in block["registered"]}
    assert marks["org/beta"] == {
        "proposals": [{"direction": "demote", "to_level": "L2"}], "suspended": True,
    }  # fmt: skip
    assert marks["org/alpha"] == {"proposals": [], "suspended": False}


def test_the_repo_page_shows_the_proposal_its_figures_and_the_suspension(client, synced, settings):
    settings.CRCR_LEVELS_AUTO_DEMOTE = True
    levels.evaluate()
    proposal = LevelProposal.objects.get()

    page = client.get("/crcr/org/beta").content.decode()
    api = client.get("/api/crcr/repos/org/beta").json()

    assert "Demote L3 → L2" in page
    assert "<strong>Temporarily demoted</strong>" in page
    assert "no new check runs or comment mentions are made upstream" in page
    assert "66.7%" in page
    assert f'href="/crcr/proposals/{proposal.pk}/allowlist.diff"' in page
    assert f'href="/admin/hud/levelproposal/{proposal.pk}/change/"' in page
    assert api["levels"]["open"][0]["figures"][0] == {
        "name": "Pass rate", "needs": "≥ 90%", "value": 2 / 3, "unit": "rate", "met": False,
        "days": 7,
    }  # fmt: skip
    assert api["levels"]["suspension"]["reason"].startswith("temporary demotion L3→L2")


def test_the_hud_serves_the_yaml_diff_of_an_open_and_an_accepted_proposal(client, synced):
    levels.evaluate()
    proposal = LevelProposal.objects.get()
    url = f"/crcr/proposals/{proposal.pk}/allowlist.diff"

    preview = client.get(url)
    levels.accept(proposal.pk, actor="admin")
    accepted = client.get(url)

    assert preview.status_code == accepted.status_code == 200
    assert preview["Content-Type"] == "text/x-diff; charset=utf-8"
    assert preview["Content-Disposition"] == 'attachment; filename="allowlist-org-beta-L2.diff"'
    assert preview.content == accepted.content == LevelProposal.objects.get().diff.encode()


def test_the_hud_has_no_diff_for_a_dismissed_or_unknown_proposal(client, synced):
    levels.evaluate()
    proposal = LevelProposal.objects.get()
    levels.dismiss(proposal.pk, actor="admin")

    dismissed = client.get(f"/crcr/proposals/{proposal.pk}/allowlist.diff")
    unknown = client.get("/crcr/proposals/99999999999999999999/allowlist.diff")

    assert (dismissed.status_code, unknown.status_code) == (409, 404)
    assert dismissed["Content-Type"] == unknown["Content-Type"] == "text/html; charset=utf-8"
    assert "No diff: it is dismissed: it changes nothing." in dismissed.content.decode()
    assert "Demote L3 → L2: dismissed by admin" in client.get("/crcr/org/beta").content.decode()


def test_the_admin_lists_proposals_and_accepts_them(admin_client, synced):
    levels.evaluate()
    proposal = LevelProposal.objects.get()

    listed = admin_client.get(reverse("admin:hud_levelproposal_changelist"))
    shown = admin_client.get(reverse("admin:hud_levelproposal_change", args=[proposal.pk]))
    response = admin_client.post(
        reverse("admin:hud_levelproposal_changelist"),
        {"action": "accept", "_selected_action": [proposal.pk]},
        follow=True,
    )

    assert listed.status_code == shown.status_code == 200
    assert "demote L3 → L2" in listed.content.decode()
    assert "Pass rate" in shown.content.decode()
    assert "Dismiss" in shown.content.decode()
    assert "Accepted: org/beta L3 → L2; the allowlist has it now." in response.content.decode()
    assert _entry("org/beta").level == "L2"
    assert Change.objects.filter(repo="org/beta")[0].actor == "admin"


def test_the_admin_dismisses_from_the_proposals_page_and_downloads_its_diff(admin_client, synced):
    levels.evaluate()
    proposal = LevelProposal.objects.get()

    diff = admin_client.get(reverse("admin:hud_levelproposal_diff", args=[proposal.pk]))
    response = admin_client.post(
        reverse("admin:hud_levelproposal_decide", args=[proposal.pk]),
        {"decision": "dismiss"},
        follow=True,
    )

    assert diff.status_code == 200
    assert diff.content.decode().startswith("--- a/.github/allowlist.yml\n")
    assert "Dismissed: org/beta L3 → L2." in response.content.decode()
    assert LevelProposal.objects.get().state == "dismissed"
    assert LevelProposal.objects.get().closed_by == "admin"


# -- the readiness panel's verdict is the proposal's (issue 16) ----------------------------------


def _verdict(client, repo: str) -> str:
    page = client.get(f"/crcr/{repo}").content.decode()
    start = page.index('<p class="verdict')
    return page[start : page.index("</p>", start) + 4]


def test_a_repo_meeting_every_criterion_is_ready_and_proposed(client, ready):
    verdict = _verdict(client, "org/ready")
    levels.evaluate()

    assert (
        verdict
        == '<p class="verdict ready"><strong>Ready for L3: every criterion met.</strong></p>'
    )
    assert [(p.direction, p.to_level) for p in _open("org/ready")] == [("promote", "L3")]
    api = client.get("/api/crcr/repos/org/ready").json()["readiness"]
    assert (api["verdict"], api["target"], api["level"], api["days_at_level"]) == (
        "ready",
        "L3",
        "L2",
        40,
    )


def test_a_repo_failing_a_demotion_criterion_is_at_risk_and_proposed_for_demotion(client, synced):
    verdict = _verdict(client, "org/beta")
    levels.evaluate()

    (proposal,) = _open("org/beta")
    assert "At risk of demotion to L2: Pass rate 66.7% (needs ≥ 90%) over 7 days." in verdict
    assert proposal.reason == "Pass rate 66.7% (needs ≥ 90%) over 7 days"  # the same figures
    page = " ".join(client.get("/crcr/org/beta").content.decode().split())
    assert "At L3 for 0 days · target L4: every criterion met over 14 days" in page
    assert "7 days (to stay at L3)" in page


def test_an_l2_repo_failing_meets_l2_and_is_not_proposed(client, synced):
    verdict = _verdict(client, "org/alpha")
    levels.evaluate()

    assert "Meets L2; not ready for L3: Pass rate 66.7% (needs ≥ 90%) over 7 days" in verdict
    assert _open("org/alpha") == []


def test_an_l4_repo_has_no_target_and_shows_its_days_at_l4_and_the_demotion_criteria(client):
    DownstreamRepo.objects.create(repo="org/top", level="L4")
    _at_level_since("org/top", 12)
    steady("org/top", "L4", now=timezone.now())

    page = " ".join(client.get("/crcr/org/top").content.decode().split())
    levels.evaluate()

    assert "Meets L4 (the highest level)." in _verdict(client, "org/top")
    assert "At L4 for 12 days · L4 is the highest level: the demotion criteria apply" in page
    assert "Days at" not in page
    assert "14 days (for" not in page
    assert "7 days (to stay at L4)" in page
    assert _open("org/top") == []


def test_a_nightly_only_repo_is_not_applicable_not_no_data(client):
    DownstreamRepo.objects.create(repo="org/nightly", level="L2", events=["nightly"])
    steady("org/nightly", "L2", now=timezone.now())

    page = client.get("/crcr/org/nightly").content.decode()
    levels.evaluate()

    assert "takes part in nightly runs only" in _verdict(client, "org/nightly")
    assert "No level change proposed: level automation leaves org/nightly out." in page
    assert "no data" not in page
    assert '<table class="readiness">' not in page
    assert _open("org/nightly") == []


def test_an_l2_repo_with_nothing_measured_has_not_enough_data(client):
    DownstreamRepo.objects.create(repo="org/quiet", level="L2")

    levels.evaluate()

    assert "Not enough data: Pass rate no data (needs ≥ 90%) over 7 days" in _verdict(
        client, "org/quiet"
    )
    assert _open("org/quiet") == []


def test_an_l3_repo_with_nothing_measured_is_at_risk_as_automation_proposes(client):
    DownstreamRepo.objects.create(repo="org/gone", level="L3", device="npu")

    levels.evaluate()

    assert "At risk of demotion to L2: Pass rate no data" in _verdict(client, "org/gone")
    assert [(p.direction, p.to_level) for p in _open("org/gone")] == [("demote", "L2")]
