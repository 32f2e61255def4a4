"""Django admin for the HUD: job records, dispatches and upstream commits (read-only), and
level proposals, which an admin accepts or dismisses here (hud/levels.py; every allowlist
change names the admin)."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from crcr_site.admin import ReadOnlyAdmin, clipped
from hud import levels
from hud.models import Dispatched, JobRecord, LevelProposal, UpstreamCommit


@admin.register(JobRecord)
class JobRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "received_at",
        clipped("repo_display", 40, description="repo"),
        "level",
        "pr_number",
        clipped("workflow_name", 24, description="workflow"),
        clipped("job_name", 32, description="job"),
        "run_attempt",
        "status",
        "conclusion",
        "queue_time",
        "execution_time",
        "source",
    )
    list_filter = ("status", "conclusion", "level", "event_type", "source")
    search_fields = ("downstream_repo", "delivery_id", "job_name", "head_sha", "=pr_number")
    date_hierarchy = "received_at"


@admin.register(Dispatched)
class DispatchedAdmin(ReadOnlyAdmin):
    """What the relay told the HUD it dispatched: where a silent downstream is seen."""

    list_display = (
        "dispatched_at",
        clipped("repo", 40),
        "event_type",
        "pr_number",
        clipped("head_sha", 12, description="head"),
        clipped("delivery_id", 36, description="delivery"),
    )
    list_filter = ("event_type",)
    search_fields = ("repo_key", "delivery_id", "head_sha", "=pr_number")
    date_hierarchy = "dispatched_at"


@admin.register(UpstreamCommit)
class UpstreamCommitAdmin(ReadOnlyAdmin):
    """The upstream's pushes as the HUD names them: the baseline of "already failing on main"."""

    list_display = (
        "pushed_at",
        clipped("sha", 12),
        clipped("ref", 32),
        "on_default_branch",
        clipped("title", 60),
        clipped("author", 24),
    )
    list_filter = ("on_default_branch",)
    search_fields = ("sha", "ref", "title", "author")
    date_hierarchy = "pushed_at"


@admin.register(LevelProposal)
class LevelProposalAdmin(ReadOnlyAdmin):
    """Read-only but for the two decisions, which go through hud/levels.py."""

    list_display = (
        clipped("repo", 40),
        "change",
        "state",
        clipped("reason", 60),
        "opened_at",
        "evaluated_at",
        "suspended_at",
        "closed_by",
        "diff_link",
    )
    list_filter = ("state", "direction", "from_level", "to_level")
    search_fields = ("repo",)
    date_hierarchy = "opened_at"
    actions = ("accept", "dismiss")
    fields = (
        "repo",
        "change",
        "state",
        "reason",
        "figure_table",
        "blocker",
        "opened_at",
        "evaluated_at",
        "suspended_at",
        "closed_at",
        "closed_by",
        "diff_link",
        "diff",
    )
    readonly_fields = fields
    change_form_template = "admin/hud/levelproposal/change_form.html"

    @admin.display(description="change")
    def change(self, obj: LevelProposal) -> str:
        return f"{obj.direction} {obj.from_level} → {obj.to_level}"

    @admin.display(description="criteria")
    def figure_table(self, obj: LevelProposal) -> str:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f.get("name"),
                    f.get("needs"),
                    levels.shown(f.get("value"), str(f.get("unit"))),
                    "met" if f.get("met") else "not met",
                    f"{f['days']} days" if f.get("days") else "—",
                )
                for f in obj.figures
                if isinstance(f, dict)
            ),
        )
        head = mark_safe(
            "<tr><th>criterion</th><th>needs</th><th>measured</th><th></th><th>over</th></tr>"
        )
        return format_html("<table>{}{}</table>", head, rows)

    @admin.display(description="allowlist diff")
    def diff_link(self, obj: LevelProposal) -> str:
        if obj.state not in (LevelProposal.State.OPEN, LevelProposal.State.ACCEPTED):
            return "—"
        url = reverse("admin:hud_levelproposal_diff", args=[obj.pk])
        return format_html('<a href="{}">download</a>', url)

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("hud.change_levelproposal")

    def _decide(self, request: HttpRequest, proposals: list[LevelProposal], decision: str) -> None:
        act = levels.accept if decision == "accept" else levels.dismiss
        actor = request.user.get_username()
        for proposal in proposals:
            change = f"{proposal.repo} {proposal.from_level} → {proposal.to_level}"
            try:
                act(proposal.pk, actor=actor)
            except levels.ProposalRefused as refused:
                refusal = f"Not {decision}ed: {change}, {refused}."
                self.message_user(request, refusal, messages.WARNING)
            else:
                done = "; the allowlist has it now" if decision == "accept" else ""
                self.message_user(request, f"{decision.capitalize()}ed: {change}{done}.")

    @admin.action(
        description="Accept: set the level in the allowlist (override)", permissions=["decide"]
    )
    def accept(self, request: HttpRequest, queryset: QuerySet[LevelProposal]) -> None:
        self._decide(request, list(queryset), "accept")

    @admin.action(description="Dismiss", permissions=["decide"])
    def dismiss(self, request: HttpRequest, queryset: QuerySet[LevelProposal]) -> None:
        self._decide(request, list(queryset), "dismiss")

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/decide/", wrap(self.decide_view), name="hud_levelproposal_decide"),
            path("<int:pk>/allowlist.diff", wrap(self.diff_view), name="hud_levelproposal_diff"),
            *super().get_urls(),
        ]

    def _get(self, request: HttpRequest, pk: int) -> LevelProposal:
        proposal = LevelProposal.objects.filter(pk=pk).first() if pk < 2**63 else None
        if proposal is None or not self.has_view_permission(request, proposal):
            raise Http404("no such proposal")
        return proposal

    def decide_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return require_POST(self._decide_post)(request, pk)

    def _decide_post(self, request: HttpRequest, pk: int) -> HttpResponse:
        proposal = self._get(request, pk)
        decision = request.POST.get("decision", "")
        if decision not in ("accept", "dismiss") or not self.has_decide_permission(request):
            self.message_user(request, "Nothing decided.", messages.ERROR)
        else:
            self._decide(request, [proposal], decision)
        return HttpResponseRedirect(reverse("admin:hud_levelproposal_change", args=[pk]))

    def diff_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return require_GET(self._diff_get)(request, pk)

    def _diff_get(self, request: HttpRequest, pk: int) -> HttpResponse:
        proposal = self._get(request, pk)
        try:
            text = levels.export_diff(proposal)
        except levels.ProposalRefused as refused:
            self.message_user(request, f"No diff: {refused}.", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:hud_levelproposal_change", args=[pk]))
        response = HttpResponse(text, content_type="text/x-diff; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{levels.diff_name(proposal)}"'
        return response

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "can_decide": obj is not None
            and obj.state == LevelProposal.State.OPEN
            and self.has_decide_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)
