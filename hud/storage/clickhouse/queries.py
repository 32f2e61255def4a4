"""Every statement the ClickHouse backend runs, in one place, for both drivers.

The table is a ReplacingMergeTree keyed like contract §3: a record's new version is a whole new
row with a higher `version`, and every read says FINAL, so it sees only the latest version of
each key (exact, whatever the background merges have done so far).
"""

from collections.abc import Sequence
from typing import Any

from hud.reports import COUNT_CONDITIONS, upstream_failure
from hud.storage.base import KEY_FIELDS

TABLE = "hud_job"
COLUMNS: dict[str, str] = {
    "downstream_repo": "String",
    "delivery_id": "String",
    "workflow_name": "String",
    "job_name": "String",
    "check_run_id": "String",
    "repo_display": "String",
    "upstream_repo": "String",
    "event_type": "LowCardinality(String)",
    "level": "LowCardinality(String)",
    "pr_number": "UInt32",
    "head_sha": "String",
    "workflow_run_url": "String",
    "run_id": "String",
    "run_attempt": "UInt32",
    "status": "LowCardinality(String)",
    "conclusion": "LowCardinality(String)",
    "queue_time": "Nullable(Float64)",
    "execution_time": "Nullable(Float64)",
    "started_at": "Nullable(DateTime64(6, 'UTC'))",
    "completed_at": "Nullable(DateTime64(6, 'UTC'))",
    "tests_passed": "Nullable(UInt32)",
    "tests_failed": "Nullable(UInt32)",
    "tests_skipped": "Nullable(UInt32)",
    "tests_total": "Nullable(UInt32)",
    "failed_tests_detail": "String",  # JSON text, '' when none
    "artifact_url": "String",
    "triage_verdict": "String",  # JSON text, '' when none
    "source": "LowCardinality(String)",
    "received_at": "DateTime64(6, 'UTC')",
    "updated_at": "DateTime64(6, 'UTC')",
    "version": "UInt64",
}
JSON_COLUMNS = ("failed_tests_detail", "triage_verdict")

# Schema versions, applied in order by `manage.py hud_clickhouse_migrate`; never edit one.
#
# Rows of one key are versions to collapse, so the sorting key must identify a record; it also
# decides what a query can skip. A record's received_at never changes (it is when the record
# was first received), so (repo, received_at, key) still identifies a record, and a window of
# days reads only its weekly partitions and, within them, only its repo's granules. PR numbers
# grow with time: a minmax index lets the PR page skip most granules.
MIGRATIONS: tuple[str, ...] = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    + ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
    + ", INDEX pr_number_idx pr_number TYPE minmax GRANULARITY 1"
    + ") ENGINE = ReplacingMergeTree(version) "
    + "PARTITION BY toMonday(received_at) "
    + f"ORDER BY (downstream_repo, received_at, {', '.join(KEY_FIELDS[1:])})",
)
MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS hud_schema_migrations (version UInt32, applied_at DateTime "
    "DEFAULT now()) ENGINE = MergeTree ORDER BY version"
)

COUNTS = ", ".join(f"countIf({condition})" for condition in COUNT_CONDITIONS)
# A failure triaged upstream (hud/reports.py); '' for no verdict, JSON that is not an object,
# or a category that is not a string. Read only with the toggle: it reads the verdicts.
UPSTREAM = upstream_failure("JSONExtractString(triage_verdict, 'category')")
OUTCOME = "if(status = 'completed', conclusion, 'in_progress')"


# A record's outcome as the number a tally keys it by: 1-4 the first four COUNT_CONDITIONS
# (success, failure, timed out, cancelled), 0 a completed job's other conclusions (skipped,
# neutral, …), 5 not completed.
OUTCOME_CODE = (
    "multiIf(status <> 'completed', 5, "
    + "".join(f"{condition}, {n}, " for n, condition in enumerate(COUNT_CONDITIONS[:4], 1))
    + "0)"
)


