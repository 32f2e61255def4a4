"""The durable record of every upstream delivery and of every dispatch it causes.

Both are written before GitHub is called, so a crash, a timeout or a GitHub outage can lose
nothing: whatever is still `pending` is sent again by the worker. A dispatch is owned by one
sender at a time through a lease (relay/leases.py), taken by one conditional UPDATE, so a slow
request thread and the worker never both send it; the remote HUD's outbox is sent the same way.
"""

from datetime import datetime
from typing import ClassVar

from django.db import models

from allowlist.entry import Level
from crcr_site.fields import StorableJSONField
from relay.leases import Leased


class Delivery(models.Model):
    """One upstream webhook delivery (`X-GitHub-Delivery`), kept verbatim."""

    delivery_id = models.CharField(max_length=100, unique=True)
    event = models.CharField(max_length=40)
    action = models.CharField(max_length=40, blank=True)
    upstream_repo = models.CharField(max_length=140)
    pr_number = models.PositiveIntegerField(default=0, help_text="0 when there is none")
    head_sha = models.CharField(max_length=64, blank=True, help_text="SHA-1 or SHA-256")
    ref = models.CharField(max_length=255, blank=True)
    title = models.CharField(max_length=1024, blank=True)
    author = models.CharField(max_length=100, blank=True)
    body = models.TextField(help_text="the webhook body as GitHub sent it")
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    times_received = models.PositiveIntegerField(default=1, help_text="redeliveries count too")

    class Meta:
        verbose_name_plural = "deliveries"
        ordering: ClassVar = ["-received_at"]
        indexes: ClassVar = [models.Index(fields=["pr_number", "received_at"])]

    def __str__(self) -> str:
        return f"{self.event}.{self.action or '-'} {self.delivery_id}"


class Redispatch(models.Model):
    """A delivery the relay made itself: an upstream PR's latest head sent again under a new
    delivery id, to one repo or to all (relay/redispatch.py), for a downstream that missed it.
    Its own table, so the webhook's hot INSERT of a delivery stays as it was."""

    delivery = models.OneToOneField(
        Delivery, on_delete=models.CASCADE, related_name="redispatch", help_text="the new one"
    )
    original = models.ForeignKey(
        Delivery,
        on_delete=models.CASCADE,
        related_name="redispatches",
        help_text="the webhook whose head was sent again",
    )
    by = models.CharField(max_length=150, help_text="who asked: a user name, or the command's")
    repo = models.CharField(
        max_length=140, blank=True, help_text="the one repo asked for; blank: every repo"
    )
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "re-dispatch"
        ordering: ClassVar = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"re-dispatch of {self.original.delivery_id} by {self.by}"


class Dispatch(Leased):
    """One `repository_dispatch` of one delivery to one downstream repo."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending (to be sent)"
        SENT = "sent", "sent"
        FAILED = "failed", "failed"
        SHADOW = "shadow", "recorded, not sent (shadow mode)"

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="dispatches")
    repo = models.CharField(max_length=140, help_text="as the allowlist spells it")
    repo_key = models.CharField(max_length=140, help_text="casefolded owner/name")
    level = models.CharField(max_length=2, choices=Level.choices)
    status = models.CharField(max_length=7, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    truncated = models.BooleanField(default=False, help_text="the payload was slimmed to fit")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    pending_since = models.DateTimeField(
        null=True, blank=True, help_text="since when it waits to be sent; give-up counts from here"
    )
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "dispatches"
        ordering: ClassVar = ["-created_at", "repo_key"]
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["delivery", "repo_key"], name="relay_dispatch_once"),
        ]
        indexes: ClassVar = [
            models.Index(fields=["status", "next_attempt_at"], name="relay_dispatch_due"),
            models.Index(fields=["repo_key", "created_at"], name="relay_dispatch_repo"),
        ]

    def __str__(self) -> str:
        return f"{self.repo} (dispatch {self.pk})"

    @property
    def waiting_since(self) -> datetime:
        return self.pending_since or self.created_at


class PeriodicJob(models.Model):
    """When each periodic job last started; workers take a turn with one conditional UPDATE."""

    name = models.CharField(max_length=50, unique=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_succeeded_at = models.DateTimeField(
        null=True, blank=True, help_text="the last run that raised nothing (/readyz)"
    )
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.name


class WorkerHeartbeat(models.Model):
    """A running `manage.py worker`: written when it starts and every CRCR_HEARTBEAT_EVERY
    seconds after, deleted when it stops (a killed worker's row goes stale: /readyz)."""

    worker_id = models.CharField(max_length=40, unique=True)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.worker_id} on {self.host}"


