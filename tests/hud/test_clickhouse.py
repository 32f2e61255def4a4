"""HUD_BACKEND=clickhouse on chdb: its schema command, and hud_backfill between backends (the
relay's path into it is in tests/relay/test_callbacks.py; its reads in test_store_contract)."""

import pytest
from django.core.management import call_command

from hud.models import JobRecord
from hud.orm import OrmRecordStore
from hud.reports import Kind, Window
from tests.hud.dataset import NOW, PROBE, seed

pytestmark = pytest.mark.django_db


def test_the_schema_command_is_idempotent(on_chdb, capsys):
    call_command("hud_clickhouse_migrate")

    assert "schema up to date" in capsys.readouterr().out


def test_backfill_copies_records_both_ways_with_the_same_figures(on_chdb, settings):
    seed()
    window = Window(14, NOW)
    expected = OrmRecordStore().summary(window, Kind.PR, exclude=[PROBE])

    call_command("hud_backfill", "--from", "orm", "--to", "clickhouse", verbosity=0)
    call_command("hud_backfill", "--from", "orm", "--to", "clickhouse", verbosity=0)  # again
    copied = on_chdb.summary(window, Kind.PR, exclude=[PROBE])
    JobRecord.objects.all().delete()
    call_command("hud_backfill", "--from", "clickhouse", "--to", "orm", verbosity=0)

    assert copied == expected
    assert OrmRecordStore().summary(window, Kind.PR, exclude=[PROBE]) == expected
