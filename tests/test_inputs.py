"""Untrusted input and validation that stops short: every bad file or value is one `error:` line with exit code 2
(never a traceback, never a silent acceptance), and nothing is written outside --out."""

from __future__ import annotations

import json
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from PIL import Image

from unifylab.errors import UserError
from unifylab.eval.realunify import load_realunify
from unifylab.eval.task_registry import load_task
from unifylab.study.preset import load_preset
from unifylab.tokenize.image import load_image_tokenizer

Cli = Callable[..., tuple[int, str, str]]
TINY = {
    "model": {"dim": 32, "layers": 2, "heads": 2},
    "optim": {"steps": 2, "batch": 8, "warmup": 1},
    "checkpoint": {"every": 100},
    "eval": {"every": 100, "examples": 4},
}
TASK = "name: mytask\ngenerator: vqa\nscorer: exact\nn: 4\n"
FACE = {
    "world": "watch",
    "size": 32,
    "hour": 3,
    "minute": 5,
    "face": "red",
    "weather": "sun",
    "weather_corner": "top left",
    "battery": 2,
    "battery_corner": "top right",
}


def _one_error(code: int, err: str, *needles: str) -> None:
    """Exit 2 with exactly one `error:` line naming every needle."""
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(n in lines[0] for n in needles), (needles, err)


def _preset(tmp: Path, **edit: object) -> Path:
    """A tiny one-variant preset YAML after `edit`."""
    raw = {
        "name": "tiny",
        "base": TINY,
        "variants": [{"name": "shared", "role": "unified"}],
        "tasks": ["vqa"],
        "limit": 2,
        "analyses": [],
        **edit,
    }
    path = tmp / "preset.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# ---------------------------------------------------------------------------------------------- 1. untrusted YAML

YAML_KINDS = {
    "train config": lambda p, tmp: ("train", p, "--out", tmp / "run", "--set", "optim.steps=1"),
    "preset": lambda p, tmp: ("study", "--preset", p, "--out", tmp / "study"),
    "task": lambda p, tmp: ("eval", "oracle", "--tasks", p, "--out", tmp / "eval"),
}
BOMB = 'a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n'


