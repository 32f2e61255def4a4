"""Deliveries, dispatches and re-runs, read-only, with their actions: retry failed dispatches
now, re-dispatch a PR's latest head (relay/redispatch.py); and the onboarding doctor's page of
each allowlisted repo (relay/doctor/), a button on its allowlist entry."""

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone

from allowlist.admin import DownstreamRepoAdmin
from allowlist.models import DownstreamRepo
from crcr_site.admin import ReadOnlyAdmin, clipped
from relay import redispatch, tasks
from relay.doctor.report import diagnose
from relay.models import (
    CallbackAudit,
    Delivery,
    Dispatch,
    HudForward,
    PeriodicJob,
    PullComment,
    Redispatch,
    Rerun,
    WorkerHeartbeat,
)


def _redispatch(
    model_admin: admin.ModelAdmin, request: HttpRequest, asked: set[tuple[int, str | None]]
) -> None:
    """Re-dispatch each (PR, repo or None for every repo) once, and say how each went."""
    for number, repo in sorted(asked, key=lambda pair: (pair[0], pair[1] or "")):
        try:
            done = redispatch.redispatch(number, repo=repo, by=request.user.get_username())
        except redispatch.CannotRedispatch as exc:
            model_admin.message_user(request, f"PR #{number}: nothing sent: {exc}", messages.ERROR)
            continue
        level = messages.WARNING if done.summary.failed else messages.SUCCESS
        model_admin.message_user(request, " ".join(redispatch.told(done)), level)


class DispatchInline(admin.TabularInline):
    model = Dispatch
    fields = ("repo", "level", "status", "attempts", "sent_at", "next_attempt_at", "last_error")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "received_at",
        "event",
        "action",
        "pr_number",
        clipped("head_sha", 12, description="head SHA"),
        clipped("title", 60),
        "times_received",
        clipped("delivery_id", 40, description="delivery id"),
        "redispatched",
    )
    list_filter = ("event", "action")
    list_select_related = ("redispatch",)
    search_fields = ("delivery_id", "head_sha", "title", "author", "=pr_number")
    date_hierarchy = "received_at"
    exclude = ("body",)
    actions = ("redispatch_to_all",)
    readonly_fields = (
        "delivery_id",
        "event",
        "action",
        "upstream_repo",
        "pr_number",
        "head_sha",
        "ref",
        "title",
        "author",
        "received_at",
        "times_received",
        "redispatched",
    )
    inlines = (DispatchInline,)

    @admin.display(description="re-dispatch")
    def redispatched(self, obj: Delivery) -> str:
        made: Redispatch | None = getattr(obj, "redispatch", None)
        if made is None:
            return ""
        return f"by {made.by}, of {made.original.delivery_id}"

    def has_redispatch_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("relay.change_dispatch")

    @admin.action(
        description="Re-dispatch their PRs' latest heads to every repo", permissions=["redispatch"]
    )
    def redispatch_to_all(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        numbers = queryset.filter(pr_number__gt=0).values_list("pr_number", flat=True)
        if not numbers:
            self.message_user(request, "None of them is of a PR.", messages.WARNING)
        _redispatch(self, request, {(number, None) for number in numbers})


@admin.register(Dispatch)
class DispatchAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        clipped("repo", 40),
        "level",
        "status",
        "attempts",
        "sent_at",
        "next_attempt_at",
        clipped("last_error", 60),
        clipped("delivery", 40),
    )
    list_filter = ("status", "level", "repo_key", "truncated")
    search_fields = ("repo", "delivery__delivery_id", "=delivery__pr_number")
    list_select_related = ("delivery",)
    actions = ("retry_now", "redispatch_to_repo")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Read-only pages, but the retry action needs the change permission.
        return obj is None and super(ReadOnlyAdmin, self).has_change_permission(request, obj)

    @admin.action(description="Retry now (failed or waiting dispatches)", permissions=["change"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Dispatch]) -> None:
        now = timezone.now()
        not_being_sent = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
        retryable = queryset.filter(
            not_being_sent, status__in=[Dispatch.Status.FAILED, Dispatch.Status.PENDING]
        )
        ids = list(retryable.values_list("pk", flat=True))
        retryable.update(
            status=Dispatch.Status.PENDING, next_attempt_at=now, attempts=0, pending_since=now
        )
        tasks.schedule(Q(pk__in=ids))
        self.message_user(request, f"{len(ids)} dispatch(es) queued to be sent now by the worker.")

    @admin.action(
        description="Re-dispatch their PRs' latest heads to their repos", permissions=["change"]
    )
    def redispatch_to_repo(self, request: HttpRequest, queryset: QuerySet[Dispatch]) -> None:
        pairs = queryset.filter(delivery__pr_number__gt=0).values_list(
            "delivery__pr_number", "repo"
        )
        if not pairs:
            self.message_user(request, "None of them is of a PR.", messages.WARNING)
        _redispatch(self, request, {(number, repo) for number, repo in pairs})


