"""The README's and the docs' commands stay true to the CLI: every `unifylab ...` line in the fenced code blocks of
README.md and docs/**/*.md parses against the real command (no option renamed or dropped, no required argument
missing, no bad value type), every preset, task, config file and benchmark script they name exists, and their
`--set` keys are valid config keys. Nothing is trained or run: parsing stops at click's `make_context`."""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from unifylab.cli import app
from unifylab.errors import UserError
from unifylab.eval.task_registry import task_files
from unifylab.study.preset import preset_files
from unifylab.train.config import load_config

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").rglob("*.md"))]  # the front door, then the guides, results and architecture
FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.M | re.S)
TASK_WORDS = {"all", "geneval-official"}  # --tasks values that are not task names


def _name(doc: Path) -> str:
    return str(doc.relative_to(ROOT))


@functools.cache
def _text(doc: Path | None = None) -> str:
    """One document's text, or all of them together."""
    if doc is None:
        return "\n".join(_text(d) for d in DOCS)
    return doc.read_text(encoding="utf-8")


def _blocks(doc: Path | None = None) -> list[str]:
    return FENCE.findall(_text(doc))


def _prose(doc: Path | None = None) -> str:
    """A document (or all) outside its fenced blocks (inline `...` commands live here)."""
    return FENCE.sub("", _text(doc))


def _lines(block: str) -> list[str]:
    """The block's lines with `\\`-continued lines joined."""
    out: list[str] = []
    pending = ""
    for line in block.splitlines():
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        out.append(pending + stripped)
        pending = ""
    if pending:
        out.append(pending)
    return out


def readme_commands(doc: Path | None = None) -> list[list[str]]:
    """Every `unifylab` invocation in the fenced blocks of `doc` (default: every document), as its argument list
    after `unifylab` (trailing `# comments` dropped; `a && b` split; `torchrun ... -m unifylab ARGS` gives ARGS)."""
    commands: list[list[str]] = []
    for block in _blocks(doc):
        for line in _lines(block):
            try:
                words = shlex.split(line, comments=True)
            except ValueError:  # not shell (the Python example)
                continue
            segments: list[list[str]] = [[]]
            for w in words:
                if w in ("&&", "||", ";", "|"):
                    segments.append([])
                else:
                    segments[-1].append(w)
            for seg in segments:
                if seg and seg[0] == "unifylab":
                    commands.append(seg[1:])
                elif seg and seg[0] == "torchrun" and "unifylab" in seg:
                    i = seg.index("unifylab")
                    assert seg[i - 1] == "-m", seg
                    commands.append(seg[i + 1 :])
    return commands


def _leaf(args: list[str]) -> tuple[object, list[str], list[str]]:
    """The click command `unifylab ARGS` names, its path, and the arguments left for it."""
    command = typer.main.get_command(app)
    path = ["unifylab"]
    rest = list(args)
    while hasattr(command, "commands"):
        assert rest, f"unifylab {' '.join(args)}: names no command under {' '.join(path)}"
        name = rest.pop(0)
        assert name in command.commands, f"unifylab {' '.join(args)}: no command {name!r} under {' '.join(path)}"
        command = command.commands[name]
        path.append(name)
    return command, path, rest


def parse(args: list[str]) -> dict:
    """Parse `unifylab ARGS` the way the CLI would, without running it; returns the leaf command's parameters.
    Raises click's UsageError (unknown option, missing argument, bad value type, unknown command)."""
    command, path, rest = _leaf(args)
    return command.make_context(" ".join(path), rest).params


DOC_COMMANDS = [(_name(doc), args) for doc in DOCS for args in readme_commands(doc)]
COMMANDS = [args for _, args in DOC_COMMANDS]
GROUPS = {n for n, c in typer.main.get_command(app).commands.items() if hasattr(c, "commands")}


def test_the_docs_have_commands() -> None:
    assert len(COMMANDS) >= 30, COMMANDS  # the extraction works (not vacuously passing)
    first = {c[0] for c in COMMANDS}
    assert {"study", "world", "tokenizer", "train", "eval", "compare", "score", "analyze", "generate"} <= first, first
    main = readme_commands(README)  # the front door keeps the main job
    assert ["study", "--preset", "quick"] in main, main
    assert len(DOCS) > 1  # the docs pages are read too


@pytest.mark.parametrize(("doc", "args"), DOC_COMMANDS, ids=[f"{doc}: {' '.join(c)}"[:100] for doc, c in DOC_COMMANDS])
def test_readme_command_parses(doc: str, args: list[str]) -> None:
    try:
        parse(args)
    except Exception as e:  # typer vendors click: match its usage errors by interface
        if not hasattr(e, "format_message"):
            raise
        pytest.fail(f"{doc}: `unifylab {shlex.join(args)}` does not parse: {e.format_message()}")


