"""Django admin for the allowlist: tiers, the change log, the synced files and the drift page.

Every write made through the admin runs `acting_as(<user name>)`, so the change log names the
person (allowlist/audit.py). Rows the allowlist file owns are read-only until an admin ticks
`override`; "Revert to the allowlist file" is the way back.
"""

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from allowlist import levels
from allowlist.audit import acting_as, described
from allowlist.entry import Event
from allowlist.models import Change, DownstreamRepo, SyncedFile
from allowlist.sync import compare, drift, last_synced, revert_to_file
from crcr_site.admin import ReadOnlyAdmin, clip, clipped

EDITABLE = ("repo", "level", "device", "oncalls", "events", "enabled")


class DownstreamRepoForm(forms.ModelForm):
    oncalls = forms.CharField(
        required=False, help_text="GitHub handles, separated by commas", strip=True
    )
    events = forms.MultipleChoiceField(
        choices=Event.choices, widget=forms.CheckboxSelectMultiple, initial=Event.values
    )

    class Meta:
        model = DownstreamRepo
        fields = (
            "repo",
            "level",
            "device",
            "oncalls",
            "events",
            "enabled",
            "override",
            "github_repository_id",
            "github_owner_id",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and "oncalls" in self.fields:
            self.initial["oncalls"] = ", ".join(self.instance.oncalls)

    def clean_oncalls(self) -> list[str]:
        return [item.strip() for item in self.cleaned_data["oncalls"].split(",") if item.strip()]

    def clean_events(self) -> list[str]:
        return [event for event in Event.values if event in self.cleaned_data["events"]]


class ActorMixin:
    """Run each admin request that can write as the logged-in user, for the change log."""

    def _as_user(
        self, request: HttpRequest, view: Callable[..., HttpResponse], *args: Any, **kwargs: Any
    ) -> HttpResponse:
        with acting_as(request.user.get_username()):
            return view(request, *args, **kwargs)

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self._as_user(request, super().changeform_view, *args, **kwargs)  # type: ignore[misc]

    def changelist_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self._as_user(request, super().changelist_view, *args, **kwargs)  # type: ignore[misc]

    def delete_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self._as_user(request, super().delete_view, *args, **kwargs)  # type: ignore[misc]


@admin.register(DownstreamRepo)
class DownstreamRepoAdmin(ActorMixin, admin.ModelAdmin):
    form = DownstreamRepoForm
    list_display = (
        clipped("repo", 40),
        "level_code",
        clipped("device", 20),
        "oncall_list",
        "event_list",
        "enabled",
        "source",
        "override",
        "temporarily_demoted",
        "updated_at",
    )
    list_filter = ("level", "device", "source", "override", "enabled")
    search_fields = ("repo", "device", "oncalls")
    actions = ("promote", "demote", "revert", "lift")
    change_list_template = "admin/allowlist/downstreamrepo/change_list.html"

    @admin.display(description="level", ordering="level")
    def level_code(self, obj: DownstreamRepo) -> str:
        return obj.level

    @admin.display(description="oncalls")
    def oncall_list(self, obj: DownstreamRepo) -> str:
        return clip(", ".join(obj.oncalls), 40)

    @admin.display(description="events")
    def event_list(self, obj: DownstreamRepo) -> str:
        return clip(", ".join(obj.events), 40)

    @admin.display(description="temporarily demoted", boolean=True)
    def temporarily_demoted(self, obj: DownstreamRepo) -> bool:
        return obj.suspended

    @admin.display(description="the allowlist file says")
    def file_says(self, obj: DownstreamRepo) -> str:
        synced, by_key = last_synced()
        entry = by_key.get(obj.repo.casefold())
        if synced is None:
            return "no file synced yet"
        if entry is None:
            return "not listed in the file"
        diff = compare(obj, entry)
        if not diff:
            return "the same as this row"
        return "; ".join(f"{name}: {theirs}" for name, (_, theirs) in diff.items())

    @admin.display(description="history")
    def history(self, obj: DownstreamRepo) -> str:
        url = reverse("admin:allowlist_change_changelist") + f"?q={obj.repo}"
        return format_html('<a href="{}">changes to {}</a>', url, obj.repo)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fixed = (
            "source",
            "suspended_since",
            "suspended_reason",
            "file_says",
            "history",
            "created_at",
            "updated_at",
        )
        if obj is None:
            return ("source",)
        if obj.is_file_owned:
            return (*EDITABLE, *fixed)
        if obj.source == "yaml":  # overridden: editable; clear it with "Revert to the file"
            return ("override", *fixed)
        return fixed

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.is_file_owned:
            return False
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[DownstreamRepo]) -> None:
        owned = [row.repo for row in queryset if row.is_file_owned]
        if owned:
            self.message_user(
                request,
                f"Not deleted, the allowlist file owns them: {', '.join(owned)}.",
                messages.WARNING,
            )
        for row in queryset:
            if not row.is_file_owned:
                row.delete()

    def _move(self, request: HttpRequest, queryset: QuerySet[DownstreamRepo], steps: int) -> None:
        moved, skipped = [], []
        for row in queryset:
            reason = row.move(steps)
            (skipped.append(f"{row.repo}: {reason}") if reason else moved.append(row.repo))
        if moved:
            self.message_user(request, f"Now at their new level: {', '.join(moved)}.")
        if skipped:
            self.message_user(
                request, "Left as they were — " + "; ".join(skipped), messages.WARNING
            )

    @admin.action(description="Promote one level", permissions=["change"])
    def promote(self, request: HttpRequest, queryset: QuerySet[DownstreamRepo]) -> None:
        self._move(request, queryset, +1)

    @admin.action(description="Demote one level", permissions=["change"])
    def demote(self, request: HttpRequest, queryset: QuerySet[DownstreamRepo]) -> None:
        self._move(request, queryset, -1)

    @admin.action(
        description="Revert to the allowlist file (clear override)", permissions=["change"]
    )
    def revert(self, request: HttpRequest, queryset: QuerySet[DownstreamRepo]) -> None:
        count = revert_to_file(list(queryset))
        self.message_user(request, f"{count} row(s) now as the last synced file has them.")

    @admin.action(description="Lift the temporary demotion", permissions=["change"])
    def lift(self, request: HttpRequest, queryset: QuerySet[DownstreamRepo]) -> None:
        # Not the file's to decide, so rows the file owns may be lifted too.
        lifted = [row.repo for row in queryset if levels.lift(row.repo)]
        if lifted:
            self.message_user(request, f"Temporary demotion lifted: {', '.join(lifted)}.")
        else:
            self.message_user(request, "None of them was temporarily demoted.", messages.WARNING)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.drift_view)
        return [path("drift/", view, name="allowlist_downstreamrepo_drift"), *super().get_urls()]

    def drift_view(self, request: HttpRequest) -> HttpResponse:
        synced, found = drift()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Differences from the allowlist file",
            "synced": synced,
            "drift": found,
        }
        return TemplateResponse(request, "admin/allowlist/downstreamrepo/drift.html", context)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        synced, found = drift()
        extra_context = {**(extra_context or {}), "synced": synced, "drift_count": len(found)}
        return super().changelist_view(request, extra_context)


@admin.register(Change)
class ChangeAdmin(ReadOnlyAdmin):
    list_display = (
        "at",
        clipped("repo", 40),
        "action",
        "old_level",
        "new_level",
        clipped("actor", 24),
        "changes",
    )
    list_filter = ("action", "new_level", "actor")
    search_fields = ("repo", "actor")
    date_hierarchy = "at"
    fields = ("at", "repo", "action", "old_level", "new_level", "actor", "changes")
    readonly_fields = fields

    @admin.display(description="what changed")
    def changes(self, obj: Change) -> str:
        """One line a field, "level L2 → L3", each at most a line long (all of it on hover)."""
        items = format_html_join(
            "", "<li>{}</li>", ((clip(line, 80),) for line in described(obj.fields))
        )
        return format_html('<ul class="changes">{}</ul>', items)


@admin.register(SyncedFile)
class SyncedFileAdmin(ReadOnlyAdmin):
    list_display = (
        clipped("location", 60),
        clipped("sha256", 12, description="sha256"),
        clipped("etag", 24),
        "fetched_at",
        "applied_at",
    )
