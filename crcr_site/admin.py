"""Admin pieces every app uses."""

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records kept for inspection: listed and shown, never added, changed or deleted here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def clip(text: str, chars: int) -> str:
    """`text`, or its first `chars` characters and an ellipsis with all of it on hover."""
    if len(text) <= chars:
        return text
    return format_html('<span title="{}">{}…</span>', text, text[: chars - 1].rstrip())


def clipped(name: str, chars: int, *, description: str = "") -> Callable[[Any], str]:
    """A change-list column showing at most `chars` characters of a field (all of it in the
    title attribute), so a long title, id or error neither hides the list's other columns nor
    widens the list past the screen (crcr_site/static/crcr_site/admin.css does the rest)."""

    @admin.display(description=description or name.replace("_", " "), ordering=name)
    def column(obj: Any) -> str:
        value = getattr(obj, name)
        return clip("" if value is None else str(value), chars)

    column.__name__ = name  # the column's CSS class, as a field's would be
    return column
