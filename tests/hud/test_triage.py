"""The triage toggle (issue 16): pass rates and readiness may leave out the failures the
downstream's triage marked `upstream`; off by default, and the page always says which."""

import re

import pytest

from hud.records import VERDICT_CATEGORIES
from hud.reports import UPSTREAM_CATEGORY

pytestmark = pytest.mark.django_db

ON = "triage=exclude-upstream"


def _text(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def _alpha_rate(text: str) -> str:
    row = text[text.index('href="/crcr/org/alpha') :]
    found = re.search(r'<span class="rate [a-z]+">.*?</span> ([0-9.]+%)', row)
    assert found is not None
    return found.group(1)


def test_upstream_is_a_category_triage_verdicts_have():
    assert UPSTREAM_CATEGORY in VERDICT_CATEGORIES


def test_by_default_every_failure_counts_and_the_page_says_so(client, seeded):
    text = _text(client, "/crcr")

    assert _alpha_rate(text) == "71.4%"
    assert "Pass rates count every failure, whatever the downstream's triage says." in text
    assert f'href="?{ON}">Leave out failures triaged upstream</a>' in text


def test_with_the_toggle_on_a_failure_triaged_upstream_is_left_out_and_said(client, seeded):
    text = _text(client, f"/crcr?{ON}")

    assert _alpha_rate(text) == "83.3%"  # 5 of 6: its failed attempt was upstream's fault
    assert "<strong>Triage toggle on:</strong> 1 failure the downstream" in text
    assert "is left out: counted as neither failures nor completed jobs" in text
    assert 'href="?">Count every failure</a>' in text
    assert f'href="/crcr/org/alpha?{ON}"' in text  # the repo pages keep it


def test_the_api_gives_the_toggle_its_counts_and_refuses_a_bad_value(client, seeded):
    on = client.get(f"/api/crcr/summary?{ON}").json()
    off = client.get("/api/crcr/summary").json()
    bad = client.get("/api/crcr/summary?triage=")

    assert (on["query"]["without_upstream"], on["excluded"]) == (True, 1)
    assert (off["query"]["without_upstream"], off["excluded"]) == (False, 0)
    lines = {line["summary"]["key"]: line["summary"] for b in on["blocks"] for line in b["lines"]}
    assert lines["org/alpha"]["counts"] | {"pass_rate": None} == {
        "successes": 5, "failures": 0, "timed_out": 1, "cancelled": 0, "completed": 6,
        "in_progress": 1, "excluded": 1, "total": 7, "other": 0, "pass_rate": None,
    }  # fmt: skip
    assert (bad.status_code, bad.json()["error"]) == (400, "bad_query")


def test_a_repo_pages_readiness_takes_the_toggle_and_states_what_automation_reads(client, seeded):
    off = client.get("/api/crcr/repos/org/alpha").json()
    on = client.get(f"/api/crcr/repos/org/alpha?{ON}").json()
    text = _text(client, f"/crcr/org/alpha?{ON}")

    assert (on["excluded"], on["readiness"]["excluded"]) == (1, 1)
    assert on["readiness"]["criteria"][0]["promotion"] == pytest.approx(5 / 6)
    assert off["readiness"]["criteria"][0]["promotion"] == pytest.approx(5 / 7)
    assert off["automation"] is None
    assert on["automation"]["summary"] == off["readiness"]["summary"]  # every failure counted
    assert on["readiness"]["summary"] != off["readiness"]["summary"]
    assert "Level automation counts every failure and reads:" in text
    assert '<input type="hidden" name="triage" value="exclude-upstream">' in text
    assert "Every failure counted, as level automation counts them." in _text(
        client, "/crcr/org/alpha"
    )


def test_the_metrics_page_takes_the_toggle(client, seeded):
    on = client.get(f"/api/crcr/metrics?tab=nightly&{ON}").json()
    text = _text(client, f"/crcr/metrics?tab=nightly&{ON}")

    (alpha,) = on["series"]
    assert on["excluded"] == 1  # its nightly failure on mmm
    assert sum(p["counts"]["failures"] for p in alpha["points"]) == 0
    assert "1 failure the downstream" in text
