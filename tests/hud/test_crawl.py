"""Every page the HUD offers, and every API answer, on every kind of data: never a 5xx, and the
API always JSON (issue 13, items 5 and 10).

Starts at /crcr and follows every link the pages give (within /crcr and /api/crcr), plus, for
every repo registered at every level, each page and API endpoint over every window, both tabs,
every conclusion filter and a few pages; on an empty database, one with only jobs in progress,
the demo's history, and one whose rows hold what no edge accepts any more (NaN, infinity,
empty texts, the largest integers); each after a level evaluation, so that proposals,
temporary demotions and their allowlist diffs are there too.
"""

import itertools
import json
import math
import re
from collections import Counter
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import pytest
from django.utils import timezone

from allowlist.models import DownstreamRepo
from hud import levels
from hud.models import Dispatched, JobRecord
from hud.reports import DAYS, OUTCOMES
from sandbox import history

pytestmark = pytest.mark.django_db

# Every level, a device, a nightly-only repo, the probe, and one spelled in capitals.
REGISTERED = [
    ("org/one", "L1", "", ["pull_request", "nightly"]),
    ("Org/Two", "L2", "", ["pull_request", "nightly"]),
    ("org/three", "L3", "npu", ["pull_request"]),
    ("org/four", "L4", "", ["pull_request", "nightly"]),
    ("org/nightly", "L2", "", ["nightly"]),
    ("pytorch/crcr-test", "L2", "", ["pull_request"]),
]
MAX_PAGES = 4000
TRIAGE = "triage=exclude-upstream"  # the triage toggle, on
# Links of one shape (the same path, PR pages as one, with the same query keys) beyond the
# seeds: a few of each, since their combinations multiply (repo x window x tab x filter x PR).
PER_SHAPE = 3


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "action") and value:
                self.links.append(value)


def _ours(url: str) -> bool:
    path = urlsplit(url).path
    return not urlsplit(url).netloc and path.startswith(("/crcr", "/api/crcr"))


def _registered() -> None:
    for repo, level, device, events in REGISTERED:
        DownstreamRepo.objects.create(repo=repo, level=level, device=device, events=events)
    _dispatched()


def _dispatched() -> None:
    """Dispatches to every repo, some answered by the datasets' records (delivery d-N), most
    not: long silent, just sent, a push without a PR, and values no webhook gives."""
    now = timezone.now()
    rows = [
        (repo, f"d-{n}", 100 + n % 5, f"{n:040x}", now - timedelta(hours=n * 4))
        for n, repo in enumerate([*(r[0] for r in REGISTERED), "Not/Listed"])
    ]
    rows += [("org/one", "push-1", 0, "", now), ("Org/Two", "big", 2**31 - 1, "x" * 100, now)]
    rows += [("org/four", "future", 101, "f" * 40, now + timedelta(days=1))]
    Dispatched.objects.bulk_create(
        Dispatched(repo=repo, repo_key=repo.casefold(), upstream_repo="pytorch/pytorch",
                   event_type="push" if not pr else "pull_request", pr_number=pr, head_sha=sha,
                   delivery_id=delivery, dispatched_at=at)
        for repo, delivery, pr, sha, at in rows
    )  # fmt: skip


def _record(repo: str, n: int, **values) -> JobRecord:
    now = timezone.now() - timedelta(hours=n)
    fields = dict(
        downstream_repo=repo.casefold(),
        repo_display=repo,
        delivery_id=f"d-{n}",
        workflow_name="CI",
        job_name=f"job-{n % 4}",
        check_run_id=str(n),
        upstream_repo="pytorch/pytorch",
        level="L2",
        pr_number=100 + n % 5,
        head_sha=f"{n:040x}",
        run_id=str(n),
        status="in_progress",
        received_at=now,
        updated_at=now,
    )
    return JobRecord(**(fields | values))


def _in_progress_only() -> None:
    repos = [repo for repo, *_ in REGISTERED]
    JobRecord.objects.bulk_create(
        _record(repo, n, queue_time=3.0) for n, repo in enumerate(repos * 3)
    )


