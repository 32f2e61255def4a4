"""The HUD pages and their JSON twins, server-side (the browser tests drive them in Chromium)."""

from datetime import timedelta

import pytest

from tests.hud.dataset import recent_noon

pytestmark = pytest.mark.django_db


def test_the_overview_lists_repos_under_their_levels(client, seeded):
    response = client.get("/crcr")

    assert response.status_code == 200
    text = response.content.decode()
    assert text.index("org/beta") < text.index("org/alpha")  # L3 before L2
    assert "not on allowlist" in text  # Org/Gamma, under the L2 it reported
    assert 'Relay health</a>: <span class="state degraded">' in text  # xtimeout passed
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    "query", ["days=5", "tab=weekly", "days=x", "page=0", "conclusion=meh", "triage=upstream"]
)
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

    assert page.count('<svg class="chart volume-chart"') == 3  # alpha, beta, gamma; no probe
    assert page.count('<svg class="chart times-chart"') == 3
    assert page.count('<svg class="chart passrate-chart"') == 1
    assert ": 5 jobs, 1 failed, 0 timed out, 80% passed" in page  # the day of alpha's PR 10
    assert ": 2 jobs (1 running), 0 failed, 1 timed out, 0% passed" in page  # its PR 11
    assert ": execution p50 4m 10s" in page  # that day's p50 of 100, 200, 250, 300, 400 s
    assert "org/alpha · " in page  # its line on the chart of every repo
    alpha = next(s for s in api["series"] if s["repo"] == "org/alpha")
    assert [p["counts"]["completed"] for p in alpha["points"]] == [1, 1, 1, 5]
    assert [t["p90_execution"] for t in alpha["times"]] == [70, 50, 600, 400]


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


def test_a_repo_page_ranks_its_flaky_and_failing_jobs_and_badges_a_flaky_cell(client, seeded):
    page = client.get("/crcr/org/alpha").content.decode()
    api = client.get("/api/crcr/repos/org/alpha").json()

    flaky = page[page.index('<table class="flaky">') : page.index('<table class="failing-jobs">')]
    assert '<code>test-1</code></th><td class="num">1</td><td class="num">1</td>' in flaky
    assert "build" not in flaky  # timed out on PR 11, never passed there: failing, not flaky
    failing = page[page.index('<table class="failing-jobs">') :]
    assert failing.index("<code>test-1</code>") < failing.index("<code>build</code>")  # 100 % first
    # PR 10's collapsed test family holds test-1's flip; PR 11's cells hold none.
    assert page.count('<span class="badge flaky"') == 1
    assert [j["job_name"] for j in api["jobs"]["flaky"]] == ["test-1"]
    assert [(j["job_name"], j["failed_heads"], j["heads"]) for j in api["jobs"]["failing"]] == [
        ("test-1", 1, 1),
        ("build", 1, 3),
    ]


def test_a_job_also_red_on_main_says_so_on_the_pr_page_and_in_the_matrix(client, seeded):
    from datetime import timedelta

    from django.utils import timezone

    from hud.models import JobRecord, UpstreamCommit

    now = timezone.now()
    for sha, ref, conclusion, hours in (
        ("main0000aa", "refs/heads/main", "success", 5),
        ("main1111bb", "refs/heads/main", "failure", 4),
        ("main2222cc", "refs/heads/main", "failure", 3),
        ("dev3333dd", "refs/heads/dev", "success", 2),  # not main: says nothing
    ):
        at = now - timedelta(hours=hours)
        UpstreamCommit.note(
            upstream_repo="pytorch/pytorch", sha=sha, ref=ref, default_branch="main",
            title=f"commit {sha}", author="dev", at=at,
        )  # fmt: skip
        JobRecord.objects.create(
            downstream_repo="org/beta", delivery_id=f"push-{sha}", workflow_name="CI",
            job_name="build", check_run_id=sha, repo_display="org/beta",
            upstream_repo="pytorch/pytorch", event_type="push", level="L3", pr_number=0,
            head_sha=sha, status="completed", conclusion=conclusion, received_at=at,
            updated_at=at,
        )  # fmt: skip

    pr = client.get("/crcr/pr/10").content.decode()
    api = client.get("/api/crcr/prs/10").json()
    repo = client.get("/crcr/org/beta").content.decode()

    # beta's build failed on PR 10's head eee, and main has failed it since main1111bb.
    assert '<span class="badge on-main"' in pr
    assert "on main since main1111bb" in pr
    assert api["on_main"] == {"org/beta": {"build": "main1111bb"}}
    assert repo.count('<span class="badge on-main"') == 1  # PR 10's red build; push rows not
    assert "on main since main1111bb" in repo