def tally(where: str, flags: Sequence[str] = ()) -> str:
    """Every count of the rows matching `where` as one aggregate: a sumMap of ones over a key
    packing each row's UTC day, a bit for each of `flags` (conditions or flag columns) and its
    OUTCOME_CODE, which store._Tally reads back. Each countIf (one count, window or day) cost
    ClickHouse's analyser about half a millisecond before a row was read: the repo page's
    24 of them 12 ms, /crcr's 11 a third of its statement."""
    bits = "".join(f" + toUInt64({flag}) * {8 << n}" for n, flag in enumerate(flags))
    key = f"toUInt64(toDate(received_at)) * {8 << len(flags)}{bits} + {OUTCOME_CODE}"
    return f"sumMapIf([{key}], [toUInt64(1)], {where})"


# The latest attempt of each job first; LIMIT 1 BY keeps it.
LATEST = "ORDER BY run_attempt DESC, received_at DESC, check_run_id DESC"


# Nearest-rank percentiles (rank ⌈n·p⌉, hud/reports.py). quantileExact returns the element at
# 0-based position ⌊n·level⌋ (partial sort, no full array); with level = p - 1e-9 that position
# is ⌈n·p⌉ - 1 for every n below 10⁸, the nearest rank. NULL when nothing qualified.
def percentiles(column: str, condition: str, *levels: float) -> list[str]:
    """One expression per level, from one quantilesExactIf pass. Over no rows that says 0s,
    so each is NULL where `average` of the same rows is: the very expression of a statement's
    own average column, which ClickHouse computes once for both (a countIf guard was one
    more aggregate to analyse)."""
    qualified = _measured(column, condition)
    values = f"quantilesExactIf({_levels(levels)})({column}, {qualified})"
    empty = f"isNull({average(column, qualified)})"
    return [f"if({empty}, NULL, {values}[{n}])" for n in range(1, len(levels) + 1)]


def average(column: str, qualified: str) -> str:
    """The average of a nullable column over the rows matching `qualified` (which leaves out
    its NULLs): avgIf is NULL over no rows by itself, no count needed to guard it."""
    return f"avgIf({column}, {qualified})"


def _measured(column: str, condition: str) -> str:
    """The rows matching `condition` that measured `column`."""
    return f"{condition} AND {column} IS NOT NULL"


def _levels(levels: Sequence[float]) -> str:
    """Nearest-rank levels as quantileExact's parameters (see percentiles)."""
    return ", ".join(f"{level} - 1e-9" for level in levels)


def daily_percentiles(*measures: tuple[str, str], days: range) -> list[str]:
    """Per UTC day of `days` (numbered from 1970-01-01), the p50 and p90 of each (column,
    condition) in `measures` and how many rows qualified (NULL is then told by 0): two
    -Resample aggregates each, inside a per-repo aggregate, where a GROUP BY day beside the
    repo's (grouping sets) computed every other aggregate per day too."""
    columns = []
    day = "toUInt32(toDate(received_at))"
    bounds = f"{days.start}, {days.stop}, 1"
    for column, condition in measures:
        qualified = _measured(column, condition)
        columns += [
            f"quantilesExactIfResample({_levels((0.5, 0.9))}, {bounds})"
            f"({column}, {qualified}, {day})",
            f"countIfResample({bounds})({qualified}, {day})",
        ]
    return columns


def daily_percentiles_of(row: Sequence[Any]) -> list[list[tuple[Any, Any]]]:
    """daily_percentiles' columns read back: for each measure, each day's (p50, p90), both
    None on a day where nothing qualified."""
    return [
        [(p50, p90) if n else (None, None) for (p50, p90), n in zip(levels, counted, strict=True)]
        for levels, counted in zip(row[0::2], row[1::2], strict=True)
    ]


def in_list(name: str, values: Sequence[str], params: dict[str, Any]) -> str:
    """`{name:Array(String)}`, the values one array parameter (for `x IN ...`): one
    placeholder however many values, where one a value cost ClickHouse's analyser about
    0.1 ms each (a 200-pair IN took 37 ms, 10 as an array)."""
    params[name] = list(values)
    return f"{{{name}:Array(String)}}"


WINDOW = "received_at >= {start:DateTime64(6, 'UTC')} AND received_at < {end:DateTime64(6, 'UTC')}"
