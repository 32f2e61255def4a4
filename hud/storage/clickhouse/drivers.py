"""The two ways to reach ClickHouse; the SQL (queries.py) is the same for both.

- `ServerDriver`: a ClickHouse server over HTTP(S), through clickhouse-connect
  (`HUD_CLICKHOUSE_URL=https://user:password@host:8443/database`).
- `ChdbDriver`: chdb, ClickHouse's engine inside this process (`HUD_CLICKHOUSE_URL=chdb:///path`).
  chdb keeps its data under one directory that only one process may open at a time: use it for
  the demo, the tests and the benchmark, served by a single process (runserver, or gunicorn with
  one worker). It is opened lazily, on the first query.

Queries take ClickHouse's typed placeholders (`{name:Type}`) with scalar values only; variable
lists are spelled out as several placeholders by the caller. Rows come back as tuples of Python
values, timestamps as aware UTC datetimes.
"""

import json
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson


class Driver(Protocol):
    def select(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a SELECT; its rows."""
        ...

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        """Run a statement that returns nothing (DDL, DELETE)."""
        ...

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Insert rows (values in `columns` order)."""
        ...

    def close(self) -> None:
        """Let go of the connection (chdb: of the engine, so another process may open it)."""
        ...


def driver_for(url: str) -> Driver:
    if url.startswith("chdb://"):
        return ChdbDriver(urlsplit(url).path or "/tmp/crcr-chdb")  # noqa: S108 (a default)
    if url.startswith(("http://", "https://")):
        return ServerDriver(url)
    raise ValueError(f"HUD_CLICKHOUSE_URL must be http(s)://... or chdb:///path, not {url!r}")


def _text(value: Any) -> str:
    """A parameter or JSONEachRow value in ClickHouse's text form (a list: an array)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, list):
        return f"[{','.join(map(_quoted, value))}]"
    if isinstance(value, str):  # read as TSV's escaped text: a raw tab or newline ends it
        return value.translate(_ESCAPED)
    return str(value)


# Backslash escapes of a string parameter (TSV's escaped text) and, with the quote, of a
# string inside a quoted literal (an array parameter's elements), as ClickHouse reads them.
_BACKSLASHED = {
    "\\": "\\\\",
    "\n": "\\n",
    "\t": "\\t",
    "\r": "\\r",
    "\0": "\\0",
    "\b": "\\b",
    "\f": "\\f",
}
_ESCAPED = str.maketrans(_BACKSLASHED)
_ESCAPES = str.maketrans(_BACKSLASHED | {"'": "\\'"})


def _quoted(value: Any) -> str:
    """An array element or tuple field as a ClickHouse literal: strings quoted and escaped."""
    if isinstance(value, str):
        return f"'{value.translate(_ESCAPES)}'"
    if isinstance(value, tuple):
        return f"({','.join(map(_quoted, value))})"
    if isinstance(value, bool | int):
        return str(int(value))
    raise TypeError(f"no ClickHouse literal for {type(value).__name__}")


def _timestamp(value: Any) -> Any:
    return datetime.fromisoformat(value).replace(tzinfo=UTC) if isinstance(value, str) else value


def _day(value: Any) -> Any:
    return date.fromisoformat(value) if isinstance(value, str) else value


def _integer(value: Any) -> Any:
    return int(value) if isinstance(value, str) else value  # 64-bit integers come quoted


def _converter(kind: str) -> Callable[[Any], Any] | None:
    """How a JSONCompact column of this type becomes Python (None: as it is). Decided once
    per column, not per value: a page reads thousands of values."""
    plain = kind.removeprefix("Nullable(").removeprefix("LowCardinality(")
    if plain.startswith("DateTime"):
        return _timestamp
    if plain.startswith("Date"):
        return _day
    if plain.startswith(("Int64", "UInt64", "Int128", "UInt128")):
        return _integer
    return None


# ClickHouse compiles an expression to machine code the first times a statement uses it. The
# HUD's statements are many and each reads little: the first run of each paid 20-40 ms for
# its compilation (a page's first render on ClickHouse 138 ms, without it 75), and later runs
# gained under a tenth. Set for every session and client.
SETTINGS = {
    "compile_expressions": 0,
    "compile_aggregate_expressions": 0,
    "compile_sort_description": 0,
}


def _unavailable(exc: Exception) -> Exception:
    from hud.storage import StoreUnavailable

    return StoreUnavailable(f"ClickHouse: {type(exc).__name__}: {str(exc)[:300]}")


class ChdbDriver:
    def __init__(self, path: str) -> None:
        self.path = path
        self._session: Any = None
        self._lock = threading.Lock()

    def _query(self, sql: str, fmt: str, params: dict[str, Any] | None) -> Any:
        with self._lock:  # one session, one query at a time
            if self._session is None:
                from chdb import session

                self._session = session.Session(self.path)
                for name, value in SETTINGS.items():
                    self._session.query(f"SET {name} = {value}")
            texts = {name: _text(value) for name, value in (params or {}).items()}
            try:
                return self._session.query(sql, fmt, params=texts or None)
            except Exception as exc:  # chdb raises its own error types
                raise _unavailable(exc) from exc

    def select(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        # orjson: a PR page's million bytes of JSON parse in a third of json's time (8 ms, 21).
        result = orjson.loads(self._query(sql, "JSONCompact", params).bytes() or b'{"data": []}')
        columns = [_converter(column["type"]) for column in result.get("meta", [])]
        # Only the columns that need it are converted, in place (the rows are JSON's lists).
        converting = [(n, c) for n, c in enumerate(columns) if c is not None]
        rows = result["data"]
        for row in rows if converting else ():
            for n, convert in converting:
                if row[n] is not None:
                    row[n] = convert(row[n])
        return [tuple(row) for row in rows]

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._query(sql, "CSV", params)

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        lines = [
            json.dumps(
                {
                    c: _text(v) if isinstance(v, datetime) else v
                    for c, v in zip(columns, row, strict=True)
                }
            )
            for row in rows
        ]
        if lines:
            self._query(f"INSERT INTO {table} FORMAT JSONEachRow\n" + "\n".join(lines), "CSV", None)

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None


class ServerDriver:
    def __init__(self, url: str) -> None:
        self.url = url
        self._client: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._client is None:
                import clickhouse_connect

                self._client = clickhouse_connect.get_client(dsn=self.url, settings=SETTINGS)
            return self._client

    def select(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            result = self._get().query(sql, parameters=params or {}, query_tz="UTC")
        except Exception as exc:  # clickhouse-connect: connection and server errors alike
            raise _unavailable(exc) from exc
        return [
            tuple(
                v.replace(tzinfo=UTC) if isinstance(v, datetime) and not v.tzinfo else v
                for v in row
            )
            for row in result.result_rows
        ]

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        try:
            self._get().command(sql, parameters=params or {})
        except Exception as exc:
            raise _unavailable(exc) from exc

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        data = [list(row) for row in rows]
        if data:
            try:
                self._get().insert(table, data, column_names=list(columns))
            except Exception as exc:
                raise _unavailable(exc) from exc

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
