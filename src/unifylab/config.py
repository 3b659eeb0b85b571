"""Config plumbing: pydantic models built from user input, with validation errors turned into one clear line."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, Field, ValidationError

from unifylab.errors import UserError
from unifylab.io import file_name, read_user_text

M = TypeVar("M", bound=BaseModel)

SEED_MAX = 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=SEED_MAX, description="a seed, 0 .. 2**32 - 1")]


def _file_name(value: str) -> str:
    """`io.file_name` as a pydantic validator (a ValueError, so the error names the file and field)."""
    try:
        return file_name(value, "name")
    except UserError as e:
        raise ValueError(str(e)) from None


FileName = Annotated[str, AfterValidator(_file_name)]
"""A name that becomes a file or folder name (run and study folders, report rows): the one `io.file_name` check."""

MAX_YAML_BYTES = 1_000_000  # configs, presets and task files are a few KiB; this bounds what a bad file can cost


class _Refused(yaml.MarkedYAMLError):
    """Well-formed YAML that this program refuses (anchors and aliases, duplicate keys)."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without anchors and aliases (so no 'billion laughs' expansion) and without duplicate keys (which
    YAML would silently resolve to the last one)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(
                problem="anchors and aliases (& and *) are not allowed; write each value out",
                problem_mark=event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                if key in first:
                    problem = f"duplicate key {key!r} (first at line {first[key]}); keep one of them"
                    raise _Refused(problem=problem, problem_mark=key_node.start_mark)
                first[key] = key_node.start_mark.line + 1
            except TypeError:  # an unhashable key: SafeLoader refuses it below
                continue
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, source: str, *, plain_ok: bool = False) -> Any:
    """`text` parsed as YAML by the one strict loader (no anchors or aliases, no duplicate keys); errors name
    `source` and the line. `plain_ok`: text that is not YAML syntax is returned as it is (a `--set` value)."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except RecursionError:
        raise UserError(f"{source}: YAML nested too deeply; flatten it") from None
    except _Refused as e:
        mark = e.problem_mark
        raise UserError(f"{source}: line {mark.line + 1}: {e.problem}") from None
    except yaml.YAMLError as e:
        if plain_ok:
            return text
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise UserError(f"{source}: malformed YAML{where}: {getattr(e, 'problem', None) or e}") from None


def load_yaml(path: Path, what: str = "YAML file") -> Any:
    """A user's YAML file (a config, preset or task): at most MAX_YAML_BYTES of UTF-8, parsed by `parse_yaml`."""
    path = Path(path)
    if path.is_file() and path.stat().st_size > MAX_YAML_BYTES:
        raise UserError(
            f"{path}: {path.stat().st_size:,} bytes is too large for a {what} (at most {MAX_YAML_BYTES:,}); "
            "is it the right file?"
        )
    return parse_yaml(read_user_text(path, what), str(path))


def describe_validation_error(e: ValidationError, source: str) -> str:
    """One line naming every bad field of `source` (a file or '--options') and what was expected."""
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(root)"
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if err["loc"] else msg)
    return f"{source}: " + "; ".join(parts)


def build(model: type[M], values: dict[str, Any], source: str) -> M:
    """Validate `values` into `model`, raising UserError with the source and the bad fields."""
    try:
        return model.model_validate(values)
    except ValidationError as e:
        raise UserError(describe_validation_error(e, source)) from None


def first_diff(a: Any, b: Any, prefix: str = "") -> str:
    """The first field where two config trees differ, as 'dotted.key: <a> there, <b> now'."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            if a.get(k) != b.get(k):
                return first_diff(a.get(k), b.get(k), f"{prefix}{k}.")
    return f"{prefix.rstrip('.')}: {a!r} there, {b!r} now"


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (first 16 hex digits): identifies model weights in fingerprints."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def packaged_yaml(package: str, folder: str) -> dict[str, Path]:
    """YAML files shipped in `package/folder`, by stem (the task registry, the study presets)."""
    root = resources.files(package) / folder
    return {Path(str(p)).stem: Path(str(p)) for p in root.iterdir() if str(p).endswith(".yaml")}


def named_file(name_or_path: str, files: dict[str, Path], what: str, option: str) -> Path:
    """The packaged YAML `name_or_path` names, or the YAML file it is; anything else is refused naming `option`."""
    path = files.get(name_or_path) or Path(name_or_path)
    if not path.is_file():
        raise UserError(
            f"{option}: unknown {what} {name_or_path!r}; built-in {what}s: {', '.join(sorted(files))} "
            f"(or give a {what} YAML file)"
        )
    return path


def load_named(model: type[M], name_or_path: str, files: dict[str, Path], what: str, option: str) -> M:
    """A packaged YAML by name, or a YAML file by path, validated into `model`."""
    path = named_file(name_or_path, files, what, option)
    raw = load_yaml(path, f"{what} file")
    return build(model, raw if isinstance(raw, dict) else {}, str(path))
