"""Migration operations of our own, for migrations that must be safe online (docs/operations.md)."""

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db.migrations.operations import AddIndex


class AddIndexOnline(AddIndexConcurrently):
    """An index built with PostgreSQL's CREATE INDEX CONCURRENTLY: callbacks' writes to the
    table go on while it builds (a plain AddIndex holds them for the whole build). Elsewhere
    (SQLite, the embedded default), or inside a transaction (a test's), a plain AddIndex.

    Its migration sets `atomic = False`, as CONCURRENTLY runs outside a transaction. A build
    that fails leaves an INVALID index; drop it (DROP INDEX CONCURRENTLY) and migrate again."""

    def database_forwards(self, app_label: str, schema_editor: Any, *states: Any) -> None:
        if _concurrently(schema_editor):
            super().database_forwards(app_label, schema_editor, *states)
        else:
            AddIndex.database_forwards(self, app_label, schema_editor, *states)

    def database_backwards(self, app_label: str, schema_editor: Any, *states: Any) -> None:
        if _concurrently(schema_editor):
            super().database_backwards(app_label, schema_editor, *states)
        else:
            AddIndex.database_backwards(self, app_label, schema_editor, *states)


def _concurrently(schema_editor: Any) -> bool:
    connection = schema_editor.connection
    return connection.vendor == "postgresql" and not connection.in_atomic_block
