"""What an operator watches: the outboxes (/metrics, /crcr/ops), and /crcr/ops itself.

/crcr/ops (staff only) puts on one page what /readyz, /metrics and the admin hold apart: the
recent deliveries, the dispatches waiting or given up with their last error, how long GitHub
took to accept the dispatches of the last day (p50, p99), the GitHub budget left per
installation, the workers and periodic jobs, the outboxes and the oldest job in progress.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Count, Min, Q
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import render
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from crcr_site import readiness
from hud.reports import StaleJob
from relay import budget


@dataclass(frozen=True)
class Outbox:
    name: str
    depth: int  # rows waiting to be sent
    oldest_seconds: float  # how long the oldest has waited (0 when none)
    oldest: datetime | None


def outboxes(now: datetime | None = None) -> list[Outbox]:
    """Each outbox the worker drains: what waits in it and since when. One aggregate each,
    over its (status, next_attempt_at) index; ClickHouse's (hud.HudOutbox) holds only what
    waits."""
    from hud.models import HudOutbox
    from relay.models import CheckRun, Dispatch, HudForward, PullComment, Rerun

    now = now or timezone.now()
    waiting = Q(status="pending")
    boxes = {
        "dispatches": Dispatch.objects.filter(waiting).aggregate(
            n=Count("pk"), oldest=Min(Coalesce("pending_since", "created_at"))
        ),
        "check_runs": CheckRun.objects.filter(waiting).aggregate(
            n=Count("pk"), oldest=Min("pending_since")
        ),
        "pr_comments": PullComment.objects.filter(waiting).aggregate(
            n=Count("pk"), oldest=Min("pending_since")
        ),
        "reruns": Rerun.objects.filter(waiting).aggregate(n=Count("pk"), oldest=Min("created_at")),
        "hud_forward": HudForward.objects.filter(waiting).aggregate(
            n=Count("pk"), oldest=Min("created_at")
        ),
        "clickhouse": HudOutbox.objects.aggregate(n=Count("pk"), oldest=Min("created_at")),
    }
    return [
        Outbox(
            name,
            found["n"],
            (now - found["oldest"]).total_seconds() if found["oldest"] else 0.0,
            found["oldest"],
        )
        for name, found in boxes.items()
    ]


class OutboxCollector(Collector):
    """crcr_outbox_depth and crcr_outbox_oldest_seconds, read at scrape time."""

    def describe(self) -> Iterator[GaugeMetricFamily]:  # (registering reads no database)
        yield from self._families()

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily("crcr_outbox_depth", "Rows waiting in an outbox", labels=["outbox"]),
            GaugeMetricFamily(
                "crcr_outbox_oldest_seconds",
                "Age of an outbox's oldest waiting row",
                labels=["outbox"],
            ),
        )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth, oldest = self._families()
        for box in outboxes():
            depth.add_metric([box.name], box.depth)
            oldest.add_metric([box.name], box.oldest_seconds)
        yield depth
        yield oldest


@dataclass(frozen=True)
class OpsPage:
    now: datetime
    deliveries: list[dict[str, Any]]
    waiting: list[Any]  # Dispatch rows pending or failed, newest first
    lag_p50: float | None  # seconds, delivery received -> dispatch accepted, last day
    lag_p99: float | None
    lag_count: int
    budgets: list[budget.Budget]
    ready: dict[str, Any]  # crcr_site.readiness.report()'s body
    outboxes: list[Outbox]
    oldest_in_progress: StaleJob | None
    store_error: str


RECENT = 20
WAITING_SHOWN = 50
LAG_SAMPLE = 5000


def ops_page(now: datetime | None = None) -> OpsPage:
    from hud.reports import nearest_ranks
    from hud.storage import StoreUnavailable, get_store
    from relay.models import Delivery, Dispatch

    now = now or timezone.now()
    deliveries = [
        dict(row)
        for row in Delivery.objects.annotate(
            sent=Count("dispatches", filter=Q(dispatches__status="sent")),
            pending=Count("dispatches", filter=Q(dispatches__status="pending")),
            failed=Count("dispatches", filter=Q(dispatches__status="failed")),
        )
        .values(
            "delivery_id",
            "event",
            "action",
            "pr_number",
            "received_at",
            "sent",
            "pending",
            "failed",
            "redispatch__by",  # a re-dispatch (relay/redispatch.py): who asked
        )
        .order_by("-received_at")[:RECENT]
    ]
    waiting = list(
        Dispatch.objects.filter(status__in=("pending", "failed"))
        .select_related("delivery")
        .order_by("-created_at")[:WAITING_SHOWN]
    )
    lags = [
        (sent - received).total_seconds()
        for sent, received in Dispatch.objects.filter(
            status="sent", sent_at__gte=now - timedelta(days=1)
        )
        .order_by("-sent_at")
        .values_list("sent_at", "delivery__received_at")[:LAG_SAMPLE]
        if sent is not None
    ]
    p50, p99 = nearest_ranks(sorted(lags), 0.5, 0.99)
    oldest, store_error = None, ""
    try:
        found = get_store().in_progress_since(now, 1)
        oldest = found[0] if found else None
    except StoreUnavailable as exc:
        store_error = str(exc)
    _, ready = readiness.report(now)
    return OpsPage(now, deliveries, waiting, p50, p99, len(lags), budget.read(), ready,
                   outboxes(now), oldest, store_error)  # fmt: skip


@staff_member_required
def ops_view(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    return render(request, "relay/ops.html", {"page": ops_page()})
