import sqlite3
import subprocess

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured

from crcr_site.settings import (
    PREPARE_ON_REQUEST_ONLY,
    database_config,
    envbool,
    envint,
    envsecret,
    redis_cluster,
)
from tests.crcr_site.support import bare_env, manage, run_on_sqlite
from tests.paths import PYTHON, ROOT


@pytest.mark.parametrize(
    ("raw", "expected"), [("true", True), ("ON", True), ("0", False), ("", None)]
)
def test_envbool_reads_the_usual_spellings(raw, expected):
    assert envbool("X", None, environ={"X": raw}) is expected  # type: ignore[arg-type]


def test_a_bad_value_names_the_variable():
    with pytest.raises(ImproperlyConfigured, match="DJANGO_DEBUG='maybe' is not a boolean"):
        envbool("DJANGO_DEBUG", False, environ={"DJANGO_DEBUG": "maybe"})
    with pytest.raises(ImproperlyConfigured, match="CRCR_ZOMBIE_TIMEOUT=5 is below the minimum 60"):
        envint("CRCR_ZOMBIE_TIMEOUT", 21600, minimum=60, environ={"CRCR_ZOMBIE_TIMEOUT": "5"})


def test_a_secret_can_come_from_a_file(tmp_path):
    (tmp_path / "secret").write_text("s3cret\n")

    assert (
        envsecret(
            "GITHUB_WEBHOOK_SECRET",
            environ={"GITHUB_WEBHOOK_SECRET_FILE": str(tmp_path / "secret")},
        )
        == "s3cret"
    )
    assert (
        envsecret("GITHUB_WEBHOOK_SECRET", environ={"GITHUB_WEBHOOK_SECRET": "direct"}) == "direct"
    )
    assert envsecret("GITHUB_WEBHOOK_SECRET", environ={}) == ""


def test_a_secret_given_twice_or_unreadable_is_refused(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="not both"):
        envsecret("S", environ={"S": "a", "S_FILE": "/x"})
    with pytest.raises(ImproperlyConfigured, match="cannot be read"):
        envsecret("S", environ={"S_FILE": str(tmp_path / "missing")})


