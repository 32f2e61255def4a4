"""What GitHub holds about a downstream repo, asked once through the App (relay/github.py):
the installation that covers it and its permissions, the repo's default branch, and the
workflow files on that branch. The first failure stops the asking and is kept as a `Problem`,
said in words an operator can act on."""

import logging
from dataclasses import dataclass

from django.conf import settings

from relay.doctor import workflow
from relay.github import (
    GitHubError,
    GitHubUnavailable,
    Installation,
    NotConfigured,
    NotFound,
    NotInstalled,
    RateLimited,
    Rejected,
    Repository,
    get_app,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    asking: str  # what GitHub was being asked: "installation" or "contents"
    finding: str
    next_step: str
    not_installed: bool = False


@dataclass(frozen=True)
class Found:
    installation: Installation | None = None
    repository: Repository | None = None
    workflows: tuple[workflow.Workflow, ...] | None = None  # None: not read
    problem: Problem | None = None


def find(repo: str) -> Found:
    app = get_app()
    try:
        installation = app.installation(repo)
    except (GitHubError, KeyError, TypeError, ValueError) as exc:
        return Found(problem=_problem("installation", repo, exc))
    try:
        repository = app.repository(repo)
        files = app.workflow_files(repository.full_name, repository.default_branch)
    except (GitHubError, KeyError, TypeError, ValueError) as exc:
        return Found(installation, problem=_problem("contents", repo, exc))
    read = tuple(workflow.read(f.path, f.text) for f in files)
    return Found(installation, repository, read)


# What a failure means, by what it is: (error, HTTP status or 0 for any, what was being asked
# or "" for either, the finding, what to do). The first row that matches says it.
MEANINGS: tuple[tuple[type[GitHubError], int, str, str, str], ...] = (
    (NotConfigured, 0, "", "the relay has no GitHub App: {said}",
     "set GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY (docs/operations.md)"),
    (NotInstalled, 0, "", "{app} is not installed on {repo}, or cannot see it",
     "install it on {repo}; on an installation for selected repositories, add {repo} to them"),
    (RateLimited, 0, "", "GitHub's rate limit stopped the doctor: {said}",
     "run it again in a few minutes"),
    (GitHubUnavailable, 0, "", "GitHub did not answer: {said}",
     "run the doctor again later (https://www.githubstatus.com)"),
    (Rejected, 401, "", "GitHub refused the App's credentials: {said}",
     "check that GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY are one App's"),
    (Rejected, 0, "contents", "the App may not read {repo}'s files: {said}",
     "grant the App Contents permission (read and write) and have the installation accept it"),
    (NotFound, 0, "", "GitHub does not show {repo}: {said}", "check the repository's name"),
    (GitHubError, 0, "", "GitHub refused the doctor: {said}", "see what GitHub said"),
)  # fmt: skip


def _problem(asking: str, repo: str, exc: Exception) -> Problem:
    app = f"CRCR's GitHub App (id {settings.GITHUB_APP_ID or 'not set'})"
    words = {"repo": repo, "app": app, "said": str(exc) or repr(exc)}
    for kind, status, stage, finding, next_step in MEANINGS:
        if isinstance(exc, kind) and status in (0, exc.status) and stage in ("", asking):
            return Problem(asking, finding.format(**words), next_step.format(**words),
                           not_installed=kind is NotInstalled)  # fmt: skip
    logger.warning("doctor: unexpected answer from GitHub about %s: %r", repo, exc)
    return Problem(asking, "GitHub answered what the doctor did not expect: {said}".format(**words),
                   "run it again; if it persists, see the relay's log")  # fmt: skip