def test_nightly_rows_are_named_by_their_commit_and_link_to_it(client, seeded, settings):
    from django.utils import timezone

    from hud.models import JobRecord, UpstreamCommit

    UpstreamCommit.note(
        upstream_repo="pytorch/pytorch", sha="nnn", ref="refs/heads/dev", default_branch="main",
        title="Try the build on dev", author="someone", at=timezone.now(),
    )  # fmt: skip
    UpstreamCommit.note(
        upstream_repo="pytorch/pytorch", sha="nnn", ref="refs/heads/main", default_branch="main",
        title="Fix the build", author="dev", at=timezone.now(),
    )  # fmt: skip

    sha = "0123456789abcdef0123456789abcdef01234567"
    JobRecord.objects.create(
        downstream_repo="org/alpha", delivery_id="nightly-2", workflow_name="CI",
        job_name="build", check_run_id="n2", repo_display="org/alpha",
        upstream_repo="pytorch/pytorch", event_type="nightly", level="L2", pr_number=0,
        head_sha=sha, status="completed", conclusion="success", received_at=timezone.now(),
        updated_at=timezone.now(),
    )  # fmt: skip

    page = client.get("/crcr/org/alpha?tab=nightly&days=30").content.decode()

    assert '<div class="title">Fix the build <span class="muted">by dev</span></div>' in page
    assert "Try the build" not in page  # the default branch's push names the commit
    assert f'href="{settings.GITHUB_WEB_URL}/pytorch/pytorch/commit/{sha}"' in page
    assert page.count("/pytorch/pytorch/commit/") == 1  # "nnn" and "mmm" cannot be SHAs


# -- relay health and the probe (issue 16) -------------------------------------------------------


def _probe_run(n, when, conclusions, *, event="pull_request"):
    """One probe run of the jobs `conclusions` names (None: still in progress)."""
    from hud.models import JobRecord

    for job, conclusion in conclusions.items():
        JobRecord.objects.create(
            downstream_repo="pytorch/crcr-test", repo_display="pytorch/crcr-test",
            delivery_id=f"probe-{n}", workflow_name="CI", job_name=job, check_run_id=f"{n}-{job}",
            event_type=event, level="L3", pr_number=0 if event == "nightly" else 500 + n,
            head_sha=f"{n:040x}", run_id=str(n), run_attempt=1,
            status="in_progress" if conclusion is None else "completed",
            conclusion=conclusion or "", received_at=when, updated_at=when,
        )  # fmt: skip


AS_EXPECTED = {"ok": "success", "xfail": "failure", "xcancel": "cancelled", "xtimeout": "timed_out"}


def _health(client, query=""):
    html = client.get(f"/crcr{query}").content.decode()
    section = html[html.index('<section class="card health"') :]
    return section[: section.index("</section>")]


def test_relay_health_is_the_probes_newest_runs_so_one_blip_passes(client, seeded):
    from django.utils import timezone

    assert "Degraded" in _health(client)  # the seeded run: xtimeout passed
    now = timezone.now()
    for n in range(3):
        _probe_run(n, now - timedelta(minutes=10 * (n + 1)), AS_EXPECTED)
    _probe_run(3, now - timedelta(minutes=5), AS_EXPECTED | {"ok": None})  # still running

    card = _health(client)
    api = client.get("/api/crcr/summary").json()["probe"]

    assert "Healthy" in card  # the blip is still in the window, not among the last 3 runs
    assert "3 of the last 3 runs as expected, 1 running" in card
    assert "overdue" not in card
    assert (api["health"], api["overdue"]) == ("healthy", False)
    assert [(line["kind"], line["health"]) for line in api["lines"]] == [
        ("pr", "healthy"), ("nightly", "no_data"),
    ]  # fmt: skip


def test_a_nightly_the_probe_got_wrong_degrades_relay_health(client, seeded):
    from django.utils import timezone

    for n in range(3):
        _probe_run(n, timezone.now() - timedelta(hours=n + 1), AS_EXPECTED)
    _probe_run(9, timezone.now(), {"ok": "failure"}, event="nightly")

    card = _health(client, "?tab=nightly")

    assert "Degraded" in card
    assert '<li aria-current="true"><strong>Nightlies</strong>:\n      0 of the last 1 run' in card


