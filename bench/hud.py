"""HUD benchmark: the pages at a year-of-PyTorch scale, on PostgreSQL and on ClickHouse (chdb).

Seeds ROWS job records over 90 days for 30 downstream repos (PRs pushed several times, 5-40
jobs per dispatch, shard families, re-runs, ~8 % failures, some timeouts) into a scratch
PostgreSQL database and a chdb directory, checks the row counts, then renders /crcr (14 days),
the busiest repo's page, a PR page and the metrics page server-side (Django's test client, in
this process) and prints each page's time next to the summed time of every SQL statement it
ran, measured in the same request. "Cold" is the first render of that page's data: the
process has served other variants of the pages (so modules are imported and templates
compiled, as on any running server) and the allowlist snapshot is dropped; "warm" is the
median of five more renders.

Beside each page it times a plain query: one statement answering the same view on the same
rows, as a HUD with no storage layer of its own would ask it (the page's figures by repo, or
by repo and day; every record of the PR; every latest attempt of the repo's window), fetched
and not rendered. "page / plain" is the page's warm time over the plain query's median.

    .venv/bin/python bench/hud.py [--rows 1000000] [--reuse]

Targets: every page <= 200 ms on PostgreSQL and <= 100 ms on ClickHouse; page / SQL <= 1.5;
page / plain <= 1.
"""

import argparse
import gc
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import drop_stale_databases, scratch_database  # noqa: E402

DEFAULT_DATABASE = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REPOS = 30
DAYS = 90
LEVELS = ["L4"] * 3 + ["L3"] * 7 + ["L2"] * 20
COLUMNS = [
    "downstream_repo",
    "delivery_id",
    "workflow_name",
    "job_name",
    "check_run_id",
    "repo_display",
    "upstream_repo",
    "event_type",
    "level",
    "pr_number",
    "head_sha",
    "workflow_run_url",
    "run_id",
    "run_attempt",
    "status",
    "conclusion",
    "queue_time",
    "execution_time",
    "tests_passed",
    "tests_total",
    "failed_tests_detail",
    "artifact_url",
    "source",
    "received_at",
    "updated_at",
]


FAILED_DETAIL = '[{"name": "test_ops.py::test_x", "message": "mismatch"}]'


def repos() -> list[tuple[str, str, int]]:
    """(owner/name, level, jobs per dispatch): job counts spread 5..40."""
    rng = random.Random(3)  # noqa: S311 (benchmark data)
    return [(f"backend-{n:02d}/pytorch-ci", LEVELS[n], rng.randint(5, 40)) for n in range(REPOS)]


def job_names(count: int) -> list[str]:
    """A realistic mix: build, lint, then shard families of test jobs."""
    names = ["build", "lint"]
    family = 0
    while len(names) < count:
        shards = min(count - len(names), 6)
        names += [f"test-{chr(97 + family)}-{k}" for k in range(1, shards + 1)]
        family += 1
    return names[:count]


def generate(total: int, now: datetime) -> Iterator[tuple]:
    """Job records (in COLUMNS order), until `total`: pushes to PRs, fanned out to every repo."""
    rng = random.Random(1)  # noqa: S311 (benchmark data)
    plan = repos()
    per_push = sum(jobs for _, _, jobs in plan)  # re-runs (about 5 %) make up the rest
    pushes = int(total / per_push) + 1
    made = 0
    for push in range(pushes):
        number = 100_000 + push // 3  # a PR is pushed about three times
        sha = f"{rng.getrandbits(160):040x}"
        at = (
            now
            - timedelta(days=DAYS * (1 - push / pushes))
            + timedelta(seconds=rng.randint(0, 600))
        )
        delivery = f"bench-{push}"
        for repo, level, jobs in plan:
            for job in job_names(jobs):
                for attempt in (1, 2):
                    roll = rng.random()
                    conclusion = (
                        "timed_out" if roll < 0.005 else "failure" if roll < 0.08 else "success"
                    )
                    failed = conclusion == "failure"
                    received = at + timedelta(minutes=rng.randint(1, 30) + 90 * (attempt - 1))
                    yield (
                        repo.casefold(), delivery, "CI", job, f"{push}-{repo}-{job}-{attempt}",
                        repo, "pytorch/pytorch", "pull_request", level, number, sha,
                        f"https://github.com/{repo}/actions/runs/{push}", str(push), attempt,
                        "completed", conclusion, rng.uniform(5, 600), rng.uniform(300, 5400),
                        990 if failed else 1000, 1000,
                        FAILED_DETAIL if failed else None,
                        "", "relay", received, received,
                    )  # fmt: skip
                    made += 1
                    if made >= total:
                        return
                    if not failed or rng.random() > 0.6:
                        break


