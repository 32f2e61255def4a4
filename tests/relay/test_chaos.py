"""The fan-out under chaos, the short variant of bench/chaos.py (issue 13): upstream events to
several repos while the simulated GitHub fails a fifth of its calls at random and the web
process is killed mid-run. Every (delivery, repo) is dispatched, none twice but where GitHub
took one and timed out its answer."""

from tests.chaos import chaos_run


def test_every_dispatch_goes_out_once_while_github_fails_and_the_web_process_is_killed():
    report = chaos_run(events=60, repos=4, failure=0.2, kills=1, settle=120)

    print("\n".join(report.lines()))
    assert report.missing == []
    assert report.twice_other == []
    assert report.gave_up == 0
    assert report.github_faults > 0  # (the chaos happened)