@admin.register(Redispatch)
class RedispatchAdmin(ReadOnlyAdmin):
    list_display = (
        "at",
        clipped("by", 40),
        clipped("repo", 40, description="to"),
        clipped("original", 40, description="of the delivery"),
        clipped("delivery", 40, description="as the delivery"),
    )
    list_select_related = ("original", "delivery")
    search_fields = ("by", "repo", "original__delivery_id", "delivery__delivery_id")


@admin.register(PeriodicJob)
class PeriodicJobAdmin(ReadOnlyAdmin):
    list_display = (
        "name",
        "last_started_at",
        "last_finished_at",
        "last_succeeded_at",
        clipped("last_error", 80),
    )


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    list_display = ("worker_id", clipped("host", 40), "pid", "started_at", "seen_at")


@admin.register(CallbackAudit)
class CallbackAuditAdmin(ReadOnlyAdmin):
    list_display = (
        "at",
        "decision",
        "status",
        clipped("reason", 40),
        clipped("repo", 40),
        "verified",
        "callback_status",
        clipped("job", 48),
        "provenance",
        clipped("delivery_id", 40, description="delivery id"),
    )
    list_filter = ("decision", "verified", "status", "reason", "provenance", "event_type")
    search_fields = ("repo", "delivery_id", "replay_key", "job", "remote_addr")
    date_hierarchy = "at"


@admin.register(HudForward)
class HudForwardAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "status",
        "attempts",
        "next_attempt_at",
        "sent_at",
        clipped("last_error", 80),
    )
    list_filter = ("status",)


@admin.register(Rerun)
class RerunAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "kind",
        clipped("repo", 40),
        "run_id",
        "status",
        clipped("outcome", 40),
        "attempts",
        "next_attempt_at",
        clipped("last_error", 60),
        clipped("delivery_id", 40, description="delivery id"),
    )
    list_filter = ("status", "kind", "repo_key")
    search_fields = ("repo", "delivery_id", "=run_id", "head_sha")


@admin.register(PullComment)
class PullCommentAdmin(ReadOnlyAdmin):
    list_display = (
        clipped("upstream_repo", 40),
        "pr_number",
        "status",
        "comment_id",
        "version",
        "attempts",
        "next_attempt_at",
        "sent_at",
        clipped("last_error", 60),
    )
    list_filter = ("status",)
    search_fields = ("=pr_number", "upstream_repo")


class DoctorDownstreamRepoAdmin(DownstreamRepoAdmin):
    """The allowlist's own admin, with the onboarding doctor's page of each repo (the relay
    owns the doctor, and the allowlist imports nothing of the relay)."""

    change_form_template = "admin/relay/downstreamrepo_change_form.html"

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.doctor_view)
        doctor = path("<path:object_id>/doctor/", view, name="allowlist_downstreamrepo_doctor")
        return [doctor, *super().get_urls()]

    def doctor_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        row = get_object_or_404(DownstreamRepo, pk=object_id)
        if not self.has_view_permission(request, row):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": row,
            "title": f"Onboarding doctor: {row.repo}",
            "report": diagnose(row.repo),
        }
        return TemplateResponse(request, "admin/relay/doctor.html", context)


admin.site.unregister(DownstreamRepo)
admin.site.register(DownstreamRepo, DoctorDownstreamRepoAdmin)
