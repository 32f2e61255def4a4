"""Long fuzz runs: no generated input makes a 5xx, and the API keeps to its schema.

- the property tests of tests/relay/test_hostile_input.py (hypothesis: generated values for
  every field of callbacks, ingest envelopes and signed webhooks, against real PostgreSQL and
  Redis) and tests/hud/test_schema_fuzz.py (schemathesis over the OpenAPI schema, positive
  and negative), each with CRCR_FUZZ_EXAMPLES examples (the suite runs 60 and 25);
- schemathesis's own runner, `st run --checks all`, against the relay under gunicorn with the
  demo's history loaded (every phase: examples, coverage, fuzzing).

    python bench/fuzz.py                    # 2,000 examples a test, st run with 2,000
    python bench/fuzz.py --examples 300
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import harness
from harness import ROOT, relay_stack


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000)
    args = parser.parse_args()
    env = os.environ | {"CRCR_FUZZ_EXAMPLES": str(args.examples)}
    env.setdefault("DATABASE_URL", harness.DEFAULT_DATABASE)
    tests = [
        "tests/relay/test_hostile_input.py",
        "tests/hud/test_schema_fuzz.py",
        "-k", "no_ or schema",
        "-q", "-p", "no:cacheprovider",
    ]  # fmt: skip
    print(f"property tests, {args.examples} examples each:", flush=True)
    failed = subprocess.run([sys.executable, "-m", "pytest", *tests], cwd=ROOT, env=env).returncode
    with relay_stack(workers=2) as stack:
        stack.set_allowlist(["org/alpha", "org/beta"])
        stack.run_django("from sandbox import history\nhistory.load(days=7, prs=12)")
        print(f"\nst run --checks all, {args.examples} examples an operation:", flush=True)
        failed |= subprocess.run(
            [
                str(Path(sys.executable).parent / "st"),
                "--config-file", str(ROOT / "bench/schemathesis.toml"),
                "run", "--checks", "all",
                "--max-examples", str(args.examples), "--seed", "13",
                f"{stack.server.url}/api/crcr/schema",
            ],
            cwd=ROOT,
        ).returncode  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
