"""Already failing on main: a downstream job that is red on a PR may be red on the upstream's
main branch too, and then the PR did not break it.

The baseline of a repo's job is its results on main over the last MAIN_DAYS: pushes to the
upstream's default branch (the commits hud.models.UpstreamCommit holds, as their webhooks
named the branch) and nightly or periodic runs. Its newest result that says anything (not
cancelled, skipped or neutral) decides: red there means "also failing on main", since the
oldest SHA of the run of red results that ends at it. The sticky PR comment
(relay/upstream_pr/comment.py), the PR page and the repo page's matrix all ask here.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta

from hud.models import UpstreamCommit
from hud.reports import RED, Kind, MatrixRow, Window
from hud.storage import RecordStore

MAIN_DAYS = 14  # how far back main's results are read
MAIN_ROWS = 100  # main's newest SHAs read per repo and kind
NO_INFORMATION = ("cancelled", "skipped", "neutral")  # main results that say nothing either way


def main_shas(upstream_repo: str, *, now: datetime, branch: str | None = None) -> set[str]:
    """The SHAs pushed to the upstream's default branch (or to `branch`) within MAIN_DAYS."""
    commits = UpstreamCommit.objects.filter(
        upstream_repo__iexact=upstream_repo, pushed_at__gte=now - timedelta(days=MAIN_DAYS)
    )
    if branch is None:
        commits = commits.filter(on_default_branch=True)
    else:
        commits = commits.filter(ref=f"refs/heads/{branch}")
    return set(commits.values_list("sha", flat=True))


def failing_on_main(
    store: RecordStore, key: str, jobs: Iterable[str], shas: set[str], *, now: datetime
) -> dict[str, str]:
    """Job name → the main SHA since which it fails there, for those of `jobs` whose latest
    main result (a push of one of `shas`, a nightly or periodic run) is red."""
    wanted = set(jobs)
    if not wanted:
        return {}
    window = Window(MAIN_DAYS, now)
    pushes = store.matrix(key, window, Kind.PR, pr=0, per_page=MAIN_ROWS).rows
    rows: list[MatrixRow] = [row for row in pushes if row.head_sha in shas]
    rows += store.matrix(key, window, Kind.NIGHTLY, per_page=MAIN_ROWS).rows
    rows.sort(key=lambda row: row.last_at, reverse=True)
    since: dict[str, str] = {}
    for job in wanted:
        for row in rows:  # newest first: the run of red results that ends at the latest
            cell = row.cells.get(job)
            if cell is None or cell.status != "completed" or cell.conclusion in NO_INFORMATION:
                continue
            if cell.conclusion not in RED:
                break
            since[job] = row.head_sha
    return since
