"""Test run setup: real PostgreSQL (a database of this run's own) and a redis-server of its own.

Several runs share the machine, so nothing here touches the shared Redis or a fixed database
name. Fakes stand only at the network edge (tests/fakes/), as real HTTP servers.
"""

import os
import warnings
from collections.abc import Iterator

import psycopg
import pytest
import redis

from tests.paths import FIXTURES, ROOT
from tests.servers import RedisServer, drop_stale_databases, scratch_database


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


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _test_settings(redis_server: RedisServer, settings) -> None:
    settings.REDIS_URL = redis_server.url
    # Production hashing costs about a second per login; tests log in a lot.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _empty_redis(redis_server: RedisServer) -> Iterator[None]:
    yield
    if redis_server.process is not None:
        redis.Redis.from_url(redis_server.url).flushdb()


@pytest.fixture
def upstream_allowlist_text() -> str:
    return (FIXTURES / "allowlist" / "pytorch-allowlist.yml").read_text()


@pytest.fixture
def upstream_allowlist_path() -> str:
    return str(FIXTURES / "allowlist" / "pytorch-allowlist.yml")


@pytest.fixture
def child_env(redis_server: RedisServer) -> dict[str, str]:
    """Environment for a second process that must see this test's database and Redis."""
    from django.db import connection

    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    if db.get("PASSWORD"):
        url = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": redis_server.url,
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
