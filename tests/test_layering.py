"""The package's layering, checked on the source: outside `world/`, code reaches a world only through the registry
(`unifylab.world`) and the `World` interface, never by its name or its internals; `tokenize/` does not import
`world/` when it loads; evaluation does not import training. The places not yet moved behind the interface are
listed here by file, so the lists can only shrink: a new one fails the test."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "unifylab"
WORLD_NAMES = ("shapes", "watch")

# Files outside world/ that still import a world's internals or compare a world's name (issue 35: to be emptied).
INTERNALS_LEFT = {
    "eval/blind.py",
    "eval/generators.py",
    "eval/probes.py",
    "eval/protocol.py",
    "eval/reasoning.py",
    "eval/scorers.py",
    "eval/task_registry.py",
}
NAME_SWITCHES_LEFT = {
    "eval/blind.py",
    "eval/generators.py",
    "eval/protocol.py",
    "eval/scorers.py",
    "eval/task_registry.py",
}
EVAL_IMPORTS_TRAIN_LEFT = {"eval/blind.py"}
# build and train tokenizers from world renders: they belong above world/
TOKENIZE_LOADS_WORLD_LEFT = {"tokenize/build.py", "tokenize/train_vq.py"}


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
    new = sorted(found - INTERNALS_LEFT)
    assert not new, f"{new} import a world's internals; go through unifylab.world and the World interface"
    assert found == INTERNALS_LEFT, f"no longer needed in INTERNALS_LEFT: {sorted(INTERNALS_LEFT - found)}"


def test_no_new_world_name_switches_outside_world() -> None:
    found = {name for name, tree in _modules().items() if not name.startswith("world/") and _switches(tree)}
    new = sorted(found - NAME_SWITCHES_LEFT)
    assert not new, f"{new} compare a world's name; ask the World (unifylab.world.base) instead"
    assert found == NAME_SWITCHES_LEFT, f"no longer needed in NAME_SWITCHES_LEFT: {sorted(NAME_SWITCHES_LEFT - found)}"


def test_tokenize_does_not_import_world_when_it_loads() -> None:
    found = {
        name
        for name, tree in _modules().items()
        if name.startswith("tokenize/")
        and any(m.startswith("unifylab.world") for m in _imports(tree, top_level_only=True))
    }
    new = sorted(found - TOKENIZE_LOADS_WORLD_LEFT)
    assert not new, f"{new} import unifylab.world at module level; the world imports tokenize, not the reverse"
    assert found == TOKENIZE_LOADS_WORLD_LEFT, f"no longer needed: {sorted(TOKENIZE_LOADS_WORLD_LEFT - found)}"


def test_evaluation_does_not_import_training() -> None:
    found = {
        name
        for name, tree in _modules().items()
        if name.startswith("eval/") and any(m.startswith("unifylab.train") for m in _imports(tree))
    }
    new = sorted(found - EVAL_IMPORTS_TRAIN_LEFT)
    assert not new, f"{new} import unifylab.train; move what they need below both"
    assert found == EVAL_IMPORTS_TRAIN_LEFT, f"no longer importing training: {sorted(EVAL_IMPORTS_TRAIN_LEFT - found)}"
