"""What the relay says on the upstream pull request, and what it does when asked there.

- `labels`: which `ciflow/crcr/<device>` labels a PR carries (an L3 repo's check runs wait
  for its device's label).
- `check_runs`: one check run per downstream job attempt (L3 labelled, L4), and an L4 repo's
  aggregate check run per head, sent through a database outbox.
- `comment`: the one sticky comment per PR listing what is red downstream.
- `reruns`: `check_run` / `check_suite` `rerequested` re-run the downstream runs behind them.

Every GitHub call here goes through a row the worker sends (relay/leases.py), never from a
webhook's or a callback's request, so a GitHub failure never fails either.
"""
