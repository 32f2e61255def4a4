"""Upstream check runs: one per downstream job attempt (L3 when labelled, L4), and an L4 repo's
aggregate per head."""

from typing import Any

from django.utils import timezone

from relay.upstream_pr import labels
from relay.webhook import UpstreamEvent


def on_labeled(event: UpstreamEvent) -> dict[str, Any]:
    """`pull_request.labeled`: record the PR's crcr labels; what the answer says."""
    new = labels.note(event.repo, event.pr_number, labels.devices_in(event.payload), timezone.now())
    return {"ok": True, "labelled": sorted(new)}
