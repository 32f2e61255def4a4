"""Formatting for the HUD's templates: durations, rates, outcomes, safe links, sparklines."""

import functools
import math
import re
from html import escape as html_escape
from typing import Any
from urllib.parse import urlencode

from django import template
from django.conf import settings
from django.urls import get_script_prefix, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from hud import charts
from hud.records import safe_url
from hud.reports import DailyPoint, Window

register = template.Library()
JOB_LOG = re.compile(r"/actions/runs/[0-9]+/job/[0-9]+$")  # hud/reports.py job_log_url


def _escape(value: object) -> str:
    """Django's escape() without its lazy-string wrapper (the same html.escape underneath):
    the matrix calls it thousands of times a page."""
    return html_escape(str(value))


OUTCOMES = {  # outcome → (icon, words); the icon is never the only signal
    "success": ("✓", "passed"),
    "failure": ("✗", "failed"),
    "startup_failure": ("✗", "failed to start"),
    "timed_out": ("◷", "timed out"),
    "cancelled": ("⊘", "cancelled"),
    "in_progress": ("◔", "running"),
    "skipped": ("-", "skipped"),
    "neutral": ("-", "neutral"),
}


def _number(value: object) -> float | None:
    """A finite number, else None. Filters take whatever a template hands them: a missing
    variable is "" (Django's string_if_invalid), and a backend may hold NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


@register.filter
def duration(value: float | None) -> str:
    """1h 02m, 4m 10s, 9s; an em dash when unknown."""
    seconds = _number(value)
    if seconds is None:
        return "—"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


@register.filter
def percent(value: float | None) -> str:
    """71.4%; below 10 % two decimals, so 0.99 % never reads as the 1 % it is under."""
    rate = _number(value)
    if rate is None:
        return "—"
    return f"{rate * 100:.2f}%" if 0 < rate < 0.1 else f"{rate * 100:.1f}%"


@register.filter
def rate_class(value: float | None) -> str:
    rate = _number(value)
    if rate is None:
        return "none"
    return "good" if rate >= 0.9 else "warn" if rate >= 0.7 else "bad"


@register.filter
def outcome_icon(outcome: str) -> str:
    return OUTCOMES.get(outcome, ("?", outcome))[0]


@register.filter
def outcome_words(outcome: str) -> str:
    return OUTCOMES.get(outcome, ("?", outcome or "unknown"))[1]


@register.simple_tag
@functools.lru_cache(maxsize=64)  # a handful of outcomes, each rendered thousands of times
def outcome(name: str) -> SafeString:
    """An outcome as icon and words, coloured by its class (the icon is decoration)."""
    icon, words = OUTCOMES.get(name, ("?", name or "unknown"))
    return format_html(
        '<span class="outcome {}"><span class="icon" aria-hidden="true">{}</span> {}</span>',
        name,
        icon,
        words,
    )


@register.filter
def link_or_none(url: str | None) -> str | None:
    """The URL when it is plain http(s) without credentials; templates link nothing else."""
    return url if url and safe_url(url) else None


@register.filter
def repo_url(repo: str) -> str:
    """/crcr/{org}/{repo} for an owner/name."""
    return _repo_url(get_script_prefix(), repo)


@functools.lru_cache(maxsize=4096)
def _repo_url(prefix: str, repo: str) -> str:
    # Cached: a page links the same few dozen repos hundreds of times (the prefix is the
    # deployment's, part of the key so that a cached URL is always the prefix's own).
    org, _, name = repo.partition("/")
    return reverse("crcr-repo", kwargs={"org": org, "name": name})


@register.filter
def upstream_pr(number: int) -> str:
    if isinstance(number, bool) or not isinstance(number, int) or number <= 0:
        return ""
    return f"{settings.GITHUB_WEB_URL}/{settings.CRCR_UPSTREAM_REPO}/pull/{number}"


@register.filter
def upstream_commit(sha: str) -> str:
    """The upstream commit's page on GitHub ("" for what cannot be a SHA)."""
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-fA-F]{7,64}", sha):
        return ""
    return f"{settings.GITHUB_WEB_URL}/{settings.CRCR_UPSTREAM_REPO}/commit/{sha}"