class ReplayKey(models.Model):
    """A token that authorised an accepted callback (its `jti`, or a hash of it): used once.

    Inserted in the callback's transaction, so a refused or failed attempt does not use it up.
    """

    key = models.CharField(max_length=200, unique=True)
    used_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.key


class CallbackAudit(models.Model):
    """Every decision on a callback, for forensics. Refusals before the caller's identity was
    proven (`verified` false) are kept at most CRCR_AUDIT_UNVERIFIED_PER_MIN a minute."""

    class Decision(models.TextChoices):
        ACCEPTED = "accepted"
        IGNORED = "ignored"
        REFUSED = "refused"

    at = models.DateTimeField(db_index=True)
    decision = models.CharField(max_length=8, choices=Decision.choices)
    status = models.PositiveSmallIntegerField(help_text="the HTTP status answered")
    reason = models.CharField(max_length=100, blank=True)
    detail = models.TextField(blank=True)
    verified = models.BooleanField(
        default=True, help_text="false: refused before the caller's identity was proven"
    )
    repo = models.CharField(
        max_length=140,
        blank=True,
        help_text="the verified identity, or (unverified) what the token claimed",
    )
    issuer = models.CharField(max_length=200, blank=True)
    remote_addr = models.GenericIPAddressField(
        null=True, blank=True, help_text="the peer's address as the server saw it"
    )
    replay_key = models.CharField(max_length=200, blank=True)
    provenance = models.CharField(
        max_length=20, blank=True, help_text="dispatch token: verified, absent or invalid"
    )
    delivery_id = models.CharField(max_length=100, blank=True)
    event_type = models.CharField(max_length=20, blank=True)
    callback_status = models.CharField(max_length=20, blank=True)
    job = models.CharField(max_length=600, blank=True, help_text="workflow / job (run, attempt)")
    dropped = StorableJSONField(default=list, blank=True, help_text="malformed optional fields")

    class Meta:
        ordering: ClassVar = ["-at", "-id"]
        indexes: ClassVar = [models.Index(fields=["repo", "at"], name="relay_audit_repo_at")]

    def __str__(self) -> str:
        return f"{self.decision} {self.repo} {self.reason}"


class HudForward(Leased):
    """Outbox: one envelope to forward to the remote HUD (HUD_FORWARD_URL).

    Written in the callback's transaction, so a record is forwarded if and only if it was
    accepted; the worker sends it, with retries, and nothing is lost while the HUD is down.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    envelope = StorableJSONField()
    status = models.CharField(max_length=7, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    next_attempt_at = models.DateTimeField()
    lease_owner = models.CharField(max_length=32, blank=True, help_text="the sender holding it")
    lease_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes: ClassVar = [
            models.Index(fields=["status", "next_attempt_at"], name="relay_fwd_due")
        ]

    def __str__(self) -> str:
        return f"forward {self.pk} ({self.status})"


class PullLabel(models.Model):
    """An upstream PR carries `ciflow/crcr/<device>` (relay/upstream_pr/labels.py): an L3 repo
    of that device gets check runs on it. Kept once seen; removing the label deletes nothing."""

    upstream_repo = models.CharField(max_length=140)
    pr_number = models.PositiveIntegerField()
    device = models.CharField(max_length=100)
    labeled_at = models.DateTimeField()

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["upstream_repo", "pr_number", "device"], name="relay_pull_label_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.upstream_repo}#{self.pr_number} ciflow/crcr/{self.device}"


class CheckRun(Leased):
    """Outbox: one upstream check run (relay/upstream_pr/check_runs.py), holding the newest
    state to show; the worker creates it once (`github_id`) and then updates it in place.

    Written in the same statement as the callback's record (or with the dispatch, for an L4
    repo's aggregate), so what GitHub shows follows what was accepted, whatever GitHub does
    meanwhile. Updates that pile up while one is sent are one row: only the newest is sent.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"
        HELD = "held", "held: its PR does not carry the device's label yet"
        SUPPRESSED = "suppressed", "suppressed: the repo was temporarily demoted"

    class Kind(models.TextChoices):
        JOB = "job", "one downstream job attempt"
        REPO = "repo", "an L4 repo's work on the head"

    upstream_repo = models.CharField(max_length=140)
    head_sha = models.CharField(max_length=64)
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=4, choices=Kind.choices)
    run_id = models.CharField(max_length=100, blank=True, help_text="a job's downstream run")
    run_attempt = models.PositiveIntegerField(default=0)
    pr_number = models.PositiveIntegerField()
    repo = models.CharField(
        max_length=140, help_text="the downstream repo, as the allowlist spells it"
    )
    repo_key = models.CharField(max_length=140)
    level = models.CharField(max_length=2, choices=Level.choices)
    device = models.CharField(max_length=100, blank=True, help_text="L3: the label it waits for")
    state = StorableJSONField(default=dict, help_text="the newest state to show")
    rank = models.PositiveSmallIntegerField(default=0, help_text="0 queued, 1 running, 2 done")
    version = models.PositiveIntegerField(default=1, help_text="counts the states written")
    sent_version = models.PositiveIntegerField(default=0, help_text="the state GitHub shows")
    github_id = models.BigIntegerField(null=True, blank=True, help_text="GitHub's id, once made")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField()
    pending_since = models.DateTimeField()
    lease_owner = models.CharField(max_length=32, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["upstream_repo", "head_sha", "name", "run_id", "run_attempt"],
                name="relay_check_run_once",
            )
        ]
        indexes: ClassVar = [
            # (Only the one the worker's claim needs: every callback writes this table.)
            models.Index(fields=["status", "next_attempt_at"], name="relay_check_run_due"),
        ]

    def __str__(self) -> str:
        return f"{self.name} on {self.head_sha[:10]} ({self.status})"

    @property
    def waiting_since(self) -> datetime:
        return self.pending_since


