import pytest
from django.urls import reverse

from allowlist import lookup
from allowlist.models import Change, DownstreamRepo, Source
from tests.allowlist.support import SecondProcess, level_in_force, run_sync, write


def change_url(row: DownstreamRepo) -> str:
    return reverse("admin:allowlist_downstreamrepo_change", args=[row.pk])


def form(row: DownstreamRepo, **changes) -> dict:
    data = {
        "repo": row.repo,
        "level": row.level,
        "device": row.device,
        "oncalls": ", ".join(row.oncalls),
        "events": row.events,
        "enabled": "on",
    }
    if row.override:
        data["override"] = "on"
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def run_action(client, action: str, rows: list[DownstreamRepo]):
    return client.post(
        reverse("admin:allowlist_downstreamrepo_changelist"),
        {"action": action, "_selected_action": [r.pk for r in rows]},
        follow=True,
    )


@pytest.fixture
def synced(tmp_path, db):
    run_sync(write(tmp_path, "L1: [file/owned]\nL3:\n  npu:\n    file/l3: [x]\n"))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name",
    [
        "allowlist_downstreamrepo_changelist",
        "allowlist_downstreamrepo_add",
        "allowlist_downstreamrepo_drift",
        "allowlist_change_changelist",
        "allowlist_syncedfile_changelist",
    ],
)
def test_the_admin_pages_load(admin_client, synced, name):
    response = admin_client.get(reverse(f"admin:{name}"))

    assert response.status_code == 200


@pytest.mark.django_db
def test_the_list_shows_level_device_oncalls_events_and_source_with_filters(admin_client, synced):
    response = admin_client.get(reverse("admin:allowlist_downstreamrepo_changelist"))

    page = response.content.decode()
    for text in (
        "file/l3",
        "npu",
        "pull_request, nightly",
        "allowlist file",
        "By level",
        "By device",
        "Differences from the file (0)",
        "Last synced from",
    ):
        assert text in page
    searched = admin_client.get(reverse("admin:allowlist_downstreamrepo_changelist") + "?q=l3")
    assert "file/l3" in searched.content.decode()
    assert "file/owned" not in searched.content.decode()
    filtered = admin_client.get(reverse("admin:allowlist_downstreamrepo_changelist") + "?level=L1")
    assert "file/owned" in filtered.content.decode()
    assert "file/l3" not in filtered.content.decode()


@pytest.mark.django_db
def test_a_level_change_in_the_admin_is_seen_by_the_lookup_at_once_and_logged(admin_client):
    row = DownstreamRepo.objects.create(repo="admin/repo", level="L1")
    assert level_in_force("admin/repo") == "L1"

    response = admin_client.post(change_url(row), form(row, level="L2", oncalls="a, b"))

    assert response.status_code == 302
    assert level_in_force("admin/repo") == "L2"
    entry = lookup.snapshot().get("admin/repo")
    assert entry is not None
    assert entry.oncalls == ("a", "b")
    change = Change.objects.filter(repo="admin/repo").first()
    assert change is not None
    assert (change.actor, change.old_level, change.new_level) == ("admin", "L1", "L2")


@pytest.mark.django_db
def test_adding_a_repo_in_the_admin_marks_it_as_from_the_admin(admin_client):
    response = admin_client.post(
        reverse("admin:allowlist_downstreamrepo_add"),
        {
            "repo": " New/Repo/ ",
            "level": "L3",
            "device": "npu",
            "oncalls": "",
            "events": ["nightly"],
            "enabled": "on",
        },
    )

    assert response.status_code == 302
    row = DownstreamRepo.objects.get()
    assert (row.repo, row.source, row.events) == ("New/Repo", Source.ADMIN, ["nightly"])
    entry = lookup.snapshot().get("new/repo")
    assert entry is not None
    assert (entry.repo, entry.level, entry.device) == ("New/Repo", "L3", "npu")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"level": "L3", "device": ""}, "An L3 repo needs a device"),
        ({"repo": "no-slash"}, "Use owner/name"),
        ({"events": []}, "This field is required"),
    ],
)
def test_an_invalid_admin_edit_is_refused_with_a_message(admin_client, changes, error):
    row = DownstreamRepo.objects.create(repo="a/b", level="L1")

    response = admin_client.post(change_url(row), form(row, **changes))

    assert response.status_code == 200
    assert error in response.content.decode()
    assert level_in_force("a/b") == "L1"


