"""gunicorn's configuration for the relay's web processes: the image's command, the compose
file's `web`, the tests' and the benchmarks' gunicorn (tests/servers.py). A flag on the command
line, or in GUNICORN_CMD_ARGS, overrides any value here (docs/operations.md)."""

import os
import tempfile

wsgi_app = "crcr_site.wsgi:application"
bind = ["0.0.0.0:8000"]

# Sync workers, two per core: bench/callbacks.py found 4 on 2 cores the best (3, 5 or 8, and
# 4 x 4 threads, no better). A webhook holds its worker while it fans out (at most
# CRCR_FANOUT_DEADLINE, 5 s), on threads of its own. WEB_CONCURRENCY is gunicorn's own
# variable for the count, which a value here would otherwise hide.
worker_class = "sync"
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * len(os.sched_getaffinity(0)))
threads = 1

# No request lives longer than this: CRCR_ORPHAN_AFTER (60 s) must stay above it, since a job
# transition older than that, which the database never recorded, is taken for a dead process's.
timeout = 30
graceful_timeout = 30
# Heartbeat files in memory: a container's overlay file system can stall them.
worker_tmp_dir = "/dev/shm"  # noqa: S108 (gunicorn's own temporary files)

# Errors to standard error, the container's log. No access log: the load balancer logs the
# requests and the relay logs its decisions; `--access-logfile -` turns one on.
errorlog = "-"
loglevel = "info"

# Nothing uses gunicorn's control socket, which would be a file in the user's home.
control_socket_disable = True


# Prometheus (crcr_site/metrics.py): several workers count into one directory, which /metrics
# sums (prometheus-client's multiprocess mode). Unless PROMETHEUS_MULTIPROC_DIR names one, the
# master makes its own in memory before the workers start (they read it when they import the
# app), and empties it: a previous run's files would be counted again. A finished worker's
# live gauges are dropped.
def on_starting(server: object) -> None:
    shared = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()  # noqa: S108
    directory = os.environ.setdefault(
        "PROMETHEUS_MULTIPROC_DIR", os.path.join(shared, f"crcr-prometheus-{os.getpid()}")
    )
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


def child_exit(server: object, worker: object) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
