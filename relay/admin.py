"""Deliveries, dispatches and re-runs, read-only, with one action: retry failed dispatches now."""

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from crcr_site.admin import ReadOnlyAdmin, clipped
from relay import tasks
from relay.models import (
    CallbackAudit,
    Delivery,
    Dispatch,
    HudForward,
    PeriodicJob,
    PullComment,
    Rerun,
    WorkerHeartbeat,
)


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
    )
    list_filter = ("event", "action")
    search_fields = ("delivery_id", "head_sha", "title", "author", "=pr_number")
    date_hierarchy = "received_at"
    exclude = ("body",)
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
    )
    inlines = (DispatchInline,)


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
    actions = ("retry_now",)

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
