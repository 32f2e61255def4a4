"""Downstreams that never called back: the dispatches GitHub accepted (hud.models.Dispatched,
written by the relay) that no job record answers yet, and the repos silent for longer than
CRCR_SILENT_AFTER.

A dispatch is answered when the store holds a record of its repo and delivery (the callback's
key carries the delivery id the dispatch sent). Both reads are bounded: a page asks the store
about at most UNANSWERED_READ dispatches, and /crcr asks it nothing per dispatch.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Max, Min, Q, QuerySet

from allowlist import lookup
from hud.models import Dispatched
from hud.storage import RecordStore

# The newest dispatches a PR or repo page looks at.
UNANSWERED_READ = 200
# How much earlier than its dispatch a record answering it may say it was received (clocks).
HEARD_SLACK = timedelta(days=1)


@dataclass(frozen=True)
class Unanswered:
    """A dispatch no downstream job has answered yet."""

    repo: str  # as the allowlist spells it
    key: str
    event_type: str
    pr_number: int
    head_sha: str
    delivery_id: str
    dispatched_at: datetime
    age: float  # seconds since GitHub accepted it
    silent: bool  # older than CRCR_SILENT_AFTER


@dataclass(frozen=True)
class SilentRepo:
    """A repo dispatched to that has answered nothing for longer than CRCR_SILENT_AFTER."""

    repo: str
    key: str
    since: datetime  # the first dispatch it has not answered (after the last it did)
    dispatches: int  # unanswered since then
    last_heard: datetime | None  # its newest record in the window, if any


def newest_dispatches(rows: "QuerySet[Dispatched]") -> list[Dispatched]:
    """The newest UNANSWERED_READ of `rows`, newest first: what unanswered() looks at."""
    return list(rows.order_by("-dispatched_at", "-id")[:UNANSWERED_READ])


def unanswered(
    rows: "QuerySet[Dispatched]", store: RecordStore, now: datetime, *, pr: int | None = None
) -> tuple[Unanswered, ...]:
    """The newest UNANSWERED_READ of `rows` (all for PR `pr`, if given) that no record
    answers, newest first."""
    found = newest_dispatches(rows)
    # A record answering a dispatch was received after it was sent (a day's slack for
    # clocks), and carries the dispatch's PR (the relay takes it from its dispatch record).
    since = min((row.dispatched_at for row in found), default=now) - HEARD_SLACK
    asked = ((row.repo_key, row.delivery_id) for row in found)
    return unanswered_of(found, store.heard_from(asked, since=since, pr_number=pr), now)


def unanswered_of(
    found: Sequence[Dispatched], heard: set[tuple[str, str]], now: datetime
) -> tuple[Unanswered, ...]:
    """Of the dispatches `found`, those not `heard` from ((repo key, delivery id) pairs)."""
    after = settings.CRCR_SILENT_AFTER
    name = _names()
    return tuple(
        Unanswered(
            name(row.repo_key, row.repo),
            row.repo_key,
            row.event_type,
            row.pr_number,
            row.head_sha,
            row.delivery_id,
            row.dispatched_at,
            age,
            age > after,
        )
        for row in found
        if (row.repo_key, row.delivery_id) not in heard
        for age in [max(0.0, (now - row.dispatched_at).total_seconds())]
    )


def of_pr(number: int, store: RecordStore, now: datetime) -> tuple[Unanswered, ...]:
    if not 0 < number < 2**31:
        return ()
    return unanswered(Dispatched.objects.filter(pr_number=number), store, now, pr=number)


def repo_dispatches(key: str, start: datetime) -> list[Dispatched]:
    """A repo's newest dispatches since `start` (newest_dispatches): its page asks the store
    which were answered in the same read as its figures (RecordStore.repo_overview)."""
    return newest_dispatches(Dispatched.objects.filter(repo_key=key, dispatched_at__gte=start))


def dispatched_since(start: datetime, now: datetime) -> dict[str, datetime]:
    """Repo key → its newest dispatch since `start` older than CRCR_SILENT_AFTER: the repos
    silent_repos judges (one aggregate read)."""
    cutoff = now - timedelta(seconds=settings.CRCR_SILENT_AFTER)
    old_enough = Dispatched.objects.filter(dispatched_at__gte=start, dispatched_at__lt=cutoff)
    return dict(
        old_enough.values("repo_key")
        .annotate(at=Max("dispatched_at"))
        .values_list("repo_key", "at")
    )


def silent_repos(
    store: RecordStore,
    start: datetime,
    now: datetime,
    *,
    newest: dict[str, datetime] | None = None,
    heard: dict[str, datetime] | None = None,
) -> tuple[SilentRepo, ...]:
    """The repos dispatched to since `start` whose newest dispatch older than CRCR_SILENT_AFTER
    came after the newest record they sent: three aggregate reads, whatever the traffic (two
    when the caller read `newest` (dispatched_since) and `heard` (their newest records since
    `start`) already).

    A callback can be received before GitHub's answer to its dispatch (the Redis state is
    written first), so a record up to CRCR_DISPATCH_LEASE (the longest a send may take) before
    the dispatch still answers it."""
    grace = timedelta(seconds=settings.CRCR_DISPATCH_LEASE)
    newest = dispatched_since(start, now) if newest is None else newest
    if not newest:
        return ()
    if heard is None:
        heard = store.last_heard(sorted(newest), since=start)
    quiet = {key: heard.get(key) for key, at in newest.items() if _quiet(heard.get(key), at, grace)}
    if not quiet:
        return ()
    since = Q()
    for key, last in quiet.items():
        since |= (
            Q(repo_key=key) if last is None else Q(repo_key=key, dispatched_at__gt=last + grace)
        )
    firsts = (
        Dispatched.objects.filter(since, dispatched_at__gte=start)
        .values("repo_key")
        .annotate(first=Min("dispatched_at"), n=Count("id"), repo=Max("repo"))
        .values_list("repo_key", "repo", "first", "n")
        .order_by()
    )
    name = _names()
    found = [
        SilentRepo(name(key, repo), key, first, n, quiet[key]) for key, repo, first, n in firsts
    ]
    return tuple(sorted(found, key=lambda s: (s.since, s.repo.casefold())))


def _quiet(last: datetime | None, dispatched: datetime, grace: timedelta) -> bool:
    return last is None or last + grace < dispatched


def _names() -> Callable[[str, str], str]:
    """(key, spelling when dispatched) → the allowlist's spelling now, else that one."""
    snapshot = lookup.snapshot()

    def name(key: str, spelled: str) -> str:
        entry = snapshot.get(key)
        return entry.repo if entry else spelled

    return name
