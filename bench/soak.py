"""A long run of mixed traffic: the relay's memory and Redis stay flat, and every Redis key has
a TTL.

50 callbacks/s (distinct jobs: in_progress, then completed a second later) over five repos, a
new upstream event every 10 s (so dispatches keep coming), and HUD page reads, against
gunicorn x 4 for 30 minutes. Every 30 s: the gunicorn workers' RSS, Redis's key count and
memory. The first third is warm-up; the mean of the last third against the middle one must
grow less than 10 %, every answer must be below 500, and no key may be left without a TTL.
Redis keys live CRCR_DISPATCH_TTL (3 days in production), so their count levels off once the
oldest expire: the run sets it to 2 minutes to reach that plateau within the warm-up.

    python bench/soak.py                         # 30 minutes at 50 callbacks/s
    python bench/soak.py --minutes 5 --rate 20

tests/relay/test_soak.py runs a short variant.
"""

import argparse
import sys

import harness  # noqa: F401 (puts the project on the path)

from tests.soak import soak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=50.0, help="callbacks a second")
    parser.add_argument("--ttl", type=int, default=120, help="CRCR_DISPATCH_TTL, seconds")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    args = parser.parse_args()
    report = soak(seconds=args.minutes * 60, rate=args.rate, ttl=args.ttl, every=args.every)
    print("\n".join(report.lines()))
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
