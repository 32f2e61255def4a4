"""The pages in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)."""

import os
from pathlib import Path

import pytest

from allowlist.models import DownstreamRepo
from tests.allowlist.test_sync import run_sync

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (or run -m 'not browser')")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # around it are still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    yield page
    context.close()


def test_crcr_shows_each_level_with_its_repos(page, live_server, upstream_allowlist_path):
    run_sync(upstream_allowlist_path)

    page.goto(f"{live_server.url}/crcr")

    headings = page.locator("h2").all_inner_texts()
    assert [h.split(" ")[0] for h in headings] == ["L4", "L3", "L2", "L1"]
    l3 = page.locator("section", has=page.locator("#level-L3"))
    assert l3.locator("tbody th").all_inner_texts() == ["pytorch/crcr-test"]
    assert page.locator("link[rel=stylesheet]").count() == 1
    assert page.evaluate("getComputedStyle(document.body).fontFamily") != ""
    assert page.console_errors == []  # no CSP violations, no missing files


def test_an_admin_level_change_shows_on_crcr(page, live_server, admin_user):
    DownstreamRepo.objects.create(repo="admin/repo", level="L1")

    page.goto(f"{live_server.url}/admin/login/?next=/admin/allowlist/downstreamrepo/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.click("text=admin/repo")
    page.select_option("#id_level", "L2")
    page.click("input[name=_save]")
    assert "was changed successfully" in page.locator(".messagelist").inner_text()

    page.goto(f"{live_server.url}/crcr")
    l2 = page.locator("section", has=page.locator("#level-L2"))
    assert l2.locator("tbody th").all_inner_texts() == ["admin/repo"]
    assert page.console_errors == []