def test_inline_commands_name_real_options() -> None:
    """Inline `unifylab ...` commands in the prose (which may leave out required values or show `[--optional]`
    parts): the command exists and every option they name is one of its options."""
    checked = 0
    for doc in DOCS:
        for text in re.findall(r"`unifylab ([a-z][^`]*)`", _prose(doc)):
            words = text.replace("[", " ").replace("]", " ").split()
            words = [o for w in words for o in (w.split("/") if w.startswith("--") else [w])]  # `--out/--json`
            names = [w for w in words if not w.startswith("-")]
            if names == [names[0]] and names[0] in GROUPS and len(words) == 1:  # a group named alone
                checked += 1
                continue
            command, _, _ = _leaf(names[: 2 if names[0] in GROUPS else 1])
            options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
            bad = [w for w in words if w.startswith("--") and w not in options]
            assert not bad, f"{_name(doc)}: `unifylab {text}`: no option(s) {bad}; the command has {sorted(options)}"
            checked += 1
    assert checked


def test_the_parse_check_catches_what_it_should() -> None:
    """The check itself: an unknown option, a missing required option and a bad value type are refused."""
    for bad in (
        ["train", "configs/quick.yaml", "--out", "r", "--no-such-option"],
        ["world", "sample", "--n", "16"],  # --out is required
        ["world", "sample", "--n", "many", "--out", "d"],
        ["eval"],  # the model argument is required
    ):
        with pytest.raises(Exception) as info:
            parse(bad)
        assert hasattr(info.value, "format_message"), bad


def test_presets_named_exist() -> None:
    names = set(re.findall(r"--preset[ =]([A-Za-z0-9_.\-/]+)", _text()))
    assert names, "no --preset in the docs"
    known = preset_files()
    missing = sorted(n for n in names if n not in known and not (ROOT / n).is_file())
    assert not missing, f"the docs name presets that do not exist: {missing}; known: {sorted(known)}"


def test_config_files_named_exist() -> None:
    names = set(re.findall(r"\bconfigs/[A-Za-z0-9_.\-/]+\.ya?ml\b", _text()))
    assert names
    missing = sorted(n for n in names if not (ROOT / n).is_file())
    assert not missing, f"the docs name config files that do not exist: {missing}"


def test_tasks_named_exist() -> None:
    values = re.findall(r"--tasks[ =]([A-Za-z0-9_,.\-/]+)", _text())
    assert values
    known = task_files()
    names = {n for v in values for n in v.split(",") if n}
    missing = sorted(n for n in names - TASK_WORDS if n not in known and not (ROOT / n).is_file())
    assert not missing, f"the docs' --tasks name tasks that do not exist: {missing}; known: {sorted(known)}"


def test_set_overrides_are_valid() -> None:
    """The `--set key=value` overrides the docs show are valid training-config overrides: a fenced command's all
    together (on its config, else configs/quick.yaml), an inline one on its own, on configs/quick.yaml or the defaults
    (placeholders like `...` skipped)."""
    quick = ROOT / "configs" / "quick.yaml"
    checked = 0
    for args in COMMANDS:
        try:
            params = parse(args)
        except Exception:  # reported by test_readme_command_parses
            continue
        sets = params.get("set_") or []
        if sets:
            config = params.get("config")
            load_config(ROOT / config if config else quick, sets)  # raises UserError naming a bad key or value
            checked += 1
    for item in sorted(set(re.findall(r"--set[ =]([A-Za-z0-9_.]+=[^\s`]+)", _prose()))):
        if item.endswith("=...") or "=<" in item:
            continue
        try:
            load_config(quick, [item])
        except UserError:  # prose may name an override of the defaults (`--set world=watch`: the watch world's)
            load_config(None, [item])
        checked += 1
    assert checked


@functools.cache
def _help(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_benchmark_scripts_named_exist_and_run_help() -> None:
    scripts = sorted(set(re.findall(r"python (benchmarks/[A-Za-z0-9_]+\.py)", _text())))
    assert scripts
    for script in scripts:
        assert (ROOT / script).is_file(), f"the docs name {script}, which does not exist"
        done = _help(script)
        assert done.returncode == 0, f"{script} --help failed:\n{done.stderr[-2000:]}"


def test_benchmark_options_in_the_readme_exist() -> None:
    """The options the docs pass to benchmark scripts (fenced or inline) are ones their --help lists."""
    found = _benchmark_options()
    assert found
    for script, options in found.items():
        if not (ROOT / script).is_file():
            continue  # reported by test_benchmark_scripts_named_exist_and_run_help
        listed = _help(script).stdout
        for option in sorted(options):
            assert re.search(rf"(^|[\s\[]){re.escape(option)}\b", listed), f"docs: {script} has no {option}"


def _benchmark_options() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for block in _blocks():
        for line in _lines(block):
            words = shlex.split(line, comments=True) if "benchmarks/" in line else []
            if len(words) >= 2 and words[0] == "python" and words[1].startswith("benchmarks/"):
                found.setdefault(words[1], set()).update(w.split("=")[0] for w in words[2:] if w.startswith("--"))
    for script, rest in re.findall(r"`python (benchmarks/[A-Za-z0-9_]+\.py)([^`]*)`", _prose()):
        found.setdefault(script, set()).update(w.split("=")[0] for w in rest.split() if w.startswith("--"))
    return found
