"""Fan-out under chaos: no dispatch lost, none sent twice but where GitHub took one and timed
out its answer.

1,000 upstream pull_request events to 20 allowlisted repos, sent 16 at a time, while the
simulated GitHub fails 20 % of all its calls at random (5xx; hanging past the relay's timeout;
a secondary rate limit with Retry-After; or doing the dispatch and then hanging), and the web
process (gunicorn, every process of it) is killed with SIGKILL twice mid-run and started again.
`manage.py worker` runs throughout (retries, the dispatch sweep, lost-webhook recovery).
Afterwards, once nothing is pending: every (delivery, repo) must have been dispatched, and
none twice except where GitHub took a dispatch and timed out the answer (counted apart).

    python bench/chaos.py                      # 1,000 events x 20 repos, 20 %, 2 kills
    python bench/chaos.py --events 200 --repos 10

tests/relay/test_chaos.py runs a short variant.
"""

import argparse
import sys

import harness  # noqa: F401 (puts the project on the path)

from tests.chaos import chaos_run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--repos", type=int, default=20)
    parser.add_argument("--failure", type=float, default=0.2, help="share of GitHub calls")
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    args = parser.parse_args()
    report = chaos_run(
        events=args.events, repos=args.repos, failure=args.failure, kills=args.kills,
        workers=args.workers,
    )  # fmt: skip
    print("\n".join(report.lines()))
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