@register.filter
def short_sha(sha: str) -> str:
    return sha[:10]


@register.simple_tag
def sparkline(points: tuple[DailyPoint, ...], window: Window) -> SafeString:
    """Pass rate per day over the window as an inline SVG (days without results: no point)."""
    width, height, days = 100, 24, max(window.days, 1)
    first = window.start.date()
    coords = []
    for point in points:
        rate = point.counts.pass_rate
        if rate is None:
            continue
        x = 100 if days == 1 else round((point.day - first).days / days * width, 1)
        coords.append((min(max(x, 0), width), round((1 - rate) * (height - 4) + 2, 1)))
    if not coords:
        return mark_safe('<span class="muted">no completed jobs</span>')
    summary = ", ".join(
        f"{p.day:%b %d} {p.counts.pass_rate:.0%}" for p in points if p.counts.completed
    )
    dots = format_html_join("", '<circle cx="{}" cy="{}" r="1.6"></circle>', coords)
    line = " ".join(f"{x},{y}" for x, y in coords)
    return format_html(
        '<svg class="spark" viewBox="0 0 {} {}" width="{}" height="{}" role="img" '
        'aria-label="Daily pass rate: {}"><polyline points="{}"></polyline>{}</svg>',
        width,
        height,
        width,
        height,
        summary,
        line,
        dots,
    )


@register.simple_tag
def matrix_cell(shown: Any) -> SafeString:
    """One matrix cell (a ShownCell): its outcome as the summary, its details inside.

    Python rather than an included template, and plain escaped f-strings rather than
    format_html: a page has hundreds of cells, and each costs more than the page's SQL
    otherwise. Every value from a record goes through _escape()."""
    cell = shown.cell
    outcome = _escape(cell.outcome)
    head = (
        f'<span class="icon" aria-hidden="true">{_escape(outcome_icon(cell.outcome))}</span> '
        f'<span class="words">{_escape(outcome_words(cell.outcome))}</span>'
    )
    if shown.expected and cell.status == "completed":
        # The probe's page: whether the job ended as it should (hud/reports.py probe_judged).
        said = "as expected" if cell.conclusion == shown.expected else "unexpected"
        head += f' <span class="expect">({said})</span>'
    if shown.of > 1:
        head += f' <span class="shards">{shown.passed}/{shown.of}</span>'
    if cell.run_attempt > 1:
        attempt = int(cell.run_attempt)
        head += f' <span class="attempt" title="attempt {attempt}">#{attempt}</span>'
    if getattr(shown, "on_main_since", ""):
        head += " " + _on_main(shown.on_main_since)
    if getattr(shown, "flaky", False):
        head += (
            ' <span class="badge flaky" title="its attempts on this head disagreed: '
            'failed and passed">flaky</span>'
        )
    rows: list[tuple[str, str]] = []  # (term, escaped HTML)
    if shown.of > 1:
        worst = _escape(cell.job_name)
        rows.append(("Shards", f"{shown.passed} of {shown.of} passed; worst: {worst}"))
    if shown.expected:
        rows.append(("Expected", _escape(outcome_words(shown.expected))))
    rows += [
        ("Job", _escape(f"{cell.workflow_name} / {cell.job_name}")),
        ("Attempt", str(int(cell.run_attempt))),
        ("Duration", duration(cell.execution_time)),
        ("Queue", duration(cell.queue_time)),
    ]
    if cell.tests_total is not None:
        passed = "?" if cell.tests_passed is None else int(cell.tests_passed)
        rows.append(("Tests", f"{passed}/{int(cell.tests_total)} passed"))
    if cell.failed_tests:
        items = "".join(f"<li><code>{_escape(name)}</code></li>" for name in cell.failed_tests)
        rows.append(("Failing", f'<ul class="failing">{items}</ul>'))
    verdict = cell.triage_verdict
    if verdict:
        text = f"{verdict.get('category')} ({verdict.get('confidence')} confidence)"
        if verdict.get("summary"):
            text += f": {verdict['summary']}"
        rows.append(("Triage", _escape(text)))
    log = link_or_none(cell.log_url)
    if log:
        words = "job log" if JOB_LOG.search(log) else "workflow run"
        rows.append(("Log", f'<a href="{_escape(log)}" rel="noopener noreferrer">{words}</a>'))
    details = "".join(f"<dt>{term}</dt><dd>{value}</dd>" for term, value in rows)
    html = f'<details class="cell {outcome}"><summary>{head}</summary><dl>{details}</dl></details>'
    return mark_safe(html)  # noqa: S308 (built above from escaped values only)


