import functools
import hmac
import logging
from collections.abc import Callable
from http import HTTPStatus

import orjson
from django.conf import settings
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from crcr_site import metrics as counted
from crcr_site.errors import (
    RETRY_AFTER,
    BodyRefused,
    Dependency,
    Unavailable,
    json_error,
    json_methods,
    read_limited,
)
from hud import levels, pages, pr_list
from hud.ingest import ingest
from hud.models import LevelProposal
from hud.pages import BadQuery, Query
from hud.pr_list import PrListQuery
from hud.records import BadRecord, parse_envelope
from hud.reports import DAYS, OUTCOMES
from hud.storage import StoreUnavailable

logger = logging.getLogger(__name__)


def error_page(
    request: HttpRequest, status: int, message: str, *, retry_after: int | None = None
) -> HttpResponse:
    """An HTML page's error: its status, why, and the way back to /crcr (the JSON API answers
    its errors as JSON, crcr_site/errors.py)."""
    context = {
        "status": status,
        "reason": HTTPStatus(status).phrase,
        "message": message,
        "retry_after": retry_after,
    }
    response = render(request, "hud/error.html", context, status=status)
    if retry_after:
        response["Retry-After"] = str(retry_after)
    return response


def hud_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """GET (and HEAD) only; every error is an HTML page: a 404 (Http404), a results store that
    cannot answer (ClickHouse or the database down) a 503, never a 500."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            response = error_page(request, 405, "This page only answers GET.")
            response["Allow"] = "GET, HEAD"
            return response
        try:
            with counted.timed(counted.HUD_PAGES, page=view.__name__):
                return view(request, *args, **kwargs)
        except Http404 as missing:
            return error_page(request, 404, str(missing) or "No such page.")
        except (StoreUnavailable, DatabaseError) as exc:
            logger.warning("HUD store unavailable: %s", exc)
            message = "The results store is unavailable; try again shortly."
            return error_page(
                request, 503, message, retry_after=RETRY_AFTER[Dependency.RESULTS_STORE]
            )

    return wrapped


def with_query(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A hud_page whose view gets the parsed Query: every page validates every parameter it
    is given the same way, and a bad one is a 400, whether or not the page uses it."""

    @hud_page
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        try:
            query = Query.parse(request.GET)
        except BadQuery as bad:
            return error_page(request, 400, f"Bad query parameter {bad}.")
        return view(request, query, *args, **kwargs)

    return wrapped


@with_query
def index(request: HttpRequest, query: Query) -> HttpResponse:
    """/crcr: results per downstream repo, one section per level, worst first."""
    page = pages.overview(query, every_measure=False)  # the twin: every measure
    return render(request, "hud/index.html", {"page": page, "days": DAYS})


@with_query
def repo(request: HttpRequest, query: Query, org: str, name: str) -> HttpResponse:
    """/crcr/{org}/{repo}: summary cards, readiness and the PR x job matrix."""
    page = pages.repo_page(f"{org}/{name}", query)
    if page is None:
        raise Http404(f"No downstream repository {org}/{name} is allowlisted or has reported.")
    context = {"page": page, "days": DAYS, "outcomes": OUTCOMES}
    return render(request, "hud/repo.html", context)


@with_query
def metrics(request: HttpRequest, query: Query) -> HttpResponse:
    """/crcr/metrics: pass rate, failures and volume per repo, day by day."""
    return render(request, "hud/metrics.html", {"page": pages.metrics_page(query), "days": DAYS})


@with_query
def pr(request: HttpRequest, query: Query, number: int) -> HttpResponse:
    """/crcr/pr/{number}: one upstream PR across every downstream repo, the jobs of each
    repo's latest head listed (`head`: of that head)."""
    try:
        head = pages.jobs_on(request.GET)
    except BadQuery as bad:
        return error_page(request, 400, f"Bad query parameter {bad}.")
    return render(request, "hud/pr.html", {"page": pages.pr_page(number, jobs_on=head)})


@with_query
def prs(request: HttpRequest, query: Query) -> HttpResponse:
    """/crcr/prs: recent upstream PRs with a per-repo strip, searchable. The pages' parameters
    are checked as on every page, then the list's own (its search, its pages)."""
    try:
        listed = PrListQuery.parse(request.GET)
    except BadQuery as bad:
        return error_page(request, 400, f"Bad query parameter {bad}.")
    return render(request, "hud/prs.html", {"page": pr_list.pr_list(listed), "days": DAYS})


@with_query
def proposal_diff(request: HttpRequest, query: Query, pk: int) -> HttpResponse:
    """/crcr/proposals/{id}/allowlist.diff: the allowlist export's diff for the upstream PR."""
    proposal = LevelProposal.objects.filter(pk=pk).first() if 0 < pk < 2**63 else None
    if proposal is None:
        raise Http404(f"No level proposal {pk}.")
    try:
        text = levels.export_diff(proposal)
    except levels.ProposalRefused as refused:
        return error_page(request, 409, f"No diff: {refused}.")
    response = HttpResponse(text, content_type="text/x-diff; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{levels.diff_name(proposal)}"'
    return response


INGEST_MAX_BYTES = 2 * 1024 * 1024


@csrf_exempt
@json_methods("POST")
def ingest_results(request: HttpRequest) -> JsonResponse:
    """POST /api/crcr/results: `{trusted, untrusted}` envelopes, `x-hud-internal-bot` only."""
    expected = settings.HUD_BOT_TOKEN
    given = request.headers.get("x-hud-internal-bot", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return json_error(401, "unauthorized", "x-hud-internal-bot is missing or wrong")
    try:
        body = read_limited(request, INGEST_MAX_BYTES)
    except BodyRefused as refused:
        return refused.answer()
    try:  # I-JSON (RFC 7493), as callbacks: UTF-8, no NaN or Infinity, no lone surrogates
        envelope = parse_envelope(orjson.loads(body))
    except (ValueError, RecursionError) as exc:
        detail = str(exc) if isinstance(exc, BadRecord) else "the body is not JSON (I-JSON)"
        return json_error(400, "invalid_body", detail)
    try:
        record = ingest(envelope)
    except DatabaseError:
        detail = "the record could not be stored; send it again"
        return Unavailable(Dependency.RESULTS_STORE, detail).answer()
    if record is None:
        return json_error(
            409,
            "verified_record",
            "this relay verified the record with this key; envelopes do not change it",
        )
    return JsonResponse({"ok": True, "status": record.status})