def _demo() -> None:
    """The demo's history, in which the L3 repo's failures were timeouts: the level
    automation has a demotion to propose whatever the history's dice said."""
    assert history.load() > 0
    assert JobRecord.objects.filter(triage_verdict__category="upstream").exists()  # the toggle's
    failed = JobRecord.objects.filter(downstream_repo="org/three", conclusion="failure")
    assert failed.update(conclusion="timed_out") > 0


def _poisoned() -> None:
    """Rows as a backend may hold them: non-finite measures (an envelope before the ingest API
    refused NaN), empty and unknown texts, the largest integers, no times at all."""
    odd: list[dict[str, Any]] = [
        dict(queue_time=math.nan, execution_time=math.inf, status="completed", conclusion=""),
        dict(queue_time=-math.inf, execution_time=math.nan, status="completed",
             conclusion="success"),
        dict(status="completed", conclusion="startup_failure", tests_passed=2**31 - 1,
             tests_total=2**31 - 1, pr_number=2**31 - 1, run_attempt=2**31 - 1),
        dict(status="queued", conclusion="weird", level="", workflow_run_url="javascript:x"),
        dict(status="completed", conclusion="timed_out", failed_tests_detail=[{"x": 1}, "s"],
             triage_verdict={"category": 5}, event_type="nightly", pr_number=0),
        dict(status="completed", conclusion="failure", event_type="push", head_sha="",
             failed_tests_detail={"not": "a list"}, triage_verdict=["not", "a dict"]),
        dict(status="completed", conclusion="failure", triage_verdict={"category": "upstream"}),
    ]  # fmt: skip
    repos = [repo for repo, *_ in REGISTERED] + ["Not/Listed"]
    JobRecord.objects.bulk_create(
        _record(repo, n, **values) for n, (repo, values) in enumerate(itertools.product(repos, odd))
    )


def _seeds() -> list[str]:
    """What every registered repo offers: its pages and API over every window, tab, filter."""
    seeds = ["/crcr", "/crcr/metrics", "/api/crcr/summary", "/api/crcr/metrics"]
    seeds += ["/crcr/pr/0", "/crcr/pr/100", "/crcr/pr/2147483647", "/crcr/pr/99999999999"]
    seeds += ["/api/crcr/prs/100", "/api/crcr/prs/99999999999", "/api/crcr/schema"]
    searches = ["q=%23100", "q=100", "q=job", "q=0000", "q=%25", "q=%3Cscript%3E", "page=2"]
    searches += ["page=400", "q=%23" + "9" * 10, "days=90&q=a"]
    for base in ("/crcr/prs", "/api/crcr/prs"):
        seeds += [base, *(f"{base}?{q}" for q in searches), *(f"{base}?days={d}" for d in DAYS)]
    queries = [f"days={d}&tab={t}" for d in DAYS for t in ("pr", "nightly")]
    queries += [f"days=90&tab={t}&{TRIAGE}" for t in ("pr", "nightly")]
    filters = [f"conclusion={c}" for c in OUTCOMES] + ["page=2", "page=999", "shards=all"]
    filters += ["pr=100", "pr=2147483647", TRIAGE]
    for repo, *_ in [*REGISTERED, ("Not/Listed",)]:
        for base in (f"/crcr/{repo}", f"/api/crcr/repos/{repo}"):
            seeds += [f"{base}?{q}" for q in [*queries, *filters]]
    for base in ("/crcr", "/crcr/metrics", "/api/crcr/summary", "/api/crcr/metrics"):
        seeds += [f"{base}?{q}" for q in queries]
    return seeds + ERRORS