def test_relay_health_is_overdue_when_the_last_probe_result_is_older_than_the_setting(
    client, seeded, settings
):
    from django.utils import timezone

    for n in range(3):
        _probe_run(n, timezone.now() - timedelta(hours=2, minutes=n), AS_EXPECTED)
    settings.CRCR_PROBE_OVERDUE = 3600

    card = _health(client)

    assert 'Healthy</span> <span class="state overdue">' in card
    assert "overdue, nothing for more than 1h 00m" in card
    settings.CRCR_PROBE_OVERDUE = 3 * 3600
    assert "overdue" not in _health(client)


def test_relay_health_without_probe_results_is_no_data(client, db):
    card = _health(client)

    assert "No data" in card
    assert "overdue" not in card
    assert "No probe results in the last 90 days." in card


def test_the_health_card_links_the_probes_page_for_the_tab_shown(client, seeded):
    card = _health(client, "?days=7&tab=nightly")

    assert '<a href="/crcr/pytorch/crcr-test?days=7&amp;tab=nightly">Relay health</a>' in card


def test_the_probes_page_counts_its_expected_outcomes_as_passing(client, seeded):
    page = client.get("/crcr/pytorch/crcr-test").content.decode()
    api = client.get("/api/crcr/repos/pytorch/crcr-test").json()

    assert "75.0%" in page  # xfail, xcancel, ok as expected; xtimeout passed, which it must not
    assert "3 of 4 completed, as expected" in page
    counts = api["summary"]["counts"]
    assert (counts["successes"], counts["failures"], counts["completed"]) == (3, 1, 4)
    (day,) = api["summary"]["daily"]  # its days are judged alike
    assert (day["counts"]["successes"], day["counts"]["failures"]) == (3, 1)
    assert api["readiness"]["verdict"] == "not_applicable"
    assert '<span class="words">failed</span> <span class="expect">(as expected)</span>' in page
    assert '<span class="words">passed</span> <span class="expect">(unexpected)</span>' in page
    assert "Flaky and failing jobs" not in page  # xfail failing is no failing job
    assert api["jobs"] is None


# -- names and counts (issue 16) -------------------------------------------------------------------


def test_a_repo_is_named_as_the_allowlist_spells_it_on_every_page(client, seeded):
    from allowlist.models import DownstreamRepo

    DownstreamRepo.objects.create(repo="ORG/gamma", level="L2")  # it reports as Org/Gamma

    pages = [client.get(url).content.decode() for url in ("/crcr", "/crcr/org/gamma",
             "/crcr/pr/10", "/crcr/metrics")]  # fmt: skip
    summary = client.get("/api/crcr/summary").json()
    repo = client.get("/api/crcr/repos/org/gamma").json()
    pr = client.get("/api/crcr/prs/10").json()
    metrics = client.get("/api/crcr/metrics").json()

    for html in pages:
        assert "ORG/gamma<" in html
        assert "Org/Gamma<" not in html  # (its log links keep the URL it reported)
    assert "<h1>ORG/gamma <span" in pages[1]
    names = [line["summary"]["repo"] for block in summary["blocks"] for line in block["lines"]]
    assert "ORG/gamma" in names
    assert (repo["repo"], repo["summary"]["repo"], repo["matrix"]["repo"]) == ("ORG/gamma",) * 3
    assert "ORG/gamma" in [r["repo"] for r in pr["view"]["repos"]]
    assert "ORG/gamma" in [s["repo"] for s in metrics["series"]]


def _row(html, repo):
    """The overview's table row of `repo`: its cells' text."""
    import re

    start = html.index(f'?">{repo}</a>')  # the results table's link, not the registered list
    row = html[start : html.index("</tr>", start)]
    return [re.sub(r"<[^>]+>|\s+", " ", cell).strip() for cell in row.split("<td")[1:]]


