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
    "study/blind.py",
    "eval/generators.py",
    "eval/probes.py",
    "eval/protocol.py",
    "eval/reasoning.py",
    "eval/scorers.py",
}
NAME_SWITCHES_LEFT = {
    "study/blind.py",
    "eval/generators.py",
    "eval/protocol.py",
}
EVAL_IMPORTS_TRAIN_LEFT: set[str] = set()
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


def _only_shrinks(found: set[str], left: set[str], breach: str) -> None:
    """`found` (the files breaking a rule) holds no file outside the listed `left`, and every listed file still
    breaks it (a fixed file leaves the list)."""
    new = sorted(found - left)
    assert not new, f"{new} {breach}"
    assert found == left, f"no longer breaking the rule, take off its list: {sorted(left - found)}"


def test_outside_world_code_reaches_worlds_only_through_the_registry() -> None:
    internal = re.compile(r"^unifylab\.world\.(shapes|watch)(\.|$)")
    found = {
        name
        for name, tree in _modules().items()
        if not name.startswith("world/") and any(internal.match(m) for m in _imports(tree))
    }
    _only_shrinks(
        found, INTERNALS_LEFT, "import a world's internals; go through unifylab.world and the World interface"
    )


def test_no_new_world_name_switches_outside_world() -> None:
    found = {name for name, tree in _modules().items() if not name.startswith("world/") and _switches(tree)}
    _only_shrinks(found, NAME_SWITCHES_LEFT, "spell a world's name; ask the World (unifylab.world.base) instead")


def test_tokenize_does_not_import_world_when_it_loads() -> None:
    found = {
        name
        for name, tree in _modules().items()
        if name.startswith("tokenize/")
        and any(m.startswith("unifylab.world") for m in _imports(tree, top_level_only=True))
    }
    _only_shrinks(found, TOKENIZE_LOADS_WORLD_LEFT, "import unifylab.world at load; the world imports tokenize")


def test_evaluation_does_not_import_training() -> None:
    found = {
        name
        for name, tree in _modules().items()
        if name.startswith("eval/") and any(m.startswith("unifylab.train") for m in _imports(tree))
    }
    _only_shrinks(found, EVAL_IMPORTS_TRAIN_LEFT, "import unifylab.train; move what they need below both")
