"""What a crashed run leaves on the shared PostgreSQL is dropped by a later run, and nothing
else is: not a fresh database, not one in use, not one whose name carries no time."""

import os
import time
import uuid

import psycopg

from tests.servers import STALE_AFTER, drop_stale_databases, scratch_database


def test_only_old_unused_scratch_databases_are_dropped():
    url = os.environ["DATABASE_URL"]
    tag, busy = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    old = int(time.time()) - STALE_AFTER - 60
    names = {
        "stale": f"test_crcr_{old}_{tag}",
        "stale_bench": f"crcr_bench_{old}_{tag}",
        "in_use": f"test_crcr_{old}_{busy}",
        "fresh": scratch_database("test_crcr"),
        "no_time": f"test_crcr_{os.getpid()}_{tag}",
        "not_ours": f"other_{old}_{tag}",
    }
    with psycopg.connect(url, autocommit=True) as admin:
        for name in names.values():
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            busy_url = url.rsplit("/", 1)[0] + "/" + names["in_use"]
            with psycopg.connect(busy_url):
                dropped = drop_stale_databases(url)
            left = {row[0] for row in admin.execute("SELECT datname FROM pg_database")}
        finally:
            for name in names.values():
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    gone = {names["stale"], names["stale_bench"]}
    # Gone, by this call or by another run's (test runs share the server and drop stale
    # databases as they start; a database dropped by another is not in `dropped`).
    assert not gone & left
    kept = {names[k] for k in ("in_use", "fresh", "no_time", "not_ours")}
    assert kept <= left
    assert not kept & set(dropped)