def test_every_total_is_the_sum_of_the_columns_beside_it_and_running_is_apart(client, seeded):
    html = client.get("/crcr").content.decode()

    # pass rate, successes, failures, timed out, cancelled, total, running (no other here)
    assert [c.split(">")[-1].strip() for c in _row(html, "org/alpha")[:7]][1:] == [
        "5", "1", "1", "0", "7", "1",
    ]  # fmt: skip
    assert [c.split(">")[-1].strip() for c in _row(html, "Org/Gamma")[:7]][1:] == [
        "0", "0", "0", "1", "1", "0",
    ]  # fmt: skip
    assert ">Other</th>" not in html
    gamma = client.get("/api/crcr/repos/org/gamma").json()["summary"]["counts"]
    assert (gamma["cancelled"], gamma["other"], gamma["completed"]) == (1, 0, 1)
    page = client.get("/crcr/org/alpha").content.decode()
    assert '<h2>Jobs completed</h2><p class="big">7</p>' in page
    assert "5 passed + 1 failed + 1 timed out + 0 cancelled</p>" in page
    assert '<h2>Running</h2><p class="big">1</p>' in page
    assert 'cancelled</p></div>\n  <div class="card"><h2>Timeout' not in page  # not under Failures
    assert '<h2>Failures</h2><p class="big">1</p><p class="muted">of 7 completed</p>' in page


def test_jobs_of_another_conclusion_have_a_column_so_the_total_still_adds_up(client, seeded):
    from hud.models import JobRecord

    JobRecord.objects.filter(downstream_repo="org/alpha", job_name="test-3").update(
        conclusion="skipped"
    )

    html = client.get("/crcr").content.decode()

    assert ">Other</th>" in html
    # pass rate, successes, failures, timed out, cancelled, other, total, running
    assert [c.split(">")[-1].strip() for c in _row(html, "org/alpha")[:8]][1:] == [
        "4", "1", "1", "0", "1", "7", "1",
    ]  # fmt: skip
    assert "4 passed + 1 failed + 1 timed out + 0 cancelled + 1 other</p>" in (
        client.get("/crcr/org/alpha").content.decode()
    )


def test_a_run_still_going_is_unexpected_once_a_job_ended_otherwise(client, seeded):
    from django.utils import timezone

    for n in range(3):
        _probe_run(n, timezone.now() - timedelta(hours=n + 1), AS_EXPECTED)
    _probe_run(7, timezone.now(), AS_EXPECTED | {"ok": "failure", "xfail": None})

    card = _health(client)

    assert "Degraded" in card
    assert "2 of the last 3 runs as expected" in card  # the running one is judged: unexpected


def test_an_unlisted_repos_readiness_is_not_applicable(client, seeded):
    page = client.get("/crcr/org/gamma").content.decode()

    assert "Not applicable: not on the allowlist, so level automation leaves it out." in page
    assert '<table class="readiness">' not in page


def test_the_nightly_tab_names_each_repos_latest_tested_commit(client, seeded):
    from django.utils import timezone

    from hud.models import JobRecord

    sha = "fedcba9876543210fedcba9876543210fedcba98"
    JobRecord.objects.create(
        downstream_repo="org/beta", delivery_id="nightly-b", workflow_name="CI",
        job_name="build", check_run_id="nb", repo_display="org/beta",
        upstream_repo="pytorch/pytorch", event_type="nightly", level="L3", pr_number=0,
        head_sha=sha, status="completed", conclusion="success", received_at=timezone.now(),
        updated_at=timezone.now(),
    )  # fmt: skip

    nightly = client.get("/crcr?tab=nightly").content.decode()
    pr_tab = client.get("/crcr").content.decode()

    assert "Latest tested" in nightly
    assert (
        f'/pytorch/pytorch/commit/{sha}" rel="noopener noreferrer"><code>{sha[:10]}</code>'
        in nightly
    )
    assert "<code>nnn</code>" in nightly  # alpha's, shown though it cannot be linked
    assert "Latest tested" not in pr_tab