# What answers an error: a bad query on every page and endpoint, unknown repos, PRs, proposals
# and paths; pages answer them as HTML pages, the API as JSON.
ERRORS = [
    *(f"{base}?{q}" for base in ("/crcr", "/crcr/metrics", "/crcr/pr/100", "/crcr/prs",
                                 "/crcr/org/one", "/crcr/proposals/1/allowlist.diff",
                                 "/api/crcr/summary", "/api/crcr/repos/org/one")
      for q in ("days=3", "days=5", "tab=x", "page=0", "conclusion=meh", "shards=1", "pr=-1",
                "triage=on", "triage=upstream")),
    "/crcr/nobody/there", "/api/crcr/repos/nobody/there", "/crcr/proposals/0/allowlist.diff",
    "/crcr/proposals/99999999999999999999/allowlist.diff", "/crcr/no/such/page", "/api/crcr/nope",
]  # fmt: skip


def _shape(url: str) -> tuple[str, tuple[str, ...]]:
    """A link's path and query keys; the triage toggle is not a shape of its own (every link
    of a toggled page carries it: counted apart it doubled the crawl, and the seeds visit the
    toggled pages anyway)."""
    parts = urlsplit(url)
    path = re.sub(r"/prs?/[0-9]+$", "/pr/N", parts.path)
    return path, tuple(sorted(key for key, _ in parse_qsl(parts.query) if key != "triage"))


def _crawl(client) -> dict[str, int]:
    """Every URL reached, with its status; fails on a 5xx or an API answer that is not JSON."""
    seen: dict[str, int] = {}
    shapes: Counter[tuple[str, tuple[str, ...]]] = Counter()
    queue = _seeds()
    while queue and len(seen) < MAX_PAGES:
        url = queue.pop()
        if url in seen:
            continue
        response = client.get(url)
        seen[url] = response.status_code
        assert response.status_code < 500, (url, response.content[:500])
        kind = response.headers.get("Content-Type", "")
        if urlsplit(url).path.startswith("/api/") and urlsplit(url).path != "/api/crcr/docs":
            assert kind.startswith(("application/json", "application/vnd.oai.openapi")), url
            if kind.startswith("application/json"):
                json.loads(response.content)  # JSON, not a page; no NaN either
        elif response.status_code >= 400:  # a page's error is a page, with the way back
            assert kind == "text/html; charset=utf-8", (url, kind)
            text = response.content.decode()
            assert f'<span class="status">{response.status_code}</span>' in text, url
            assert 'href="/crcr">Back to the overview' in text, url
        elif kind.startswith("text/html") and response.status_code == 200:
            parser = _Links()
            parser.feed(response.content.decode())
            for link in (urljoin(url, href) for href in parser.links):
                if _ours(link) and link not in seen and shapes[_shape(link)] < PER_SHAPE:
                    shapes[_shape(link)] += 1
                    queue.append(link)
    assert len(seen) < MAX_PAGES, "the crawl did not end: a page links ever new pages"
    return seen


@pytest.mark.parametrize(
    "data",
    [lambda: None, _in_progress_only, _demo, _poisoned],
    ids=["empty", "in progress only", "demo history", "poisoned rows"],
)
def test_every_page_and_api_answer_on_every_kind_of_data_is_never_a_5xx(client, data, settings):
    _registered()
    data()
    settings.CRCR_LEVELS_AUTO_DEMOTE = True
    levels.evaluate()  # proposals and temporary demotions on the pages, and their diffs

    seen = _crawl(client)

    assert seen["/crcr"] == 200
    assert seen["/crcr/prs"] == seen["/api/crcr/prs"] == 200
    for repo, *_ in REGISTERED:  # every registered repo has its page, results or not
        assert seen[f"/crcr/{repo}?days=14&tab=pr"] == 200, repo
        assert seen[f"/crcr/{repo}?{TRIAGE}"] == 200, repo
    assert (
        seen[f"/crcr?days=90&tab=nightly&{TRIAGE}"]
        == seen[f"/api/crcr/metrics?days=90&tab=pr&{TRIAGE}"]
        == 200
    )
    assert any(url.startswith("/crcr/pr/1") and code == 200 for url, code in seen.items())
    assert any(url.startswith("/crcr/proposals/") and code == 200 for url, code in seen.items())
    assert {seen[url] for url in ERRORS} == {400, 404}
