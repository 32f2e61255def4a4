"""Test run setup: real PostgreSQL (a database of this run's own) and a redis-server of its own;
for the tests marked `redis_cluster`, also a Redis Cluster of its own (three masters).

Several runs share the machine, so nothing here touches the shared Redis or a fixed database
name. Fakes stand only at the network edge (tests/fakes/), as real HTTP servers.
"""

import os
import warnings
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest

from tests.paths import FIXTURES, ROOT
from tests.servers import RedisCluster, RedisServer, drop_stale_databases, scratch_database

# What `redis_server` is for a test: its own redis-server, or the three-master Redis Cluster.
REDIS_KINDS = ("redis", "cluster")


@pytest.fixture(scope="session")
def django_db_modify_db_settings() -> None:
    from django.conf import settings

    db: dict = settings.DATABASES["default"]
    if db["ENGINE"] not in ("django.db.backends.postgresql", "crcr_site.postgresql"):
        pytest.exit(
            "The tests run on PostgreSQL: set DATABASE_URL=postgres://... (make test does).",
            returncode=2,
        )
    # A crashed run cannot drop its database: the next run drops those over a few hours old.
    try:
        drop_stale_databases(os.environ["DATABASE_URL"])
    except (KeyError, psycopg.Error) as exc:  # tidying up never fails a run
        warnings.warn(f"stale test databases not dropped: {exc!r}", stacklevel=1)
    db.setdefault("TEST", {})["NAME"] = scratch_database("test_crcr")
    # A second database, SQLite, for the tests that hold a backend to the same contract on
    # both (`django_db(databases=["default", "sqlite"])`); in memory, created only when asked.
    from django.db import connections

    from crcr_site.settings import database_config

    sqlite = database_config("sqlite://:memory:") | {"TEST": {"NAME": None}}
    settings.DATABASES["sqlite"] = sqlite
    connections.settings["sqlite"] = sqlite
    connections.configure_settings(connections.settings)


# The modules that stop, kill or load the relay's parts and time what follows: under
# pytest-xdist they share one worker and run one at a time (two of them at once on two cores
# starve each other's timing).
HEAVY = {
    "tests.relay.test_chaos",
    "tests.relay.test_cluster_failover",
    "tests.relay.test_crash",
    "tests.relay.test_faults",
    "tests.relay.test_soak",
}


# Modules whose tests share no module-scoped fixture and each take a minute: each test is its
# own group, so the two workers share them out (together they were four minutes on one).
SPREAD = {"tests.hud.test_crawl"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`make test` runs with `--dist loadgroup`: each module on one worker (its module-scoped
    live stacks and browser start once), the HEAVY ones together, a SPREAD one's tests each
    apart. Two tests of one id are refused: pytest-xdist would run one of them and drop the
    other without a word."""
    twice = sorted(i for i, n in Counter(item.nodeid for item in items).items() if n > 1)
    if twice:
        raise pytest.UsageError(f"tests collected twice under one id: {twice}")
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            module = getattr(getattr(item, "module", None), "__name__", item.nodeid)
            group = "heavy" if module in HEAVY else item.nodeid if module in SPREAD else module
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked `redis_cluster` runs twice: on one Redis, and on the Redis Cluster."""
    if metafunc.definition.get_closest_marker("redis_cluster") is not None:
        metafunc.parametrize("redis_server", REDIS_KINDS, indirect=True)


@pytest.fixture(scope="session")
def redis_single() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory) -> Iterator[RedisCluster]:
    """Three masters on loopback, started the first time a test asks for them."""
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def redis_server(request) -> RedisServer | RedisCluster:
    """The Redis this test runs on: the run's own redis-server, or (the `cluster` run of a test
    marked `redis_cluster`) its Redis Cluster."""
    kind = getattr(request, "param", "redis")
    return request.getfixturevalue("redis_cluster" if kind == "cluster" else "redis_single")


@pytest.fixture
def own_redis(redis_server, tmp_path) -> Iterator[RedisServer | RedisCluster]:
    """A Redis of the kind `redis_server` is, of this test's own: stopping it disturbs nobody."""
    own = RedisCluster(tmp_path / "own-cluster") if redis_server.cluster else RedisServer()
    yield own.start()
    own.stop()


@pytest.fixture(autouse=True)
def _test_settings(redis_server: RedisServer | RedisCluster, settings) -> None:
    redis_server.configure(settings)
    # Production hashing costs about a second per login; tests log in a lot.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _empty_redis(redis_server: RedisServer | RedisCluster) -> Iterator[None]:
    yield
    if redis_server.running():
        redis_server.flush()


@pytest.fixture
def upstream_allowlist_text() -> str:
    return (FIXTURES / "allowlist" / "pytorch-allowlist.yml").read_text()


@pytest.fixture
def upstream_allowlist_path() -> str:
    return str(FIXTURES / "allowlist" / "pytorch-allowlist.yml")


@pytest.fixture
def child_env(redis_server: RedisServer | RedisCluster) -> dict[str, str]:
    """Environment for a second process that must see this test's database and Redis."""
    from django.db import connection

    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    if db.get("PASSWORD"):
        url = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return {
        **os.environ,
        "DATABASE_URL": url,
        **redis_server.env(),
        "DJANGO_SETTINGS_MODULE": "crcr_site.settings",
        "PYTHONPATH": str(ROOT),
    }


@pytest.fixture
def on_chdb(settings, tmp_path):
    """HUD_BACKEND=clickhouse on a chdb directory of this test's own, schema applied."""
    from django.core.management import call_command

    from hud.storage.clickhouse import store as clickhouse_store

    url = f"chdb://{tmp_path / 'chdb'}"
    settings.HUD_BACKEND = "clickhouse"
    settings.HUD_STORE = "hud.storage.clickhouse.store.ClickHouseRecordStore"
    settings.HUD_CLICKHOUSE_URL = url
    call_command("hud_clickhouse_migrate", verbosity=0)
    yield clickhouse_store.ClickHouseRecordStore(url)
    clickhouse_store._drivers.pop(url).close()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (tests/chromium.py), one per browser-test module."""
    from tests.chromium import launched

    with launched() as chromium:
        yield chromium


@pytest.fixture
def server(child_env):
    """The app under gunicorn on this test's database, for the browser tests."""
    from tests.servers import Gunicorn

    gunicorn = Gunicorn(child_env | {"DJANGO_ALLOWED_HOSTS": "127.0.0.1"}).wait_ready()
    yield gunicorn
    gunicorn.stop()
