import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from unifylab.analysis import linear_cka, mutual_knn, renyi_entropy
from unifylab.analysis.capture import save_states, scene_requests
from unifylab.eval.native import NativeModel
from unifylab.eval.protocol import HiddenRequest
from unifylab.world.shapes.canvas import ShapesConfig

Cli = Callable[..., tuple[int, str, str]]
TINY = {
    "world": {"size": 32, "grid": 3},
    "model": {"dim": 32, "layers": 2, "heads": 2, "max_len": 128},
    "optim": {"steps": 12, "batch": 8, "warmup": 2},
    "eval": {"every": 100, "examples": 4},
    "checkpoint": {"every": 4, "keep": 3},
}


def _features(n: int = 200, d: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_mutual_knn_is_one_for_identical_features_and_chance_for_independent_ones() -> None:
    x = _features()
    assert mutual_knn(x, x, 10) == 1.0
    assert mutual_knn(x, x @ torch.linalg.qr(_features(16, 16, 1))[0] * 3.0, 10) == pytest.approx(1.0)
    chance = 10 / 199
    assert abs(mutual_knn(x, _features(seed=2), 10) - chance) < 0.03


def test_alignment_scores_rise_monotonically_with_mixing() -> None:
    x, noise = _features(), _features(seed=3)
    knn = [mutual_knn(x, t * x + (1 - t) * noise, 10) for t in (0.0, 0.3, 0.6, 0.9, 1.0)]
    cka = [linear_cka(x, t * x + (1 - t) * noise) for t in (0.0, 0.3, 0.6, 0.9, 1.0)]
    assert knn == sorted(knn) and knn[-1] == 1.0 and knn[0] < 0.1
    assert cka == sorted(cka) and cka[-1] == pytest.approx(1.0) and cka[0] < 0.15


def test_cka_is_invariant_to_rotation_and_scale() -> None:
    x, y = _features(), _features(seed=4) + _features()
    rot = torch.linalg.qr(_features(16, 16, 5))[0]
    assert linear_cka(x, x @ rot * 7.0) == pytest.approx(1.0)
    assert linear_cka(x @ rot, y) == pytest.approx(linear_cka(x, y))
    with pytest.raises(ValueError, match="paired"):
        mutual_knn(x, x[:10], 3)


def test_renyi_entropy_closed_forms() -> None:
    same = torch.ones(8, 5) * torch.tensor([1.0, 2, 3, 4, 5])
    assert renyi_entropy(same) == pytest.approx(0.0, abs=1e-9)
    assert renyi_entropy(torch.eye(8) * 3.0) == pytest.approx(math.log(8))
    assert renyi_entropy(torch.eye(8), alpha=2.0) == pytest.approx(math.log(8))
    two = torch.cat([torch.eye(2)[[0]].repeat(4, 1), torch.eye(2)[[1]].repeat(4, 1)])
    assert renyi_entropy(two) == pytest.approx(math.log(2), rel=1e-6)  # two orthogonal clusters: log 2
    with pytest.raises(ValueError, match="alpha"):
        renyi_entropy(same, alpha=1.0)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from unifylab.cli import main

    tmp = tmp_path_factory.mktemp("analysis")
    (tmp / "cfg.yaml").write_text(yaml.safe_dump(TINY))
    for name, extra in (("shared", []), ("fork", ["--set", "model.backbone=fork", "--set", "model.fork_layer=1"])):
        assert main(["train", str(tmp / "cfg.yaml"), "--out", str(tmp / name), "--quiet", *extra]) == 0
    return tmp


def test_native_hidden_states_have_every_layer_and_content_masks(run: Path) -> None:
    for name in ("shared", "fork"):
        model = NativeModel(run / name)
        reqs = scene_requests("und", ShapesConfig(), 3) + scene_requests("gen", ShapesConfig(), 3)
        reqs += [HiddenRequest("gen", "a red circle at row 1, column 1."), HiddenRequest("und", "", reqs[0].image)]
        states = model.hidden_states(reqs)
        assert len(states) == len(reqs)
        for r, s in zip(reqs, states):
            assert s.layers.shape[0] == 3 and s.layers.shape[2] == 32  # embeddings + 2 blocks, width 32
            n = s.layers.shape[1]
            assert all(m.shape == (n,) for m in s.masks.values())
            assert not bool((s.masks["text"] & s.masks["image"]).any())
            assert bool((s.masks["prompt"] | s.masks["response"]).eq(s.masks["text"] | s.masks["image"]).all())
            if r.image is not None:
                assert int(s.masks["image"].sum()) == 9  # 3x3 grid tokens
        und, gen = states[0], states[3]
        assert bool(und.masks["response"].any()) and not bool((und.masks["response"] & und.masks["image"]).any())
        assert bool(gen.masks["response"].eq(gen.masks["image"]).all())
        assert not bool(states[-2].masks["image"].any()) and not bool(states[-1].masks["text"].any())
        alone = model.hidden_states(reqs[:1])[0]  # batching (padding) does not change a sequence's states
        torch.testing.assert_close(alone.layers, und.layers, rtol=1e-4, atol=1e-5)


def test_states_stream_to_disk_in_shards(run: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    model = NativeModel(run / "shared")
    shards = save_states(model, scene_requests("gen", ShapesConfig(), 5), tmp_path / "states", batch=2)
    assert len(shards) == 3
    first = load_file(str(shards[0]))
    assert first["0.layers"].shape[0] == 3 and first["1.image"].dtype == torch.bool
    assert "4.layers" in load_file(str(shards[2]))


def test_analyze_commands_write_jsonl_and_plots(cli: Cli, run: Path, tmp_path: Path) -> None:
    out = tmp_path / "an"
    code, _, err = cli(
        "analyze", "alignment", run / "shared", run / "fork", "--out", out, "--n", "30", "--k", "5", "--save-states"
    )
    assert code == 0, err
    assert len(list((out / "states" / "fork" / "gen").glob("states-*.safetensors"))) == 1
    rows = [json.loads(ln) for ln in (out / "alignment.jsonl").read_text().splitlines()]
    assert {r["model"] for r in rows} == {"shared", "fork"} and {r["input"] for r in rows} == {"und", "gen", "separate"}
    assert len(rows) == 2 * 3 * 3 and all(0 <= r["mutual_knn"] <= 1 and -1e-9 <= r["cka"] <= 1 + 1e-9 for r in rows)
    assert (out / "alignment.png").read_bytes()[:4] == b"\x89PNG"
    code, _, err = cli("analyze", "entropy", run / "shared", "--out", out, "--n", "6")
    assert code == 0, err
    rows = [json.loads(ln) for ln in (out / "entropy.jsonl").read_text().splitlines()]
    assert {r.get("input") for r in rows} == {"text", "image", "mixed", None}
    assert {r.get("response") for r in rows} >= {"image"}
    code, _, err = cli("analyze", "gradients", run / "shared", run / "fork", "--out", out, "--examples", "8")
    assert code == 0, err
    rows = [json.loads(ln) for ln in (out / "gradients.jsonl").read_text().splitlines()]
    shared = [r for r in rows if r["model"] == "shared"]
    assert sorted({r["step"] for r in shared}) == [4, 8, 12]
    assert all(r["cosine"] is not None and -1 <= r["cosine"] <= 1 for r in shared)
    fork = [r for r in rows if r["model"] == "fork" and r["step"] == 12]
    assert [r["cosine"] is None for r in fork if r["layer"] == "layer 1"] == [True]  # forked: nothing shared
    assert all(r["cosine"] is not None for r in fork if r["layer"] == "layer 0")


def test_analyze_errors_are_one_line(cli: Cli, run: Path, tmp_path: Path) -> None:
    code, _, err = cli("analyze", "alignment", "oracle", "--out", tmp_path / "x", "--n", "10", "--k", "3")
    assert code == 2 and "does not expose hidden states" in err
    code, _, err = cli("analyze", "alignment", run / "shared", "--out", tmp_path / "x", "--n", "10", "--k", "10")
    assert code == 2 and "--k 10" in err
    code, _, err = cli("analyze", "entropy", run / "shared", "--out", tmp_path / "x", "--alpha", "1")
    assert code == 2 and "--alpha" in err
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "alignment.jsonl").write_text("mine\n")
    code, _, err = cli("analyze", "alignment", run / "shared", "--out", tmp_path / "y", "--n", "10", "--k", "3")
    assert code == 2 and "already exists" in err and (tmp_path / "y" / "alignment.jsonl").read_text() == "mine\n"


def test_attention_outputs_rebuild_the_residual_stream(run: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    for name in ("shared", "fork"):
        model = NativeModel(run / name)
        reqs = scene_requests("und", ShapesConfig(), 2) + scene_requests("gen", ShapesConfig(), 2)
        for r, s in zip(reqs, model.hidden_states(reqs, attention=True)):
            assert s.attention.shape == (2, *s.layers.shape[1:])
            m = model.model
            blocks = (
                [m.trunk[0], m.trunk[1]]
                if name == "shared"
                else [m.trunk[0], m.branches[0 if r.kind == "und" else 1][0]]
            )
            with torch.no_grad():
                for d, blk in enumerate(blocks):  # x + attn(x) + mlp(norm2(x + attn(x))) is the next layer
                    mid = s.layers[d][None] + s.attention[d][None]
                    torch.testing.assert_close(
                        mid + blk.mlp(blk.norm2(mid, None), None), s.layers[d + 1][None], rtol=1e-4, atol=1e-5
                    )
        shards = save_states(model, reqs, tmp_path / name, batch=4)
        assert load_file(str(shards[0]))["3.attention"].shape[0] == 2
