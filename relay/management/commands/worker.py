"""`manage.py worker`: runs queued tasks (dispatch retries) and the periodic jobs.

Run as many as you like: tasks are claimed with SKIP LOCKED by django-tasks-db, dispatches with
their lease, and periodic jobs take turns through their row (relay/periodic.py).
"""

import logging
import os
import signal
import socket
import time
import uuid
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, close_old_connections
from django.utils import timezone
from django_tasks_db.management.commands.db_worker import Worker

from crcr_site import metrics
from relay.models import WorkerHeartbeat
from relay.periodic import run_due_jobs

logger = logging.getLogger(__name__)
TASKS_PER_ROUND = 20


class Command(BaseCommand):
    help = "Run background work: dispatch retries and periodic jobs (Ctrl-C to stop)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
        parser.add_argument("--once", action="store_true", help="one round, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        self.running = True
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.worker_id = f"crcr-{uuid.uuid4().hex[:12]}"
        self.started_at = timezone.now()
        self.beat_at = 0.0
        metrics.serve_worker_metrics()
        logger.info("worker started")
        while self.running:
            close_old_connections()
            try:
                self._heartbeat()
                run_due_jobs()
                self._task_worker().run()
            except DatabaseError:
                logger.exception("worker round failed; trying again")
            if options["once"]:
                break
            time.sleep(options["interval"])
        try:
            WorkerHeartbeat.objects.filter(worker_id=self.worker_id).delete()
        except DatabaseError:
            logger.warning("worker could not remove its heartbeat; it will go stale")
        logger.info("worker stopped")

    def _heartbeat(self) -> None:
        """This worker's row in WorkerHeartbeat, at most every CRCR_HEARTBEAT_EVERY seconds."""
        if time.monotonic() - self.beat_at < settings.CRCR_HEARTBEAT_EVERY:
            return
        WorkerHeartbeat.objects.update_or_create(
            worker_id=self.worker_id,
            defaults={"seen_at": timezone.now()},
            create_defaults={
                "host": socket.gethostname()[:255],
                "pid": os.getpid(),
                "started_at": self.started_at,
                "seen_at": timezone.now(),
            },
        )
        self.beat_at = time.monotonic()

    def _task_worker(self) -> Worker:
        """django-tasks-db's worker for one round of at most TASKS_PER_ROUND tasks."""
        return Worker(
            queue_names=["default"],
            interval=0,
            batch=True,
            backend_name="default",
            startup_delay=False,
            max_tasks=TASKS_PER_ROUND,  # then the periodic jobs and SIGTERM get their turn
            worker_id=self.worker_id,
            excluded_queue_names=[],
        )

    def _stop(self, signum: int, frame: object) -> None:
        self.running = False
