"""Already failing on main: a downstream job that is red on a PR may be red on the upstream's
main branch too, and then the PR did not break it.

The baseline of a repo's job is its results on main over the last MAIN_DAYS: pushes to the
upstream's default branch (the commits hud.models.UpstreamCommit holds, as their webhooks
named the branch) and nightly or periodic runs. Its newest result that says anything (not
cancelled, skipped or neutral) decides: red there means "also failing on main", since the
oldest SHA of the run of red results that ends at it. The sticky PR comment
(relay/upstream_pr/comment.py), the PR page and the repo page's matrix all ask here.
"""

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from hud.models import UpstreamCommit
from hud.reports import RED, MainResult, Window
from hud.storage import RecordStore

MAIN_DAYS = 14  # how far back main's results are read
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
    store: RecordStore, jobs: Mapping[str, Iterable[str]], shas: set[str], *, now: datetime
) -> dict[str, dict[str, str]]:
    """Repo key → job name → the main SHA since which it fails there, for the `jobs` of each
    repo whose latest main result (a push of one of `shas`, a nightly or periodic run) is red:
    one read for every repo asked about."""
    wanted = {key: set(names) for key, names in jobs.items() if names}
    if not wanted:
        return {}
    every_job = sorted(set().union(*wanted.values()))
    results = store.main_results(sorted(wanted), every_job, sorted(shas), Window(MAIN_DAYS, now))
    newest_first: dict[tuple[str, str], list[MainResult]] = {}
    for result in results:  # (newest first)
        if result.job_name in wanted.get(result.repo_key, ()):
            newest_first.setdefault((result.repo_key, result.job_name), []).append(result)
    since: dict[str, dict[str, str]] = {}
    for (key, job), runs in newest_first.items():
        for run in runs:  # the run of red results that ends at the latest
            if run.status != "completed" or run.conclusion in NO_INFORMATION:
                continue
            if run.conclusion not in RED:
                break
            since.setdefault(key, {})[job] = run.head_sha
    return since