@pytest.mark.parametrize("kind", list(YAML_KINDS))
def test_yaml_aliases_are_refused_in_every_yaml_file(cli: Cli, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    _one_error(*cli(*YAML_KINDS[kind](path, tmp_path))[::2], "bomb.yaml: line 1", "aliases")


def test_yaml_alias_in_a_set_value_is_refused(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("train", "--out", tmp_path / "run", "--set", "optim.steps=1", "--set", "seed=&s 1")
    _one_error(code, err, "--set", "aliases")


@pytest.mark.parametrize("kind", list(YAML_KINDS))
def test_yaml_duplicate_keys_are_refused_with_both_lines(cli: Cli, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "dup.yaml"
    text = {"train config": "optim:\n  lr: 0.1\n  lr: 0.2\n", "preset": "name: a\nname: b\n", "task": TASK + "n: 8\n"}
    path.write_text(text[kind])
    code, _, err = cli(*YAML_KINDS[kind](path, tmp_path))
    _one_error(code, err, "dup.yaml: line", "duplicate key", "first at line")


@pytest.mark.parametrize("kind", list(YAML_KINDS))
def test_yaml_that_is_not_utf8_is_refused(cli: Cli, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("seed: 0\n# caf\xe9\n".encode("latin-1"))
    _one_error(*cli(*YAML_KINDS[kind](path, tmp_path))[::2], "latin1.yaml", "not a UTF-8 text file")


def test_huge_yaml_is_refused_before_it_is_parsed(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * 1_100_000 + "\nseed: 0\n")
    _one_error(*cli("train", path, "--out", tmp_path / "run", "--set", "optim.steps=1")[::2], "huge.yaml", "too large")


# ---------------------------------------------------------------------------------------------- 2. images and JSON


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` (no pixel data): what a decompression bomb looks like to open."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [15_000, 10_000, 5_000])
def test_oversized_images_are_refused_from_their_header(cli: Cli, tmp_path: Path, side: int) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(_png_header(side, side))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        code, _, err = cli("world", "parse", path)
    _one_error(code, err, "big.png", f"{side}x{side}" if side < 15_000 else "larger", "4096x4096")


DEEP = "[" * 100_000 + "]" * 100_000


def test_deeply_nested_json_is_one_error_everywhere(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "deep.json").write_text(DEEP)
    _one_error(*cli("world", "render", tmp_path / "deep.json", "--out", tmp_path / "x.png")[::2], "nested too deeply")
    (tmp_path / "meta.jsonl").write_text(DEEP + "\n")
    code, _, err = cli("score", "geneval", "--metadata", tmp_path / "meta.jsonl", "--images", tmp_path)
    _one_error(code, err, "meta.jsonl:1", "nested too deeply")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "vqa.jsonl").write_text(DEEP + "\n" + json.dumps({"id": "x", "score": 1.0}) + "\n")
    _one_error(*cli("compare", tmp_path / "a", tmp_path / "b")[::2], "vqa.jsonl:1", "nested too deeply")
    with pytest.raises(UserError, match="nested too deeply"):
        load_realunify(tmp_path / "deep.json")


def test_json_files_that_are_not_utf8_are_one_error(cli: Cli, tmp_path: Path) -> None:
    bad = '{"id": "caf\xe9", "score": 1.0}\n'.encode("latin-1")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "vqa.jsonl").write_bytes(bad)
    _one_error(*cli("compare", tmp_path / "a", tmp_path / "b")[::2], "vqa.jsonl", "not a UTF-8 text file")
    (tmp_path / "ru.json").write_bytes(bad)
    with pytest.raises(UserError, match="not a UTF-8 text file"):
        load_realunify(tmp_path / "ru.json")


# ---------------------------------------------------------------------------------------------- 3. validation


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("optim.steps=1000000000000", "optim.steps"),
        ("optim.batch=1000000000000", "optim.batch"),
        ("optim.betas=[1.5, 0.9]", "optim.betas.0"),
        ("optim.betas=[0.9, -0.1]", "optim.betas.1"),
        ("seed=-1", "seed"),
        ("data.seed=-1", "data.seed"),
    ],
)
def test_train_config_values_out_of_range_are_refused(cli: Cli, tmp_path: Path, value: str, field: str) -> None:
    code, _, err = cli("train", "--out", tmp_path / "run", "--set", "optim.steps=1", "--set", value)
    _one_error(code, err, f"{field}:")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("edit", "field"),
    [({"seeds": [-1]}, "seeds.0"), ({"seeds": [0, 0]}, "distinct"), ({"limit": 0}, "limit"), ({"limit": -5}, "limit")],
)
def test_preset_values_out_of_range_are_refused(tmp_path: Path, edit: dict, field: str) -> None:
    with pytest.raises(UserError, match=field):
        load_preset(str(_preset(tmp_path, **edit)))


@pytest.mark.parametrize(
    "args",
    [("world", "sample", "--seed", "-1"), ("study", "--preset", "quick", "--seeds", "-1")],
)
def test_negative_seeds_on_the_command_line_are_refused(cli: Cli, tmp_path: Path, args: tuple[str, ...]) -> None:
    _one_error(*cli(*args, "--out", tmp_path / "out")[::2], args[-2])
    assert not (tmp_path / "out").exists()


def _scene_file(tmp: Path, scene: dict) -> Path:
    path = tmp / "scene.json"
    path.write_text(json.dumps(scene))
    return path


@pytest.mark.parametrize(
    ("scene", "field"),
    [
        ({"size": 32, "grid": 3, "objects": [{"shape": "circle", "color": ["red"], "row": 0, "col": 0}]}, "color"),
        ({**FACE, "size": 32.0}, "size: 32.0"),
        ({**FACE, "face": ["red"]}, "face"),
    ],
)
def test_scenes_with_wrong_types_are_refused(cli: Cli, tmp_path: Path, scene: dict, field: str) -> None:
    code, _, err = cli("world", "render", _scene_file(tmp_path, scene), "--out", tmp_path / "x.png")
    _one_error(code, err, "scene.json", field)
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("req", "field"),
    [
        ({"class": ["circle"], "count": 1}, "class"),
        ({"class": "circle", "count": 1, "color": ["red"]}, "color"),
        ({"class": "watch", "count": 1, "color": ["red"]}, "color"),
    ],
)
def test_geneval_metadata_with_lists_for_strings_is_refused(cli: Cli, tmp_path: Path, req: dict, field: str) -> None:
    line = {"prompt": "x", "include": [req]}
    if req["class"] == "watch":
        line["world"] = {"name": "watch", "size": 32, "minute_step": 5}
    (tmp_path / "meta.jsonl").write_text(json.dumps(line) + "\n")
    code, _, err = cli("score", "geneval", "--metadata", tmp_path / "meta.jsonl", "--images", tmp_path)
    _one_error(code, err, "meta.jsonl:1", field)


def test_image_tokenizer_kind_that_is_not_a_string_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"kind": ["vq"]}))
    with pytest.raises(UserError, match="kind: unknown tokenizer kind"):
        load_image_tokenizer(tmp_path)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("scorer: image\n", "cannot score the items of generator 'vqa'"),
        ("options: {kinds: count}\n", "options.kinds"),
        ("options: {kinds: [colour]}\n", "unknown question kind"),
        ("outputs_of: mytask\n", "leads back to itself"),
        ("outputs_of: other.yaml\n", "leads back to itself"),
    ],
)
def test_task_yaml_that_does_not_fit_together_is_refused(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str, needle: str
) -> None:
    monkeypatch.chdir(tmp_path)
    text = TASK.replace("scorer: exact\n", "") if extra.startswith("scorer") else TASK
    (tmp_path / "mytask.yaml").write_text(text + extra)
    (tmp_path / "other.yaml").write_text(TASK.replace("mytask", "other") + "outputs_of: mytask.yaml\n")
    _one_error(*cli("eval", "oracle", "--tasks", "mytask.yaml", "--out", tmp_path / "eval")[::2], needle)
    with pytest.raises(UserError, match=needle):
        load_task("mytask.yaml")


@pytest.mark.parametrize(
    ("files", "needle"),
    [
        ({"mytask.yaml": "include: nowhere.yaml\n"}, "mytask.yaml: include 'nowhere.yaml': no such file"),
        ({"mytask.yaml": "include: mytask.yaml\n"}, "mytask.yaml: include 'mytask.yaml' leads back"),
        ({"mytask.yaml": "include: b.yaml\n", "b.yaml": "include: mytask.yaml\n"}, "b.yaml: include 'mytask.yaml'"),
        ({"mytask.yaml": "include: [b.yaml]\n"}, "mytask.yaml: include must name a task YAML file"),
        ({"mytask.yaml": "include: b.yaml\n", "b.yaml": "- a list\n"}, "include 'b.yaml'"),
    ],
)
def test_task_yaml_whose_include_cannot_be_read_is_refused(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str], needle: str
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(TASK + text if text.startswith("include") else text)
    _one_error(*cli("eval", "oracle", "--tasks", "mytask.yaml", "--out", tmp_path / "eval")[::2], needle)
    with pytest.raises(UserError, match="include"):
        load_task("mytask.yaml")


def test_compare_refuses_a_record_without_a_score(cli: Cli, tmp_path: Path) -> None:
    for name, rec in (("a", {"id": "x", "score": 1.0}), ("b", {"id": "x", "output": "y"})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "vqa.jsonl").write_text(json.dumps(rec) + "\n")
    _one_error(*cli("compare", tmp_path / "a", tmp_path / "b")[::2], "vqa.jsonl: record 1", "score")


# ---------------------------------------------------------------------------------------------- 4. silent acceptance


@pytest.mark.parametrize("weight", [".nan", ".inf"])
def test_non_finite_mixture_weights_are_refused(cli: Cli, tmp_path: Path, weight: str) -> None:
    mixture = f"data.mixture={{caption: 1, vqa: {weight}, t2i: 1}}"
    code, _, err = cli("train", "--out", tmp_path / "run", "--set", mixture, "--set", "optim.steps=1")
    _one_error(code, err, "data.mixture.vqa", "finite")


def test_duplicate_realunify_ids_are_refused_naming_both_lines(tmp_path: Path) -> None:
    item = {
        "id": "7",
        "task_type": "t",
        "prompt": "draw a cat.",
        "question_list": [{"question": "q?", "answer": "yes"}],
    }
    (tmp_path / "ru.jsonl").write_text("\n".join(json.dumps(item) for _ in range(2)) + "\n")
    with pytest.raises(UserError, match=r"line 2: id '7' is also the id at line 1"):
        load_realunify(tmp_path / "ru.jsonl")


def test_watch_minute_off_the_dial_step_is_refused(cli: Cli, tmp_path: Path) -> None:
    path = _scene_file(tmp_path, {**FACE, "minute": 7})
    _one_error(*cli("world", "render", path, "--out", tmp_path / "x.png")[::2], "minute: 7", "5-minute")
    assert cli("world", "render", path, "--out", tmp_path / "x.png", "--minute-step", "1")[0] == 0


@pytest.mark.parametrize(
    "edit",
    [{"name": "a|b"}, {"name": "a\nb"}, {"variants": [{"name": "x|y", "role": "unified"}]}],
)
def test_names_that_would_break_report_tables_are_refused(tmp_path: Path, edit: dict) -> None:
    with pytest.raises(UserError, match="cannot name a file"):
        load_preset(str(_preset(tmp_path, **edit)))


# ---------------------------------------------------------------------------------------------- 5. names as paths


@pytest.mark.parametrize(
    "edit",
    [
        {"variants": [{"name": "../escape", "role": "unified"}]},
        {"variants": [{"name": "/tmp/unifylab-escape", "role": "unified"}]},
        {"name": "../escape"},
        {"variants": [{"name": "a", "role": "unified"}, {"name": "b", "role": "unified", "init_from": "../a"}]},
        {"sweep": {"key": "data.n_scenes", "values": [20], "labels": ["../escape"]}},
        {"sweep": {"key": "data.n_scenes/../../escape", "values": [20]}},
    ],
)
def test_names_that_become_paths_cannot_leave_out(cli: Cli, tmp_path: Path, edit: dict) -> None:
    preset = _preset(tmp_path, **edit)
    code, _, err = cli("study", "--preset", preset, "--out", tmp_path / "a" / "out", "--device", "cpu")
    _one_error(code, err, "preset.yaml")
    assert [p.name for p in tmp_path.iterdir()] == ["preset.yaml"] and not Path("/tmp/unifylab-escape").exists()


def test_a_side_by_side_study_name_cannot_leave_out(cli: Cli, tmp_path: Path) -> None:
    sub = _preset(tmp_path, name="../escape")
    (tmp_path / "sbs.yaml").write_text(yaml.safe_dump({"name": "sbs", "studies": [str(sub)]}))
    code, _, err = cli("study", "--preset", tmp_path / "sbs.yaml", "--out", tmp_path / "a" / "out", "--device", "cpu")
    _one_error(code, err, "preset.yaml", "cannot name a file")
    assert {p.name for p in (tmp_path / "a").iterdir()} <= {"out"}
