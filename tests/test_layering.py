"""The direction data flows in, read from the product's own imports: relay -> hud -> allowlist
(crcr_site's leaf modules below them all), and no module importing its way back to itself.

Each rule is its own test, so a failure names the rule it breaks."""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.paths import ROOT

APPS = ("crcr_site", "allowlist", "relay", "hud")


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(path): path for app in APPS for path in sorted((ROOT / app).rglob("*.py"))}


def _imports(module: str) -> Iterator[str]:
    """The modules `module` imports, in functions too (a `from x import y` names x.y when y is
    a module)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base


def _in(imported: str, app: str) -> bool:
    return imported == app or imported.startswith(f"{app}.")


def _violations(importer: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{module} imports {imported}"
        for module in MODULES
        if _in(module, importer)
        for imported in _imports(module)
        if any(_in(imported, app) for app in forbidden)
    ]


@pytest.mark.parametrize(
    ("importer", "forbidden"),
    [("hud", ("relay", "sandbox")), ("allowlist", ("relay", "hud", "sandbox"))],
    ids=["hud imports nothing of relay", "allowlist imports neither relay nor hud"],
)
def test_an_app_imports_nothing_above_it(importer, forbidden):
    assert _violations(importer, forbidden) == []


@pytest.mark.parametrize("importer", APPS)
def test_no_product_module_imports_sandbox(importer):
    assert _violations(importer, ("sandbox",)) == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while (top := stack.pop()) != node:
                component.append(top)
            if component:
                found.append(sorted([node, *component]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_no_import_cycles_among_product_modules():
    # An import deferred into a function still makes a cycle: it only hides it from Python.
    graph = {module: {m for m in _imports(module) if m in MODULES} - {module} for module in MODULES}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
