"""The allowlist in the database: one row per downstream repo, its change log, the synced files.

Source of truth: the YAML file. A row that came from it (`source=yaml`) is the file's, and a
sync overwrites or removes it, unless an admin set `override` on it: then the sync leaves it as
the admin made it, and the admin shows how it differs from the file (drift). Rows added in the
admin (`source=admin`) survive syncs; if the file later lists the same repo, the file takes it
over (unless overridden).
"""

import uuid
from typing import Any, ClassVar

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models.functions import Lower

from allowlist.entry import Entry, Event, Level


def default_events() -> list[str]:
    return [event.value for event in Event]


# The longest reason a temporary demotion keeps.
REASON_MAX = 500


class Source(models.TextChoices):
    YAML = "yaml", "allowlist file"
    ADMIN = "admin", "admin"


class GuardedQuerySet(models.QuerySet["DownstreamRepo"]):
    def update(self, **kwargs: Any) -> int:
        # A bulk UPDATE would bypass the change log and the lookup cache's invalidation.
        raise TypeError("save() each DownstreamRepo instead, so the change is logged")

    def delete(self) -> tuple[int, dict[str, int]]:
        # Each row's deletion is logged (allowlist/audit.py, post_delete); the generation
        # changes here, as DownstreamRepo.delete changes it.
        with transaction.atomic():
            Generation.lock()
            deleted = super().delete()
            Generation.bump()
        return deleted


