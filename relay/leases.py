"""Leases: rows sent by one sender at a time, each outcome recorded once, failures retried.

The fan-out's dispatches and the remote HUD's outbox (relay/models.py) are sent this way:

1. `claim_due` takes due `pending` rows for one owner with a lease, by one conditional UPDATE
   on the rows themselves: of two concurrent claims on PostgreSQL the second re-checks them
   after the first commits and takes nothing. A lease must outlast the slowest send
   (CRCR_DISPATCH_LEASE; crcr.E006 checks it against GITHUB_TIMEOUT).
2. `mark_sent` records a success whoever holds the row by then: the other side took it, which
   stays true whatever became of our lease. `fail` and `retry_later` record a failure only
   while the sender still owns the row, so a sender that lost its lease cannot undo another's
   work. `hand_back` returns claimed rows unattempted.
3. `retry_later` makes the row due again after `backoff` (full jitter under a ceiling doubling
   from CRCR_RETRY_FIRST to CRCR_RETRY_CAP, never sooner than the other side's Retry-After), or
   `failed` once CRCR_DISPATCH_GIVE_UP has passed since the row began to wait.

A model using it subclasses `Leased` and has these fields: `status` (with "pending", "sent" and
"failed"), `attempts`, `last_error`, `next_attempt_at`, `lease_owner`, `lease_until`, `sent_at`
and `created_at`.
"""

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

PENDING, SENT, FAILED = "pending", "sent", "failed"
MAX_ERROR = 2000  # characters of an error kept


def backoff(attempts: int, *, retry_after: float = 0.0) -> timedelta:
    """How long to wait after the `attempts`-th attempt: full jitter, at least `retry_after`."""
    ceiling = min(settings.CRCR_RETRY_CAP, settings.CRCR_RETRY_FIRST * 2 ** max(attempts - 1, 0))
    return timedelta(seconds=max(random.uniform(0, ceiling), retry_after))  # noqa: S311 (jitter)


def _due(now: datetime) -> Q:
    return Q(status=PENDING, next_attempt_at__lte=now) & (
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    )


class LeaseQuerySet[M: "Leased"](models.QuerySet[M]):
    def claim_due(
        self,
        *,
        owner: str,
        n: int,
        lease: timedelta,
        order: Sequence[str] = ("next_attempt_at", "pk"),
    ) -> list[M]:
        """Up to `n` due rows of this queryset, first by `order`, leased to `owner`."""
        now = timezone.now()
        ids = list(self.filter(_due(now)).order_by(*order).values_list("pk", flat=True)[:n])
        if not ids:  # an idle poll costs this one query
            return []
        rows = type(self)(self.model, using=self.db).filter(pk__in=ids)  # without the scope
        taken = rows.filter(_due(now)).update(
            lease_owner=owner, lease_until=now + lease, attempts=F("attempts") + 1
        )
        if not taken:
            return []
        # Read back by primary key: lease_owner has no index, and the tables keep their rows.
        return list(rows.filter(lease_owner=owner).order_by(*order))

    def mark_sent(self, *, now: datetime, **values: Any) -> int:
        """Sent, whoever holds the lease now (the other side took it); how many rows."""
        return self.filter(status=PENDING).update(
            status=SENT, sent_at=now, last_error="", lease_owner="", lease_until=None, **values
        )

    def hand_back(self, *, owner: str) -> int:
        """Release `owner`'s rows unattempted: the claim's attempt is not counted."""
        return self.filter(lease_owner=owner).update(
            lease_owner="", lease_until=None, attempts=F("attempts") - 1
        )


class Leased(models.Model):
    """A row sent under a lease; the methods record the outcome of one claimed attempt."""

    objects = LeaseQuerySet.as_manager()

    status: str
    attempts: int
    lease_owner: str
    created_at: datetime

    class Meta:
        abstract = True

    @property
    def waiting_since(self) -> datetime:
        """Since when the row waits to be sent: CRCR_DISPATCH_GIVE_UP counts from here."""
        return self.created_at

    def fail(self, error: str, **values: Any) -> bool:
        """Failed for good, if this sender still owns the row; whether it did."""
        return self._record(status=FAILED, last_error=error[:MAX_ERROR], **values)

    def retry_later(
        self, error: str, *, now: datetime, retry_after: float = 0.0, **values: Any
    ) -> bool:
        """Due again after `backoff`, or failed once given up, if this sender still owns it."""
        when = now + backoff(self.attempts, retry_after=retry_after)
        give_up = settings.CRCR_DISPATCH_GIVE_UP
        if when > self.waiting_since + timedelta(seconds=give_up):
            # A row given up has no next attempt, where the column can say so (the outbox's
            # cannot, and keeps the one it would have had).
            nullable = self._meta.get_field("next_attempt_at").null
            return self.fail(
                f"gave up after {give_up} s: {error}",
                next_attempt_at=None if nullable else when,
                **values,
            )
        return self._record(
            status=PENDING, last_error=error[:MAX_ERROR], next_attempt_at=when, **values
        )

    def _record(self, **values: Any) -> bool:
        values |= {"lease_owner": "", "lease_until": None}
        # Only while we still hold the lease: a sender that lost it must not undo another's work.
        mine = Q(pk=self.pk, lease_owner=self.lease_owner, status=PENDING)
        recorded = bool(type(self).objects.filter(mine).update(**values))
        if recorded:
            for name, value in values.items():
                setattr(self, name, value)
        return recorded
