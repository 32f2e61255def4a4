"""Writing HUD records to ClickHouse: the schema, whole rows, and the outbox.

Writes. ClickHouse takes no part in the relay's database transaction, so a record is written
there in two steps: the callback's own all-or-nothing statement adds it to the outbox
(`HudOutbox`, in the relational database, with the replay key and the audit row), and `drain`
moves outbox rows into ClickHouse in order — merging each with the stored version of its key
(only carried fields change, contract §3) and inserting the result as a new version. The worker
drains every second; with chdb (one process) the web process drains before it reads, so a
result is on the pages in the next request either way. Re-draining a row after a crash writes
the same merge again: harmless.
"""

import functools
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Field

from crcr_site import sql
from hud.models import HudOutbox, JobRecord
from hud.storage.base import KEY_FIELDS, HudRecord, RecordKey, merged
from hud.storage.clickhouse import queries as q
from hud.storage.clickhouse.drivers import Driver

DRAIN_BATCH = 500


def migrate(driver: Driver) -> list[int]:
    """Apply the schema versions not applied yet; the ones applied now."""
    driver.command(q.MIGRATIONS_TABLE)
    done = {row[0] for row in driver.select("SELECT version FROM hud_schema_migrations")}
    applied = []
    for version, statement in enumerate(q.MIGRATIONS, 1):
        if version not in done:
            driver.command(statement)
            driver.insert("hud_schema_migrations", ["version"], [[version]])
            applied.append(version)
    return applied


def put_rows(driver: Driver, rows: Iterable[dict[str, Any]]) -> int:
    """Store whole rows as they are (backfill, tests); how many."""
    count, batch = 0, []
    for row in rows:
        batch.append(_to_clickhouse(row))
        if len(batch) >= 50_000:
            count += _insert(driver, batch)
            batch = []
    return count + _insert(driver, batch)


def _insert(driver: Driver, rows: list[dict[str, Any]]) -> int:
    columns = list(q.COLUMNS)
    driver.insert(q.TABLE, columns, ([row[c] for c in columns] for row in rows))
    return len(rows)


def stored_rows(driver: Driver) -> Iterator[dict[str, Any]]:
    """Every stored row (the latest version of each key), for backfill."""
    names = [c for c in q.COLUMNS if c != "version"]
    for values in driver.select(f"SELECT {', '.join(names)} FROM {q.TABLE} FINAL"):
        yield decoded(dict(zip(names, values, strict=True)))


def stored(driver: Driver, key: RecordKey) -> bool:
    """Whether ClickHouse, or the outbox on its way there, has a record of this key."""
    found = driver.select(
        f"SELECT count() FROM {q.TABLE} FINAL WHERE {_key_condition(0)}",
        _key_params(0, vars(key)),
    )
    return bool(found[0][0]) or HudOutbox.objects.filter(payload__key=vars(key)).exists()


def stored_row(driver: Driver, key: RecordKey) -> dict[str, Any] | None:
    """The stored row of `key` in ClickHouse, if any (what the outbox holds is not seen)."""
    rows = _rows_for(driver, [tuple(vars(key)[k] for k in KEY_FIELDS)])
    return rows[0] if rows else None


def outbox_row(record: HudRecord, now: datetime) -> sql.Row:
    """The outbox row of a record: its key, the fields it carries, when."""
    payload = {"key": vars(record.key), "carried": record.carried(), "now": now.isoformat()}
    return sql.Row(HudOutbox, {"payload": _json_ready(payload), "created_at": now})


def drain(driver: Driver, batch: int = DRAIN_BATCH) -> int:
    """Move outbox rows into ClickHouse, oldest first; how many."""
    moved = 0
    if not HudOutbox.objects.exists():  # the usual case on a read: one plain query, no BEGIN
        return moved
    while True:
        with transaction.atomic():
            pending = list(
                HudOutbox.objects.select_for_update(skip_locked=True).order_by("id")[:batch]
            )
            if not pending:
                return moved
            _merge(driver, [row.payload for row in pending])
            HudOutbox.objects.filter(id__in=[row.id for row in pending]).delete()
        moved += len(pending)