def test_the_pr_page_lists_every_job_by_repo_and_head_with_its_links(client, seeded):
    from hud.models import JobRecord

    JobRecord.objects.filter(downstream_repo="org/alpha", job_name="test-2").update(
        artifact_url="https://github.com/org/alpha/actions/runs/7/artifacts/9",
        workflow_run_url="https://github.com/org/alpha/actions/runs/7",
        check_run_id="4242",
    )

    page = client.get("/crcr/pr/10").content.decode()
    api = client.get("/api/crcr/prs/10").json()

    jobs = page[page.index('id="jobs-h"') :]
    assert jobs.count('<details class="pr-jobs"') == 3  # alpha, beta, gamma; not the probe
    assert "CI / test-3" in jobs  # passing jobs too
    assert '<a href="https://github.com/org/alpha/actions/runs/7/job/4242"' in jobs  # its log
    assert (
        '<a href="https://github.com/org/alpha/actions/runs/7" rel="noopener noreferrer">Run'
        in jobs
    )
    assert 'runs/7/artifacts/9" rel="noopener noreferrer">Artifacts</a>' in jobs
    beta = jobs[jobs.index("<strong>org/beta</strong>") : jobs.index("<strong>org/alpha</strong>")]
    assert beta.index("<code>eee</code>") < beta.index("<code>aaa</code>")  # newest head first
    assert [j["job_name"] for j in api["jobs"]["org/alpha"]["aaa"]] == [
        "build",
        "test-1",
        "test-2",
        "test-3",
    ]


def test_the_pr_page_lists_the_latest_heads_jobs_and_links_each_older_heads(client, seeded):
    beta_aaa = "/crcr/pr/10?head=" + "a" * 40
    from hud.models import JobRecord

    JobRecord.objects.filter(head_sha="aaa").update(head_sha="a" * 40)  # a SHA as GitHub's

    page = client.get("/crcr/pr/10").content.decode()
    jobs = page[page.index('id="jobs-h"') :]
    beta = jobs[jobs.index("<strong>org/beta</strong>") : jobs.index("<strong>org/alpha</strong>")]

    assert "CI / build" in beta  # eee's one job
    assert "CI / test" not in beta  # not aaa's two
    assert f'2/2 passed · <a href="{beta_aaa}#jobs-h">its 2 jobs</a>' in beta  # aaa's tally

    chosen = client.get(beta_aaa)
    assert chosen.status_code == 200
    jobs = chosen.content.decode()
    jobs = jobs[jobs.index('id="jobs-h"') :]
    beta = jobs[jobs.index("<strong>org/beta</strong>") : jobs.index("<strong>org/alpha</strong>")]
    assert "CI / test" in beta  # aaa's jobs listed
    assert '0/1 passed · <a href="/crcr/pr/10?head=eee#jobs-h">its 1 job</a>' in beta
    assert '<a href="/crcr/pr/10#jobs-h">List each repository' in jobs
    eee = client.get("/crcr/pr/10?head=eee").content.decode()  # a head that is no Git SHA
    eee = eee[eee.index('id="jobs-h"') :]
    assert eee.count('<details class="pr-jobs" open>') == 1  # beta, the one repo that ran it
    assert jobs.count('<details class="pr-jobs" open>') == 3  # each repo that ran aaa

    for bad in ("x" * 101, "a\x01b", "latest", "*"):
        refused = client.get(f"/crcr/pr/10?head={bad}")
        assert refused.status_code == 400
        assert "Bad query parameter head" in refused.content.decode()


def _tab_counts(text: str) -> list[str]:
    nav = text[text.index('aria-label="Results"') :]
    nav = nav[: nav.index("</ul>")]
    return [part.split(">", 1)[1].split("<", 1)[0] for part in nav.split('class="tab-count"')[1:]]


def test_the_tabs_count_the_repos_reporting_in_each_and_the_api_says_so(client, seeded):
    text = client.get("/crcr").content.decode()
    api = client.get("/api/crcr/summary").json()
    metrics = client.get("/api/crcr/metrics?tab=nightly").json()

    assert _tab_counts(text) == ["3", "1"]  # alpha, beta, Gamma (the probe left out); alpha
    assert 'title="3 repositories reporting (12 results) over the last 14 days"' in text
    assert api["tabs"] == [
        {"kind": "pr", "repos": 3, "results": 12},
        {"kind": "nightly", "repos": 1, "results": 2},
    ]
    assert metrics["tabs"] == api["tabs"]
    assert _tab_counts(client.get("/crcr/metrics").content.decode()) == ["3", "1"]


def test_a_repo_pages_tabs_count_its_results_in_each(client, seeded):
    text = client.get("/crcr/org/alpha?days=30").content.decode()
    api = client.get("/api/crcr/repos/org/alpha?days=30").json()

    assert _tab_counts(text) == ["9", "2"]  # every attempt and the running job; nightlies
    assert 'title="9 results over the last 30 days"' in text
    assert [(t["kind"], t["results"]) for t in api["tabs"]] == [("pr", 9), ("nightly", 2)]
