"""What watching the relay costs: the callback cost ratio with metrics and JSON logs on, against
off, in the same run.

Two gunicorns (WORKERS sync workers each) serve the same database and Redis: one with
CRCR_METRICS=true, LOG_FORMAT=json and Prometheus's multiprocess directory, one with
CRCR_METRICS=false and plain logs; both log at INFO to a file, as a deployment would. Rounds
alternate ABBA (each kind first in every other round); a round's ratio is its callbacks/s
against the /livez rate of the same server before and after it, as bench/callbacks.py
measures the cost ratio. The figure is the medians' ratio.

    .venv/bin/python bench/observability.py [--rounds 4 --pairs 800 --clients 16 --workers 4]

Target: on / off - 1 <= +10 %.
"""

import argparse
import statistics
import tempfile
from pathlib import Path

import urllib3
from callbacks import REPOS, closed_loop, pairs
from harness import DEFAULT_DATABASE, relay_stack, trusting, upstream_event

from sandbox.oidc import SimulatedIssuer
from tests.servers import Gunicorn

OFF = {"CRCR_METRICS": "false", "LOG_FORMAT": "plain", "LOG_LEVEL": "INFO"}
ON = {"CRCR_METRICS": "true", "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="rounds of each kind")
    parser.add_argument("--pairs", type=int, default=800, help="pairs in a round")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    args = parser.parse_args()

    issuer = SimulatedIssuer("github").start()
    scratch = tempfile.TemporaryDirectory()
    logs = Path(scratch.name)
    extra = trusting(issuer) | OFF
    with relay_stack(database=args.database, workers=args.workers, extra_env=extra,
                     server_log=logs / "off.log") as stack:  # fmt: skip
        (logs / "prometheus").mkdir()
        on_env = stack.env | ON | {"PROMETHEUS_MULTIPROC_DIR": str(logs / "prometheus")}
        watched = Gunicorn(on_env, workers=args.workers, log=logs / "on.log").wait_ready()
        try:
            stack.set_allowlist(REPOS)
            stack.send_event(upstream_event(), "observed")
            payloads = stack.client_payloads("observed")
            http = urllib3.PoolManager(maxsize=64)
            servers = {"off": stack.server.url, "on": watched.url}
            trivial = {
                kind: [("GET", f"{url}/livez", None, "x")] * 6 * args.pairs
                for kind, url in servers.items()
            }
            for kind, url in servers.items():  # warm: tokens, connections, imports
                closed_loop(http, pairs(issuer, payloads, f"{url}/github/callback", 50,
                                        f"warm-{kind}"), args.clients)  # fmt: skip

            def livez(kind: str) -> float:
                return len(trivial[kind]) / closed_loop(http, trivial[kind], args.clients)[0]

            ratios: dict[str, list[float]] = {"on": [], "off": []}
            for round_ in range(args.rounds):
                for kind in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                    url = f"{servers[kind]}/github/callback"
                    load = pairs(issuer, payloads, url, args.pairs, f"{kind}-{round_}")
                    before = livez(kind)
                    seconds, statuses = closed_loop(http, load, args.clients)
                    if any(s != 200 for s in statuses):
                        raise SystemExit(f"answers not 200: {sorted(set(statuses))}")
                    after = livez(kind)
                    ratios[kind].append((before + after) / 2 / (len(load) / seconds))
            lines = sum(1 for _ in (logs / "on.log").open())
        finally:
            watched.stop()
        on, off = statistics.median(ratios["on"]), statistics.median(ratios["off"])
        print(
            f"gunicorn: {args.workers} workers each; {args.clients} callers; "
            f"{args.rounds} rounds of {args.pairs} pairs each way; {lines} JSON log lines\n"
        )
        print(
            f"cost ratio        {on:6.2f} with metrics and JSON logs, {off:.2f} without: "
            f"{(on / off - 1) * 100:+.1f} %  (target <= +10 %; rounds on "
            f"{', '.join(f'{r:.2f}' for r in ratios['on'])}, off "
            f"{', '.join(f'{r:.2f}' for r in ratios['off'])})"
        )
    scratch.cleanup()
    issuer.stop()


if __name__ == "__main__":
    main()
