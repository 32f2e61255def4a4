import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from allowlist.audit import acting_as
from allowlist.models import Change, DownstreamRepo, Source
from allowlist.sync import drift, revert_to_file
from allowlist.yamlfile import parse_allowlist
from tests.allowlist.support import MALFORMED, level_in_force, run_sync, write

pytestmark = pytest.mark.django_db


def state() -> list[tuple]:
    return list(
        DownstreamRepo.objects.order_by("repo").values_list(
            "repo",
            "level",
            "device",
            "oncalls",
            "events",
            "enabled",
            "source",
            "override",
            "updated_at",
        )
    )


def test_sync_loads_the_upstream_file(upstream_allowlist_path):
    out = run_sync(upstream_allowlist_path)

    assert DownstreamRepo.objects.count() == 10
    assert level_in_force("pytorch/crcr-test") == "L3"
    assert set(DownstreamRepo.objects.values_list("source", flat=True)) == {Source.YAML}
    assert "+ pytorch/crcr-test: added at L3 device crcr-test" in out
    assert Change.objects.filter(actor="sync", action="added").count() == 10


def test_sync_twice_changes_nothing(upstream_allowlist_path):
    run_sync(upstream_allowlist_path)
    before, changes = state(), Change.objects.count()

    out = run_sync(upstream_allowlist_path)

    assert state() == before
    assert Change.objects.count() == changes
    assert "0 added, 0 updated, 0 removed, 10 unchanged, 0 overridden: 0 changed." in out


def test_sync_prints_additions_level_changes_and_removals(tmp_path):
    run_sync(write(tmp_path, "L1: [a/b, c/d]\nL2: [e/f]\n"))

    out = run_sync(write(tmp_path, "L1: [c/d]\nL2: [a/b, e/f: 'x, y']\nL4: [g/h]\n"))

    assert out.splitlines() == [
        "+ g/h: added at L4",
        "~ a/b: level L1 -> L2",
        "~ e/f: oncalls [] -> [x, y]",
        "1 added, 2 updated, 0 removed, 1 unchanged, 0 overridden: 3 changed.",
    ]
    out = run_sync(write(tmp_path, "L1: [c/d]\n"))
    assert "- a/b: removed (was L2)" in out
    assert sorted(DownstreamRepo.objects.values_list("repo", flat=True)) == ["c/d"]
    assert list(Change.objects.filter(repo="a/b").values_list("old_level", "new_level")) == [
        ("L2", ""),
        ("L1", "L2"),
        ("", "L1"),
    ]


def test_a_dry_run_shows_the_diff_and_changes_nothing(tmp_path):
    run_sync(write(tmp_path, "L1: [a/b]\n"))
    before, changes = state(), Change.objects.count()

    out = run_sync(write(tmp_path, "L2: [a/b]\n"), "--dry-run")

    assert "~ a/b: level L1 -> L2" in out
    assert "1 would change" in out
    assert state() == before
    assert Change.objects.count() == changes


@pytest.mark.parametrize(
    ("text", "message"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_a_malformed_file_changes_nothing_and_says_why(
    tmp_path, upstream_allowlist_path, text, message
):
    run_sync(upstream_allowlist_path)
    before, changes = state(), Change.objects.count()

    with pytest.raises(CommandError) as refused:
        run_sync(write(tmp_path, text))

    assert message in str(refused.value)
    assert "The allowlist in force is unchanged." in str(refused.value)
    assert state() == before
    assert Change.objects.count() == changes


def test_a_missing_file_is_an_error_that_changes_nothing(tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        run_sync(str(tmp_path / "missing.yml"))


def test_an_override_survives_the_next_sync_and_shows_as_drift(tmp_path):
    path = write(tmp_path, "L1: [a/b]\nL2: [c/d]\n")
    run_sync(path)
    row = DownstreamRepo.objects.get(repo="a/b")
    row.override, row.level = True, "L2"
    row.save()

    out = run_sync(write(tmp_path, "L2: [c/d]\n"))  # the file drops a/b

    assert "! a/b: override kept (listed True here, False in the file)" in out
    assert level_in_force("a/b") == "L2"
    synced, found = drift()
    assert synced is not None
    assert [(d.repo, d.what) for d in found] == [("a/b", "not in the file")]


def test_rows_added_in_the_admin_survive_syncs(tmp_path):
    DownstreamRepo.objects.create(repo="admin/added", level="L2", source=Source.ADMIN)

    run_sync(write(tmp_path, "L1: [a/b]\n"))

    assert level_in_force("admin/added") == "L2"
    assert [(d.repo, d.what) for d in drift()[1]] == [("admin/added", "added in the admin")]


def test_the_file_takes_over_an_admin_row_it_lists(tmp_path):
    DownstreamRepo.objects.create(repo="Same/Repo", level="L2", source=Source.ADMIN)

    out = run_sync(write(tmp_path, "L1: [same/repo]\n"))

    row = DownstreamRepo.objects.get()
    assert (row.repo, row.level, row.source) == ("same/repo", "L1", Source.YAML)
    assert "~ same/repo: level L2 -> L1" in out
    assert "~ same/repo: source admin -> yaml" in out


def test_an_overridden_row_differs_from_the_file_until_reverted(tmp_path):
    run_sync(write(tmp_path, "L1: [a/b]\n"))
    row = DownstreamRepo.objects.get()
    row.override, row.level, row.oncalls = True, "L2", ["me"]
    row.save()
    assert [(d.repo, d.fields) for d in drift()[1]] == [
        ("a/b", {"level": ("L2", "L1"), "oncalls": (["me"], [])})
    ]

    revert_to_file([row])

    row.refresh_from_db()
    assert (row.level, row.oncalls, row.override) == ("L1", [], False)
    assert drift()[1] == []


def test_export_of_a_synced_file_parses_to_the_same_allowlist(tmp_path, upstream_allowlist_path):
    run_sync(upstream_allowlist_path)
    exported = tmp_path / "exported.yml"

    call_command("allowlist_export", "-o", str(exported))

    original = parse_allowlist(Path(upstream_allowlist_path).read_text())
    assert parse_allowlist(exported.read_text()).entries == original.entries


def test_export_writes_to_standard_output_by_default(tmp_path):
    run_sync(write(tmp_path, "L2: [a/b: x]\n"))
    out = io.StringIO()

    call_command("allowlist_export", stdout=out)

    assert "L2:\n- a/b: x\n" in out.getvalue()


def test_every_change_is_logged_with_its_actor():
    with acting_as("alice"):
        row = DownstreamRepo.objects.create(repo="a/b", level="L1")
        row.level = "L2"
        row.save()
        row.delete()

    assert list(Change.objects.values_list("actor", "action", "old_level", "new_level")) == [
        ("alice", "removed", "L2", ""),
        ("alice", "changed", "L1", "L2"),
        ("alice", "added", "", "L1"),
    ]


def test_a_bulk_update_is_refused_so_nothing_escapes_the_change_log():
    DownstreamRepo.objects.create(repo="a/b", level="L1")

    with pytest.raises(TypeError, match="change is logged"):
        DownstreamRepo.objects.filter(repo="a/b").update(level="L2")
    assert level_in_force("a/b") == "L1"
