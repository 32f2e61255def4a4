"""The JSON twins of the HUD pages (/api/crcr/...): the same data, from hud/pages.py.

Serializers come straight from the dataclasses (djangorestframework-dataclasses); the OpenAPI
schema is drf-spectacular's, and its Swagger UI is served from our own static files.
"""

from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import Http404, HttpResponse
from django.utils.csp import CSP
from django.views.decorators.csp import csp_override
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework import serializers
from rest_framework.exceptions import APIException, NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_dataclasses.serializers import DataclassSerializer

from crcr_site import metrics as counted
from crcr_site.errors import Dependency, Unavailable, json_error
from hud import pages, pr_list
from hud.pages import BadQuery, Query
from hud.reports import (
    DAYS,
    OUTCOMES,
    WITHOUT_UPSTREAM,
    Counts,
    DailyPoint,
    Mark,
    PrRepo,
    PrView,
    RepoMark,
    RepoSummary,
    ShaResult,
)
from hud.storage import StoreUnavailable


class CountsSerializer(DataclassSerializer[Counts]):
    total = serializers.IntegerField(read_only=True, help_text="completed + in_progress")
    other = serializers.IntegerField(
        read_only=True,
        help_text="completed with another conclusion (skipped, neutral, …): successes + "
        "failures + timed_out + cancelled + other = completed",
    )
    pass_rate = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        dataclass = Counts


class DailySerializer(DataclassSerializer[DailyPoint]):
    counts = CountsSerializer()

    class Meta:
        dataclass = DailyPoint


class SummarySerializer(DataclassSerializer[RepoSummary]):
    counts = CountsSerializer()
    daily = DailySerializer(many=True)
    timeout_rate = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        dataclass = RepoSummary


class RepoLineSerializer(DataclassSerializer[pages.RepoLine]):
    summary = SummarySerializer()

    class Meta:
        dataclass = pages.RepoLine


class LevelBlockSerializer(DataclassSerializer[pages.LevelBlock]):
    lines = RepoLineSerializer(many=True)

    class Meta:
        dataclass = pages.LevelBlock


EXCLUDED_HELP = (
    "failures the downstream's triage marked upstream, left out of every count (the triage "
    "toggle, triage=exclude-upstream; 0 when it is off)"
)


class OverviewSerializer(DataclassSerializer[pages.Overview]):
    blocks = LevelBlockSerializer(many=True)
    excluded = serializers.IntegerField(read_only=True, help_text=EXCLUDED_HELP)

    class Meta:
        dataclass = pages.Overview


class SeriesSerializer(DataclassSerializer[pages.Series]):
    points = DailySerializer(many=True)

    class Meta:
        dataclass = pages.Series


class MetricsSerializer(DataclassSerializer[pages.MetricsPage]):
    series = SeriesSerializer(many=True)
    excluded = serializers.IntegerField(read_only=True, help_text=EXCLUDED_HELP)

    class Meta:
        dataclass = pages.MetricsPage


class ShaSerializer(DataclassSerializer[ShaResult]):
    counts = CountsSerializer()
    red = serializers.BooleanField(read_only=True)

    class Meta:
        dataclass = ShaResult


class PrRepoSerializer(DataclassSerializer[PrRepo]):
    shas = ShaSerializer(many=True)
    red_since = serializers.CharField(read_only=True, allow_null=True)

    class Meta:
        dataclass = PrRepo


class PrViewSerializer(DataclassSerializer[PrView]):
    repos = PrRepoSerializer(many=True)

    class Meta:
        dataclass = PrView


class PrPageSerializer(DataclassSerializer[pages.PrPage]):
    view = PrViewSerializer()

    class Meta:
        dataclass = pages.PrPage


class RepoPageSerializer(DataclassSerializer[pages.RepoPage]):
    summary = SummarySerializer(allow_null=True)
    excluded = serializers.IntegerField(read_only=True, help_text=EXCLUDED_HELP)

    class Meta:
        dataclass = pages.RepoPage
        exclude = ("rows",)  # the page's presentation of `matrix`


class RepoMarkSerializer(DataclassSerializer[RepoMark]):
    counts = CountsSerializer()
    mark = serializers.ChoiceField(choices=[m.value for m in Mark], read_only=True)

    class Meta:
        dataclass = RepoMark


class PrLineSerializer(DataclassSerializer[pr_list.PrLine]):
    marks = RepoMarkSerializer(many=True)

    class Meta:
        dataclass = pr_list.PrLine


class PrListSerializer(DataclassSerializer[pr_list.PrList]):
    lines = PrLineSerializer(many=True)

    class Meta:
        dataclass = pr_list.PrList


class ErrorSerializer(serializers.Serializer[Any]):
    """Every error answer: {"ok": false, "error": <code>, "detail": <text>}."""

    ok = serializers.BooleanField(default=False)
    error = serializers.CharField(help_text="a stable code, e.g. bad_query, not_found")
    detail = serializers.CharField(help_text="what was wrong, for people")


ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="a query parameter is not valid"),
    414: OpenApiResponse(description="the request line is longer than the web server takes"),
    503: OpenApiResponse(
        ErrorSerializer, description="the results store is unavailable (Retry-After)"
    ),
}
NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="no such downstream repo")}
NOT_A_NUMBER = {404: OpenApiResponse(ErrorSerializer, description="not a PR number")}


def _number(name: str, minimum: int, description: str) -> OpenApiParameter:
    """An integer query parameter as hud/pages.py takes it: 0 to INT_PARAM_MAX."""
    return OpenApiParameter(
        name,
        {"type": "integer", "minimum": minimum, "maximum": pages.INT_PARAM_MAX},
        description=description,
    )


