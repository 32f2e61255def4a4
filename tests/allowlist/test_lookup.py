import pytest
from django.db import connection

from allowlist import lookup
from allowlist.entry import Event, Level
from allowlist.models import Change, DownstreamRepo
from tests.allowlist.support import SecondProcess, level_in_force
from tests.crcr_site.support import run_on_sqlite


def add(repo: str, level: str, **fields) -> DownstreamRepo:
    return DownstreamRepo.objects.create(repo=repo, level=level, **fields)


@pytest.fixture
def second_process(child_env):
    process = SecondProcess(child_env)
    yield process
    process.close()


@pytest.mark.django_db
def test_a_repo_is_found_in_any_spelling_of_its_name():
    add("Ascend/PyTorch", "L2")

    assert level_in_force("ascend/pytorch") == Level.L2
    assert level_in_force("ASCEND/PYTORCH") == Level.L2
    assert level_in_force("ascend/other") is None


@pytest.mark.django_db
def test_a_disabled_repo_is_not_in_force():
    add("a/b", "L4", enabled=False)

    assert level_in_force("a/b") is None


@pytest.mark.django_db
def test_the_snapshot_lists_entries_by_level_least_trusted_first():
    add("a/l4", "L4"), add("a/l2", "L2"), add("a/l3", "L3", device="npu"), add("a/l1", "L1")

    entries = lookup.snapshot().entries
    assert [e.repo for e in entries if e.level.rank >= Level.L3.rank] == ["a/l3", "a/l4"]
    assert [e.repo for e in entries] == ["a/l1", "a/l2", "a/l3", "a/l4"]


@pytest.mark.django_db
def test_only_l3_entries_carry_a_device():
    (
        add("a/npu", "L3", device="npu"),
        add("b/npu", "L3", device="npu"),
        add("c/xpu", "L3", device="xpu"),
    )
    add("d/demoted", "L2", device="npu")

    entries = lookup.snapshot().entries
    assert [e.repo for e in entries if e.device == "npu"] == ["a/npu", "b/npu"]
    assert [e.repo for e in entries if e.device == "tpu"] == []


@pytest.mark.django_db
def test_repos_for_an_event_follow_their_participation():
    add("a/both", "L2")
    add("a/nightly", "L2", events=[Event.NIGHTLY])
    add("a/pr", "L1", events=[Event.PULL_REQUEST])

    assert {e.repo for e in lookup.repos_for_event("pull_request")} == {"a/both", "a/pr"}
    assert {e.repo for e in lookup.repos_for_event("push")} == {"a/both", "a/pr"}
    assert {e.repo for e in lookup.repos_for_event("nightly")} == {"a/both", "a/nightly"}
    assert {e.repo for e in lookup.repos_for_event("periodic")} == {"a/both", "a/nightly"}
    assert lookup.repos_for_event("issues") == ()


@pytest.mark.django_db
def test_a_cached_lookup_costs_one_primary_key_query(django_assert_num_queries):
    add("a/b", "L2")
    level_in_force("a/b")

    with django_assert_num_queries(1):
        assert level_in_force("a/b") == Level.L2


@pytest.mark.django_db
def test_a_write_is_seen_at_once_in_the_same_process():
    row = add("a/b", "L1")
    assert level_in_force("a/b") == Level.L1

    row.level = "L2"
    row.save()

    assert level_in_force("a/b") == Level.L2


@pytest.mark.django_db
def test_a_bulk_delete_is_seen_at_once_and_logged():
    add("a/b", "L1"), add("a/c", "L2")
    assert len(lookup.snapshot().entries) == 2

    DownstreamRepo.objects.filter(repo__startswith="a/").delete()

    assert lookup.snapshot().entries == ()
    assert sorted(Change.objects.filter(action="removed").values_list("repo", flat=True)) == [
        "a/b",
        "a/c",
    ]


@pytest.mark.django_db(transaction=True)
def test_a_write_is_seen_at_once_by_another_process(second_process):
    row = add("a/b", "L1")
    assert second_process.level_of("a/b") == "L1"
    assert second_process.level_of("a/b") == "L1"  # now answered from its cache

    row.level = "L3"
    row.device = "npu"
    row.save()
    assert second_process.level_of("a/b") == "L3"

    row.delete()
    assert second_process.level_of("a/b") == "-"


def last_read_scenario() -> list[bool]:
    """Whether the last read's token is current: after a read, after a write, after a read."""

    def current() -> bool:
        seen = lookup.last_read()
        assert seen is not None
        condition, params = lookup.is_current_sql(seen[0])
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT CASE WHEN {condition} THEN 1 ELSE 0 END", params)
            return cursor.fetchone()[0] == 1

    row = add("a/b", "L1")
    level_in_force("a/b")
    answers = [current()]
    row.level = "L2"
    row.save()
    answers.append(current())
    level_in_force("a/b")
    return [*answers, current()]


@pytest.mark.django_db
def test_the_last_read_knows_whether_it_is_still_current():
    assert last_read_scenario() == [True, False, True]


def test_the_last_read_knows_whether_it_is_still_current_on_sqlite(tmp_path):
    script = (
        "import django; django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('migrate', verbosity=0)\n"
        "from tests.allowlist.test_lookup import last_read_scenario\n"
        "print(last_read_scenario())\n"
    )
    assert run_on_sqlite(tmp_path, script).strip() == "[True, False, True]"
