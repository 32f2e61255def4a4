"""Re-dispatch: an upstream PR's latest head sent again, for a downstream that missed it.

The PR's newest recorded `opened`, `reopened` or `synchronize` webhook is recorded again under a
new delivery id, with a `Redispatch` row saying whose head it repeats and who asked, and then
goes out exactly as a webhook's fan-out does (relay/fanout.py: recorded first, sent within
CRCR_FANOUT_DEADLINE, the rest retried by the worker). It is deliberate, not idempotent: every
call is one more delivery, and a downstream's callbacks answer it by its new delivery id.
"""

import uuid
from dataclasses import dataclass

from django.db import transaction

from allowlist import lookup
from allowlist.entry import Entry
from relay import fanout, webhook
from relay.models import Delivery, Redispatch

# The actions that put a head up for CI; `closed` asks downstream to stop, not to run.
HEAD_ACTIONS = ("opened", "reopened", "synchronize")


class CannotRedispatch(Exception):
    """Nothing was recorded or sent, for the reason given."""


@dataclass(frozen=True)
class Redispatched:
    original: Delivery
    delivery: Delivery
    summary: fanout.Summary
    by: str
    earlier: int  # re-dispatches of the same webhook before this one


def latest_head(pr_number: int) -> Delivery:
    """The PR's newest webhook that put a head up for CI (re-dispatches aside)."""
    found = (
        Delivery.objects.filter(
            event="pull_request",
            pr_number=pr_number,
            action__in=HEAD_ACTIONS,
            redispatch__isnull=True,
        )
        .exclude(head_sha="")
        .order_by("-received_at", "-pk")
        .first()
    )
    if found is None:
        raise CannotRedispatch(
            f"no head of PR #{pr_number} on record: no opened, reopened or synchronize webhook"
        )
    return found


def targets(repo: str | None) -> tuple[Entry, ...]:
    """`repo` alone, or every allowlisted repo that takes part in pull requests."""
    if repo is None:
        found = lookup.repos_for_event("pull_request")
        if not found:
            raise CannotRedispatch("no allowlisted repo takes part in pull requests")
        return found
    entry = lookup.snapshot().get(repo)
    if entry is None:
        raise CannotRedispatch(f"{repo} is not allowlisted (or its entry is disabled)")
    if not entry.takes_part_in("pull_request"):
        raise CannotRedispatch(f"{entry.repo} takes part in nightly runs only")
    return (entry,)


def redispatch(pr_number: int, *, repo: str | None = None, by: str) -> Redispatched:
    """Send PR `pr_number`'s latest head again to `repo`, or to every participating repo."""
    original = latest_head(pr_number)
    chosen = targets(repo)
    event = webhook.event_of(str(uuid.uuid4()), original.event, original.body)
    with transaction.atomic():
        delivery = fanout.record(event, targets=chosen)
        earlier = original.redispatches.count()
        Redispatch.objects.create(
            delivery=delivery, original=original, by=by[:150], repo=chosen[0].repo if repo else ""
        )
    summary = fanout.send_recorded(delivery, event)
    return Redispatched(original, delivery, summary, by[:150], earlier)


def told(done: Redispatched) -> list[str]:
    """What the command and the admin say about one re-dispatch, one line each."""
    summary, original = done.summary, done.original
    lines = [
        f"Re-dispatched PR #{original.pr_number} head {original.head_sha[:12]} "
        f"(first delivered as {original.delivery_id}) as the new delivery "
        f"{done.delivery.delivery_id}, by {done.by}: a deliberate "
        f"re-dispatch, number {done.earlier + 1} of this head (every one sends again)."
    ]
    for label, items, key in (
        ("dispatched", summary.dispatched, ""),
        ("sending in the background", summary.queued, "reason"),
        ("failed", summary.failed, "error"),
        ("skipped", summary.skipped, "reason"),
    ):
        if items:
            shown = ", ".join(
                item["repo"] + (f" ({item[key]})" if key and item.get(key) else "")
                for item in items
            )
            lines.append(f"{label}: {shown}")
    if summary.deferred:
        lines.append(summary.deferred)
    return lines
