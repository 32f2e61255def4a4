"""The recent upstream PRs (/crcr/prs) and the silent downstreams (hud/silent.py) on the pages
and their JSON twins, server-side."""

from datetime import timedelta

import pytest
from django.utils import timezone

from hud.models import Dispatched, UpstreamPull
from tests.hud.dataset import recent_noon

pytestmark = pytest.mark.django_db


def _numbers(client, query=""):
    response = client.get(f"/api/crcr/prs{query}")
    assert response.status_code == 200, response.content
    return [line["number"] for line in response.json()["lines"]]


def _dispatched(repo, delivery, at, pr=10, sha="aaa"):
    Dispatched.objects.create(
        repo=repo, repo_key=repo.casefold(), upstream_repo="pytorch/pytorch",
        event_type="pull_request", pr_number=pr, head_sha=sha, delivery_id=delivery,
        dispatched_at=at,
    )  # fmt: skip


def test_the_pr_list_is_newest_first_with_a_mark_per_repo_on_the_latest_head(client, seeded):
    five_days_ago = recent_noon() - timedelta(days=5)
    UpstreamPull.objects.create(number=10, upstream_repo="pytorch/pytorch", title="Fix <views>",
                                author="alice", updated_at=five_days_ago)  # fmt: skip

    page = client.get("/crcr/prs")
    api = client.get("/api/crcr/prs").json()

    assert page.status_code == 200
    html = page.content.decode()
    assert html.index('href="/crcr/pr/10"') < html.index('href="/crcr/pr/11"')
    assert "Fix &lt;views&gt;" in html
    assert "alice" in html
    ten, eleven = api["lines"]
    assert (ten["number"], ten["head_sha"], ten["title"]) == (10, "aaa", "Fix <views>")
    assert [(m["repo"], m["mark"]) for m in ten["marks"]] == [
        ("org/alpha", "green"),  # test-1 failed, then passed on attempt 2
        ("org/beta", "green"),  # reported on aaa too (red on eee, an older head)
        ("Org/Gamma", "neutral"),  # cancelled; the probe is left out
    ]
    assert [(m["repo"], m["mark"]) for m in eleven["marks"]] == [("org/alpha", "red")]
    assert _numbers(client, "?days=30") == [10, 11, 12]
    assert 'class="mark red"' in html
    assert 'class="mark green"' in html


@pytest.mark.parametrize(
    ("q", "numbers"),
    [("alice", [10]), ("VIEWS", [10]), ("%23 11", []), ("%2311", [11]), ("11", [11]),
     ("bbb", [11]), ("eee", [10]), ("nothing", []), ("%25", [])],
)  # fmt: skip
def test_the_pr_list_searches_by_number_title_author_or_sha(client, seeded, q, numbers):
    UpstreamPull.objects.create(number=10, upstream_repo="pytorch/pytorch", title="Fix views",
                                author="alice", updated_at=recent_noon())  # fmt: skip

    assert _numbers(client, f"?q={q}") == numbers
    page = client.get(f"/crcr/prs?q={q}").content.decode()
    assert ("No upstream PR matches" in page) == (not numbers)


def test_a_pr_only_its_webhook_names_is_listed_without_marks(client, seeded):
    UpstreamPull.objects.create(number=77, upstream_repo="pytorch/pytorch", title="New",
                                author="bob", updated_at=timezone.now())  # fmt: skip

    (first, *_) = client.get("/api/crcr/prs").json()["lines"]

    assert (first["number"], first["head_sha"], first["marks"]) == (77, "", [])
    assert "no results yet" in client.get("/crcr/prs?q=bob").content.decode()


def test_the_pr_list_pages(client, seeded, settings):
    settings.HUD_PAGE_SIZE = 1

    first = client.get("/api/crcr/prs").json()
    second = client.get("/api/crcr/prs?page=2").json()

    assert ([x["number"] for x in first["lines"]], first["more"]) == ([10], True)
    assert ([x["number"] for x in second["lines"]], second["more"]) == ([11], False)
    assert 'rel="next" href="?page=2"' in client.get("/crcr/prs").content.decode()


@pytest.mark.parametrize(
    "query", ["days=5", "page=0", "page=401", "page=x", f"q={'x' * 201}", "q=%07", "q=a%00b"]
)
def test_a_bad_pr_list_query_is_a_400(client, seeded, query):
    assert client.get(f"/crcr/prs?{query}").status_code == 400
    api = client.get(f"/api/crcr/prs?{query}")
    assert (api.status_code, api.json()["error"]) == (400, "bad_query")


def test_the_api_takes_no_empty_values_but_the_pages_form_may_send_them(client, seeded):
    assert client.get("/api/crcr/prs?q=").status_code == 400
    assert client.get("/crcr/prs?q=&days=14").status_code == 200


def test_the_navigation_links_the_pr_list_and_the_schema_has_it(client, seeded):
    assert 'href="/crcr/prs"' in client.get("/crcr").content.decode()
    assert b"/api/crcr/prs:" in client.get("/api/crcr/schema").content


