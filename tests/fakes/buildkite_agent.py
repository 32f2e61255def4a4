"""`buildkite-agent oidc request-token` as a Buildkite agent answers it, signed with a simulated
Buildkite issuer's key: the claims Buildkite's docs show (tests/fixtures/oidc/), the optional
`organization_id` and `pipeline_id` only when asked for with --claim, the audience and lifetime
asked for. Each call is appended to $FAKE_BUILDKITE_CALLS. Configured by the environment the
test gives the job: FAKE_BUILDKITE_KEY (a PEM file), FAKE_BUILDKITE_KID, FAKE_BUILDKITE_ISSUER.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jwt


def main(argv: list[str]) -> int:
    with Path(os.environ["FAKE_BUILDKITE_CALLS"]).open("a") as calls:
        calls.write(json.dumps(argv) + "\n")
    if argv[:2] != ["oidc", "request-token"]:
        print(f"fake buildkite-agent: {' '.join(argv)} is not simulated", file=sys.stderr)
        return 1
    parser = argparse.ArgumentParser()
    parser.add_argument("--audience", default="https://buildkite.com/org")
    parser.add_argument("--lifetime", type=int, default=0)
    parser.add_argument("--claim", default="")
    asked = parser.parse_args(argv[2:])
    now = int(time.time())
    claims = {
        "iss": os.environ["FAKE_BUILDKITE_ISSUER"],
        "sub": "organization:org:pipeline:pipe:ref:refs/heads/main:commit:abc:step:test",
        "aud": asked.audience,
        "iat": now,
        "nbf": now,
        "exp": now + (asked.lifetime or 300),
        "organization_slug": "org",
        "pipeline_slug": "pipe",
        "build_branch": "main",
        "step_key": "test",
        "job_id": os.environ.get("BUILDKITE_JOB_ID", ""),
    }
    optional = {"organization_id": "org-uuid", "pipeline_id": "pipe-uuid"}
    claims |= {name: optional[name] for name in asked.claim.split(",") if name in optional}
    key = Path(os.environ["FAKE_BUILDKITE_KEY"]).read_text()
    print(
        jwt.encode(
            claims, key, algorithm="RS256", headers={"kid": os.environ["FAKE_BUILDKITE_KID"]}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
