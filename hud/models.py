"""One row per downstream CI job result, keyed as contract §3 keys a HUD record; the outbox
to ClickHouse; the daily counts; the upstream PRs' titles and authors; level proposals."""

from datetime import datetime
from typing import ClassVar

from django.db import connection, models
from django.db.models import Q

from allowlist.entry import Level
from crcr_site import sql
from crcr_site.fields import StorableJSONField

# What the HUD's aggregates read from each row (covering indexes below).
AGGREGATED = [
    "downstream_repo",
    "event_type",
    "status",
    "conclusion",
    "execution_time",
    "queue_time",
    "run_attempt",
    "pr_number",
]


class JobRecord(models.Model):
    """A job's latest known state, from the relay's callbacks or another relay's envelopes.

    Key: (downstream_repo, delivery_id, workflow_name, job_name, check_run_id), the repo
    casefolded. A later record for the same key updates only the fields it carries.
    """

    class Source(models.TextChoices):
        RELAY = "relay", "this relay's callbacks"
        INGEST = "ingest", "POST /api/crcr/results"

    downstream_repo = models.CharField(max_length=140, help_text="casefolded owner/name")
    delivery_id = models.CharField(max_length=100)
    workflow_name = models.CharField(max_length=255)
    job_name = models.CharField(max_length=255)
    check_run_id = models.CharField(max_length=100)

    repo_display = models.CharField(max_length=140, help_text="owner/name as verified")
    upstream_repo = models.CharField(max_length=140)
    event_type = models.CharField(max_length=20, default="pull_request")
    level = models.CharField(max_length=2, blank=True)
    pr_number = models.PositiveIntegerField(default=0)
    head_sha = models.CharField(max_length=100)
    workflow_run_url = models.CharField(max_length=2000, blank=True)
    run_id = models.CharField(max_length=100)
    run_attempt = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=20)
    conclusion = models.CharField(max_length=30, blank=True)
    queue_time = models.FloatField(null=True, blank=True, help_text="seconds, relay's clock")
    execution_time = models.FloatField(null=True, blank=True, help_text="seconds, relay's clock")
    started_at = models.DateTimeField(null=True, blank=True, help_text="as reported")
    completed_at = models.DateTimeField(null=True, blank=True, help_text="as reported")
    tests_passed = models.PositiveIntegerField(null=True, blank=True)
    tests_failed = models.PositiveIntegerField(null=True, blank=True)
    tests_skipped = models.PositiveIntegerField(null=True, blank=True)
    tests_total = models.PositiveIntegerField(null=True, blank=True)
    failed_tests_detail = StorableJSONField(null=True, blank=True)
    artifact_url = models.CharField(max_length=2000, blank=True)
    triage_verdict = StorableJSONField(null=True, blank=True)
    source = models.CharField(max_length=6, choices=Source.choices, default=Source.RELAY)
    received_at = models.DateTimeField(help_text="first received, relay's clock")
    updated_at = models.DateTimeField(help_text="last received, relay's clock")

    class Meta:
        ordering: ClassVar = ["-received_at"]
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=[
                    "downstream_repo",
                    "delivery_id",
                    "workflow_name",
                    "job_name",
                    "check_run_id",
                ],
                name="hud_jobrecord_key",
            ),
        ]
        # The HUD's reads select by receive time (all repos), by repo and receive time, or by
        # PR. On PostgreSQL the first two carry what the aggregates read, so a window is an
        # index-only scan (SQLite ignores INCLUDE and gets plain indexes).
        indexes: ClassVar = [
            models.Index(
                fields=["downstream_repo", "received_at"],
                name="hud_job_repo_time_id",
                # id: the latest-attempt ranking's last tie-break, so a repo's matrix is an
                # index-only scan too (else the planner walks the whole window's time index)
                include=[*AGGREGATED[1:], "head_sha", "job_name", "id"],
            ),
            models.Index(fields=["received_at"], name="hud_job_time", include=AGGREGATED),
            models.Index(fields=["pr_number", "received_at"], name="hud_job_pr_time"),
            models.Index(fields=["status", "received_at"], name="hud_job_status_time"),
            # the PR list's tallies (storage/orm.py _pr_heads_sql): a PR's head's records in
            # the order its latest-attempt ranking reads them, all it reads in the index
            models.Index(
                fields=[
                    "pr_number",
                    "head_sha",
                    "downstream_repo",
                    "job_name",
                    "-run_attempt",
                    "-received_at",
                    "-id",
                ],
                name="hud_job_pr_head",
                include=["status", "conclusion", "repo_display", "event_type"],
            ),
            # main's results (hud/baseline.py): pushes, nightly and periodic runs are a few in
            # a hundred records, and without it a PR page's baseline read walked every PR
            # record of the red repos' fortnight in the index above (39 ms at 1M records)
            models.Index(
                fields=["downstream_repo", "received_at"],
                name="hud_job_main_time",
                condition=~Q(event_type="pull_request"),
                include=[
                    "event_type",
                    "head_sha",
                    "job_name",
                    "status",
                    "conclusion",
                    "run_attempt",
                ],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.repo_display} {self.workflow_name}/{self.job_name} {self.status}"


class HudOutbox(models.Model):
    """Records on their way to ClickHouse (HUD_BACKEND=clickhouse): written in the callback's
    own statement, moved into ClickHouse in order by the ClickHouse store's `drain`."""

    payload = StorableJSONField(help_text="the record's key, its carried fields, when")
    created_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "HUD outbox"

    def __str__(self) -> str:
        return f"outbox {self.pk}"


class DailyCounts(models.Model):
    """Per repo, day (UTC, by receive time) and event: the job counts of hud_jobrecord.

    PostgreSQL keeps it exact with a trigger on hud_jobrecord (migrations 0004, 0005, 0012):
    every insert, update or delete of a record moves its counts in the same transaction. The
    /crcr daily series reads whole days here; elsewhere (SQLite) the records are counted
    directly.
    """

    downstream_repo = models.CharField(max_length=140)
    day = models.DateField()
    event_type = models.CharField(max_length=20)
    successes = models.IntegerField(default=0)
    failures = models.IntegerField(default=0)
    timed_out = models.IntegerField(default=0)
    cancelled = models.IntegerField(default=0)
    completed = models.IntegerField(default=0)
    in_progress = models.IntegerField(default=0)
    # A database default too, as an online upgrade wants of a NOT NULL column: no insert that
    # does not name it fails (docs/operations.md).
    upstream_failures = models.IntegerField(
        default=0,
        db_default=0,
        help_text="of the failures, those whose triage verdict's category is upstream",
    )

    class Meta:
        verbose_name_plural = "daily counts"
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["day", "event_type", "downstream_repo"], name="hud_daily_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.downstream_repo} {self.day} {self.event_type}"


class UpstreamPull(models.Model):
    """An upstream pull request as the HUD names it: the title and author of the newest
    `pull_request` webhook the relay recorded for it (the relay writes it with the delivery,
    relay/fanout.py), so the pages need nothing of the relay's own tables."""

    number = models.PositiveIntegerField(unique=True)
    upstream_repo = models.CharField(max_length=140)
    title = models.CharField(max_length=1024, blank=True)
    author = models.CharField(max_length=100, blank=True)
    updated_at = models.DateTimeField(help_text="when that webhook was received, relay's clock")

    def __str__(self) -> str:
        return f"#{self.number} {self.title}"

    @classmethod
    def note(
        cls, *, number: int, upstream_repo: str, title: str, author: str, at: datetime
    ) -> None:
        """Keep what a webhook received `at` says of PR `number`, unless a newer one has
        been kept already (two deliveries committing out of order)."""
        values = {"upstream_repo": upstream_repo, "title": title, "author": author}
        row = sql.Row(
            cls,
            {"number": number, **values, "updated_at": at},
            on_conflict=("number",),
            update=(*values, "updated_at"),
            clause=_newer_only,
        )
        sql.insert_row(row)


def _newer_only(update: tuple[str, ...]) -> str:
    quote = connection.ops.quote_name
    table = quote(UpstreamPull._meta.db_table)
    changes = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in update)
    return f"SET {changes} WHERE EXCLUDED.updated_at >= {table}.updated_at"


