"""A temporary demotion (allowlist/levels.py, from hud/levels.py's evaluation) against the
check runs: none new for the repo while it stands, the running ones finish."""

from allowlist import levels
from tests.relay.upstream_pr.support import L4, creates, report, sent_all, shown
from tests.waiting import wait_until


def test_a_temporary_demotion_makes_no_new_check_runs_and_running_ones_finish(
    signal,
    client,
    actions,
):
    report(client, actions, signal, L4, "in_progress", job="build")
    wait_until(sent_all)
    made = len(creates(signal))

    assert levels.suspend(L4, "temporary demotion L4→L3: pass rate 50% over 7 days")
    report(client, actions, signal, L4, "in_progress", job="test")
    report(client, actions, signal, L4, "completed", job="build", conclusion="success")
    wait_until(sent_all)

    assert len(creates(signal)) == made
    assert shown(signal, f"crcr/{L4}/CI/test") is None
    build = shown(signal, f"crcr/{L4}/CI/build")
    assert (build["status"], build["conclusion"]) == ("completed", "success")
