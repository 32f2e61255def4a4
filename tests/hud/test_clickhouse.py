"""HUD_BACKEND=clickhouse on chdb: its schema command, and hud_backfill between backends (the
relay's path into it is in tests/relay/test_callbacks.py; its reads in test_store_contract)."""

import pytest
from django.core.management import call_command

from hud.models import JobRecord
from hud.reports import Kind, Window
from hud.storage.orm import OrmRecordStore
from tests.hud.dataset import NOW, PROBE, seed
from tests.hud.support import envelope, send

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


def test_with_clickhouse_down_pages_answer_503_and_records_wait_in_the_outbox(client, settings):
    from hud.models import HudOutbox
    from hud.storage.clickhouse import store as clickhouse_store

    url = "http://127.0.0.1:1/default"  # nothing listens there
    settings.HUD_BACKEND = "clickhouse"
    settings.HUD_STORE = "hud.storage.clickhouse.store.ClickHouseRecordStore"
    settings.HUD_CLICKHOUSE_URL = url
    settings.HUD_BOT_TOKEN = "bot"
    try:
        page = client.get("/crcr")
        api = client.get("/api/crcr/summary")
        stored = send(client, envelope(), token="bot")
    finally:
        clickhouse_store._drivers.pop(url, None)

    assert (page.status_code, page["Retry-After"]) == (503, "30")
    assert (api.status_code, api.json()["error"]) == (503, "unavailable")
    assert stored.status_code == 200  # kept for later: the worker drains it when it is back
    assert HudOutbox.objects.count() == 1


def test_the_worker_reads_a_clickhouse_server_but_leaves_chdb_to_its_web_process(settings):
    from relay.periodic import JOBS

    jobs = {job.name: job for job in JOBS}
    readers = [jobs[name] for name in ("hud_clickhouse_drain", "zombie_sweep", "upstream_comment")]
    settings.HUD_BACKEND = "clickhouse"
    settings.HUD_CLICKHOUSE_URL = "https://clickhouse.example:8443/crcr"
    server = [job.interval() for job in readers]
    settings.HUD_CLICKHOUSE_URL = "chdb:///var/lib/crcr/chdb"
    with_chdb = [job.interval() for job in readers]
    settings.HUD_BACKEND = "orm"

    assert server == [1.0, 60.0, 1.0]
    assert with_chdb == [0, 0, 0]  # the web process owns chdb: the worker must not open it
    assert [job.interval() for job in readers] == [0, 60.0, 1.0]


def test_a_drain_moves_the_outbox_into_clickhouse_in_order(on_chdb):
    from hud.models import HudOutbox
    from hud.storage import HudRecord, RecordKey

    key = RecordKey("org/repo", "d-1", "CI", "build", "1")
    on_chdb.upsert(HudRecord(key, "Org/Repo", status="in_progress", queue_time=3.0), now=NOW)
    on_chdb.upsert(HudRecord(key, "Org/Repo", status="completed", conclusion="success"), now=NOW)
    queued = HudOutbox.objects.count()

    moved = on_chdb.drain()

    (row,) = list(on_chdb.rows())
    assert (queued, moved, HudOutbox.objects.count()) == (2, 2, 0)
    # merged in order: the completed record's fields over the in_progress one's, which it
    # did not carry (queue_time, the display name) kept
    assert (row["status"], row["conclusion"], row["queue_time"]) == ("completed", "success", 3.0)
    assert row["repo_display"] == "Org/Repo"
