"""Callbacks under load while the relay's parts fail: nothing answered 200 is lost or changed.

Distinct jobs report in_progress then completed (success or failure) at a steady rate, with
valid tokens, against gunicorn on a PostgreSQL cluster of this run's own (never the shared
server) and a redis-server of its own, while one part fails:

- `redis`: redis-server killed, then restarted empty (no persistence, as on this machine);
- `postgres`: the cluster stopped, then started again;
- `workers`: every gunicorn worker killed with SIGKILL (its master starts new ones), twice.

Every answer is counted (200, 409, 429, 503, other 5xx, no answer), with how long it took and
whether a 503 said Retry-After. Afterwards every callback that was not answered 200 is sent
again (the reporter's retry) until it is, and the database is read: a job is *lost* if a
callback of it was answered 200 and its record does not show it, *flipped* if its record's
conclusion is not the one reported. Goal: 0 x 500, 0 lost, 0 flipped, every 503 within 3 s
with Retry-After, every resend accepted.

    python bench/faults.py                    # each fault, 20 callbacks/s for 40 s
    python bench/faults.py --fault postgres --rate 20 --seconds 60

tests/relay/test_faults.py runs the short variant of each in the test suite.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import harness  # noqa: F401 (puts the project on the path)

from tests.faults import FAULTS, fault_stack, run_fault


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fault", choices=FAULTS, action="append")
    parser.add_argument("--rate", type=float, default=20.0, help="callbacks a second")
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--down", type=float, default=10.0, help="seconds the part stays down")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    clean = True
    with (
        tempfile.TemporaryDirectory() as scratch,
        fault_stack(Path(scratch), workers=args.workers) as (stack, issuer, payload),
    ):
        print(
            f"gunicorn x {args.workers}, {args.rate:g} callbacks/s for {args.seconds:g} s; "
            f"each part down {args.down:g} s from {args.seconds / 4:g} s\n"
        )
        for fault in args.fault or FAULTS:
            result = run_fault(
                    fault, stack, issuer, payload, rate=args.rate, seconds=args.seconds,
                    fault_at=args.seconds / 4, down=args.down,
                )  # fmt: skip
            print("\n".join(result.lines()), flush=True)
            clean &= result.clean
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