@pytest.mark.django_db
def test_a_row_from_the_file_is_read_only_until_overridden(admin_client, synced):
    row = DownstreamRepo.objects.get(repo="file/owned")

    admin_client.post(change_url(row), form(row, level="L4"))
    assert level_in_force("file/owned") == "L1"

    admin_client.post(change_url(row), {"override": "on"})
    row.refresh_from_db()
    admin_client.post(change_url(row), form(row, level="L4"))
    assert level_in_force("file/owned") == "L4"

    drift_page = admin_client.get(reverse("admin:allowlist_downstreamrepo_drift")).content.decode()
    assert "file/owned" in drift_page
    assert "differs from the file (override)" in drift_page


@pytest.mark.django_db
def test_a_row_from_the_file_cannot_be_deleted_in_the_admin(admin_client, synced):
    row = DownstreamRepo.objects.get(repo="file/owned")

    response = admin_client.post(
        reverse("admin:allowlist_downstreamrepo_delete", args=[row.pk]), {"post": "yes"}
    )

    assert response.status_code == 403
    assert level_in_force("file/owned") == "L1"


@pytest.mark.django_db
def test_bulk_promote_and_demote_move_one_level_and_explain_skips(admin_client, synced):
    l1 = DownstreamRepo.objects.create(repo="a/l1", level="L1")
    l2 = DownstreamRepo.objects.create(repo="a/l2", level="L2")
    l4 = DownstreamRepo.objects.create(repo="a/l4", level="L4")
    owned = DownstreamRepo.objects.get(repo="file/owned")

    page = run_action(admin_client, "promote", [l1, l2, l4, owned]).content.decode()

    assert [level_in_force(r) for r in ("a/l1", "a/l2", "a/l4", "file/owned")] == [
        "L2",
        "L2",
        "L4",
        "L1",
    ]
    assert "a/l2: L3 needs a device" in page
    assert "a/l4: it is already at L4" in page
    assert "file/owned: it comes from the allowlist file" in page
    run_action(admin_client, "demote", [l1])
    assert level_in_force("a/l1") == "L1"
    assert Change.objects.filter(repo="a/l1", actor="admin").count() == 2


@pytest.mark.django_db
def test_revert_puts_an_overridden_row_back_as_the_file_has_it(admin_client, synced):
    row = DownstreamRepo.objects.get(repo="file/owned")
    row.override, row.level = True, "L2"
    row.save()

    run_action(admin_client, "revert", [row])

    row.refresh_from_db()
    assert (row.level, row.override) == ("L1", False)


@pytest.mark.django_db(transaction=True)
def test_a_level_change_in_the_admin_is_seen_at_once_by_another_process(admin_client, child_env):
    row = DownstreamRepo.objects.create(repo="admin/repo", level="L1")
    other = SecondProcess(child_env)
    try:
        assert other.level_of("Admin/Repo") == "L1"

        admin_client.post(change_url(row), form(row, level="L2"))

        assert other.level_of("Admin/Repo") == "L2"
    finally:
        other.close()


@pytest.mark.django_db
def test_the_change_log_is_read_only(admin_client):
    DownstreamRepo.objects.create(repo="a/b", level="L1")
    change = Change.objects.get()

    response = admin_client.post(
        reverse("admin:allowlist_change_change", args=[change.pk]), {"actor": "mallory"}
    )

    assert response.status_code == 403
    assert Change.objects.get().actor == "system"


@pytest.mark.django_db
def test_the_change_log_says_what_changed_in_words_not_json(admin_client):
    row = DownstreamRepo.objects.create(repo="a/b", level="L1", oncalls=["alice"])
    row.level, row.oncalls, row.enabled = "L2", ["alice", "bob"], False
    row.save()
    row.delete()
    changed = Change.objects.get(action="changed")

    listed = admin_client.get(reverse("admin:allowlist_change_changelist")).content.decode()
    shown = admin_client.get(reverse("admin:allowlist_change_change", args=[changed.pk]))

    for page in (listed, shown.content.decode()):
        assert "<li>level L1 → L2</li>" in page
        assert "<li>oncalls alice → alice, bob</li>" in page
        assert "<li>enabled yes → no</li>" in page
        assert "[&quot;L1&quot;, &quot;L2&quot;]" not in page
        assert '["L1", "L2"]' not in page
    assert "<li>level L1</li>" in listed  # the addition
    assert "<li>level was L2</li>" in listed  # the removal


@pytest.mark.django_db
def test_a_rows_page_shows_what_the_file_says_and_links_its_history(admin_client, synced):
    row = DownstreamRepo.objects.get(repo="file/owned")
    row.override, row.level = True, "L2"
    row.save()

    page = admin_client.get(change_url(row)).content.decode()

    assert "level: L1" in page
    assert "/admin/allowlist/change/?q=file/owned" in page
