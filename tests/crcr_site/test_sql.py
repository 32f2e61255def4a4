"""crcr_site/sql.py's all-or-nothing write, on PostgreSQL (one statement) and SQLite (a
transaction): the same scenario, the same outcome."""

import json
from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction

from crcr_site import sql
from hud.models import HudOutbox, JobRecord
from relay.models import CallbackAudit, ReplayKey
from tests.crcr_site.support import run_on_sqlite

AT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
KEY = {
    "downstream_repo": "org/repo",
    "delivery_id": "d-1",
    "workflow_name": "CI",
    "job_name": "build ✓ <script>",
    "check_run_id": "7",
}


def _rows(status: str, audit_status: int | None = 200) -> list[sql.Row]:
    changes = {"status": status, "updated_at": AT, "failed_tests_detail": [{"name": "t"}]}
    return [
        sql.Row(JobRecord, KEY | changes | {"repo_display": "Org/Repo", "received_at": AT},
                on_conflict=tuple(KEY), update=tuple(changes)),
        sql.Row(CallbackAudit, {"at": AT, "decision": "accepted", "status": audit_status,
                                "reason": "accepted", "repo": "Org/Repo"}),
    ]  # fmt: skip


def _replay(key: str) -> sql.Row:
    return sql.Row(ReplayKey, {"key": key, "used_at": AT}, on_conflict=("key",))


def scenario() -> dict[str, object]:
    """Write twice with one key, then with a new key and a row the database refuses."""
    first = sql.insert_if_new(_replay("k1"), _rows("in_progress"))
    again = sql.insert_if_new(_replay("k1"), _rows("completed"))
    try:
        with transaction.atomic():
            sql.insert_if_new(_replay("k2"), _rows("completed", audit_status=None))
        refused = False
    except DatabaseError:
        refused = True
    updated = sql.insert_if_new(_replay("k3"), _rows("completed"))  # the upsert's update branch
    unless = sql.insert_if_new(_replay("k4"), _rows("failed"), sql.Condition("%s = 2", [1]))
    provided = sql.insert_if_new(_replay("k5"), _rows("completed"), sql.Condition("%s = 2", [2]))
    row = JobRecord.objects.get()
    return {
        "first": first,
        "again": again,
        "refused": refused,
        "updated": updated,
        "only_if": [unless, provided],
        "replay_keys": sorted(ReplayKey.objects.values_list("key", flat=True)),
        "audits": CallbackAudit.objects.count(),
        "record": [row.job_name, row.status, row.failed_tests_detail, str(row.updated_at)],
    }  # fmt: skip


EXPECTED = {
    "first": True,
    "again": False,
    "refused": True,
    "updated": True,
    "only_if": [False, True],
    "replay_keys": ["k1", "k3", "k5"],
    "audits": 3,
    "record": ["build ✓ <script>", "completed", [{"name": "t"}], "2026-11-22 12:00:00+00:00"],
}


@pytest.mark.django_db
def test_insert_if_new_on_postgresql():
    assert scenario() == EXPECTED


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements ORDER BY prepare_time")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db
def test_the_callback_write_is_prepared_once_per_connection_and_binds_its_values():
    assert scenario() == EXPECTED  # six writes, two shapes (a NULL audit status is one)

    statements = _prepared_statements()
    assert len(statements) == 2, statements
    assert all(statement.startswith("WITH w0 AS (INSERT INTO") for statement in statements)
    assert all("$1" in statement and "'k1'" not in statement for statement in statements)
    assert "WHERE $" in statements[1]
    assert "= 2" in statements[1]


@pytest.mark.django_db(transaction=True)
def test_a_prepared_statement_survives_a_migration_changing_its_table():
    """A statement prepared before `migrate` altered a column it returns would fail ("cached
    plan must not change result type") on every later use of that pooled connection."""
    import psycopg

    statement = "SELECT key FROM relay_replaykey WHERE used_at < %s"
    with sql.prepared_cursor() as cursor:
        cursor.execute(statement, [AT])
    url = connection.settings_dict
    dsn = f"postgresql://{url['USER']}@{url['HOST']}:{url['PORT']}/{url['NAME']}"
    with psycopg.connect(dsn, autocommit=True) as other:  # another process's migration
        other.execute("ALTER TABLE relay_replaykey ALTER COLUMN key TYPE varchar(210)")
    try:
        with sql.prepared_cursor() as cursor:
            cursor.execute(statement, [AT])
            assert cursor.fetchall() == []
    finally:
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute("ALTER TABLE relay_replaykey ALTER COLUMN key TYPE varchar(200)")


@pytest.mark.django_db
def test_a_plain_cursor_prepares_nothing():
    with connection.cursor() as cursor:
        for _ in range(5):
            cursor.execute("SELECT %s::int", [1])

    assert _prepared_statements() == []


@pytest.mark.django_db
def test_prepared_statements_can_be_turned_off():
    """With DATABASE_PREPARED=false (behind PgBouncer) psycopg's connection has no prepare
    threshold (test_settings): the same write, nothing prepared."""
    connection.ensure_connection()
    raw = connection.connection
    threshold, raw.prepare_threshold = raw.prepare_threshold, None
    try:
        assert scenario() == EXPECTED
        assert _prepared_statements() == []
    finally:
        raw.prepare_threshold = threshold


def test_insert_if_new_on_sqlite(tmp_path):
    script = (
        "import json, django; django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('migrate', verbosity=0)\n"
        "from tests.crcr_site.test_sql import scenario\n"
        "print(json.dumps(scenario()))\n"
    )
    assert json.loads(run_on_sqlite(tmp_path, script)) == EXPECTED


def test_the_first_row_must_be_an_insert_or_nothing():
    with pytest.raises(ValueError, match="on_conflict and no update"):
        sql.insert_if_new(sql.Row(ReplayKey, {"key": "k"}), [])


SAMPLES = ["text", "", "build ✓ <script>", "12", 0, 7, -1, 2.5, True, False, None, AT, {"a": 1}]


@pytest.mark.parametrize("model", [JobRecord, CallbackAudit, ReplayKey, HudOutbox])
def test_every_value_is_bound_as_its_field_would_bind_it(model):
    """Values of the plain types skip their field's conversion: it must be a no-op for them."""
    columns = [field for field in model._meta.concrete_fields if not field.primary_key]
    for n, field in enumerate(columns):
        for sample in SAMPLES:
            try:
                expected = field.get_db_prep_save(sample, connection)
            except (TypeError, ValueError, ValidationError):
                continue
            bound = sql.Row(model, {field.name: sample}).params()[n]
            assert type(bound) is type(expected), (field, sample)
            assert repr(bound) == repr(expected), (field, sample)


@pytest.mark.django_db
def test_a_prepared_statement_longer_than_psycopg_caches_keeps_its_values_and_percent_signs():
    """A callback's chained write is past psycopg's 4 KB / 50-parameter cache; its fixed text
    is given PostgreSQL's $n placeholders once, and a literal %% stays one percent sign."""
    values = list(range(120))
    columns = ", ".join(f"%s::int AS c{n}" for n in values)
    statement = f"SELECT '100%%' AS pct, {columns} /* {'x' * 4096} */"
    for _ in range(3):
        with sql.prepared_cursor() as cursor:
            cursor.execute(statement, values)
            assert cursor.fetchone() == ("100%", *values)
