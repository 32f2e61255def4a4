"""Before the tests: do PostgreSQL and redis-server answer? Say exactly what is missing."""

import os
import shutil
import subprocess
import sys

import psycopg


def main() -> int:
    problems = []
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        problems.append(f"DATABASE_URL must point at PostgreSQL for the tests, got {url!r}")
    else:
        try:
            psycopg.connect(url, connect_timeout=5).close()
        except psycopg.Error as exc:
            problems.append(
                f"PostgreSQL does not answer at {url}: {str(exc).strip()}\n"
                "  start it (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main "
                "start) or run .ci/run, which installs and starts it"
            )
    server = shutil.which("redis-server")
    if server is None:
        problems.append("redis-server is not installed (apt-get install redis-server)")
    else:
        subprocess.run([server, "--version"], check=True, capture_output=True)
    for problem in problems:
        print(f"make test: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
