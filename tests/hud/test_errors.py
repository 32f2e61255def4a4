"""The HUD's pages answer errors as HTML pages (status, why, the way back to /crcr); the JSON
API answers them as JSON."""

import pytest

pytestmark = pytest.mark.django_db

PAGES = [
    "/crcr",
    "/crcr/metrics",
    "/crcr/org/alpha",
    "/crcr/pr/10",
    "/crcr/prs",
    "/crcr/proposals/1/allowlist.diff",
]


def _error_page(response, status: int) -> str:
    assert response.status_code == status
    assert response["Content-Type"] == "text/html; charset=utf-8"
    text = response.content.decode()
    assert f'<span class="status">{status}</span>' in text
    assert 'href="/crcr">Back to the overview' in text
    return text


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize(
    "query", ["days=5", "days=3", "tab=weekly", "page=0", "shards=some", "triage=on"]
)
def test_every_page_refuses_a_bad_query_with_an_html_400(client, seeded, path, query):
    text = _error_page(client.get(f"{path}?{query}"), 400)

    assert f"Bad query parameter {query.partition('=')[0]}: must be" in text


def test_the_pr_page_is_not_given_a_window_it_does_not_have(client, seeded):
    assert client.get("/crcr/pr/10?days=7").status_code == 200
    assert "days: must be one of 1, 7, 14, 30, 90" in _error_page(
        client.get("/crcr/pr/10?days=5"), 400
    )


def test_the_api_answers_a_bad_query_as_json(client, seeded):
    response = client.get("/api/crcr/summary?days=3")

    assert (response.status_code, response["Content-Type"]) == (400, "application/json")
    assert response.json()["error"] == "bad_query"


def test_an_unknown_repo_proposal_or_path_is_an_html_404(client, seeded):
    repo = _error_page(client.get("/crcr/nobody/there"), 404)
    proposal = _error_page(client.get("/crcr/proposals/424242/allowlist.diff"), 404)
    path = _error_page(client.get("/crcr/no/such/page"), 404)

    assert "No downstream repository nobody/there is allowlisted or has reported." in repo
    assert "No level proposal 424242." in proposal
    assert "There is no page at this address." in path
    assert client.get("/api/crcr/no/such").json()["error"] == "not_found"


def test_a_page_asked_to_post_is_an_html_405(client, seeded):
    response = client.post("/crcr/org/alpha")

    _error_page(response, 405)
    assert response["Allow"] == "GET, HEAD"


def test_with_the_results_store_down_a_page_is_an_html_503_with_retry_after(client, settings):
    from hud.storage.clickhouse import store as clickhouse_store

    url = "http://127.0.0.1:1/default"  # nothing listens there
    settings.HUD_BACKEND = "clickhouse"
    settings.HUD_STORE = "hud.storage.clickhouse.store.ClickHouseRecordStore"
    settings.HUD_CLICKHOUSE_URL = url
    try:
        page = client.get("/crcr")
        api = client.get("/api/crcr/summary")
    finally:
        clickhouse_store._drivers.pop(url, None)

    assert "The results store is unavailable" in _error_page(page, 503)
    assert page["Retry-After"] == api["Retry-After"] == "30"
    assert api.json()["error"] == "unavailable"


def test_a_job_log_link_opens_the_job_where_github_knows_its_id(client, seeded):
    page = client.get("/crcr/org/alpha?days=30&conclusion=failure").content.decode()
    pr = client.get("/crcr/pr/10").content.decode()

    # PR 12's build, record 8 of tests/hud/dataset.py: run 8, check run 8
    assert (
        'href="https://github.com/org/alpha/actions/runs/8/job/8" rel="noopener noreferrer">job log'
        in page
    )
    assert 'href="https://github.com/org/beta/actions/runs/11/job/11"' in pr  # beta's red build


def test_the_pr_list_checks_its_own_parameters_as_a_page(client, seeded):
    text = _error_page(client.get("/crcr/prs?q=%01"), 400)

    assert "Bad query parameter q: must hold no control characters." in text
