"""An error page in Chromium with JavaScript off: it says what went wrong, and its link leads
back to /crcr."""

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/crcr?days=3", 400, "Bad query parameter days: must be one of 1, 7, 14, 30, 90."),
        ("/crcr/pr/10?days=5", 400, "Bad query parameter days: must be one of"),
        ("/crcr/nobody/there", 404, "No downstream repository nobody/there"),
        ("/crcr/proposals/7/allowlist.diff", 404, "No level proposal 7."),
    ],
)
def test_an_error_page_works_with_javascript_off(browser, server, path, status, says):
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1024, "height": 800}
    )
    page = context.new_page()

    response = page.goto(f"{server.url}{path}")

    assert response.status == status
    assert page.locator("h1").inner_text().startswith(str(status))
    assert says in page.locator("main").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.click("text=Back to the overview")
    assert page.url == f"{server.url}/crcr"
    assert page.locator("h1").inner_text() == "Downstream CI of upstream changes"
    context.close()
