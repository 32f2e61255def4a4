"""The sandbox imports the product; the product never imports the sandbox."""

import ast
import re
from pathlib import Path

from tests.crcr_site.support import bare_env, manage
from tests.paths import ROOT

PRODUCT = ("crcr_site", "allowlist", "relay", "hud")
SANDBOX_NAME = re.compile(r"^sandbox(\.|$)")


def sandbox_names(path: Path) -> list[str]:
    """The sandbox modules `path` imports, or names in a string (a dotted path, an app label)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.append(node.value)
    return [name for name in names if SANDBOX_NAME.match(name)]


def test_no_product_module_imports_or_names_the_sandbox_but_the_settings_installing_it():
    found = {
        str(path.relative_to(ROOT)): names
        for app in PRODUCT
        for path in sorted((ROOT / app).rglob("*.py"))
        if (names := sandbox_names(path))
    }

    assert found == {"crcr_site/settings.py": ["sandbox"]}


def test_the_product_passes_its_checks_without_the_sandbox(tmp_path):
    result = manage("check", env=bare_env(tmp_path, CRCR_SANDBOX="false"))

    # Nothing: every app and URL loaded.
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
