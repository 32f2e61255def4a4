"""The `ciflow/crcr/<device>` labels of upstream PRs, as the webhooks told them.

A label, once seen on a PR, stays recorded: removing it deletes nothing, and the check runs
it brought keep being updated. Every pull_request webhook carries the PR's labels, so a label
added while the relay was not listening is known with the PR's next event.
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models.functions import Lower

from relay.models import PullLabel

PREFIX = "ciflow/crcr/"


def device_of(label: object) -> str:
    """The device a `ciflow/crcr/<device>` label names ('' for any other label)."""
    name = label.get("name") if isinstance(label, dict) else None
    if not isinstance(name, str) or not name.startswith(PREFIX):
        return ""
    device = name[len(PREFIX) :].strip()
    return device if 0 < len(device) <= 100 and "/" not in device else ""


def devices_in(payload: dict[str, Any]) -> set[str]:
    """The devices a pull_request webhook's PR is labelled for (its labels, and the label the
    event is about)."""
    pr = payload.get("pull_request")
    labels = pr.get("labels") if isinstance(pr, dict) else None
    found = {device_of(label) for label in labels if isinstance(labels, list)} if labels else set()
    found.add(device_of(payload.get("label")))
    found.discard("")
    return found


def note(upstream_repo: str, pr_number: int, devices: Iterable[str], at: datetime) -> set[str]:
    """Record these devices' labels on the PR; the ones that are new."""
    devices = set(devices)
    if not devices or not pr_number:
        return set()
    known = labelled(upstream_repo, pr_number)
    new = devices - known
    PullLabel.objects.bulk_create(
        [
            PullLabel(upstream_repo=upstream_repo, pr_number=pr_number, device=d, labeled_at=at)
            for d in sorted(new)
        ],
        ignore_conflicts=True,
    )
    return new


def labelled(upstream_repo: str, pr_number: int) -> set[str]:
    """The devices the PR is labelled for (casefolded)."""
    rows = PullLabel.objects.annotate(key=Lower("upstream_repo")).filter(
        key=upstream_repo.casefold(), pr_number=pr_number
    )
    return {device.casefold() for device in rows.values_list("device", flat=True)}