def seed_postgresql(url: str, rows: list[tuple]) -> None:
    with psycopg.connect(url) as db, db.cursor() as cursor:
        with cursor.copy(f"COPY hud_jobrecord ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        db.commit()
    with psycopg.connect(url, autocommit=True) as db:  # as autovacuum would have by now
        db.execute("VACUUM ANALYZE hud_jobrecord")
        db.execute("VACUUM ANALYZE hud_dailycounts")


def seed_clickhouse(store, rows: list[tuple]) -> None:
    import json

    def dicts() -> Iterator[dict]:
        for row in rows:
            record = dict(zip(COLUMNS, row, strict=True))
            detail = record["failed_tests_detail"]
            record["failed_tests_detail"] = json.loads(detail) if detail else None
            yield record

    store.put_rows(dicts())
    # The bulk load leaves a few dozen parts; a server merges them in the background within
    # minutes. Merge now, so the pages are timed on the steady state, not on the load's debris.
    store.driver.command("OPTIMIZE TABLE hud_job FINAL")


class SqlTimer:
    """Sums the time of every statement run on Django's connections and the ClickHouse driver."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.count = 0

    def __call__(self, execute, sql, params, many, context):  # Django's execute_wrapper
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started
            self.count += 1

    def wrap_driver(self, driver) -> None:
        select = driver.select

        def timed(sql, params=None):
            started = time.perf_counter()
            try:
                return select(sql, params)
            finally:
                self.seconds += time.perf_counter() - started
                self.count += 1

        driver.select = timed


# One statement per view, per backend: what a HUD without our store would run. Parameters:
# the window (start, end), the repo, the PR number.
_PG_WINDOW = (
    "FROM hud_jobrecord WHERE received_at >= %(start)s AND received_at < %(end)s "
    "AND event_type IN ('pull_request', 'push')"
)
_PG_COUNTS = (
    "count(*) FILTER (WHERE status = 'completed' AND conclusion = 'success'), "
    "count(*) FILTER (WHERE status = 'completed' AND conclusion IN ('failure', "
    "'startup_failure')), count(*) FILTER (WHERE status = 'completed' AND conclusion = "
    "'timed_out'), count(*) FILTER (WHERE status = 'completed' AND conclusion = 'cancelled'), "
    "count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status <> 'completed')"
)
_PG_TIMES = (
    "percentile_disc(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY execution_time) "
    "FILTER (WHERE status = 'completed'), percentile_disc(ARRAY[0.5, 0.9]) WITHIN GROUP "
    "(ORDER BY queue_time) FILTER (WHERE run_attempt = 1)"
)
_PG_LATEST = (
    "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY pr_number, head_sha, job_name "
    "ORDER BY run_attempt DESC, received_at DESC, id DESC) AS k {where}) latest WHERE k = 1"
)
PLAIN_POSTGRESQL = {
    "/crcr": (
        f"SELECT downstream_repo, (received_at AT TIME ZONE 'UTC')::date AS day, {_PG_COUNTS}, "
        f"count(DISTINCT pr_number), avg(execution_time), max(received_at), {_PG_TIMES} "
        f"{_PG_WINDOW} GROUP BY GROUPING SETS ((downstream_repo), (downstream_repo, day))"
    ),
    "repo": _PG_LATEST.format(where=f"{_PG_WINDOW} AND downstream_repo = %(repo)s"),
    "pr": "SELECT * FROM hud_jobrecord WHERE pr_number = %(pr)s",
    "metrics": (
        f"SELECT downstream_repo, (received_at AT TIME ZONE 'UTC')::date AS day, {_PG_COUNTS}, "
        f"{_PG_TIMES} {_PG_WINDOW} GROUP BY 1, 2"
    ),
    "prs": (
        f"SELECT pr_number, downstream_repo, max(received_at), {_PG_COUNTS} {_PG_WINDOW} "
        "AND pr_number > 0 GROUP BY 1, 2 ORDER BY 3 DESC"
    ),
}
_CH_WINDOW = (
    "FROM hud_job FINAL WHERE received_at >= {start:DateTime64(6, 'UTC')} "
    "AND received_at < {end:DateTime64(6, 'UTC')} AND event_type IN ('pull_request', 'push')"
)
_CH_COUNTS = (
    "countIf(status = 'completed' AND conclusion = 'success'), countIf(status = 'completed' AND "
    "conclusion IN ('failure', 'startup_failure')), countIf(status = 'completed' AND conclusion "
    "= 'timed_out'), countIf(status = 'completed' AND conclusion = 'cancelled'), "
    "countIf(status = 'completed'), countIf(status <> 'completed')"
)
_CH_TIMES = (
    "quantilesExactIf(0.5, 0.9)(execution_time, status = 'completed'), "
    "quantilesExactIf(0.5, 0.9)(queue_time, run_attempt = 1)"
)
PLAIN_CLICKHOUSE = {
    "/crcr": (
        f"SELECT downstream_repo, toDate(received_at) AS day, {_CH_COUNTS}, uniqExact(pr_number), "
        f"avg(execution_time), max(received_at), {_CH_TIMES} {_CH_WINDOW} "
        "GROUP BY GROUPING SETS ((downstream_repo), (downstream_repo, day))"
    ),
    "repo": (
        f"SELECT * {_CH_WINDOW} AND downstream_repo = {{repo:String}} "
        "ORDER BY run_attempt DESC, received_at DESC LIMIT 1 BY pr_number, head_sha, job_name"
    ),
    "pr": "SELECT * FROM hud_job FINAL PREWHERE pr_number = {pr:UInt32}",
    "metrics": (
        f"SELECT downstream_repo, toDate(received_at) AS day, {_CH_COUNTS}, {_CH_TIMES} "
        f"{_CH_WINDOW} GROUP BY 1, 2"
    ),
    "prs": (
        f"SELECT pr_number, downstream_repo, max(received_at) AS last, {_CH_COUNTS} {_CH_WINDOW} "
        "AND pr_number > 0 GROUP BY 1, 2 ORDER BY last DESC"
    ),
}


def plain_ms(backend: str, view: str, store, params: dict) -> float:
    """The median of five runs of the view's plain query (fetched, not rendered), in ms."""
    from django.db import connection

    times = []
    for _ in range(6):
        started = time.perf_counter()
        if backend == "clickhouse":
            store.driver.select(PLAIN_CLICKHOUSE[view], params)
        else:
            with connection.cursor() as cursor:
                cursor.execute(PLAIN_POSTGRESQL[view], params)
                cursor.fetchall()
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:]) * 1000  # the first run warms what the page warmed