class Rerun(Leased):
    """A re-run asked for on the upstream PR (relay/upstream_pr/reruns.py), sent by the worker.

    A webhook writes what it asked for: a downstream run to re-run, or a check suite whose
    check runs the worker lists first, each distinct run of it becoming a row of its own.
    Keyed by (delivery, repo, run): a redelivered webhook re-runs nothing twice, and a suite
    re-runs each run once.
    """

    class Kind(models.TextChoices):
        FAILED_JOBS = "failed_jobs", "re-run the run's failed jobs"
        RUN = "run", "re-run the whole run"
        SUITE = "suite", "list the check suite's crcr check runs"

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    delivery_id = models.CharField(max_length=100, help_text="the webhook that asked")
    kind = models.CharField(max_length=11, choices=Kind.choices)
    repo = models.CharField(max_length=140, blank=True, help_text="as the allowlist spells it")
    repo_key = models.CharField(max_length=140, blank=True, help_text="'' for a check suite")
    run_id = models.PositiveBigIntegerField(default=0, help_text="the downstream run; 0: a suite")
    head_sha = models.CharField(max_length=64, blank=True)
    suite_id = models.PositiveBigIntegerField(default=0)
    outcome = models.CharField(max_length=200, blank=True, help_text="what GitHub answered")
    status = models.CharField(max_length=7, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    next_attempt_at = models.DateTimeField()
    lease_owner = models.CharField(max_length=32, blank=True, help_text="the sender holding it")
    lease_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "re-run"
        ordering: ClassVar = ["-created_at", "pk"]
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["delivery_id", "repo_key", "run_id"], name="relay_rerun_once"
            )
        ]
        indexes: ClassVar = [
            models.Index(fields=["status", "next_attempt_at"], name="relay_rerun_due")
        ]

    def __str__(self) -> str:
        what = f"run {self.run_id}" if self.run_id else self.get_kind_display()
        return f"{self.repo or 'suite ' + str(self.suite_id)} {what} ({self.status})"


class PullComment(Leased):
    """The one sticky comment on an upstream PR (relay/upstream_pr/comment.py), as an outbox
    row: a completed callback of one of the PR's L3/L4 jobs bumps `version` and makes it due
    in the callback's own statement; the worker renders the comment from what is recorded and
    sends it, so updates that piled up are sent once, as the newest state."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending (to be sent)"
        SENT = "sent", "sent"
        FAILED = "failed", "failed"

    upstream_repo = models.CharField(max_length=140, help_text="casefolded owner/name")
    pr_number = models.PositiveIntegerField()
    comment_id = models.BigIntegerField(
        null=True, blank=True, help_text="GitHub's id of the comment, once created"
    )
    body = models.TextField(blank=True, help_text="what GitHub holds, as last sent")
    mentioned = StorableJSONField(
        default=list, blank=True, help_text="repo keys whose oncalls were @-mentioned"
    )
    version = models.BigIntegerField(default=0, help_text="bumped by every update of the PR")
    status = models.CharField(max_length=7, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField()
    pending_since = models.DateTimeField(help_text="since when it waits; give-up counts from here")
    lease_owner = models.CharField(max_length=32, blank=True, help_text="the sender holding it")
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["upstream_repo", "pr_number"], name="relay_comment_once"
            )
        ]
        indexes: ClassVar = [
            models.Index(fields=["status", "next_attempt_at"], name="relay_comment_due")
        ]

    def __str__(self) -> str:
        return f"{self.upstream_repo}#{self.pr_number} comment ({self.status})"

    @property
    def waiting_since(self) -> datetime:
        # A PR lives for weeks: give-up counts from when this update began to wait.
        return self.pending_since
