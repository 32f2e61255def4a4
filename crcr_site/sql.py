"""Plain SQL for the few statements every callback runs, written once for every model.

The ORM's compiler costs more than these statements do (about 1 ms a statement on this
machine, against 0.2 ms for the statement itself). Values still go through each model field's
own conversion (`get_db_prep_save`), so JSON, times and UUIDs are stored exactly as the ORM
stores them, on PostgreSQL and SQLite alike; names come from the model, values are bound.

On PostgreSQL the hot statements run through `prepared_cursor`: bound on the server and
prepared on their connection, so PostgreSQL parses and plans each once per connection instead
of once per callback (that was half its CPU for a callback), and they carry PostgreSQL's own
placeholders (`_numbered`: converted once per statement, not by psycopg on every call). Only
these fixed statements are prepared: the HUD's reads keep per-query plans.
`DATABASE_PREPARED` (crcr_site/settings.py) turns it off where a connection is not ours to keep
(PgBouncer before 1.21 in transaction mode).
"""

import contextlib
import functools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.db.backends.utils import CursorWrapper
from psycopg.pq import TransactionStatus


def _columns(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    return [field for field in model._meta.concrete_fields if not field.primary_key]


# An upsert's DO UPDATE clause for its update columns ("SET ... [WHERE ...]"), when plain
# `column = EXCLUDED.column` assignments are not the rule (hud/storage/orm.py's record upsert).
UpdateClause = Callable[[tuple[str, ...]], str]


@functools.cache
def _insert_sql(
    model: type[models.Model],
    conflict: tuple[str, ...],
    update: tuple[str, ...],
    clause: UpdateClause | None = None,
) -> str:
    quote = connection.ops.quote_name
    columns = [str(field.column) for field in _columns(model)]
    row = f"({', '.join(['%s'] * len(columns))})"
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} "  # noqa: S608 (names from the model)
        f"({', '.join(quote(c) for c in columns)}) VALUES {row}"
    )
    if conflict:
        target = ", ".join(quote(c) for c in conflict)
        changes = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in update)
        if clause is not None and update:
            action = f"DO UPDATE {clause(update)}"
        else:
            action = f"DO UPDATE SET {changes}" if update else "DO NOTHING"
        sql += f" ON CONFLICT ({target}) {action}"
    return sql


@dataclass(frozen=True)
class Row:
    """One row to INSERT (fields not given take their defaults); with `on_conflict`, an upsert
    that changes only the `update` fields of an existing row (none: DO NOTHING), by
    `clause` when it is given (else each takes the new value)."""

    model: type[models.Model]
    values: dict[str, Any]
    on_conflict: tuple[str, ...] = ()
    update: tuple[str, ...] = ()
    clause: UpdateClause | None = None

    def params(self, using: str = DEFAULT_DB_ALIAS) -> list[Any]:
        return _params(self.model, self.values, using)

    @property
    def shape(self) -> "Shape":
        return self.model, self.on_conflict, self.update, self.clause

    def sql(self) -> str:
        return _insert_sql(*self.shape)


Shape = tuple[type[models.Model], tuple[str, ...], tuple[str, ...], UpdateClause | None]


# Field types whose conversion (get_prep_value: to_python, float(), bool(), and no adaptation
# by the backend) leaves a value of exactly this type as it is: such values, most of a
# callback's fifty, are bound as they are; every other value goes through its field. (Not
# integers: the PostgreSQL backend wraps them in psycopg's sized Int types.)
_UNCHANGED = {"CharField": str, "TextField": str, "FloatField": float, "BooleanField": bool}


@functools.cache
def _binding(model: type[models.Model]) -> list[tuple[models.Field[Any, Any], type | None]]:
    return [(field, _UNCHANGED.get(field.get_internal_type())) for field in _columns(model)]


def _params(model: type[models.Model], values: dict[str, Any], using: str) -> list[Any]:
    target = connections[using]
    params = []
    for column, unchanged in _binding(model):
        value = values[column.name] if column.name in values else column.get_default()
        params.append(value if type(value) is unchanged else column.get_db_prep_save(value, target))
    return params


_PLACEHOLDER = re.compile(r"%[s%]")


@functools.lru_cache(maxsize=256)
def _numbered(query: str) -> str:
    """`query` with PostgreSQL's own placeholders ($1, $2, …) for Django's %s (and %% as %).

    psycopg converts %s itself, but caches the conversion only for statements under 4 KB and
    50 parameters; a callback's chained write is longer, so it would be parsed again on every
    callback (a third of a millisecond of the web worker's time). These statements are fixed,
    so each is converted once here and sent through a raw cursor."""
    numbers = iter(range(1, query.count("%s") + 1))
    return _PLACEHOLDER.sub(lambda m: "%" if m.group() == "%%" else f"${next(numbers)}", query)