def measure(client, url: str, timer: SqlTimer) -> tuple[float, float, int]:
    from django.db import connection

    timer.seconds, timer.count = 0.0, 0
    with connection.execute_wrapper(timer):
        started = time.perf_counter()
        response = client.get(url)
        elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"{url}: {response.status_code}")
    return elapsed, timer.seconds, timer.count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the seeded data (crcr_bench_hud, /tmp/crcr_bench_hud) for the next run",
    )
    args = parser.parse_args()

    drop_stale_databases(args.database)  # what crashed benchmarks and test runs left behind
    name = "crcr_bench_hud" if args.reuse else scratch_database("crcr_bench")
    with psycopg.connect(args.database, autocommit=True) as db:
        exists = db.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            db.execute(f'CREATE DATABASE "{name}"')
    args.seeded = bool(exists)
    url = args.database.rsplit("/", 1)[0] + f"/{name}"
    scratch = tempfile.TemporaryDirectory()
    kept = Path(tempfile.gettempdir()) / "crcr_bench_hud"
    chdb_url = f"chdb://{kept if args.reuse else Path(scratch.name) / 'chdb'}"
    os.environ |= {
        "DJANGO_SETTINGS_MODULE": "crcr_site.settings",
        "DATABASE_URL": url,
        "DJANGO_ALLOWED_HOSTS": "testserver",
        "LOG_LEVEL": "WARNING",
        "HUD_CLICKHOUSE_URL": chdb_url,
    }
    try:
        run(args, url, chdb_url)
    finally:
        if not args.reuse:
            with psycopg.connect(args.database, autocommit=True) as db:
                db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        scratch.cleanup()


