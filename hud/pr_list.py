"""/crcr/prs and its JSON twin: the recent upstream PRs, newest activity first, each with a
strip of one mark per downstream repo that reported on its latest head; searchable by number,
title, author or head SHA.

A PR's activity is the newest of its records (the store) and of its newest webhook
(hud.models.UpstreamPull, which names PRs no downstream has reported on yet). A page is the
merge of the `page * per_page + 1` newest of each: whatever is among the newest by either
date is among the newest of one of them, so the merge is exact without a cross-store join.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from allowlist import lookup
from hud.models import UpstreamPull
from hud.pages import CONTROL, BadQuery, _int, given_once, window_days
from hud.reports import DEFAULT_DAYS, RepoMark, Window
from hud.storage import RecordStore, get_store

PR_LIST_NAMES = ("days", "q", "page")
SEARCH_MAX = 200  # characters
PAGE_MAX = 400
# Titles and authors are matched in the HUD's own table; the newest this many matches count.
TITLE_MATCHES = 1000
PR_NUMBER = re.compile(r"#?([0-9]{1,10})")
SHA_PREFIX = re.compile(r"[0-9a-f]{3,64}")


@dataclass(frozen=True)
class PrListQuery:
    """The PR list's query string, validated: the window, the search, the page."""

    days: int = DEFAULT_DAYS
    q: str = ""
    page: int = 1

    @classmethod
    def parse(cls, params: Mapping[str, str], *, strict: bool = False) -> "PrListQuery":
        """As hud.pages.Query.parse: an empty value is the default, or, `strict`, a BadQuery."""
        if strict:
            given_once(params, PR_LIST_NAMES)
        days = window_days(params)
        q = str(params.get("q") or "").strip()
        if len(q) > SEARCH_MAX:
            raise BadQuery("q", f"must be at most {SEARCH_MAX} characters")
        if CONTROL.search(q):  # (PostgreSQL's text refuses NUL: never a 503)
            raise BadQuery("q", "must hold no control characters")
        page = _int(params, "page", 1)
        if not 1 <= page <= PAGE_MAX:
            raise BadQuery("page", f"must be from 1 to {PAGE_MAX}")
        return cls(days, q, page)

    def window(self, now: datetime | None = None) -> Window:
        return Window(self.days, now or timezone.now())


@dataclass(frozen=True)
class PrLine:
    number: int
    title: str
    author: str
    last_at: datetime  # its newest record or webhook
    head_sha: str  # its latest head; "" while no downstream has reported
    marks: tuple[RepoMark, ...]  # one per repo that reported on that head, by name


@dataclass(frozen=True)
class PrList:
    query: PrListQuery
    window: Window
    lines: tuple[PrLine, ...]
    more: bool  # an older page follows
    as_of: datetime | None


@dataclass(frozen=True)
class Search:
    """What `q` matches: PR numbers (its number, or titles and authors), or a head SHA prefix."""

    numbers: tuple[int, ...] | None  # None: every PR
    sha: str | None

    @classmethod
    def of(cls, q: str, window: Window) -> "Search":
        if not q:
            return cls(None, None)
        numbers: list[int] = []
        if (match := PR_NUMBER.fullmatch(q)) and 0 < int(match.group(1)) < 2**31:
            numbers.append(int(match.group(1)))
        named = UpstreamPull.objects.filter(
            Q(title__icontains=q) | Q(author__icontains=q), updated_at__gte=window.start
        )
        numbers += named.order_by("-updated_at").values_list("number", flat=True)[:TITLE_MATCHES]
        sha = q.casefold() if SHA_PREFIX.fullmatch(q.casefold()) else None
        return cls(tuple(dict.fromkeys(numbers)), sha)

    def pulls(self) -> Q:
        """The UpstreamPull rows it matches (a SHA is not theirs: the store's records hold it)."""
        return Q() if self.numbers is None else Q(number__in=self.numbers)


def pr_list(query: PrListQuery, store: RecordStore | None = None) -> PrList:
    store = store or get_store()
    window = query.window()
    per_page = settings.HUD_PAGE_SIZE
    wanted = query.page * per_page + 1
    probe = [settings.CRCR_PROBE_REPO.casefold()]
    search = Search.of(query.q, window)
    newest: dict[int, datetime] = {}
    for activity in store.recent_prs(
        window, limit=wanted, numbers=search.numbers, sha=search.sha, exclude=probe
    ):
        newest[activity.number] = activity.last_at
    pulls = UpstreamPull.objects.filter(
        search.pulls(), updated_at__gte=window.start, updated_at__lt=window.end
    )
    for number, at in pulls.order_by("-updated_at").values_list("number", "updated_at")[:wanted]:
        newest[number] = max(at, newest.get(number, at))
    ordered = sorted(newest.items(), key=lambda item: (item[1], item[0]), reverse=True)
    shown = ordered[(query.page - 1) * per_page : query.page * per_page]
    numbers = [number for number, _ in shown]
    heads = store.pr_heads(numbers, exclude=probe)
    about = dict(
        (n, (title, author))
        for n, title, author in UpstreamPull.objects.filter(number__in=numbers).values_list(
            "number", "title", "author"
        )
    )
    snapshot = lookup.snapshot()

    def spelled(mark: RepoMark) -> RepoMark:
        entry = snapshot.get(mark.key)
        return replace(mark, repo=entry.repo) if entry else mark

    lines = []
    for number, at in shown:
        head = heads.get(number)
        marks = (
            tuple(sorted(map(spelled, head.marks), key=lambda m: m.repo.casefold())) if head else ()
        )
        title, author = about.get(number, ("", ""))
        lines.append(PrLine(number, title, author, at, head.head_sha if head else "", marks))
    return PrList(query, window, tuple(lines), len(ordered) > query.page * per_page, store.newest())