QUERY = [
    OpenApiParameter("days", OpenApiTypes.INT, enum=list(DAYS), description="window, days"),
    OpenApiParameter("tab", OpenApiTypes.STR, enum=["pr", "nightly"]),
    OpenApiParameter(
        "triage",
        OpenApiTypes.STR,
        enum=[WITHOUT_UPSTREAM],
        description="leave the failures triaged upstream out of the counts, pass rates and "
        "readiness (off when not given)",
    ),
]
MATRIX_QUERY = [
    *QUERY,
    OpenApiParameter("conclusion", OpenApiTypes.STR, enum=list(OUTCOMES)),
    _number("pr", 0, "only this upstream PR (0: every PR)"),
    _number("page", 1, "the matrix page, from 1"),
    OpenApiParameter("shards", OpenApiTypes.STR, enum=["all"], description="every shard apart"),
]
REPO_PATH = [
    OpenApiParameter(name, OpenApiTypes.STR, OpenApiParameter.PATH, pattern=r"^[A-Za-z0-9_.-]+$")
    for name in ("org", "name")
]
PR_PATH = [
    OpenApiParameter(
        "number", {"type": "integer", "minimum": 0}, OpenApiParameter.PATH,
        description="the upstream PR's number",
    )
]  # fmt: skip


def _query(request: Request) -> Query:
    try:
        return Query.parse(request.query_params, strict=True)
    except BadQuery as bad:
        raise BadQueryError(str(bad)) from None


class BadQueryError(APIException):
    status_code = 400
    default_code = "bad_query"


class HudApiView(APIView):
    """An API view timed as the HTML pages are (crcr_hud_page_seconds, page="api_<view>")."""

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        with counted.timed(counted.HUD_PAGES, page=f"api_{type(self).__name__.lower()}"):
            return super().dispatch(request, *args, **kwargs)


class Summary(HudApiView):
    @extend_schema(parameters=QUERY, responses={200: OverviewSerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        """What /crcr shows: every repo's results over the window, by level."""
        return Response(OverviewSerializer(pages.overview(_query(request))).data)


class Repo(HudApiView):
    @extend_schema(
        parameters=[*REPO_PATH, *MATRIX_QUERY],
        responses={200: RepoPageSerializer, **ERRORS, **NOT_FOUND},
    )
    def get(self, request: Request, org: str, name: str) -> Response:
        """What /crcr/{org}/{repo} shows: summary, readiness and one page of the matrix."""
        page = pages.repo_page(f"{org}/{name}", _query(request))
        if page is None:
            raise NotFound("no such downstream repo")
        return Response(RepoPageSerializer(page).data)


class Metrics(HudApiView):
    @extend_schema(parameters=QUERY, responses={200: MetricsSerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        """What /crcr/metrics shows: each repo's counts day by day."""
        return Response(MetricsSerializer(pages.metrics_page(_query(request))).data)


class Pr(HudApiView):
    @extend_schema(
        parameters=PR_PATH,
        responses={200: PrPageSerializer, 414: ERRORS[414], 503: ERRORS[503], **NOT_A_NUMBER},
    )
    def get(self, request: Request, number: int) -> Response:
        """What /crcr/pr/{number} shows: one upstream PR across every downstream repo."""
        return Response(PrPageSerializer(pages.pr_page(number)).data)


PR_LIST_QUERY = [
    OpenApiParameter("days", OpenApiTypes.INT, enum=list(DAYS), description="window, days"),
    OpenApiParameter(
        "q",
        {
            "type": "string",
            "minLength": 1,
            "maxLength": pr_list.SEARCH_MAX,
            "pattern": f"^[^{pages.CONTROL_CHARACTERS}]*$",
        },
        description="a PR number (#123 or 123), words of a title or author, or a head SHA prefix",
    ),
    OpenApiParameter(
        "page", {"type": "integer", "minimum": 1, "maximum": pr_list.PAGE_MAX}, description="from 1"
    ),
]


class Prs(HudApiView):
    @extend_schema(parameters=PR_LIST_QUERY, responses={200: PrListSerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        """What /crcr/prs shows: recent upstream PRs, newest activity first, with each
        downstream repo's mark on the latest head."""
        try:
            query = pr_list.PrListQuery.parse(request.query_params, strict=True)
        except BadQuery as bad:
            raise BadQueryError(str(bad)) from None
        return Response(PrListSerializer(pr_list.pr_list(query)).data)


schema_view = SpectacularAPIView.as_view()
# The split view serves its start-up script as a file (our CSP allows no inline script); its
# page still carries one small inline <style>, so this page alone allows inline styles.
DOCS_CSP: dict[str, Any] = settings.SECURE_CSP | {"style-src": [CSP.SELF, CSP.UNSAFE_INLINE]}
docs_view = csp_override(DOCS_CSP)(SpectacularSwaggerSplitView.as_view(url_name="api-schema"))


def exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse | None:
    """DRF's errors in the project's JSON error shape ({"ok": false, "error", "detail"})."""
    if isinstance(exc, StoreUnavailable | DatabaseError):
        return Unavailable(Dependency.RESULTS_STORE, "the results store is unavailable").answer()
    if isinstance(exc, Http404):
        exc = NotFound(str(exc))
    if isinstance(exc, APIException):
        codes = exc.get_codes()
        error = codes if isinstance(codes, str) else exc.default_code
        return json_error(exc.status_code, str(error), str(exc.detail))
    return None
