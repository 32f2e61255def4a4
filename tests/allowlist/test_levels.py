"""Level changes the relay makes (allowlist/levels.py): a level set over the file with the
export's diff, and a temporary demotion that the lookup carries and syncs leave alone."""

import pytest
from django.urls import reverse

from allowlist import levels, lookup
from allowlist.audit import acting_as
from allowlist.entry import Entry, Level
from allowlist.models import Change, DownstreamRepo, Generation
from tests.allowlist.support import run_sync, write

pytestmark = pytest.mark.django_db


def _entry(repo: str) -> Entry:
    """The repo's entry in the lookup's snapshot (it must be listed)."""
    entry = lookup.snapshot().get(repo)
    assert entry is not None, repo
    return entry


FILE = "L2: [org/two]\nL4:\n  - org/four: four-oncall\n"


@pytest.fixture
def synced(tmp_path):
    location = write(tmp_path, FILE)
    run_sync(location)
    return location


def test_a_temporary_demotion_is_in_the_lookup_at_once_and_in_the_change_log(synced):
    token = Generation.objects.get().token

    with acting_as("levels"):
        stood = levels.suspend("Org/Four", "pass rate 50% over 7 days")

    entry = _entry("org/four")
    assert (stood, entry.suspended, entry.level) == (True, True, "L4")
    assert Generation.objects.get().token != token
    change = Change.objects.filter(repo="org/four")[0]
    assert (change.actor, change.old_level, change.new_level) == ("levels", "L4", "L4")
    assert change.fields == {
        "suspended": [False, True],
        "suspended_reason": ["", "pass rate 50% over 7 days"],
    }
    assert levels.suspend("org/four", "again") is False  # one stands already


def test_lifting_ends_it_and_lifting_nothing_changes_nothing(synced):
    levels.suspend("org/four", "why")
    changes = Change.objects.count()

    assert levels.lift("org/four") is True
    assert levels.lift("org/four") is False
    assert _entry("org/four").suspended is False
    assert Change.objects.count() == changes + 1


def test_a_sync_and_an_admin_edit_leave_it_alone_and_the_export_has_no_trace_of_it(
    synced, tmp_path, admin_client
):
    levels.suspend("org/four", "why")
    run_sync(write(tmp_path, FILE.replace("four-oncall", "new-oncall")))
    row = DownstreamRepo.objects.get(repo="org/four")
    row.override = True
    row.save()

    response = admin_client.post(
        reverse("admin:allowlist_downstreamrepo_change", args=[row.pk]),
        {"repo": "org/four", "level": "L4", "oncalls": "x", "events": ["pull_request", "nightly"],
         "enabled": "on", "override": "on"},
    )  # fmt: skip

    assert response.status_code == 302
    entry = _entry("org/four")
    assert (entry.suspended, entry.oncalls) == (True, ("x",))
    exported = levels.export_text()
    assert exported.endswith("L4:\n- org/four: x\n")
    assert "why" not in exported
    assert "suspend" not in exported


def test_set_level_overrides_the_file_and_answers_the_export_diff(synced):
    preview = levels.preview_diff("org/two", Level.L1, expect=Level.L2)

    with acting_as("admin"):
        diff = levels.set_level("org/two", Level.L1, expect=Level.L2)

    row = DownstreamRepo.objects.get(repo="org/two")
    assert (row.level, row.override) == ("L1", True)
    assert diff == preview
    assert diff == (
        "--- a/.github/allowlist.yml\n"
        "+++ b/.github/allowlist.yml\n"
        "@@ -2,9 +2,9 @@\n"
        " # Levels: L1 notify only, L2 results on the HUD, L3 check run when the PR has the label\n"
        " # ciflow/crcr/<device>, L4 blocking check run on every PR.\n"
        " \n"
        "-L1: []\n"
        "-L2:\n"
        "+L1:\n"
        " - org/two\n"
        "+L2: []\n"
        " L3: {}\n"
        " L4:\n"
        " - org/four: four-oncall\n"
    )
    change = Change.objects.filter(repo="org/two")[0]
    assert (change.actor, change.old_level, change.new_level) == ("admin", "L2", "L1")


def test_set_level_ends_a_temporary_demotion(synced):
    levels.suspend("org/four", "why")

    levels.set_level("org/four", Level.L2)

    entry = _entry("org/four")
    assert (entry.level, entry.suspended) == ("L2", False)


@pytest.mark.parametrize(
    ("repo", "level", "expect", "refusal"),
    [
        ("org/two", Level.L3, Level.L2, "L3 needs a device; set it on the row"),
        ("org/two", Level.L1, Level.L4, "org/two is at L2 now, not L4"),
        ("org/none", Level.L1, None, "org/none is not on the allowlist"),
    ],
)
def test_set_level_refused_changes_nothing(synced, repo, level, expect, refusal):
    changes, token = Change.objects.count(), Generation.objects.get().token

    with pytest.raises(levels.LevelRefused, match=refusal):
        levels.set_level(repo, level, expect=expect)
    with pytest.raises(levels.LevelRefused, match=refusal):
        levels.preview_diff(repo, level, expect=expect)

    assert (Change.objects.count(), Generation.objects.get().token) == (changes, token)