def _merge(driver: Driver, payloads: list[dict[str, Any]]) -> None:
    """Each record merged, in order, with the stored version of its key: a new version."""
    keys = {tuple(p["key"][k] for k in KEY_FIELDS) for p in payloads}
    stored_now = {tuple(row[k] for k in KEY_FIELDS): row for row in _rows_for(driver, sorted(keys))}
    for payload in payloads:
        key = tuple(payload["key"][k] for k in KEY_FIELDS)
        now = datetime.fromisoformat(payload["now"])
        current = stored_now.get(key)
        carried = _parse_carried(payload["carried"])
        applied = merged(current or _new_row(payload["key"], now), carried)
        if applied is None:  # a record from elsewhere does not change one the relay verified
            continue
        applied["updated_at"] = now
        applied["version"] = max(int((current or {}).get("version") or 0) + 1, _micros(now))
        stored_now[key] = applied
    _insert(driver, [_to_clickhouse(row) for row in stored_now.values()])


def _rows_for(driver: Driver, keys: Sequence[tuple[str, ...]]) -> list[dict[str, Any]]:
    if not keys:
        return []
    params: dict[str, Any] = {}
    conditions = []
    for n, key in enumerate(keys):
        conditions.append(f"({_key_condition(n)})")
        params |= _key_params(n, dict(zip(KEY_FIELDS, key, strict=True)))
    names = list(q.COLUMNS)
    statement = f"SELECT {', '.join(names)} FROM {q.TABLE} FINAL WHERE {' OR '.join(conditions)}"
    return [
        decoded(dict(zip(names, values, strict=True)))
        for values in driver.select(statement, params)
    ]


def _key_condition(n: int) -> str:
    return " AND ".join(f"{field} = {{k{n}_{i}:String}}" for i, field in enumerate(KEY_FIELDS))


def _key_params(n: int, key: dict[str, str]) -> dict[str, str]:
    return {f"k{n}_{i}": key[field] for i, field in enumerate(KEY_FIELDS)}


def _micros(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


def _new_row(key: dict[str, str], now: datetime) -> dict[str, Any]:
    defaults: dict[str, Any] = {name: None for name in q.COLUMNS}
    defaults |= {
        "repo_display": key["downstream_repo"],
        "upstream_repo": "",
        "event_type": "pull_request",
        "level": "",
        "pr_number": 0,
        "head_sha": "",
        "workflow_run_url": "",
        "run_id": "",
        "run_attempt": 1,
        "status": "",
        "conclusion": "",
        "artifact_url": "",
        "source": "relay",
        "received_at": now,
        "version": 0,
    }
    return defaults | key


def _parse_carried(carried: dict[str, Any]) -> dict[str, Any]:
    times = ("started_at", "completed_at")
    return {
        k: datetime.fromisoformat(v) if k in times and isinstance(v, str) else v
        for k, v in carried.items()
    }


def _json_ready(payload: dict[str, Any]) -> dict[str, Any]:
    """The outbox payload as JSON values (timestamps as ISO text)."""
    return json.loads(json.dumps(payload, default=lambda v: v.isoformat()))


def _to_clickhouse(row: dict[str, Any]) -> dict[str, Any]:
    out = {name: row.get(name) for name in q.COLUMNS}
    for name in q.JSON_COLUMNS:
        out[name] = "" if out[name] is None else json.dumps(out[name])
    out["version"] = out.get("version") or _micros(row["updated_at"])
    for name, kind in q.COLUMNS.items():
        if out[name] is None and not kind.startswith(("Nullable(", "DateTime")):
            out[name] = _default(name, kind)
    return out


@functools.cache
def _default(name: str, kind: str) -> Any:
    """What a non-Nullable column holds for a value a row does not have: the record model's
    default (as the ORM would store it), else the type's zero. A server's Native inserts
    refuse None there; chdb's JSON inserts would have stored the zero silently."""
    field = JobRecord._meta.get_field(name)
    if isinstance(field, Field) and field.has_default():
        return field.get_default()
    return "" if kind.removeprefix("LowCardinality(").startswith("String") else 0


def decoded(row: dict[str, Any]) -> dict[str, Any]:
    """A row read from ClickHouse with its JSON columns as values again."""
    for name in q.JSON_COLUMNS:
        row[name] = json.loads(row[name]) if row.get(name) else None
    return row
