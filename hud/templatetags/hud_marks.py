"""The PR list's marks (hud.reports.Mark) as icon and words; the icon is decoration."""

from django import template
from django.conf import settings

register = template.Library()

MARKS = {
    "green": ("✓", "all passed"),
    "red": ("✗", "a job failed"),
    "pending": ("◷", "running"),
    "neutral": ("·", "cancelled"),
}


@register.filter
def mark_icon(mark: str) -> str:
    return MARKS.get(str(mark), ("?", ""))[0]


@register.filter
def mark_words(mark: str) -> str:
    return MARKS.get(str(mark), ("?", str(mark)))[1]


@register.simple_tag
def silent_after() -> int:
    """CRCR_SILENT_AFTER: seconds after which an unanswered dispatch counts as silent."""
    return int(settings.CRCR_SILENT_AFTER)
