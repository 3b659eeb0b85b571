import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unifylab.io import load_rgb, save_png

Cli = Callable[..., tuple[int, str, str]]


def _one_error_line(code: int, err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_sample_then_parse_prints_line_one(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "d"
    code, _, _ = cli("world", "sample", "--world", "shapes", "--n", "16", "--seed", "0", "--out", out)
    assert code == 0
    lines = (out / "scenes.jsonl").read_text().splitlines()
    assert len(lines) == 16 and len(list((out / "images").glob("*.png"))) == 16
    for i in (0, 7, 15):
        code, stdout, _ = cli("world", "parse", out / "images" / f"{i:06d}.png")
        assert code == 0 and stdout.strip() == lines[i]
    code, stdout, _ = cli("world", "parse", out / "images" / "000000.png", "--confidence")
    assert all(o["confidence"] == 1.0 for o in json.loads(stdout)["objects"])


def test_sample_is_reproducible_and_never_overwrites_without_force(cli: Cli, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    args = ("--n", "5", "--seed", "3", "--size", "64", "--grid", "5", "--noise", "8", "--jitter", "1", "--tint", "20")
    assert cli("world", "sample", "--out", a, *args)[0] == 0
    assert cli("world", "sample", "--out", b, *args)[0] == 0
    assert (a / "scenes.jsonl").read_bytes() == (b / "scenes.jsonl").read_bytes()
    assert (a / "images" / "000004.png").read_bytes() == (b / "images" / "000004.png").read_bytes()
    before = (a / "scenes.jsonl").read_bytes()
    code, _, err = cli("world", "sample", "--out", a, "--n", "2")
    _one_error_line(code, err, str(a), "--force")
    assert (a / "scenes.jsonl").read_bytes() == before
    (a / "notes.txt").write_text("mine")
    assert cli("world", "sample", "--out", a, "--n", "2", "--force")[0] == 0
    assert len(list((a / "images").glob("*.png"))) == 2  # the earlier run's five images are gone, not mixed in
    assert (a / "notes.txt").read_text() == "mine"  # what the command did not write is kept


def test_render_then_parse_round_trip(cli: Cli, tmp_path: Path) -> None:
    scene = {
        "world": "shapes",
        "size": 48,
        "grid": 4,
        "objects": [{"shape": "ring", "color": "orange", "row": 3, "col": 0}],
    }
    (tmp_path / "s.json").write_text(json.dumps(scene))
    assert cli("world", "render", tmp_path / "s.json", "--out", tmp_path / "s.png")[0] == 0
    code, stdout, _ = cli("world", "parse", tmp_path / "s.png", "--grid", "4")
    assert code == 0 and json.loads(stdout) == scene
    code, _, err = cli("world", "render", tmp_path / "s.json", "--out", tmp_path / "s.png")
    _one_error_line(code, err, "s.png", "--force")


def _bad_files(tmp: Path) -> dict[str, Path]:
    files = {}
    files["malformed"] = tmp / "bad.json"
    files["malformed"].write_text('{"size": 32, "grid": 3, "objects": [')
    files["shape"] = tmp / "star.json"
    files["shape"].write_text(
        json.dumps({"size": 32, "grid": 3, "objects": [{"shape": "star", "color": "red", "row": 0, "col": 0}]})
    )
    save_png(tmp / "ok.png", np.zeros((32, 32, 3), np.uint8))
    files["truncated"] = tmp / "trunc.png"
    files["truncated"].write_bytes((tmp / "ok.png").read_bytes()[:60])
    files["grey"] = tmp / "grey.png"
    Image.fromarray(np.zeros((32, 32), np.uint8), "L").save(files["grey"])
    files["tiny"] = tmp / "tiny.png"
    save_png(files["tiny"], np.zeros((8, 8, 3), np.uint8))
    return files


def test_user_errors_exit_2_with_one_line(cli: Cli, tmp_path: Path) -> None:
    f = _bad_files(tmp_path)
    cases = [
        (("world", "parse", tmp_path / "missing.png"), ("missing.png", "not found")),
        (("world", "render", tmp_path / "missing.json", "--out", tmp_path / "x.png"), ("missing.json", "not found")),
        (("world", "render", f["malformed"], "--out", tmp_path / "x.png"), ("bad.json", "malformed JSON")),
        (("world", "render", f["shape"], "--out", tmp_path / "x.png"), ("star.json", "objects[0].shape", "'star'")),
        (("world", "parse", f["truncated"]), ("trunc.png", "truncated")),
        (("world", "parse", f["grey"]), ("grey.png", "mode", "'L'")),
        (("world", "parse", f["tiny"]), ("8x8", "resize")),
        (("world", "sample", "--out", tmp_path / "s", "--grid", "9"), ("grid",)),
        (("world", "sample", "--out", tmp_path / "s", "--world", "clock"), ("--world", "'clock'")),
        (("world", "sample", "--out", tmp_path / "s", "--jitter", "3"), ("jitter",)),
        (("world", "sample"), ("--out",)),
        (("score", "geneval", "--metadata", tmp_path / "none.jsonl", "--images", tmp_path), ("none.jsonl",)),
    ]
    for args, needles in cases:
        code, _, err = cli(*args)
        _one_error_line(code, err, *needles)
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "s").exists()


def test_geneval_commands_end_to_end(cli: Cli, tmp_path: Path) -> None:
    d = tmp_path / "g"
    assert cli("data", "geneval", "--n-per-task", "8", "--out", d, "--render")[0] == 0
    score = ("score", "geneval", "--metadata", d / "metadata.jsonl", "--images", d / "images")
    code, stdout, _ = cli(*score, "--out", tmp_path / "per_image.jsonl", "--json")
    summary = json.loads(stdout)
    assert code == 0 and summary["overall"]["value"] == 1.0 and summary["images"] == 48
    records = [json.loads(x) for x in (tmp_path / "per_image.jsonl").read_text().splitlines()]
    assert len(records) == 48 and all(r["correct"] and r["parsed"]["objects"] for r in records)
    code, stdout, _ = cli(*score)
    assert code == 0 and "overall" in stdout and "1.000" in stdout
    code, _, err = cli(*score, "--out", tmp_path / "per_image.jsonl")
    _one_error_line(code, err, "per_image.jsonl", "--force")
    (tmp_path / "empty").mkdir()
    code, _, err = cli("score", "geneval", "--metadata", d / "metadata.jsonl", "--images", tmp_path / "empty")
    _one_error_line(code, err, "empty", "no images")
    (d / "images" / "00003.png").unlink()
    code, _, err = cli("score", "geneval", "--metadata", d / "metadata.jsonl", "--images", d / "images")
    _one_error_line(code, err, "indices 3")


def test_load_rgb_accepts_palette_and_opaque_rgba_but_not_transparency(tmp_path: Path) -> None:
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[4:10, 4:10] = (230, 25, 25)
    pal = Image.fromarray((rgb[..., 0] > 0).astype(np.uint8), "P")
    pal.putpalette([0, 0, 0, 230, 25, 25])
    pal.save(tmp_path / "p.png")
    assert np.array_equal(load_rgb(tmp_path / "p.png"), rgb)
    rgba = np.dstack([rgb, np.full((32, 32), 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert np.array_equal(load_rgb(tmp_path / "a.png", 32), rgb)
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    with pytest.raises(Exception, match="transparent"):
        load_rgb(tmp_path / "t.png")
    with pytest.raises(Exception, match="expected 64x64"):
        load_rgb(tmp_path / "a.png", 64)


def test_help_keeps_install_extras(cli: Cli) -> None:
    """Rich reads `[ray]` as markup and would print `pip install -e '.'`: the help must name the extra."""
    code, out, _ = cli("study", "--help")
    assert code == 0 and "'.[ray]'" in out
