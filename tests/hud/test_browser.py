"""The HUD in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright), against
the app under gunicorn in a subprocess, on this test's database.

Screenshots of /crcr, a repo page, the PR list and a PR page are written to var/screenshots/
for review.
"""

from pathlib import Path

import pytest
from django.contrib.auth.hashers import make_password
from django.utils import timezone

from hud.models import JobRecord, UpstreamPull
from tests.chromium import log_in
from tests.paths import ROOT
from tests.servers import Gunicorn

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = ROOT / "var" / "screenshots"


def _page(browser, *, javascript: bool = True):
    context = browser.new_context(
        java_script_enabled=javascript, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    return context, page


@pytest.fixture
def page(browser):
    context, page = _page(browser)
    yield page
    context.close()


def _results(page, level):
    section = page.locator(f"#section-{level}")
    return section.locator("table.summary tbody th").all_inner_texts()


def _screenshot(page, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_crcr_lists_each_repo_in_its_section_worst_first(page, server, seeded):
    page.goto(f"{server.url}/crcr")

    assert _results(page, "L4") == []
    assert _results(page, "L3") == ["org/beta"]
    assert _results(page, "L2") == ["Org/Gamma not on allowlist", "org/alpha"]
    alpha = page.locator("#section-L2 table.summary tbody tr", has=page.locator("text=org/alpha"))
    assert alpha.locator("td").first.inner_text() == "! 71.4%"
    assert alpha.locator("svg.spark").count() == 1
    health = page.locator("section.health").inner_text()
    assert "Relay health: ✗ Degraded" in health  # the probe's xtimeout passed
    assert "0 of the last 1 run as expected" in health
    assert page.console_errors == []  # no CSP violations, no missing files
    _screenshot(page, "crcr")


def _matrix_rows(page):
    # A click that navigates returns once the new page is committed, not parsed: count on
    # the loaded page (a busy machine showed 0 rows of a table still arriving).
    page.wait_for_load_state("load")
    return page.locator("table.matrix tbody tr").count()


def test_a_repo_page_shows_a_known_cell_and_its_details(page, server, seeded):
    page.goto(f"{server.url}/crcr/org/alpha")

    columns = page.locator("table.matrix thead th").all_inner_texts()
    row = page.locator("table.matrix tbody tr", has=page.locator("th >> text=#11"))
    cell = row.locator("td").nth(columns.index("build") - 1)
    assert cell.locator("summary").inner_text() == "◷ timed out"
    assert not cell.locator("dl").is_visible()

    cell.locator("summary").click()

    details = cell.locator("dl").inner_text()
    assert cell.locator("dl").is_visible()
    assert "Duration\n10m 00s" in details
    assert "Queue\n1m 00s" in details
    assert "Attempt\n1" in details
    shards = page.locator("table.matrix tbody tr", has=page.locator("th >> text=#10"))
    family = shards.locator("td").nth(columns.index("test-[1-3]") - 1)
    assert family.locator("summary").inner_text() == "✓ passed 3/3 #2 flaky"  # test-1 flipped
    assert page.console_errors == []
    _screenshot(page, "repo")

    page.click("text=show every shard")

    columns = page.locator("table.matrix thead th").all_inner_texts()
    assert columns[1:] == ["build", "test-1", "test-2", "test-3"]
    rerun = page.locator("table.matrix tbody tr", has=page.locator("th >> text=#10"))
    test_1 = rerun.locator("td").nth(columns.index("test-1") - 1)
    assert test_1.locator("summary").inner_text() == "✓ passed #2 flaky"  # failed, then passed


def test_the_time_range_and_the_conclusion_filter_give_the_expected_rows(page, server, seeded):
    page.goto(f"{server.url}/crcr/org/alpha")
    assert _matrix_rows(page) == 3

    page.click("a:text-is('30 days')")
    assert _matrix_rows(page) == 4

    page.select_option("select[name=conclusion]", "failure")
    page.click("button:text('Filter')")
    assert _matrix_rows(page) == 1  # PR 12; PR 10's failure was re-run green
    assert "days=30" in page.url

    page.click("a:text-is('14 days')")
    assert _matrix_rows(page) == 0
    assert page.locator("text=No results match.").is_visible()
    assert page.console_errors == []


def test_the_pr_page_shows_which_backends_are_red_since_which_sha(page, server, seeded):
    page.goto(f"{server.url}/crcr/pr/10")

    rows = page.locator("table.pr tbody tr")
    assert rows.locator("th").all_inner_texts() == ["org/beta", "org/alpha", "Org/Gamma"]
    assert rows.first.locator("td").nth(3).inner_text() == "eee"
    assert "build" in rows.first.locator("td").nth(4).inner_text()
    assert page.console_errors == []
    _screenshot(page, "pr")


def _prs_shown(page):
    page.wait_for_load_state("load")  # as _matrix_rows
    return page.locator("table.prs tbody th").all_inner_texts()


@pytest.mark.parametrize("javascript", [True, False], ids=["javascript", "no javascript"])
def test_the_pr_list_is_reached_from_the_navigation_and_searched(
    browser, server, seeded, javascript
):
    UpstreamPull.objects.create(number=10, upstream_repo="pytorch/pytorch", title="Fix views",
                                author="alice", updated_at=timezone.now())  # fmt: skip
    context, page = _page(browser, javascript=javascript)
    page.goto(f"{server.url}/crcr")
    page.click("header nav >> text=Upstream PRs")
    assert _prs_shown(page) == ["#10", "#11"]
    if javascript:
        _screenshot(page, "prs")

    page.fill("input[name=q]", "alice")
    page.click("button:text('Search')")

    assert "q=alice" in page.url
    assert _prs_shown(page) == ["#10"]
    marks = page.locator("table.prs tbody tr").first.locator(".strip a")
    assert [m.get_attribute("class") for m in marks.all()] == ["mark green"] * 2 + ["mark neutral"]
    assert marks.first.get_attribute("title").startswith("org/alpha: all passed")
    page.fill("input[name=q]", "bbb")  # a head SHA's prefix
    page.click("button:text('Search')")
    assert _prs_shown(page) == ["#11"]
    assert page.locator("table.prs .strip a.mark.red").count() == 1
    page.fill("input[name=q]", "nobody at all")
    page.click("button:text('Search')")
    assert page.locator("text=No upstream PR matches").is_visible()
    assert page.console_errors == []
    context.close()


def test_the_api_docs_render_from_our_own_files_under_the_csp(page, server):
    requests_made = []
    page.on("request", lambda r: requests_made.append(r.url))

    page.goto(f"{server.url}/api/crcr/docs")

    page.wait_for_selector(".opblock-summary-path")
    assert "/api/crcr/summary" in page.locator(".opblock-summary-path").all_inner_texts()
    assert page.locator(".title").first.inner_text().startswith("CRCR HUD API")
    assert all(url.startswith(server.url) for url in requests_made)
    assert page.console_errors == []


EVERY_PAGE = (
    "/crcr",
    "/crcr?tab=nightly",
    "/crcr/org/alpha",
    "/crcr/org/alpha?tab=nightly",
    "/crcr/pytorch/crcr-test",
    "/crcr/pr/10",
    "/crcr/prs",
    "/crcr/metrics?days=30",
    "/crcr?triage=exclude-upstream",
    "/crcr/org/alpha?triage=exclude-upstream",
    "/crcr?days=3",  # an error page
)


@pytest.mark.parametrize(
    ("width", "mobile"), [(390, True), (1024, False), (1440, False)], ids=["phone", "1024", "1440"]
)
def test_every_page_fits_its_width(browser, server, seeded, width, mobile):
    context = browser.new_context(viewport={"width": width, "height": 900}, is_mobile=mobile)
    page = context.new_page()
    for path in EVERY_PAGE:
        page.goto(f"{server.url}{path}")
        # Wide tables scroll inside their own box; the page itself never scrolls sideways.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
    context.close()


def _tabs(page):
    return page.locator("nav.controls ul[aria-label=Results] a").all_inner_texts()


def test_the_tabs_count_and_the_triage_toggle_follows_the_reader(page, server, seeded):
    page.goto(f"{server.url}/crcr")
    assert _tabs(page) == ["PR / push 3", "Nightly 1"]  # repos reporting, the probe left out

    page.click("text=Without upstream's")

    alpha = page.locator("#section-L2 table.summary tbody tr", has=page.locator("text=org/alpha"))
    assert alpha.locator("td").first.inner_text() == "! 83.3%"  # was 71.4 %: 1 failure left out
    assert page.locator("p.triage").inner_text().startswith("Triage toggle on: 1 failure")
    page.click("#section-L2 table.summary >> text=org/alpha")
    assert "triage=exclude-upstream" in page.url
    assert _tabs(page) == ["PR / push 8", "Nightly 2"]  # the repo's results
    assert (
        "Level automation counts every failure" in page.locator("#readiness + p + p").inner_text()
    )
    page.select_option("select[name=conclusion]", "timed_out")
    page.click("button:text('Filter')")
    assert "triage=exclude-upstream" in page.url  # the filter keeps it
    _screenshot(page, "repo-triage")

    page.click("text=Count every failure")

    assert "triage" not in page.url
    assert page.locator("p.triage").inner_text().startswith("Pass rates and readiness count")
    assert page.console_errors == []


def test_the_metrics_page_draws_a_chart_per_repo(page, server, seeded):
    page.goto(f"{server.url}/crcr/metrics?days=30")

    assert page.locator("svg.passrate-chart").count() == 1  # every repo on one scale
    assert page.locator("svg.volume-chart").count() == 3
    assert page.locator("svg.times-chart").count() == 3
    assert page.locator("section.metric h2 a").all_inner_texts() == [
        "org/alpha",
        "org/beta",
        "Org/Gamma",
    ]
    assert page.console_errors == []
    _screenshot(page, "metrics")


def test_the_pages_work_with_javascript_disabled(browser, server, seeded):
    context, page = _page(browser, javascript=False)
    page.goto(f"{server.url}/crcr")
    page.click("a:text-is('7 days')")
    assert "days=7" in page.url
    page.click("#section-L2 table.summary >> text=org/alpha")
    assert "days=7" in page.url
    assert _matrix_rows(page) == 2

    page.select_option("select[name=conclusion]", "timed_out")
    page.click("button:text('Filter')")
    assert _matrix_rows(page) == 1
    page.locator("table.matrix summary").first.click()
    assert page.locator("table.matrix dl").first.is_visible()
    context.close()


def test_an_admin_level_change_shows_on_crcr(page, server, seeded, admin_user, settings):
    # The server runs production's hashers; the tests' fast one is not among them.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    admin_user.password = make_password("password", hasher="pbkdf2_sha256")
    admin_user.save()
    log_in(page, server.url, "admin", "password", then="/admin/allowlist/downstreamrepo/")
    page.click("text=org/beta")
    page.select_option("#id_level", "L2")
    page.click("input[name=_save]")
    assert "was changed successfully" in page.locator(".messagelist").inner_text()

    page.goto(f"{server.url}/crcr")
    assert _results(page, "L3") == []
    assert _results(page, "L2") == ["Org/Gamma not on allowlist", "org/beta", "org/alpha"]
    assert page.console_errors == []


@pytest.fixture
def refreshing_server(child_env):
    """The HUD refreshing its open pages every second."""
    env = child_env | {"DJANGO_ALLOWED_HOSTS": "127.0.0.1", "CRCR_HUD_REFRESH": "1"}
    gunicorn = Gunicorn(env).wait_ready()
    yield gunicorn
    gunicorn.stop()


def _arrives(repo: str, pr: int, sha: str) -> None:
    """A result the relay records while the page is open (the row a callback writes)."""
    now = timezone.now()
    JobRecord.objects.create(
        downstream_repo=repo.lower(), delivery_id="live", workflow_name="CI", job_name="build",
        check_run_id="1", repo_display=repo, upstream_repo="pytorch/pytorch",
        event_type="pull_request", level="L2", pr_number=pr, head_sha=sha, status="completed",
        conclusion="failure", execution_time=60, queue_time=5, started_at=now,
        completed_at=now, received_at=now, updated_at=now,
    )  # fmt: skip


def test_a_result_arriving_while_the_page_is_open_appears_without_a_reload(
    page, refreshing_server, seeded
):
    page.goto(f"{refreshing_server.url}/crcr/pr/10")
    page.evaluate("window.notReloaded = true")
    assert "org/delta" not in page.locator("table.pr").inner_text()

    _arrives("org/delta", 10, "fff")

    from playwright.sync_api import expect

    expect(page.locator("table.pr")).to_contain_text("org/delta", timeout=15_000)
    assert page.evaluate("window.notReloaded") is True
    assert page.locator("main").get_attribute("data-live") == "on"
    assert page.console_errors == []


def test_an_open_detail_and_a_sorted_column_survive_a_refresh(page, refreshing_server, seeded):
    page.goto(f"{refreshing_server.url}/crcr/org/alpha")
    page.locator("table.matrix summary").first.click()
    page.click("table.matrix thead th >> text=PR")
    order = page.locator("table.matrix tbody th").all_inner_texts()

    page.evaluate(
        "new Promise(done => document.getElementById('main')"
        ".addEventListener('crcr:refreshed', done, {once: true}))"
    )  # a refresh that changed the page (its "as of" moves every second)

    assert page.locator("table.matrix tbody th").all_inner_texts() == order
    assert page.locator("table.matrix details[open]").count() == 1
    assert page.console_errors == []


def test_tables_sort_by_a_column_as_numbers_and_back(page, server, seeded):
    page.goto(f"{server.url}/crcr")
    summary = page.locator("#section-L2 table.summary")
    header = summary.locator("thead th", has_text="Total")  # after Cancelled (no Other here)

    header.locator("button.sort").click()
    totals = summary.locator("tbody tr").evaluate_all(
        "rows => rows.map(r => Number(r.cells[6].innerText.replace(/,/g, '')))"
    )
    assert len(totals) == 2
    assert totals == sorted(totals)
    assert header.get_attribute("aria-sort") == "ascending"

    header.locator("button.sort").click()
    assert summary.locator("tbody tr").evaluate_all(
        "rows => rows.map(r => Number(r.cells[6].innerText.replace(/,/g, '')))"
    ) == sorted(totals, reverse=True)
    assert header.get_attribute("aria-sort") == "descending"
    assert page.console_errors == []


def test_a_table_downloads_as_csv_in_the_order_shown(page, server, seeded):
    page.goto(f"{server.url}/crcr/pr/10")
    table = page.locator("table.pr")
    table.locator("thead th").first.locator("button.sort").click()  # by repository, a → z

    with page.expect_download() as download:
        page.locator(".table-tools button.csv").first.click()

    assert download.value.suggested_filename.endswith(".csv")
    lines = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    header = [cell.strip() for cell in lines[0].split(",")]
    assert header[0] == table.locator("thead th").first.inner_text().strip()
    shown = table.locator("tbody th").all_inner_texts()
    assert [line.split(",")[0] for line in lines[1:]] == shown
    assert shown == sorted(shown, key=str.lower)
    assert page.console_errors == []


def test_the_charts_have_axes_and_show_a_days_values_on_hover(page, server, seeded):
    page.goto(f"{server.url}/crcr/metrics?days=30")
    alpha = page.locator("section.metric", has=page.locator("h2 >> text=org/alpha"))
    volume = alpha.locator("svg.volume-chart")
    ticks = volume.locator("text.tick").all_text_contents()
    assert "0" in ticks  # the jobs axis starts at 0, the pass-rate one ends at 100 %
    assert "100%" in ticks
    assert any(t[:3] in ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                         "Nov", "Dec") for t in ticks)  # dates along the bottom  # fmt: skip

    busiest = volume.locator("g.day").nth(-1)  # the latest day: 5 jobs, one failed
    busiest.hover()

    tip = page.locator(".chart-tip")
    assert tip.is_visible()
    assert tip.inner_text().endswith(": 5 jobs, 1 failed, 0 timed out, 80% passed")

    point = alpha.locator("svg.times-chart g.times.exec.p50 circle").nth(-1)
    point.hover()
    assert tip.inner_text().endswith(": execution p50 4m 10s")
    assert page.console_errors == []