def run(args: argparse.Namespace, url: str, chdb_url: str) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    from hud.storage.clickhouse import store as clickhouse_store

    call_command("migrate", verbosity=0)
    now = datetime.now(UTC)
    rows = list(generate(args.rows, now))  # the same rows each run (seeded generator)
    store = clickhouse_store.ClickHouseRecordStore(chdb_url)
    store.migrate()
    if not args.seeded:
        seed_relational(url, rows)
    if not store.driver.select("SELECT count() FROM hud_job")[0][0]:
        started = time.perf_counter()
        seed_clickhouse(store, rows)
        print(f"seeded chdb in {time.perf_counter() - started:.0f} s")
    busiest = max(repos(), key=lambda r: r[2])[0]
    quiet = min(repos(), key=lambda r: r[2])[0]
    pr = rows[len(rows) // 2][9]
    del rows
    try:
        measure_pages(args, store, busiest, quiet, pr)
    finally:
        store.driver.close()


def seed_relational(url: str, rows: list[tuple]) -> None:
    from allowlist.models import DownstreamRepo
    from hud.models import Dispatched, UpstreamPull
    from relay.models import Delivery

    for repo, level, _ in repos():
        DownstreamRepo.objects.create(repo=repo, level=level, device="npu" if level == "L3" else "")
    started = time.perf_counter()
    seed_postgresql(url, rows)
    Delivery.objects.bulk_create(
        Delivery(delivery_id=f"pr-{n}", event="pull_request", pr_number=n, title=f"PR {n}",
                 author="dev", upstream_repo="pytorch/pytorch", body="{}")
        for n in sorted({row[9] for row in rows})
    )  # fmt: skip
    # What the relay tells the HUD as it goes: each PR's title, and each dispatch GitHub took
    # (one per delivery and repo; one delivery in fifty to a repo that never answered).
    UpstreamPull.objects.bulk_create(
        UpstreamPull(number=n, upstream_repo="pytorch/pytorch", title=f"PR {n}", author="dev",
                     updated_at=at)
        for n, at in sorted({row[9]: row[23] for row in rows}.items())
    )  # fmt: skip
    sent = {(row[1], row[5]): row for row in rows}
    silent = [
        (delivery, "backend-silent/pytorch-ci", pr, sha, at)
        for n, (delivery, pr, sha, at) in enumerate(
            sorted({row[1]: (row[1], row[9], row[10], row[23]) for row in rows}.values())
        )
        if n % 50 == 0
    ]
    Dispatched.objects.bulk_create(
        [
            *(Dispatched(repo=repo, repo_key=repo.casefold(), upstream_repo="pytorch/pytorch",
                         event_type="pull_request", pr_number=row[9], head_sha=row[10],
                         delivery_id=delivery, dispatched_at=row[23])
              for (delivery, repo), row in sent.items()),
            *(Dispatched(repo=repo, repo_key=repo, upstream_repo="pytorch/pytorch",
                         event_type="pull_request", pr_number=pr, head_sha=sha,
                         delivery_id=delivery, dispatched_at=at)
              for delivery, repo, pr, sha, at in silent),
        ],
        batch_size=5000,
    )  # fmt: skip
    print(f"seeded PostgreSQL in {time.perf_counter() - started:.0f} s")


def measure_pages(args: argparse.Namespace, store, busiest: str, quiet: str, pr: int) -> None:
    from django.conf import settings
    from django.test import Client

    from allowlist import lookup
    from hud.models import JobRecord

    pg_count = JobRecord.objects.count()
    ch_count = store.driver.select("SELECT count() FROM hud_job FINAL")[0][0]
    assert pg_count == args.rows, pg_count
    assert ch_count == args.rows, ch_count
    print(f"{args.rows:,} records over {DAYS} days for {REPOS} repos; counts checked\n")

    pages = [
        ("/crcr (14 days)", "/crcr?days=14", "/crcr"),
        (f"repo page ({busiest})", f"/crcr/{busiest}", "repo"),
        (f"PR page (#{pr})", f"/crcr/pr/{pr}", "pr"),
        ("metrics (14 days)", "/crcr/metrics?days=14", "metrics"),
        ("PR list (14 days)", "/crcr/prs", "prs"),
        ("PR list, searched by title", "/crcr/prs?q=PR+12", None),
    ]
    now = datetime.now(UTC)
    plain_params = {"start": now - timedelta(days=14), "end": now, "repo": busiest, "pr": pr}
    print(f"{'backend':<11} {'page':<36} {'cold ms':>8} {'SQL ms':>7} {'page/SQL':>9} "
          f"{'warm ms':>8} {'SQL ms':>7} {'page/SQL':>9} {'queries':>8} {'plain ms':>9} "
          f"{'page/plain':>11}")  # fmt: skip
    for backend, store_path in (
        ("postgresql", "hud.storage.orm.OrmRecordStore"),
        ("clickhouse", "hud.storage.clickhouse.store.ClickHouseRecordStore"),
    ):
        settings.HUD_STORE = store_path
        settings.HUD_BACKEND = "clickhouse" if backend == "clickhouse" else "orm"
        timer = SqlTimer()
        if backend == "clickhouse":
            timer.wrap_driver(store.driver)
        client = Client()
        # The process is warm (modules imported, templates compiled: what a server's first
        # requests do once), the data is not: other variants of the pages are rendered first.
        for path in ("/crcr?days=7", f"/crcr/{quiet}", f"/crcr/pr/{pr - 7}", "/crcr/metrics"):
            client.get(path)
        gc.freeze()  # as crcr_site/wsgi.py does once the app is loaded
        for label, path, view in pages:
            lookup._cached = None  # cold: the allowlist snapshot is read again
            cold = measure(client, path, timer)
            warm = [measure(client, path, timer) for _ in range(5)]
            page_ms = statistics.median(w[0] for w in warm) * 1000
            sql_ms = statistics.median(w[1] for w in warm) * 1000
            plain = f"{'':>9} {'':>11}"
            if view is not None:
                base_ms = plain_ms(backend, view, store, plain_params)
                plain = f"{base_ms:9.1f} {page_ms / base_ms:11.2f}"
            print(
                f"{backend:<11} {label:<36} {cold[0] * 1000:8.1f} {cold[1] * 1000:7.1f} "
                f"{cold[0] / cold[1]:9.2f} {page_ms:8.1f} {sql_ms:7.1f} {page_ms / sql_ms:9.2f} "
                f"{cold[2]:8d} {plain}"
            )
    print(
        "\ntargets: page <= 200 ms (PostgreSQL), <= 100 ms (ClickHouse); page/SQL <= 1.5; "
        "page/plain <= 1"
    )


if __name__ == "__main__":
    main()
