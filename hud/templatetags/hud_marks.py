"""The PR list's marks (hud.reports.Mark) as icon and words; the icon is decoration."""

from typing import Any

from django import template
from django.conf import settings
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from hud.templatetags.hud import repo_url

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


@register.simple_tag
def mark_strip(marks: Any) -> SafeString:
    """A PR's marks (hud.reports.RepoMark each), one linked item a downstream repo; one tag a
    row, not a template loop (the PR list's loops cost more than its SQL). Escaped values."""
    items = []
    for m in marks:
        repo, words, counts = escape(m.repo), escape(mark_words(m.mark)), m.counts
        title = f"{repo}: {words} ({int(counts.successes)} of {int(counts.total)} passed)"
        items.append(
            f'<li><a class="mark {escape(m.mark)}" href="{escape(repo_url(m.repo))}" '
            f'title="{title}"><span aria-hidden="true">{escape(mark_icon(m.mark))}</span>'
            f'<span class="visually-hidden">{repo} {words}</span></a></li>'
        )
    return mark_safe("".join(items) or '<li class="muted">no results yet</li>')  # noqa: S308
