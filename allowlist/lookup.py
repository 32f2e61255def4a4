"""The one allowlist lookup the relay and the HUD use.

Each process keeps the whole allowlist (tens of rows) in memory, keyed by the token of the
`Generation` row. Every write to the allowlist changes that token in the writer's transaction
(DownstreamRepo.save and delete), and every lookup reads it first: one primary-key SELECT instead of
loading the rows, and never stale after a commit, in this process or any other. Tokens are
random, so a snapshot taken inside a transaction that later rolls back can never be mistaken
for a committed one.

Failure mode: the database is the source of truth, so a lookup fails (raises) when the
database does; there is no stale fallback.
"""

import threading
from dataclasses import dataclass
from typing import Any

from django.db import connection

from allowlist.entry import Entry, repo_key
from allowlist.models import DownstreamRepo, Generation


@dataclass(frozen=True)
class Snapshot:
    """The enabled entries, in level, device and name order."""

    entries: tuple[Entry, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_key", {entry.key: entry for entry in self.entries})

    def get(self, repo: str) -> Entry | None:
        by_key: dict[str, Entry] = self._by_key  # type: ignore[attr-defined]
        return by_key.get(repo_key(repo))


_lock = threading.Lock()
_cached: tuple[str | None, Snapshot] | None = None


# The generation token, as a scalar subquery a caller may fold into a SELECT of its own (the
# callback does, to save a round trip); its one parameter is TOKEN_PARAMS.
TOKEN_SQL = f"SELECT token FROM {Generation._meta.db_table} WHERE id = %s"  # noqa: S608
TOKEN_PARAMS: list[Any] = [Generation.SINGLETON_ID]


def _current_token() -> str | None:
    # Every relay request runs this: one plain SELECT, without the ORM's per-query cost.
    with connection.cursor() as cursor:
        cursor.execute(TOKEN_SQL, TOKEN_PARAMS)
        row = cursor.fetchone()
    return str(row[0]) if row else None


def snapshot() -> Snapshot:
    """The allowlist as committed now (or as this transaction sees it)."""
    return snapshot_at(_current_token())


def snapshot_at(token: object) -> Snapshot:
    """The allowlist for a generation token the caller has just read with TOKEN_SQL."""
    global _cached
    token = None if token is None else str(token)
    cached = _cached
    if cached is not None and token is not None and cached[0] == token:
        return cached[1]
    rows = DownstreamRepo.objects.filter(enabled=True).order_by("level", "device", "repo")
    fresh = Snapshot(tuple(row.to_entry() for row in rows))
    with _lock:
        _cached = (token, fresh)
    return fresh


def last_read() -> tuple[str, Snapshot] | None:
    """The snapshot this process read last and its token, without asking the database; only
    for a caller whose write checks that token in the same statement (it may be stale)."""
    cached = _cached
    if cached is None or cached[0] is None:
        return None
    return cached[0], cached[1]


def is_current_sql(token: str) -> tuple[str, list[Any]]:
    """A condition true while `token` is the committed generation: SQL and its parameters."""
    return f"({TOKEN_SQL}) = %s", [*TOKEN_PARAMS, token]


def repos_for_event(event: str) -> tuple[Entry, ...]:
    """Repos taking part in an upstream or callback event (`push` follows `pull_request`)."""
    return tuple(e for e in snapshot().entries if e.takes_part_in(event))