def test_the_pr_page_lists_its_dispatches_no_downstream_answered_with_their_age(client, seeded):
    noon = recent_noon()
    _dispatched("org/alpha", "pull_request-10-aaa", noon - timedelta(hours=4))  # answered
    _dispatched("Org/Delta", "d-7", noon - timedelta(hours=7))
    _dispatched("org/beta", "d-new", timezone.now() - timedelta(minutes=1), sha="fff")
    _dispatched("org/beta", "d-other-pr", noon, pr=11)

    page = client.get("/crcr/pr/10").content.decode()
    api = client.get("/api/crcr/prs/10").json()

    assert [(u["repo"], u["delivery_id"], u["silent"]) for u in api["unanswered"]] == [
        ("org/beta", "d-new", False),
        ("Org/Delta", "d-7", True),
    ]
    assert api["unanswered"][1]["age"] >= 7 * 3600
    section = page[page.index('id="unanswered"') :]
    assert "Org/Delta" in section
    assert "d-new" in section
    assert "pull_request-10-aaa" not in section
    assert section.count('class="silent-tag"') == 1


def test_the_repo_page_lists_its_unanswered_dispatches_in_the_window(client, seeded):
    _dispatched("org/beta", "d-1", recent_noon() - timedelta(hours=8))
    _dispatched("org/beta", "d-old", recent_noon() - timedelta(days=20))
    _dispatched("org/beta", "pull_request-10-eee", recent_noon() - timedelta(days=1))

    api = client.get("/api/crcr/repos/org/beta").json()
    wide = client.get("/api/crcr/repos/org/beta?days=30").json()
    page = client.get("/crcr/org/beta").content.decode()

    assert [u["delivery_id"] for u in api["unanswered"]] == ["d-1"]
    assert [u["delivery_id"] for u in wide["unanswered"]] == ["d-1", "d-old"]
    assert "Dispatches with no callback yet" in page
    assert "d-1" in page


def test_the_overview_lists_repos_silent_for_longer_than_the_setting(client, seeded, settings):
    settings.CRCR_SILENT_AFTER = 6 * 3600
    noon = recent_noon()
    _dispatched("org/alpha", "a-1", noon - timedelta(hours=4))  # heard from at noon - 3 h
    _dispatched("Org/Delta", "d-1", noon - timedelta(hours=7))  # never heard from
    _dispatched("Org/Delta", "d-2", noon - timedelta(hours=6, minutes=30))
    _dispatched("org/beta", "b-1", noon - timedelta(hours=8))  # last heard a day before noon
    _dispatched("Org/Gamma", "g-1", timezone.now() - timedelta(hours=1))  # not long enough

    api = client.get("/api/crcr/summary").json()
    page = client.get("/crcr").content.decode()

    assert [(s["repo"], s["dispatches"], s["last_heard"] is None) for s in api["silent"]] == [
        ("org/beta", 1, False),
        ("Org/Delta", 2, True),
    ]
    section = page[page.index('id="silent"') : page.index("</section>", page.index('id="silent"'))]
    assert "org/beta" in section
    assert "Org/Delta" in section
    assert "org/alpha" not in section


def test_no_silent_section_when_every_repo_answered(client, seeded):
    _dispatched("org/alpha", "pull_request-10-aaa", recent_noon() - timedelta(hours=7))

    assert client.get("/api/crcr/summary").json()["silent"] == []
    assert 'id="silent"' not in client.get("/crcr").content.decode()


def test_clickhouse_answers_the_pr_list_and_the_silent_dispatches_as_the_orm_does(
    client, seeded, request
):
    from tests.hud.dataset import rows

    UpstreamPull.objects.create(number=10, upstream_repo="pytorch/pytorch", title="Fix views",
                                author="alice", updated_at=recent_noon())  # fmt: skip
    _dispatched("Org/Delta", "d-7", recent_noon() - timedelta(hours=7))
    _dispatched("org/beta", "pull_request-10-eee", recent_noon() - timedelta(days=1))
    urls = ["/api/crcr/prs", "/api/crcr/prs?q=eee", "/api/crcr/prs/10", "/api/crcr/summary"]
    shown = ("lines", "unanswered", "silent")

    def answers():  # what the pages show, ages aside (they grow between the two reads)
        found = [client.get(url).json() for url in urls]
        for answer in found:
            for row in answer.get("unanswered", []):
                row.pop("age")
        return [{k: v for k, v in answer.items() if k in shown} for answer in found]

    on_orm = answers()
    request.getfixturevalue("on_chdb").put_rows(rows(now=recent_noon()))
    on_clickhouse = answers()

    assert on_clickhouse == on_orm
    assert [line["number"] for line in on_orm[1]["lines"]] == [10]
    assert [u["repo"] for u in on_orm[2]["unanswered"]] == ["Org/Delta"]
    assert [s["repo"] for s in on_orm[3]["silent"]] == ["Org/Delta"]
