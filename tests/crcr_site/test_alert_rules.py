"""deploy/prometheus/alerts.yml: promtool accepts it and its unit tests pass; every CRCR metric
it names is one /metrics exposes (a renamed family would leave an alert that never fires)."""

import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client import generate_latest

from crcr_site import metrics
from tests.paths import ROOT

RULES = ROOT / "deploy/prometheus/alerts.yml"
PROMTOOL = shutil.which("promtool")
SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_created")


def _rules() -> list[dict]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def test_every_rule_says_what_it_is_and_how_bad():
    rules = _rules()
    assert {r["alert"] for r in rules} >= {
        "CRCRRelayDown", "CRCRDispatchLagHigh", "CRCROutboxGrowing", "CRCRGitHubBudgetLow",
        "CRCRDownstreamSilent", "CRCRProbeOverdue", "CRCRNotReady",
    }  # fmt: skip
    for rule in rules:
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


@pytest.mark.django_db
def test_every_crcr_metric_an_alert_names_is_exposed():
    exposed = {
        line.split()[2] + suffix
        for line in generate_latest(metrics.registry()).decode().splitlines()
        if line.startswith("# TYPE crcr_")
        for suffix in SUFFIXES
    }
    named = {name for rule in _rules() for name in re.findall(r"\bcrcr_[a-z_]+", rule["expr"])}
    assert named
    assert named <= exposed, named - exposed


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (scripts/provision)")
def test_promtool_checks_the_rules_and_runs_their_unit_tests():
    for command in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        assert PROMTOOL is not None
        done = subprocess.run([PROMTOOL, *command], cwd=RULES.parent, capture_output=True,
                              text=True, check=False)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
