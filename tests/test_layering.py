"""The package's layering, checked on the source: outside `world/`, code reaches a world only through the registry
(`unifylab.world`) and the `World` interface, never by its name or its internals; `tokenize/` does not import
`world/` when it loads (the world imports tokenize); evaluation does not import training. Each test names the files
that break its rule."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from unifylab.world import CLASSES

SRC = Path(__file__).resolve().parents[1] / "src" / "unifylab"
WORLD_NAMES = tuple(CLASSES)  # every registered world


def _modules() -> dict[str, ast.Module]:
    return {str(p.relative_to(SRC)): ast.parse(p.read_text(encoding="utf-8")) for p in SRC.rglob("*.py")}


def _imports(tree: ast.AST, *, top_level_only: bool = False) -> set[str]:
    nodes = tree.body if top_level_only and isinstance(tree, ast.Module) else list(ast.walk(tree))
    out = set()
    for n in nodes:
        if isinstance(n, ast.ImportFrom) and n.module:
            out |= {n.module} | {f"{n.module}.{a.name}" for a in n.names}
        elif isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
    return out


def _switches(tree: ast.AST) -> bool:
    """Whether the code spells a world's name as a value (`== "watch"`, a canvas `("shapes", size, grid)`, a default
    `"shapes"`): sentences that mention a world (docstrings, help) are not names."""
    return any(isinstance(n, ast.Constant) and n.value in WORLD_NAMES for n in ast.walk(tree))


def test_outside_world_code_reaches_worlds_only_through_the_registry() -> None:
    internal = re.compile(r"^unifylab\.world\.(shapes|watch)(\.|$)")
    found = {
        name
        for name, tree in _modules().items()
        if not name.startswith("world/") and any(internal.match(m) for m in _imports(tree))
    }
    assert not found, f"{sorted(found)} import a world's internals; go through unifylab.world and the World interface"


def test_no_world_name_switches_outside_world() -> None:
    found = {name for name, tree in _modules().items() if not name.startswith("world/") and _switches(tree)}
    assert not found, f"{sorted(found)} spell a world's name; ask the World (unifylab.world.base) instead"


def test_tokenize_does_not_import_world_when_it_loads() -> None:
    found = {
        name
        for name, tree in _modules().items()
        if name.startswith("tokenize/")
        and any(m.startswith("unifylab.world") for m in _imports(tree, top_level_only=True))
    }
    assert not found, f"{sorted(found)} import unifylab.world at load; the world imports tokenize"


def test_evaluation_does_not_import_training() -> None:
    found = {
        name
        for name, tree in _modules().items()
        if name.startswith("eval/") and any(m.startswith("unifylab.train") for m in _imports(tree))
    }
    assert not found, f"{sorted(found)} import unifylab.train; move what they need below both"


def test_the_world_registry_loads_no_evaluation_code() -> None:
    """A world's own tasks build on eval's items, so `World.tasks` imports them only when the task registry asks:
    importing the worlds must load no `unifylab.eval` module (or eval and world would import each other)."""
    code = "import sys, unifylab.world; print(sorted(m for m in sys.modules if m.startswith('unifylab.eval')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
