"""What the relay itself holds about a downstream repo: its last dispatch, its callbacks in
the audit (relay.models.CallbackAudit), and the Buildkite pipelines that report as it."""

from collections.abc import Iterable
from dataclasses import dataclass

import yaml
from django.db.models import QuerySet

from allowlist.entry import repo_key
from relay import oidc
from relay.models import CallbackAudit, Dispatch

REFUSALS_SHOWN = 5


def last_dispatch(repo: str) -> Dispatch | None:
    return (
        Dispatch.objects.filter(repo_key=repo_key(repo))
        .select_related("delivery", "delivery__redispatch")
        .order_by("-created_at", "-pk")
        .first()
    )


def _audit(spellings: Iterable[str]) -> QuerySet[CallbackAudit]:
    # Exact names, over the audit's (repo, at) index: the audit keeps each token's spelling,
    # and GitHub's tokens spell a repo as GitHub does (facts.spellings has that spelling).
    return CallbackAudit.objects.filter(repo__in=sorted(set(spellings))).order_by("-at", "-id")


def last_callback(spellings: Iterable[str]) -> CallbackAudit | None:
    return _audit(spellings).first()


def refusals(spellings: Iterable[str]) -> list[CallbackAudit]:
    return list(_audit(spellings).filter(decision=CallbackAudit.Decision.REFUSED)[:REFUSALS_SHOWN])


def unregistered_pipelines() -> list[CallbackAudit]:
    """The newest refusals of Buildkite pipelines the provider map does not know (their rows
    name no repo: the detail names the pipeline's ids)."""
    found = CallbackAudit.objects.filter(reason="pipeline_not_registered").order_by("-at", "-id")
    return list(found[:REFUSALS_SHOWN])


@dataclass(frozen=True)
class Pipelines:
    ids: tuple[str, ...]  # "organization_id/pipeline_id" of each pipeline reporting as the repo
    spellings: tuple[str, ...]  # the repo as the map spells it
    error: str = ""  # CRCR_CI_PROVIDERS could not be read


def pipelines(repo: str) -> Pipelines:
    try:
        found = [
            (ids, p.repo)
            for ids, p in oidc.providers().items()
            if repo_key(p.repo) == repo_key(repo)
        ]
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError) as exc:
        return Pipelines((), (), f"CRCR_CI_PROVIDERS cannot be read: {exc}")
    return Pipelines(tuple(ids for ids, _ in found), tuple(name for _, name in found))