class DownstreamRepo(models.Model):
    repo = models.CharField(
        max_length=140, help_text="owner/name as written; matched case-insensitively"
    )
    level = models.CharField(max_length=2, choices=Level.choices)
    device = models.CharField(
        max_length=100,
        blank=True,
        help_text="used at L3: the PR label ciflow/crcr/<device> asks for this repo's check runs",
    )
    oncalls = models.JSONField(default=list, blank=True, help_text="GitHub handles")
    events = models.JSONField(default=default_events, help_text="what it takes part in")
    enabled = models.BooleanField(default=True, help_text="off: kept here but not in force")
    # Not in the YAML file: set here. When known, a callback token's repository_id and
    # repository_owner_id must match, so a deleted repo re-created under the same name by
    # someone else cannot report as it.
    github_repository_id = models.CharField(max_length=20, blank=True)
    github_owner_id = models.CharField(max_length=20, blank=True)
    source = models.CharField(max_length=5, choices=Source.choices, default=Source.ADMIN)
    override = models.BooleanField(
        default=False,
        help_text="keep this row as edited here; syncs from the file leave it alone",
    )
    # Not in the YAML file, and left alone by syncs: a temporary demotion (allowlist/levels.py).
    suspended_since = models.DateTimeField(
        null=True, blank=True, help_text="a temporary demotion stands since then"
    )
    suspended_reason = models.CharField(max_length=REASON_MAX, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects: ClassVar[GuardedQuerySet] = GuardedQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        verbose_name = "downstream repo"
        ordering: ClassVar = ["level", Lower("repo")]
        constraints: ClassVar = [
            models.UniqueConstraint(Lower("repo"), name="allowlist_repo_unique_ci"),
            models.CheckConstraint(
                condition=~models.Q(level=Level.L3) | ~models.Q(device=""),
                name="allowlist_l3_has_device",
            ),
        ]

    def __str__(self) -> str:
        return self.repo

    def save(self, *args: Any, **kwargs: Any) -> None:
        # The row, its change-log entry (allowlist/audit.py, on the save signals) and the
        # cache generation commit together. Every writer takes the generation row's lock
        # first, so writers never wait on each other in opposite orders (a sync locks it
        # before touching rows); the new generation is what every lookup sees next.
        with transaction.atomic():
            Generation.lock()
            super().save(*args, **kwargs)
            Generation.bump()

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        with transaction.atomic():
            Generation.lock()
            deleted = super().delete(*args, **kwargs)
            Generation.bump()
        return deleted

    @property
    def suspended(self) -> bool:
        """A temporary demotion stands: no new check runs or comment mentions."""
        return self.suspended_since is not None

    @property
    def is_file_owned(self) -> bool:
        """Read-only in the admin: the file decides this row."""
        return self.source == Source.YAML and not self.override

    def to_entry(self) -> Entry:
        return Entry(
            repo=self.repo,
            level=Level(self.level),
            device=self.device if self.level == Level.L3 else "",
            oncalls=tuple(self.oncalls),
            events=frozenset(Event(value) for value in self.events),
            repository_id=self.github_repository_id,
            owner_id=self.github_owner_id,
            suspended=self.suspended,
        )

    def set_from_entry(self, entry: Entry) -> None:
        self.repo = entry.repo
        self.level = entry.level
        self.device = entry.device
        self.oncalls = list(entry.oncalls)
        self.events = entry.sorted_events()

    def move(self, steps: int) -> str:
        """Promote (+1) or demote (-1) one level; '' when done, else why not."""
        if self.is_file_owned:
            return "it comes from the allowlist file (set override to change it here)"
        target = Level(self.level).step(steps)
        if target is None:
            return f"it is already at {self.level}"
        if reason := self.cannot_be(target):
            return reason
        self.level = target
        self.save()
        return ""

    def cannot_be(self, level: Level) -> str:
        """Why this row cannot be at `level` as it stands; '' when it can."""
        if level == Level.L3 and not self.device:
            return "L3 needs a device; set it on the row"
        return ""

    def clean(self) -> None:
        from allowlist.yamlfile import REPO_RE

        self.repo = self.repo.strip().strip("/").strip()
        self.device = self.device.strip()
        errors: dict[str, str] = {}
        if not REPO_RE.match(self.repo):
            errors["repo"] = "Use owner/name, as in the GitHub URL."
        if self.level == Level.L3 and not self.device:
            errors["device"] = "An L3 repo needs a device (its label is ciflow/crcr/<device>)."
        if not self.events or not set(self.events) <= set(Event.values):
            errors["events"] = "Choose at least one of: " + ", ".join(Event.values) + "."
        if errors:
            raise ValidationError(errors)


class Change(models.Model):
    """One change to one repo's entry: who, when, and what it was before and after."""

    class Action(models.TextChoices):
        ADDED = "added"
        CHANGED = "changed"
        REMOVED = "removed"

    repo = models.CharField(max_length=140)
    actor = models.CharField(max_length=150, help_text="a user name, or 'sync'")
    at = models.DateTimeField()
    action = models.CharField(max_length=7, choices=Action.choices)
    old_level = models.CharField(max_length=2, choices=Level.choices, blank=True)
    new_level = models.CharField(max_length=2, choices=Level.choices, blank=True)
    fields = models.JSONField(default=dict, help_text="field -> [old, new]")

    class Meta:
        ordering: ClassVar = ["-at", "-id"]
        indexes: ClassVar = [models.Index(Lower("repo"), "at", name="allowlist_change_repo_at")]

    def __str__(self) -> str:
        return f"{self.repo} {self.action} by {self.actor}"


class Generation(models.Model):
    """One row whose token changes with every allowlist write (see allowlist/lookup.py)."""

    token = models.UUIDField(default=uuid.uuid4)

    SINGLETON_ID = 1

    def __str__(self) -> str:
        return str(self.token)

    @classmethod
    def bump(cls) -> None:
        """A new token: every process's cached allowlist is stale once this commits."""
        cls.objects.update_or_create(pk=cls.SINGLETON_ID, defaults={"token": uuid.uuid4()})

    @classmethod
    def lock(cls) -> None:
        """Serialise allowlist writers (PostgreSQL row lock; SQLite's IMMEDIATE does it there)."""
        cls.objects.get_or_create(pk=cls.SINGLETON_ID)
        cls.objects.select_for_update().get(pk=cls.SINGLETON_ID)


class SyncedFile(models.Model):
    """The last good copy of the allowlist file per location, for ETags, outages and drift."""

    location = models.CharField(max_length=2000, unique=True)
    content = models.TextField()
    sha256 = models.CharField(max_length=64)
    etag = models.CharField(max_length=200, blank=True)
    fetched_at = models.DateTimeField()
    applied_at = models.DateTimeField()

    class Meta:
        get_latest_by = "applied_at"

    def __str__(self) -> str:
        return self.location
