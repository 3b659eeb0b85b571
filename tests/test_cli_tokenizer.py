import json
from collections.abc import Callable
from pathlib import Path

from unifylab.tokenize import TextTokenizer, VQTokenizer, load_image_tokenizer
from unifylab.world.shapes.tokenizer import GridTokenizer

Cli = Callable[..., tuple[int, str, str]]


def _error(code: int, err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(n in lines[0] for n in needles), lines[0]


def test_train_image_vq_writes_weights_config_and_metrics(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "vq"
    code, _, err = cli(
        "tokenizer",
        "train-image",
        "--world",
        "shapes",
        "--out",
        out,
        "--steps",
        "10",
        "--n-train",
        "128",
        "--n-val",
        "32",
        "--hidden",
        "16",
        "--levels",
        "4,4,4",
        "--device",
        "cpu",
    )
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "metrics.json", "train.json"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["codebook_size"] == 64 and 0 <= metrics["parse_exact"] <= 1 and metrics["steps"] == 10
    assert isinstance(load_image_tokenizer(out), VQTokenizer)
    before = (out / "model.safetensors").read_bytes()
    code, _, err = cli("tokenizer", "train-image", "--out", out, "--steps", "1")
    _error(code, err, str(out), "--force")
    assert (out / "model.safetensors").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_train_image_grid_patch_and_text(cli: Cli, tmp_path: Path) -> None:
    assert (
        cli("tokenizer", "train-image", "--kind", "grid", "--grid", "4", "--out", tmp_path / "g", "--n-val", "50")[0]
        == 0
    )
    tok = load_image_tokenizer(tmp_path / "g")
    assert isinstance(tok, GridTokenizer) and tok.grid == 4
    assert json.loads((tmp_path / "g" / "metrics.json").read_text())["identical_images"] == 1.0
    assert cli("tokenizer", "train-image", "--kind", "patch", "--out", tmp_path / "p", "--n-val", "20")[0] == 0
    assert load_image_tokenizer(tmp_path / "p").feature_dim == 48
    assert cli("tokenizer", "train-text", "--out", tmp_path / "t", "--n-scenes", "200")[0] == 0
    assert TextTokenizer.from_pretrained(tmp_path / "t").id("<rewrite>") == 8


def test_train_image_bad_options(cli: Cli, tmp_path: Path) -> None:
    cases = [
        (("--kind", "vqgan"), ("--kind", "'vqgan'")),
        (("--levels", "8,x"), ("--levels",)),
        (("--downsample", "3"), ("downsample",)),
        (("--n-train", "4", "--batch", "16", "--steps", "1"), ("too small",)),
        (("--kind", "patch", "--source", "vq"), ("--vq",)),
        (("--kind", "patch", "--source", "vq", "--vq", tmp_path / "none"), ("none", "not found")),
        (("--world", "clock"), ("--world",)),
    ]
    for args, needles in cases:
        code, _, err = cli("tokenizer", "train-image", "--out", tmp_path / "x", *args)
        _error(code, err, *needles)
    assert not (tmp_path / "x").exists()
