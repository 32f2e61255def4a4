"""The reporter runs on a bare runner: it needs the standard library and nothing else, and
nothing of this project."""

import ast
import sys

from tests.paths import ROOT

REPORTER = ROOT / "kit" / "report" / "crcr_report.py"


def test_the_reporter_imports_only_the_standard_library():
    tree = ast.parse(REPORTER.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}  # fmt: skip
    imported |= {node.module for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}  # fmt: skip

    outside = {name for name in imported if name.split(".")[0] not in sys.stdlib_module_names}

    assert outside == set()