def test_the_service_urls_which_carry_passwords_can_come_from_files(tmp_path):
    files = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'from-a-file.sqlite3'}",
        "REDIS_URL": "redis://:pw@cache.internal:6379/0",
        "HUD_CLICKHOUSE_URL": "https://crcr:pw@clickhouse.internal:8443/crcr",
    }
    env = bare_env(tmp_path, DJANGO_SETTINGS_MODULE="crcr_site.settings", HUD_BACKEND="clickhouse")
    del env["DATABASE_URL"]
    for name, value in files.items():
        (tmp_path / name).write_text(value + "\n")
        env[f"{name}_FILE"] = str(tmp_path / name)
    script = (
        "from django.conf import settings as s; "
        "print(s.DATABASES['default']['NAME'], s.REDIS_URL, s.HUD_CLICKHOUSE_URL)"
    )

    result = subprocess.run(
        [PYTHON, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        str(tmp_path / "from-a-file.sqlite3"),
        files["REDIS_URL"],
        files["HUD_CLICKHOUSE_URL"],
    ]


def _in_a_fresh_process(tmp_path, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-c", "import django; django.setup()\n" + script],
        cwd=ROOT,
        env=bare_env(tmp_path, DJANGO_SETTINGS_MODULE="crcr_site.settings", **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_rotated_key_keeps_the_dispatch_tokens_signed_with_the_old_one_valid(tmp_path):
    old, new = "the-old-key-" + "x" * 40, "the-new-key-" + "y" * 40
    (tmp_path / "old-keys").write_text(f"an-older-key\n{old}\n")
    signed = _in_a_fresh_process(
        tmp_path,
        "from relay.dispatch_token import DispatchClaims, sign\n"
        "print(sign(DispatchClaims('d-1', 'org/repo', 7, 'abc')))",
        DJANGO_SECRET_KEY=old,
    ).stdout.strip()
    check = f"from relay.dispatch_token import verify\nprint(verify({signed!r}).pr_number)"

    rotated = _in_a_fresh_process(
        tmp_path,
        check,
        DJANGO_SECRET_KEY=new,
        DJANGO_SECRET_KEY_FALLBACKS_FILE=str(tmp_path / "old-keys"),
    )
    forgotten = _in_a_fresh_process(tmp_path, check, DJANGO_SECRET_KEY=new)

    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.strip() == "7"
    assert "BadToken" in forgotten.stderr  # without the fallback, every echoed token is refused


def test_redis_cluster_names_a_node_of_the_cluster_and_more_to_start_from():
    url = "rediss://:pw@10.0.0.1:6379/0"
    env = {"REDIS_CLUSTER": "true", "REDIS_CLUSTER_NODES": "10.0.0.2:6379, [fd00::3]:6380"}

    assert redis_cluster(url, environ=env) == (True, ("10.0.0.2:6379", "[fd00::3]:6380"))
    assert redis_cluster("redis://10.0.0.1:6379", environ={"REDIS_CLUSTER": "true"}) == (True, ())
    assert redis_cluster(url, environ={}) == (False, ())


@pytest.mark.parametrize(
    ("url", "env", "message"),
    [
        (None, {"REDIS_CLUSTER": "true"}, "REDIS_CLUSTER=true needs REDIS_URL"),
        ("redis://h:6379/2", {"REDIS_CLUSTER": "true"}, "database 0 only"),
        ("unix:///run/redis.sock", {"REDIS_CLUSTER": "true"}, "redis:// or rediss://"),
        (
            "redis://h",
            {"REDIS_CLUSTER": "true", "REDIS_CLUSTER_NODES": "h2"},
            "'h2' is not host:port",
        ),
        ("redis://h", {"REDIS_CLUSTER_NODES": "h2:6379"}, "REDIS_CLUSTER is not true"),
    ],
)
def test_a_redis_cluster_setting_that_cannot_work_stops_the_process(url, env, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        redis_cluster(url, environ=env)


def test_sqlite_gets_wal_a_busy_timeout_and_immediate_transactions():
    config = database_config("sqlite:////tmp/x.sqlite3")

    assert config["OPTIONS"] == {
        "init_command": "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }


def test_postgresql_gets_a_pool_and_prepares_the_callback_statements(monkeypatch):
    url = "postgres://u@db.example:5432/crcr"
    monkeypatch.delenv("DATABASE_POOL_MAX", raising=False)
    monkeypatch.delenv("DATABASE_PREPARED", raising=False)
    pooled = database_config(url)
    monkeypatch.setenv("DATABASE_PREPARED", "false")
    unprepared = database_config(url)
    monkeypatch.delenv("DATABASE_PREPARED")
    monkeypatch.setenv("DATABASE_POOL_MAX", "0")
    behind_pgbouncer = database_config(url)
    monkeypatch.setenv("DATABASE_TIMEOUT", "5")
    patient = database_config(url)

    # Every wait for the server is bounded (2 s by default), and the backend fails fast after.
    assert pooled["ENGINE"] == "crcr_site.postgresql"
    assert pooled["OPTIONS"] == {
        "connect_timeout": 2,
        "pool": {"min_size": 1, "max_size": 20, "timeout": 2.0},
        "prepare_threshold": PREPARE_ON_REQUEST_ONLY,
    }
    assert unprepared["OPTIONS"] == {
        "connect_timeout": 2,
        "pool": {"min_size": 1, "max_size": 20, "timeout": 2.0},
    }
    assert behind_pgbouncer["OPTIONS"] == {"connect_timeout": 2}
    assert behind_pgbouncer["CONN_MAX_AGE"] == 60
    assert patient["OPTIONS"] == {"connect_timeout": 5}  # (DATABASE_POOL_MAX=0 still)


def test_a_bad_setting_stops_a_command_with_its_name(tmp_path):
    result = manage("check", env=bare_env(tmp_path, DJANGO_DEBUG="maybe"))

    assert result.returncode != 0
    assert "DJANGO_DEBUG='maybe' is not a boolean" in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CRCR_COMMENT_LEVELS", "L3,L5", "CRCR_COMMENT_LEVELS: L5 is not a level"),
        ("CRCR_PUBLIC_URL", "crcr.example.com", "CRCR_PUBLIC_URL='crcr.example.com' is not an"),
    ],
)
def test_the_upstream_pr_settings_refuse_what_they_cannot_use(tmp_path, name, value, message):
    result = manage("check", env=bare_env(tmp_path, **{name: value}))

    assert result.returncode != 0
    assert message in result.stderr


def test_a_fresh_machine_migrates_and_syncs_the_sample_on_embedded_sqlite(tmp_path):
    env = bare_env(tmp_path)

    assert manage("migrate", "-v0", env=env).returncode == 0
    synced = manage("allowlist_sync", env=env)

    assert synced.returncode == 0, synced.stderr
    assert "12 added" in synced.stdout
    with sqlite3.connect(tmp_path / "crcr.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT count(*) FROM allowlist_downstreamrepo").fetchone() == (12,)


def test_the_checks_say_nothing_of_what_sqlite_cannot_index(tmp_path):
    result = manage("check", env=bare_env(tmp_path))

    # The HUD's covering indexes lose their extra columns on SQLite: expected, not warned of.
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("System check identified no issues")


LOAD_MIDDLEWARE = """
import django
django.setup()
from django.core.handlers.wsgi import WSGIHandler
from django.test import override_settings
with override_settings(STATIC_ROOT={root!r}):
    WSGIHandler()  # loads the middleware as a server's first request does
"""


@pytest.mark.parametrize(
    ("extra", "warned"),
    [({}, False), ({"DJANGO_SECRET_KEY": "a-production-key-" + "x" * 40}, True)],
    ids=["embedded", "production"],
)
def test_a_missing_static_root_is_warned_of_only_outside_the_embedded_mode(tmp_path, extra, warned):
    script = LOAD_MIDDLEWARE.format(root=str(tmp_path / "not-collected"))
    result = subprocess.run(
        [PYTHON, "-c", script],
        cwd=ROOT,
        env=bare_env(tmp_path, DJANGO_SETTINGS_MODULE="crcr_site.settings", **extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert ("No directory at: " in result.stderr) is warned, result.stderr


def test_check_deploy_reports_each_production_misconfiguration(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "ERROR", env=bare_env(tmp_path))

    assert result.returncode == 1
    for check_id in ("crcr.E002", "crcr.E003", "crcr.E004", "crcr.E005", "crcr.W001"):
        assert check_id in result.stderr
    debug = manage("check", "--deploy", env=bare_env(tmp_path, DJANGO_DEBUG="true"))
    assert "crcr.E001" in debug.stderr


@pytest.mark.parametrize(
    ("extra", "installed"),
    [
        ({}, True),  # the embedded mode: a fresh checkout, `make demo`
        ({"DJANGO_SECRET_KEY": "k" * 64}, False),  # configured as production is
        ({"DJANGO_SECRET_KEY": "k" * 64, "DJANGO_DEBUG": "true"}, True),
        ({"CRCR_SANDBOX": "false"}, False),
        ({"DJANGO_SECRET_KEY": "k" * 64, "CRCR_SANDBOX": "true"}, True),
    ],
)
def test_the_sandbox_and_its_demo_are_installed_only_outside_production(tmp_path, extra, installed):
    result = manage("help", "--commands", env=bare_env(tmp_path, **extra))

    assert result.returncode == 0, result.stderr
    assert ("demo" in result.stdout.split()) is installed


# Model checks ask each database what it supports (JSON fields): the tests' SQLite alias too.
@pytest.mark.django_db(databases=["default", "sqlite"])
def test_check_deploy_is_clean_of_crcr_errors_when_production_is_configured(settings):
    settings.DEBUG = False
    settings.SECRET_KEY = "x" * 64
    settings.GITHUB_WEBHOOK_SECRET = "hook-secret"
    settings.GITHUB_APP_ID = "12345"
    settings.GITHUB_APP_PRIVATE_KEY = "-----BEGIN RSA PRIVATE KEY-----..."
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"

    messages = run_checks(include_deployment_checks=True)

    assert [m.id for m in messages if m.id and m.id.startswith("crcr.")] == []


UPSERT_ON_SQLITE = """
import django; django.setup()
from django.core.management import call_command
from django.utils import timezone
call_command("migrate", verbosity=0)
from hud.models import JobRecord
from hud.storage import HudRecord, RecordKey, get_store
key = RecordKey("org/repo", "d-1", "CI", "build", "1")
get_store().upsert(HudRecord(key, "Org/Repo", status="in_progress", queue_time=1.5,
                             failed_tests_detail=[{"name": "t", "message": "m"}]),
                   now=timezone.now())
get_store().upsert(HudRecord(key, "Org/Repo", status="completed", conclusion="success"),
                   now=timezone.now())
row = JobRecord.objects.get()
print(row.status, row.conclusion, row.queue_time, row.failed_tests_detail[0]["name"])
"""


def test_the_record_upsert_keeps_its_semantics_on_sqlite(tmp_path):
    output = run_on_sqlite(tmp_path, UPSERT_ON_SQLITE)

    assert output.split() == ["completed", "success", "1.5", "t"]