class _PreparedCursor(psycopg.RawCursor[Any]):
    """psycopg's server-binding cursor whose every statement is prepared (on first use)."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        if params is not None and isinstance(query, str):
            query = _numbered(query)
        try:
            return super().execute(query, params, prepare=True, **kwargs)
        except psycopg.errors.FeatureNotSupported:
            # "cached plan must not change result type": a migration changed a table under a
            # statement prepared here, which psycopg would go on using. Outside a transaction
            # (a callback's statements run in autocommit), forget them all and run it afresh;
            # inside one, the transaction's rollback forgets them.
            if self.connection.info.transaction_status != TransactionStatus.IDLE:
                raise
            super().execute("DEALLOCATE ALL", prepare=False)  # psycopg forgets them too
            return super().execute(query, params, prepare=True, **kwargs)


@contextlib.contextmanager
def prepared_cursor(using: str = DEFAULT_DB_ALIAS) -> Iterator[CursorWrapper]:
    """A cursor for a statement whose text never changes (values bound): on PostgreSQL it is
    prepared on this connection; elsewhere, or with DATABASE_PREPARED off, a plain cursor.

    It is Django's cursor wrapper around it, so errors, the current transaction, query logging
    and execute wrappers behave as with `connection.cursor()`."""
    target = connections[using]
    if target.vendor == "postgresql":  # as Django's own cursor() readies the connection
        target.close_if_health_check_failed()
        target.ensure_connection()
    if target.vendor != "postgresql" or target.connection.prepare_threshold is None:
        with target.cursor() as cursor:
            yield cursor
        return
    target.validate_thread_sharing()
    with target.wrap_database_errors:
        raw: Any = _PreparedCursor(target.connection)  # what Django wraps: a DB-API cursor
    wrap = target.make_debug_cursor if target.queries_logged else target.make_cursor
    with wrap(raw) as cursor:
        yield cursor


@dataclass(frozen=True)
class Condition:
    """A boolean SQL expression (values bound) that a write's first row waits on."""

    sql: str
    params: Sequence[Any] = ()


def insert_if_new(first: Row, then: Sequence[Row], only_if: Condition | None = None) -> bool:
    """Insert `first` unless its `on_conflict` key is taken (or, with `only_if`, unless that
    condition is false when it runs), and the `then` rows only if it was inserted: all or
    nothing. True when `first` was new.

    On PostgreSQL this is one statement (data-modifying WITH clauses), so one round trip and
    no BEGIN or COMMIT of its own; elsewhere a transaction of one statement per row.
    """
    if first.update or not first.on_conflict:
        raise ValueError("the first row needs on_conflict and no update")
    condition = only_if.sql if only_if else None
    first_params = [*first.params(), *(only_if.params if only_if else ())]
    if connection.vendor == "postgresql":
        statement = _chained_sql(first.shape, tuple(row.shape for row in then), condition)
        params = first_params + [value for row in then for value in row.params()]
        with prepared_cursor() as cursor:
            cursor.execute(statement, params)
            inserted = cursor.fetchone()
        return bool(inserted and inserted[0])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_first_sql(first.shape, condition), first_params)
        if cursor.rowcount != 1:
            return False
        for row in then:
            cursor.execute(row.sql(), row.params())
    return True


@functools.cache
def _select_insert_sql(shape: Shape, source: str) -> str:
    """INSERT … SELECT <values> <source> …: one row, only where `source` yields one (e.g.
    `FROM w0`, `WHERE <condition>`). On PostgreSQL the SELECTed values are cast to their
    columns' types, as VALUES would have them."""
    model, conflict, update, clause = shape
    if connection.vendor == "postgresql":
        values = ", ".join(f"%s::{c.cast_db_type(connection)}" for c in _columns(model))
    else:
        values = ", ".join(["%s"] * len(_columns(model)))
    plain = _insert_sql(model, (), ())
    head = plain[: plain.index(" VALUES ")]
    tail = _insert_sql(model, conflict, update, clause)[len(plain) :]
    return f"{head} SELECT {values} {source}{tail}"


def _first_sql(shape: Shape, condition: str | None) -> str:
    """The first row's INSERT: plain, or only where `condition` holds."""
    return _select_insert_sql(shape, f"WHERE {condition}") if condition else _insert_sql(*shape)


@functools.cache
def _chained_sql(first: Shape, then: tuple[Shape, ...], condition: str | None = None) -> str:
    """WITH w0 AS (INSERT … ON CONFLICT DO NOTHING RETURNING 1), w1 AS (INSERT … SELECT
    <values> FROM w0), … SELECT count(*) FROM w0."""
    clauses = [f"w0 AS ({_first_sql(first, condition)} RETURNING 1)"]
    clauses += [
        f"w{n} AS ({_select_insert_sql(shape, 'FROM w0')})" for n, shape in enumerate(then, 1)
    ]
    return f"WITH {', '.join(clauses)} SELECT count(*) FROM w0"  # noqa: S608 (names, no values)


def insert_row(row: Row, *, using: str = DEFAULT_DB_ALIAS) -> int:
    """Run one Row's INSERT (on the database `using`); how many rows it inserted or changed
    (0: an upsert whose update clause let the stored row be)."""
    with connections[using].cursor() as cursor:
        cursor.execute(row.sql(), row.params(using))
        return int(cursor.rowcount)