NO_RESULT = '<td><span class="muted" aria-label="no result">·</span></td>'


@register.simple_tag
def matrix_cells(cells: Any) -> SafeString:
    """A matrix row's cells (ShownCell or None each), one <td> a column: one tag a row, not a
    template loop, whose per-cell cost was most of the repo page's render."""
    return mark_safe(  # noqa: S308 (matrix_cell escapes; NO_RESULT is a constant)
        "".join(f"<td>{matrix_cell(cell)}</td>" if cell else NO_RESULT for cell in cells)
    )


def _on_main(since: str) -> str:
    """The badge of a red job that is red on the upstream's main too (hud/baseline.py)."""
    sha = _escape(short_sha(since))
    return (
        f'<span class="badge on-main" title="also failing on main since {sha}: '
        f"not this PR's doing\">on main since {sha}</span>"
    )


@register.simple_tag
def pr_row(repo: Any, number: int, on_main: Any = None) -> SafeString:
    """One downstream repo's row on a PR page (a PrRepo), as matrix_cell builds a cell: escaped
    f-strings, every value from a record through _escape()."""
    latest = repo.latest
    counts = latest.counts
    result: str = ""  # an outcome tag's HTML, or nothing
    if latest.red:
        result = outcome("failure")
    elif counts.in_progress:
        result = outcome("in_progress")
    elif counts.completed and counts.successes == counts.completed:
        result = outcome("success")
    elif counts.cancelled:
        result = outcome("cancelled")
    running = f", {int(counts.in_progress)} running" if counts.in_progress else ""
    heads = len(repo.shas)
    failing = []
    for cell in repo.failing:
        log = link_or_none(cell.log_url)
        name: str = _escape(cell.job_name)
        if log:
            name = f'<a href="{_escape(log)}" rel="noopener noreferrer">{name}</a>'
        words = _escape(outcome_words(cell.outcome))
        failing.append(f'{name} <span class="muted">({words})</span>')
        since = (on_main or {}).get(repo.key, {}).get(cell.job_name)
        if since:
            failing[-1] += " " + _on_main(since)
    since = repo.red_since
    link = f"{repo_url(repo.repo)}?pr={int(number)}"
    html = (
        f'<tr class="{"red" if latest.red else ""}">'
        f'<th scope="row"><a href="{_escape(link)}">{_escape(repo.repo)}</a></th>'
        f"<td>{_escape(repo.level or '—')}</td>"
        f"<td><code>{_escape(short_sha(latest.head_sha))}</code> "
        f'<span class="muted">({heads} head{"" if heads == 1 else "s"})</span></td>'
        f'<td>{result}\n        <span class="muted">{int(counts.successes)}/'
        f"{int(counts.completed)} passed{running}</span></td>"
        f"<td>{f'<code>{_escape(short_sha(since))}</code>' if since else '—'}</td>"
        f"<td>{', '.join(failing) or '—'}</td></tr>"
    )
    return mark_safe(html)  # noqa: S308 (built above from escaped values only)