class UpstreamCommit(models.Model):
    """A commit pushed to the upstream as the HUD names it, from the push's webhook (the relay
    writes it with the delivery, relay/fanout.py): its title and author for the nightly rows,
    and whether it went to the default branch, the baseline of "already failing on main"
    (hud/baseline.py)."""

    upstream_repo = models.CharField(max_length=140)
    sha = models.CharField(max_length=64)
    ref = models.CharField(max_length=255)
    on_default_branch = models.BooleanField(help_text="ref is the branch the webhook names")
    title = models.CharField(max_length=1024, blank=True, help_text="the message's first line")
    author = models.CharField(max_length=100, blank=True)
    pushed_at = models.DateTimeField(help_text="when the webhook was received, relay's clock")

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["upstream_repo", "sha", "ref"], name="hud_commit_once")
        ]
        indexes: ClassVar = [models.Index(fields=["pushed_at"], name="hud_commit_pushed")]

    def __str__(self) -> str:
        return f"{self.sha[:10]} {self.title}"

    @classmethod
    def note(
        cls, *, upstream_repo: str, sha: str, ref: str, default_branch: str, title: str,
        author: str, at: datetime,
    ) -> None:  # fmt: skip
        """Keep a push of `sha` to `ref` (once: a redelivery changes nothing)."""
        values = {
            "upstream_repo": upstream_repo, "sha": sha, "ref": ref, "title": title,
            "author": author, "pushed_at": at,
            "on_default_branch": bool(default_branch) and ref == f"refs/heads/{default_branch}",
        }  # fmt: skip
        sql.insert_row(sql.Row(cls, values, on_conflict=("upstream_repo", "sha", "ref")))


