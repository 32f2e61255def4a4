"""A composite action's steps run as GitHub's runner runs them: inputs with their defaults, the
`${{ }}` expressions of `env:` and `run:` filled in from the contexts, each `run:` in
`bash --noprofile --norc -eo pipefail`, step outputs read from GITHUB_OUTPUT."""

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def evaluate(expression: str, contexts: dict[str, Any]) -> str:
    """The expressions an action of ours may use: a property of a context (a missing one is
    null), or toJson() of one. Anything else raises, so an action that needs more fails here."""
    to_json = re.fullmatch(r"toJson\((.+)\)", expression)
    path = to_json.group(1) if to_json else expression
    if not re.fullmatch(r"[a-z_]+(\.[\w-]+)+", path):
        raise ValueError(f"expression not understood here: {expression}")
    value: Any = contexts
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if to_json:
        return json.dumps(value, indent=2)
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def substitute(text: str, contexts: dict[str, Any]) -> str:
    return EXPRESSION.sub(lambda match: evaluate(match.group(1), contexts), text)


@dataclass
class Run:
    code: int  # the first failing step's, else 0
    out: str
    outputs: dict[str, str]


def run_action(
    action_dir: Path,
    work: Path,
    *,
    inputs: dict[str, str],
    github: dict[str, Any],
    job: dict[str, Any],
    env: dict[str, str],
    bash: str = "/bin/bash",
) -> Run:
    action = yaml.safe_load((action_dir / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    contexts: dict[str, Any] = {"github": github, "job": job, "steps": {}}
    contexts["inputs"] = {
        name: inputs[name] if name in inputs else substitute(str(spec.get("default", "")), contexts)
        for name, spec in action["inputs"].items()
    }
    assert set(inputs) <= set(action["inputs"]), set(inputs) - set(action["inputs"])
    out = []
    for number, step in enumerate(action["runs"]["steps"]):
        assert step["shell"] == "bash"
        script, outputs = work / f"step-{number}.sh", work / f"step-{number}.out"
        script.write_text(substitute(step["run"], contexts))
        outputs.touch()
        step_env = {
            name: substitute(str(value), contexts) for name, value in step.get("env", {}).items()
        }
        ran = subprocess.run(
            [bash, "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            env=env
            | {"GITHUB_ACTION_PATH": str(action_dir), "GITHUB_OUTPUT": str(outputs)}
            | step_env,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        out.append(ran.stdout + ran.stderr)
        found = dict(line.split("=", 1) for line in outputs.read_text().splitlines() if "=" in line)
        contexts["steps"][step.get("id", f"step{number}")] = {"outputs": found}
        if ran.returncode:
            return Run(ran.returncode, "".join(out), {})
    declared = {
        name: substitute(spec["value"], contexts) for name, spec in action["outputs"].items()
    }
    return Run(0, "".join(out), declared)
