"""The change log: every write to a DownstreamRepo, whoever makes it, is recorded.

Receivers on the model's signals see every save and delete (the admin, a sync, a shell), in the
writer's transaction; bulk `update()` is refused by the model's queryset for the same reason.
The actor comes from `acting_as(...)`, set by the admin (the user) and the sync (`sync`). The
lookup cache's generation is the model's own business (DownstreamRepo.save and delete).
"""

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from django.utils import timezone

from allowlist.models import Change, DownstreamRepo

AUDITED_FIELDS = (
    "repo",
    "level",
    "device",
    "oncalls",
    "events",
    "enabled",
    "source",
    "override",
    "github_repository_id",
    "github_owner_id",
    "suspended",
    "suspended_reason",
)

_actor: contextvars.ContextVar[str] = contextvars.ContextVar("allowlist_actor", default="system")


@contextlib.contextmanager
def acting_as(actor: str) -> Iterator[None]:
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def _values(row: DownstreamRepo) -> dict[str, Any]:
    return {name: getattr(row, name) for name in AUDITED_FIELDS}


@receiver(pre_save, sender=DownstreamRepo)
def _remember_old_values(sender: type, instance: DownstreamRepo, **kwargs: Any) -> None:
    old = DownstreamRepo.objects.filter(pk=instance.pk).first() if instance.pk else None
    instance._audit_old = _values(old) if old else None  # type: ignore[attr-defined]


def _record(repo: str, action: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
    """Log one change (old/new are None for an addition/removal)."""
    names = [n for n in AUDITED_FIELDS if old is None or new is None or old[n] != new[n]]
    if not names:
        return
    Change.objects.create(
        repo=repo,
        actor=_actor.get(),
        at=timezone.now(),
        action=action,
        old_level=old["level"] if old else "",
        new_level=new["level"] if new else "",
        fields={n: [old[n] if old else None, new[n] if new else None] for n in names},
    )


@receiver(post_save, sender=DownstreamRepo)
def _log_save(sender: type, instance: DownstreamRepo, **kwargs: Any) -> None:
    old: dict[str, Any] | None = getattr(instance, "_audit_old", None)
    action = Change.Action.ADDED if old is None else Change.Action.CHANGED
    _record(instance.repo, action, old, _values(instance))


@receiver(post_delete, sender=DownstreamRepo)
def _log_delete(sender: type, instance: DownstreamRepo, **kwargs: Any) -> None:
    _record(instance.repo, Change.Action.REMOVED, _values(instance), None)


def _shown(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def described(fields: Any) -> list[str]:
    """A change's fields (name → [old, new]) as people read them: "level L2 → L3"; a field an
    addition set, "level L3"; one a removal cleared, "level was L3". Whatever else a row holds
    (it is JSON) is shown as it is."""
    if not isinstance(fields, dict):
        return [str(fields)]
    lines = []
    for name, values in fields.items():
        if not (isinstance(values, list) and len(values) == 2):
            lines.append(f"{name} {_shown(values)}")
            continue
        old, new = values
        if old is None:
            lines.append(f"{name} {_shown(new)}")
        elif new is None:
            lines.append(f"{name} was {_shown(old)}")
        else:
            lines.append(f"{name} {_shown(old)} → {_shown(new)}")
    return lines
