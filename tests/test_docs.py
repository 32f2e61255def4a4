"""The README and docs/ stand on their own in a clone: every link resolves inside the
repository, and the operator's environment table names exactly what the settings read."""

import re
import subprocess
from pathlib import Path

import pytest

from tests.paths import ROOT
from tests.test_deploy import settings_variables

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a file's headings."""
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / name for name in names if (ROOT / name).suffix != ".png"]


def test_nothing_in_the_repository_points_outside_it_at_the_shared_folder():
    shared = "../" + "shared"  # spelt apart, so this file does not name it

    pointing = [
        str(path.relative_to(ROOT))
        for path in tracked_text_files()
        if path.is_file() and shared in path.read_text(errors="replace")
    ]

    assert pointing == []


@pytest.mark.parametrize("document", DOCS, ids=lambda path: path.name)
def test_every_link_in_the_docs_resolves_inside_the_repository(document):
    text = document.read_text()
    broken = []
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        file = (document.parent / path).resolve() if path else document
        inside = file.is_relative_to(ROOT.resolve()) and file.exists()
        if not inside or (
            file.suffix == ".md" and anchor and anchor not in anchors(file.read_text())
        ):
            broken.append(target)

    assert broken == []


def test_the_contract_keeps_the_sections_the_code_and_readme_cite():
    headings = re.findall(r"^## (\d)\. ", (ROOT / "docs" / "contract.md").read_text(), re.M)
    cited = set()
    for path in tracked_text_files():
        if path.suffix in (".py", ".md"):
            cited |= set(re.findall(r"contract §(\d)", path.read_text(errors="replace")))

    assert headings == ["1", "2", "3", "4", "5", "6"]
    assert cited <= set(headings)


def test_the_environment_table_lists_every_variable_the_settings_read_and_no_other():
    operations = (ROOT / "docs" / "operations.md").read_text()
    section = operations[operations.index("## Environment") : operations.index("## Periodic jobs")]
    listed: set[str] = set()
    files: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            cell = line.split("|")[1]
            names = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", cell))
            listed |= names
            if "`_FILE`" in cell:
                files |= {f"{name}_FILE" for name in names}
    proxies = {"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"}  # read by requests and urllib3

    assert settings_variables() == (listed - proxies) | files
