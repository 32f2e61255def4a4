"""What a downstream's GitHub Actions workflow file says about taking CRCR's dispatches: read
once from its YAML into a `Workflow`, as GitHub reads the file
(https://docs.github.com/en/actions/writing-workflows/workflow-syntax-for-github-actions).

Quirks handled: YAML 1.1 (PyYAML) reads the bare key `on` as the boolean true; `on` may be a
string, a list or a mapping, and `repository_dispatch` with no `types` takes every type; a
job's own `permissions` replace the workflow's for that job, and `write-all` grants
`id-token: write` as well.
"""

from dataclasses import dataclass
from typing import Any

import yaml

# The event_types the relay dispatches (contract §1): a PR's events, and pushes.
DISPATCH_TYPES = ("pull_request", "push")


@dataclass(frozen=True)
class Workflow:
    path: str
    error: str = ""  # why the file could not be read as a workflow
    listens: bool = False  # it runs on repository_dispatch
    types: frozenset[str] | None = None  # the dispatch types it takes; None: every type
    id_token: bool = False  # one of its jobs may ask for an OIDC token
    triggers_buildkite: bool = False  # a step starts a Buildkite build

    @property
    def missing_types(self) -> tuple[str, ...]:
        """The relay's dispatch types it does not take."""
        return tuple(t for t in DISPATCH_TYPES if self.types is not None and t not in self.types)


def read(path: str, text: str) -> Workflow:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return Workflow(path, error=f"not valid YAML ({str(exc).splitlines()[0]})")
    if not isinstance(document, dict):
        return Workflow(path, error="not a workflow (its top level is not a mapping)")
    triggers = document["on"] if "on" in document else document.get(True)
    listens, types = _dispatch_trigger(triggers)
    jobs = [job for job in _mapping(document.get("jobs")).values() if isinstance(job, dict)]
    default = document.get("permissions")
    # A job's own permissions replace the workflow's (an explicit null included).
    granted = [_grants_id_token(job.get("permissions", default)) for job in jobs]
    return Workflow(
        path,
        listens=listens,
        types=types,
        id_token=any(granted) if jobs else _grants_id_token(default),
        triggers_buildkite=any(_starts_buildkite(job) for job in jobs),
    )


def _mapping(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _dispatch_trigger(triggers: Any) -> tuple[bool, frozenset[str] | None]:
    """Whether `on` names repository_dispatch, and the types it takes (None: every type)."""
    if isinstance(triggers, str):
        return triggers == "repository_dispatch", None
    if isinstance(triggers, list):
        return "repository_dispatch" in triggers, None
    if not isinstance(triggers, dict) or "repository_dispatch" not in triggers:
        return False, None
    types = _mapping(triggers["repository_dispatch"]).get("types")
    if types is None:
        return True, None
    if isinstance(types, str):
        return True, frozenset({types})
    return True, frozenset(str(t) for t in types) if isinstance(types, list) else frozenset()


def _grants_id_token(permissions: Any) -> bool:
    if permissions == "write-all":
        return True
    return _mapping(permissions).get("id-token") == "write"


def _starts_buildkite(job: dict[str, Any]) -> bool:
    """A step (or the job itself) uses a Buildkite action or calls Buildkite's API."""
    steps = [step for step in job.get("steps") or [] if isinstance(step, dict)]
    uses = [str(item.get("uses") or "") for item in (job, *steps)]
    runs = [str(step.get("run") or "") for step in steps]
    return any(u.casefold().startswith("buildkite/") for u in uses) or any(
        "api.buildkite.com" in run for run in runs
    )
