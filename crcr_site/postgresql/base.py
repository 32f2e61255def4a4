"""Django's PostgreSQL backend, failing fast while the server is known to be down.

While PostgreSQL is down, every request would wait out the connection (or pool checkout)
timeout, so the workers fill up and answers queue far past the timeout itself. Once a
connection attempt has failed, the next ones in this process fail at once for
DATABASE_FAIL_FAST seconds, then one is tried again: every answer, the 503 included, comes
within about the timeout (crcr_site/settings.py DATABASE_TIMEOUT).
"""

import time
from typing import Any

import psycopg
from django.conf import settings
from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    # When the last connection attempt of this process failed, plus DATABASE_FAIL_FAST
    # (time.monotonic()); shared by every thread and alias.
    _down_until = 0.0

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if time.monotonic() < DatabaseWrapper._down_until:
            raise psycopg.OperationalError(
                "PostgreSQL was unreachable a moment ago; not trying again yet"
            )
        try:
            return super().get_new_connection(conn_params)
        except psycopg.OperationalError:
            DatabaseWrapper._down_until = time.monotonic() + settings.DATABASE_FAIL_FAST
            raise
