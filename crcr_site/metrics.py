"""Prometheus metrics: what the relay counts, and GET /metrics.

Every family is prometheus-client's. Under several processes (gunicorn's workers, the
`manage.py worker`s of one machine) prometheus-client's multiprocess mode keeps each
process's values in files under `PROMETHEUS_MULTIPROC_DIR` (its own variable, read when it is
imported) and /metrics sums them: deploy/gunicorn.conf.py sets the directory and marks a
finished worker's files dead. Without it, each process counts alone (right for one process).

Outbox depths and ages are not counted as things happen: they are read from the database at
each scrape (relay/ops.py's collector, `register`ed here), so they are right whichever process
answers.

`CRCR_METRICS=false` turns counting off (every helper below returns at once) and /metrics
answers 404. Who may read /metrics: with `CRCR_METRICS_TOKEN` set, a request carrying it as a
bearer token; without it, loopback peers only.
"""

import hmac
import os
import re
import time
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from crcr_site.errors import json_error, json_methods

WEBHOOKS = Counter("crcr_webhooks", "Webhook deliveries answered", ["event", "outcome"])
DISPATCHES = Counter(
    "crcr_dispatches", "repository_dispatch attempts by outcome", ["outcome", "attempt"]
)
DISPATCH_LAG = Histogram(
    "crcr_webhook_to_dispatch_seconds",
    "From a delivery's arrival to GitHub accepting one of its dispatches",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600),
)
CALLBACKS = Counter("crcr_callbacks", "Callbacks answered", ["outcome", "reason"])
OIDC_FAILURES = Counter("crcr_oidc_failures", "Callback tokens refused", ["reason"])
RATE_LIMITED = Counter("crcr_rate_limited", "Requests refused by a rate limit", ["scope"])
GITHUB_CALLS = Counter("crcr_github_calls", "GitHub API calls", ["endpoint", "status"])
GITHUB_REMAINING = Gauge(
    "crcr_github_rate_limit_remaining",
    "GitHub's X-RateLimit-Remaining in its latest answer, per installation ('app': the App JWT)",
    ["installation"],
    multiprocess_mode="mostrecent",
)
ZOMBIES = Counter("crcr_zombie_sweep_jobs", "Jobs the zombie sweep handled", ["result"])
HUD_PAGES = Histogram(
    "crcr_hud_page_seconds",
    "HUD pages and API answers, server side",
    ["page"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
)


# The label sets known in advance start at zero, so that a family is there (and rates are
# defined) before its first event.
for _result in ("timed_out", "completed_meanwhile"):
    ZOMBIES.labels(result=_result)
for _outcome in ("sent", "retry", "failed"):
    DISPATCHES.labels(outcome=_outcome, attempt="1")


def enabled() -> bool:
    return bool(settings.CRCR_METRICS)


def count(counter: Counter, amount: float = 1, **labels: object) -> None:
    if enabled():
        counter.labels(**{name: str(value) for name, value in labels.items()}).inc(amount)


def observe(histogram: Histogram, seconds: float, **labels: object) -> None:
    if enabled():
        (histogram.labels(**labels) if labels else histogram).observe(seconds)


_NUMBERS = re.compile(r"/[0-9]+(?=/|$)")
_REPO = re.compile(r"^/repos/[^/]+/[^/]+")
_CONTENTS = re.compile(r"/contents(/.*)?$")  # a file's path: the doctor reads workflow files


def endpoint(path: str) -> str:
    """A GitHub path as a label: repos and numbers as placeholders (bounded cardinality)."""
    path = path.split("?", 1)[0]
    if path.startswith("http"):
        path = "/" + path.split("/", 3)[-1] if path.count("/") >= 3 else "/"
    path = _REPO.sub("/repos/{owner}/{repo}", path)
    path = _CONTENTS.sub("/contents/{path}", path)
    return _NUMBERS.sub("/{id}", path)


def github_answered(method: str, path: str, status: int | str, remaining: str | None,
                    installation: int | None) -> None:  # fmt: skip
    if not enabled():
        return
    GITHUB_CALLS.labels(endpoint=f"{method} {endpoint(path)}", status=str(status)).inc()
    if remaining is not None and remaining.isdigit():
        who = "app" if installation is None else str(installation)
        GITHUB_REMAINING.labels(installation=who).set(int(remaining))


class timed:
    """Observe the block's duration on a histogram."""

    def __init__(self, histogram: Histogram, **labels: object) -> None:
        self.histogram, self.labels = histogram, labels

    def __enter__(self) -> "timed":
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        observe(self.histogram, time.perf_counter() - self.started, **self.labels)


# Collectors read at scrape time, registered by the apps that own what they read (the
# relay's outboxes: relay/ops.py; the HUD's silent downstreams: hud/watch.py). Only the web's
# /metrics runs them: a worker's own endpoint (serve_worker_metrics) leaves them out, so that
# each figure has one source.
SCRAPED: list[Collector] = []


def register(collector: Collector) -> None:
    SCRAPED.append(collector)


class _Together(Collector):
    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


def registry() -> Collector:
    """What /metrics answers with: every process's values (multiprocess mode) or this one's,
    and the SCRAPED collectors'."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return _Together(REGISTRY, *SCRAPED)
    collected = CollectorRegistry()
    multiprocess.MultiProcessCollector(collected)
    return _Together(collected, *SCRAPED)


def serve_worker_metrics() -> None:
    """A `manage.py worker`'s own /metrics (its retries, sweeps, check runs and GitHub calls),
    on CRCR_WORKER_METRICS_PORT when set and the worker is not counting into a shared
    PROMETHEUS_MULTIPROC_DIR (then the web's /metrics sums it already)."""
    port = settings.CRCR_WORKER_METRICS_PORT
    if enabled() and port and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        start_http_server(port, addr=settings.CRCR_WORKER_METRICS_ADDR, registry=REGISTRY)


def _allowed(request: HttpRequest) -> bool:
    token = settings.CRCR_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), token.encode())
    return request.META.get("REMOTE_ADDR") in ("127.0.0.1", "::1")


@json_methods("GET", "HEAD")
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not enabled():
        return json_error(404, "not_found", "metrics are off (CRCR_METRICS=false)")
    if not _allowed(request):
        detail = "a bearer token is required" if settings.CRCR_METRICS_TOKEN else "loopback only"
        return json_error(403, "forbidden", f"/metrics: {detail}")
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)


def worker_exited(pid: int) -> None:
    """gunicorn's child_exit: a finished worker's live gauges are dropped."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