@register.simple_tag
def live_every() -> int:
    """Seconds between a page's refreshes of itself (hud/static/hud/hud.js); 0: never."""
    return max(0, int(settings.CRCR_HUD_REFRESH))


@register.simple_tag
def hud_notice() -> str:
    """The operator's line for every page (CRCR_HUD_NOTICE), or nothing."""
    return str(settings.CRCR_HUD_NOTICE)


@register.simple_tag
def volume_chart(points: tuple[DailyPoint, ...], window: Window, peak: int) -> SafeString:
    return charts.volume_chart(points, window, peak)


@register.simple_tag
def passrate_chart(series: Any, window: Window) -> SafeString:
    """Every series' (pages.Series) daily pass rate on one chart."""
    return charts.passrate_chart([(s.repo, s.points) for s in series], window)


@register.simple_tag
def times_chart(times: Any, window: Window) -> SafeString:
    return charts.times_chart(times, window, duration)


@register.filter
def series_class(index: int) -> str:
    """The class of the n-th (from 1, forloop.counter) series: its colour in every chart."""
    return f"s{(int(index) - 1) % charts.SERIES_CLASSES}"


@register.simple_tag
def pr_jobs(repo: Any, jobs: Any, number: int) -> SafeString:
    """The jobs of one downstream repo on a PR (a PrRepo and its store.pr_jobs entry): its
    heads newest first; a listed head's jobs by run, each job's outcome linked to its log,
    with the run's and the job's artifacts' links; a head not listed as its tally and the
    link that lists it (?head=). Escaped f-strings, as pr_row."""
    heads = (jobs or {}).get(repo.key, {})
    parts = []
    for n, sha_result in enumerate(reversed(repo.shas)):
        latest = ' <span class="muted">(latest)</span>' if n == 0 else ""
        sha = _escape(short_sha(sha_result.head_sha))
        parts.append(f"<h4><code>{sha}</code>{latest}</h4>")
        on_head = heads.get(sha_result.head_sha)
        if on_head is None:
            counts = sha_result.counts
            running = f", {int(counts.in_progress)} running" if counts.in_progress else ""
            listing = urlencode({"head": sha_result.head_sha})
            link = f"{reverse('crcr-pr', args=[int(number)])}?{listing}"
            parts.append(
                f'<p class="run">{int(counts.successes)}/{int(counts.completed)} passed'
                f'{running} · <a href="{_escape(link)}#jobs-h">its {int(counts.total)} '
                f"job{'' if counts.total == 1 else 's'}</a></p>"
            )
            continue
        runs: dict[str, list[Any]] = {}
        for job in on_head:
            runs.setdefault(job.run_url, []).append(job)
        for run_url, run_jobs in runs.items():
            run = link_or_none(run_url)
            run_link = (
                f'<a href="{_escape(run)}" rel="noopener noreferrer">Run</a>' if run else "no run"
            )
            parts.append(
                f'<p class="run">{run_link}</p><ul class="jobs">'
                f"{''.join(map(_pr_job, run_jobs))}</ul>"
            )
    return mark_safe("".join(parts) or '<p class="muted">No jobs.</p>')  # noqa: S308


def _pr_job(job: Any) -> str:
    """One job's line in pr_jobs' list (a PrJob)."""
    name = _escape(f"{job.workflow_name} / {job.job_name}")
    log = link_or_none(job.log_url)
    if log:
        name = f'<a href="{_escape(log)}" rel="noopener noreferrer">{name}</a>'
    extra = [duration(job.execution_time)] if job.execution_time is not None else []
    if job.run_attempt > 1:
        extra.append(f"attempt {int(job.run_attempt)}")
    artifacts = link_or_none(job.artifact_url)
    if artifacts:
        extra.append(f'<a href="{_escape(artifacts)}" rel="noopener noreferrer">Artifacts</a>')
    return (
        f'<li class="{_escape(job.outcome)}">{outcome(job.outcome)} {name}'
        f' <span class="muted">{" · ".join(extra)}</span></li>'
    )