class LevelProposal(models.Model):
    """A level change the readiness criteria propose for one allowlisted repo (hud/levels.py):
    open until an admin accepts or dismisses it, or an evaluation no longer proposes it."""

    class Direction(models.TextChoices):
        PROMOTE = "promote"
        DEMOTE = "demote"

    class State(models.TextChoices):
        OPEN = "open"
        ACCEPTED = "accepted"
        DISMISSED = "dismissed"
        LAPSED = "lapsed", "lapsed (no longer proposed)"

    repo = models.CharField(max_length=140, help_text="owner/name as the allowlist spells it")
    repo_key = models.CharField(max_length=140, help_text="casefolded owner/name")
    direction = models.CharField(max_length=7, choices=Direction.choices)
    from_level = models.CharField(max_length=2, choices=Level.choices)
    to_level = models.CharField(max_length=2, choices=Level.choices)
    state = models.CharField(max_length=9, choices=State.choices, default=State.OPEN)
    reason = models.TextField(help_text="the criteria that decided it, with their figures")
    figures = models.JSONField(
        default=list, help_text="each criterion: name, needs, value, unit, met, over days"
    )
    blocker = models.CharField(
        max_length=500, blank=True, help_text="why it cannot be accepted as the allowlist stands"
    )
    opened_at = models.DateTimeField()
    evaluated_at = models.DateTimeField(help_text="the latest evaluation that proposed it")
    suspended_at = models.DateTimeField(
        null=True, blank=True, help_text="when it stood a temporary demotion of the repo"
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.CharField(max_length=150, blank=True, help_text="a user name, or 'levels'")
    diff = models.TextField(blank=True, help_text="accepted: the allowlist export's unified diff")

    class Meta:
        ordering: ClassVar = ["-opened_at", "-id"]
        constraints: ClassVar = [
            # One open proposal per repo and direction: an evaluation updates it, never adds.
            models.UniqueConstraint(
                fields=["repo_key", "direction"],
                condition=models.Q(state="open"),
                name="hud_levelproposal_one_open",
            )
        ]
        indexes: ClassVar = [models.Index(fields=["repo_key", "-opened_at"])]

    def __str__(self) -> str:
        return f"{self.repo} {self.from_level}→{self.to_level} ({self.state})"


class Dispatched(models.Model):
    """A dispatch GitHub accepted, as the HUD needs it to tell a downstream that never called
    back: written by the relay when it records a dispatch as sent (relay/sending.py), one bulk
    insert per batch of answers, so the HUD reads nothing of the relay's own tables. "Silent"
    is a row with no job record of the same repo and delivery yet (hud/pages.py)."""

    repo = models.CharField(max_length=140, help_text="owner/name as the allowlist spells it")
    repo_key = models.CharField(max_length=140, help_text="casefolded owner/name")
    upstream_repo = models.CharField(max_length=140)
    event_type = models.CharField(max_length=20)
    pr_number = models.PositiveIntegerField(default=0)
    head_sha = models.CharField(max_length=100, blank=True)
    delivery_id = models.CharField(max_length=100, help_text="X-GitHub-Delivery")
    dispatched_at = models.DateTimeField(help_text="when GitHub accepted it, relay's clock")

    class Meta:
        verbose_name_plural = "dispatched"
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["delivery_id", "repo_key"], name="hud_dispatched_once")
        ]
        indexes: ClassVar = [
            models.Index(fields=["pr_number", "dispatched_at"], name="hud_dispatched_pr"),
            models.Index(fields=["repo_key", "dispatched_at"], name="hud_dispatched_repo"),
            models.Index(fields=["dispatched_at"], name="hud_dispatched_time"),
        ]

    def __str__(self) -> str:
        return f"{self.repo} {self.delivery_id}"
