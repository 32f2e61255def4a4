"""The HUD pages and their JSON twins, server-side (the browser tests drive them in Chromium)."""

import pytest

from tests.hud.dataset import recent_noon

pytestmark = pytest.mark.django_db


def test_the_overview_lists_repos_under_their_levels(client, seeded):
    response = client.get("/crcr")

    assert response.status_code == 200
    text = response.content.decode()
    assert text.index("org/beta") < text.index("org/alpha")  # L3 before L2
    assert "not on allowlist" in text  # Org/Gamma, under the L2 it reported
    assert "pytorch/crcr-test</code>: 3 of 4 jobs ended as expected" in text
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize("query", ["days=5", "tab=weekly", "days=x", "page=0", "conclusion=meh"])
def test_a_bad_query_is_a_400_not_a_500(client, seeded, query):
    assert client.get(f"/crcr/org/alpha?{query}").status_code == 400
    api = client.get(f"/api/crcr/repos/org/alpha?{query}")
    assert api.status_code == 400
    assert api.json()["error"] == "bad_query"


def test_a_repo_page_and_its_json_twin(client, seeded):
    page = client.get("/crcr/org/alpha?conclusion=timed_out")
    api = client.get("/api/crcr/repos/org/alpha?conclusion=timed_out").json()

    assert page.status_code == 200
    assert "#11" in page.content.decode()
    assert "#10" not in page.content.decode()  # the filter applied
    assert api["matrix"]["total_rows"] == 1
    assert api["matrix"]["rows"][0]["pr_number"] == 11
    assert api["summary"]["counts"]["completed"] == 7


def test_an_unknown_repo_is_404(client, seeded):
    assert client.get("/crcr/nobody/there").status_code == 404
    assert client.get("/api/crcr/repos/nobody/there").json()["error"] == "not_found"


def test_the_pr_page_and_its_json_twin(client, seeded):
    page = client.get("/crcr/pr/10")
    api = client.get("/api/crcr/prs/10").json()

    assert "1 of 3 downstream repositories red" in page.content.decode()
    assert [r["repo"] for r in api["view"]["repos"]] == ["org/beta", "org/alpha", "Org/Gamma"]
    assert api["view"]["repos"][0]["red_since"] == "eee"


def test_the_summary_api_and_the_schema(client, seeded):
    summary = client.get("/api/crcr/summary?days=7").json()
    schema = client.get("/api/crcr/schema")
    docs = client.get("/api/crcr/docs")

    levels = {b["level"]: [x["summary"]["repo"] for x in b["lines"]] for b in summary["blocks"]}
    assert levels == {"L4": [], "L3": ["org/beta"], "L2": ["Org/Gamma", "org/alpha"], "L1": []}
    assert schema.status_code == 200
    assert b"/api/crcr/summary" in schema.content
    assert docs.status_code == 200
    assert b"cdn" not in docs.content.lower()


def test_the_metrics_page_charts_each_repo_and_its_json_twin(client, seeded):
    page = client.get("/crcr/metrics?days=30").content.decode()
    api = client.get("/api/crcr/metrics?days=30").json()

    assert page.count('<svg class="chart"') == 3  # alpha, beta, gamma; not the probe
    assert ": 5 jobs, 1 failed, 80% passed" in page  # the day of alpha's PR 10
    alpha = next(s for s in api["series"] if s["repo"] == "org/alpha")
    assert [p["counts"]["completed"] for p in alpha["points"]] == [1, 1, 1, 5]


def test_untrusted_text_is_escaped_and_only_plain_http_urls_are_links(client, seeded):
    from hud.models import JobRecord

    record = JobRecord.objects.get(job_name="build", head_sha="bbb")
    record.job_name = "<script>alert(1)</script>"
    record.workflow_run_url = "javascript:alert(1)"
    record.triage_verdict = {"category": "flaky", "confidence": "low", "summary": "<b>x</b>"}
    record.status, record.conclusion = "completed", "failure"  # the PR page lists it too
    record.save()

    page = client.get("/crcr/org/alpha?shards=all").content.decode()
    pr_page = client.get(f"/crcr/pr/{record.pr_number}").content.decode()

    for html in (page, pr_page):
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "javascript:" not in html
    assert "&lt;b&gt;x&lt;/b&gt;" in page


def test_a_repo_that_reported_no_level_is_shown_under_l2(client, seeded):
    from hud.models import JobRecord

    JobRecord.objects.filter(downstream_repo="org/gamma").update(level="")

    page = client.get("/crcr").content.decode()

    l2 = page[page.index('id="section-L2"') : page.index('id="section-L1"')]
    assert "Org/Gamma" in l2


def test_a_pr_number_no_pr_can_have_is_an_empty_page_not_an_error(client, seeded):
    page = client.get("/crcr/pr/99999999999")
    api = client.get("/api/crcr/prs/99999999999")

    assert page.status_code == 200
    assert "no downstream results yet" in page.content.decode()
    assert api.json()["view"]["repos"] == []


def test_a_pr_is_named_by_the_huds_own_record_of_it(client, seeded):
    from hud.models import UpstreamPull

    UpstreamPull.objects.create(number=10, upstream_repo="pytorch/pytorch", title="Fix <views>",
                                author="alice", updated_at=recent_noon())  # fmt: skip

    page = client.get("/crcr/pr/10").content.decode()
    api = client.get("/api/crcr/prs/10").json()
    repo = client.get("/crcr/org/alpha").content.decode()

    assert "#10</a>: Fix &lt;views&gt;</h1>" in page
    assert "by alice" in page
    assert (api["title"], api["author"], api["upstream_repo"]) == (
        "Fix <views>",
        "alice",
        "pytorch/pytorch",
    )
    assert '<div class="title">Fix &lt;views&gt; <span class="muted">by alice</span>' in repo
    assert client.get("/api/crcr/prs/11").json()["title"] == ""  # no record of PR 11


def test_the_newest_pull_request_webhook_the_relay_recorded_names_its_pr(client, seeded):
    from hud.models import UpstreamPull
    from relay.fanout import record
    from relay.webhook import UpstreamEvent

    def webhook(delivery, event, title, author):
        return UpstreamEvent(delivery, event, "synchronize", "pytorch/pytorch", 10, "aaa", "",
                             title, author, "{}", {})  # fmt: skip

    record(webhook("d-1", "pull_request", "First title", "alice"))
    record(webhook("d-2", "pull_request", "Second title", "bob"))
    record(webhook("d-3", "push", "", ""))  # a ciflow tag push names no title
    record(webhook("d-1", "pull_request", "First title", "alice"))  # a redelivery

    api = client.get("/api/crcr/prs/10").json()
    assert (api["title"], api["author"]) == ("Second title", "bob")
    assert UpstreamPull.objects.count() == 1


def test_every_page_shows_the_operators_notice(client, seeded, settings):
    settings.CRCR_HUD_NOTICE = "Demo: simulated CI runs 60 times faster <than> real CI."

    for path in ("/crcr", "/crcr/org/alpha", "/crcr/pr/10", "/crcr/metrics", "/crcr?days=3"):
        page = client.get(path).content.decode()
        notice = '<p class="notice" role="note">Demo: simulated CI runs 60 times faster &lt;than'
        assert notice in page, path


def test_no_notice_is_shown_unless_one_is_set(client, seeded):
    assert 'class="notice"' not in client.get("/crcr").content.decode()
