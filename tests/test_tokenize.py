import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unifylab.errors import UserError
from unifylab.tokenize import (
    SPECIAL_TOKENS,
    PatchTokenizer,
    TextTokenizer,
    VQConfig,
    load_image_tokenizer,
    world_corpus,
)
from unifylab.train.vq import VQTrainConfig, save_trained, train_vq
from unifylab.world.shapes.canvas import ShapesConfig, render, sample_scenes
from unifylab.world.shapes.tokenizer import GridTokenizer


@pytest.fixture(scope="module")
def text_tok() -> TextTokenizer:
    return TextTokenizer.train(world_corpus(400, seed=0), vocab_size=512)


@pytest.fixture(scope="module")
def tiny_vq():
    cfg = VQTrainConfig(model=VQConfig(hidden=16, levels=(4, 4, 4)), n_train=256, n_val=64, steps=15, batch=16)
    return train_vq(cfg)


def _renders(cfg: ShapesConfig, n: int, seed: int = 0) -> tuple[list, np.ndarray]:
    scenes = sample_scenes(cfg, n, seed)
    return scenes, np.stack([render(s) for s in scenes])


def test_text_tokenizer_specials_round_trip_and_save(text_tok: TextTokenizer, tmp_path: Path) -> None:
    assert [text_tok.id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    for s in world_corpus(100, seed=5) + ["Ünïcode ✓ and  double  spaces\n", "", "draw 12 zebras!"]:
        assert text_tok.decode(text_tok.encode(s)) == s
    assert len(text_tok.encode("we see a red circle at row 1, column 2.")) <= 12  # one token per word or so
    text_tok.save_pretrained(tmp_path)
    back = TextTokenizer.from_pretrained(tmp_path)
    assert back.encode("is there an orange ring?") == text_tok.encode("is there an orange ring?")
    ids = [text_tok.id("<bos>"), *text_tok.encode("hi"), text_tok.id("<eos>")]
    assert text_tok.decode(ids) == "hi" and text_tok.decode(ids, skip_special=False) == "<bos>hi<eos>"


def test_text_tokenizer_bad_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        TextTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match="not a valid tokenizer.json"):
        TextTokenizer.from_pretrained(tmp_path)
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>")).save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(UserError, match="special token <pad> must have id 0"):
        TextTokenizer.from_pretrained(tmp_path)
    with pytest.raises(UserError, match="empty corpus"):
        TextTokenizer.train([])


@pytest.mark.parametrize(
    "cfg", [ShapesConfig(size=32, grid=3), ShapesConfig(size=64, grid=5, max_objects=8, sizes=("large", "small"))]
)
def test_grid_tokenizer_is_exact(cfg: ShapesConfig, tmp_path: Path) -> None:
    scenes, images = _renders(cfg, 200)
    tok = GridTokenizer(cfg.size, cfg.grid)
    codes = tok.encode(images)
    assert codes.shape == (200, cfg.grid**2) and codes.dtype == torch.long
    assert torch.equal(codes, tok.encode_scenes(scenes))
    assert np.array_equal(tok.decode(codes), images)
    assert tok.decode_scenes(codes) == scenes
    assert tok.vocab_size == (97 if "small" in cfg.sizes else 49) and int(codes.max()) < tok.vocab_size
    tok.save_pretrained(tmp_path)
    back = load_image_tokenizer(tmp_path)
    assert isinstance(back, GridTokenizer) and torch.equal(back.encode(images), codes)
    assert back.positions().tolist()[: cfg.grid + 1] == [[0, c] for c in range(cfg.grid)] + [[1, 0]]


def test_patch_tokenizer_pixels_round_trip_exactly() -> None:
    _, images = _renders(ShapesConfig(size=48, grid=4), 20)
    tok = PatchTokenizer(48, 4)
    feats = tok.encode(images)
    assert feats.shape == (20, 144, 48) and feats.dtype == torch.float32
    assert np.array_equal(tok.decode(feats), images)
    top_left = (images[0, :4, :4].astype(np.float32) / 127.5 - 1).reshape(-1)
    assert torch.allclose(feats[0, 0], torch.from_numpy(top_left))


def test_vq_tokenizer_codes_decode_save_and_load(tiny_vq, tmp_path: Path) -> None:
    tok, metrics = tiny_vq
    _, images = _renders(ShapesConfig(), 8, seed=4)
    codes = tok.encode(images)
    assert codes.shape == (8, 64) and 0 <= int(codes.min()) and int(codes.max()) < tok.vocab_size == 64
    out = tok.decode(codes)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert set(metrics) >= {"psnr_db", "codebook_usage", "parse_exact", "train_seconds"}
    save_trained(tok, VQTrainConfig(model=tok.cfg), metrics, tmp_path)
    back = load_image_tokenizer(tmp_path)
    assert torch.equal(back.encode(images), codes) and np.array_equal(back.decode(codes), out)
    patch = PatchTokenizer(source="vq", vq=back)
    feats = patch.encode(images)
    assert feats.shape == (8, 64, 3)
    assert np.array_equal(patch.decode(feats), out)
    patch.save_pretrained(tmp_path / "patch")
    assert torch.allclose(load_image_tokenizer(tmp_path / "patch").encode(images), feats)


def test_vq_fsq_codes_and_values_agree() -> None:
    from unifylab.tokenize.vq import FSQ

    fsq = FSQ((8, 5, 5, 5))
    q, idx = fsq(torch.randn(20000, 4))
    assert torch.allclose(fsq.codes_to_values(idx), q) and idx.unique().numel() > 900
    assert int(idx.min()) >= 0 and int(idx.max()) < 1000
    assert fsq.codes_to_values(torch.arange(1000)).unique(dim=0).shape[0] == 1000


def test_tokenizer_folder_errors(tiny_vq, tmp_path: Path) -> None:
    tok, metrics = tiny_vq
    with pytest.raises(UserError, match="tokenizer folder not found"):
        load_image_tokenizer(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="config.json: missing"):
        load_image_tokenizer(tmp_path / "empty")
    tok.save_pretrained(tmp_path / "vq")
    cfg = json.loads((tmp_path / "vq" / "config.json").read_text())
    (tmp_path / "vq" / "config.json").write_text(json.dumps({**cfg, "levels": [8, 5, 5, 5]}))
    with pytest.raises(UserError, match="weights do not match"):
        load_image_tokenizer(tmp_path / "vq")
    (tmp_path / "vq" / "config.json").write_text(json.dumps({**cfg, "kind": "vqgan"}))
    with pytest.raises(UserError, match="unknown tokenizer kind 'vqgan'"):
        load_image_tokenizer(tmp_path / "vq")
    (tmp_path / "vq" / "config.json").write_text(json.dumps({**cfg, "downsample": 3}))
    with pytest.raises(UserError, match="downsample"):
        load_image_tokenizer(tmp_path / "vq")
    (tmp_path / "vq" / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "vq" / "model.safetensors").unlink()
    with pytest.raises(UserError, match="model.safetensors: missing"):
        load_image_tokenizer(tmp_path / "vq")


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 64, 64, 3), np.uint8),
        np.zeros((2, 32, 32), np.uint8),
        np.zeros((2, 32, 32, 4), np.uint8),
        np.zeros((2, 32, 32, 3), np.float32),
    ],
)
def test_images_of_wrong_size_or_channels_are_one_clear_error(tiny_vq, bad: np.ndarray) -> None:
    for tok in (tiny_vq[0], GridTokenizer(), PatchTokenizer()):
        with pytest.raises(UserError, match="expects"):
            tok.encode(bad)


def test_empty_training_set_is_an_error() -> None:
    with pytest.raises(UserError, match="too small"):
        train_vq(VQTrainConfig(n_train=4, batch=16, steps=1))


@pytest.mark.slow
def test_default_vq_meets_the_quality_targets() -> None:
    _, metrics = train_vq(VQTrainConfig())
    assert metrics["codebook_usage"] >= 0.8 and metrics["parse_exact"] >= 0.99 and metrics["psnr_db"] > 28


def test_permuted_tokenizer_holds_the_same_information_in_other_codes(tmp_path: Path) -> None:
    from unifylab.tokenize.image import image_tokenizer, load_image_tokenizer
    from unifylab.tokenize.permuted import PermutedTokenizer

    cfg = ShapesConfig()
    base = image_tokenizer("grid", world=cfg)
    perm = PermutedTokenizer(base, 7)
    scenes, images = _renders(cfg, 32, seed=3)
    codes, plain = perm.encode(images), base.encode(images)
    assert (codes != plain).float().mean() > 0.8  # misaligned: most codes mean something else
    assert np.array_equal(perm.decode(codes), images)  # the same information: decodes exactly
    assert torch.equal(perm.encode_scenes(scenes), codes)
    perm.save_pretrained(tmp_path / "p")
    again = load_image_tokenizer(tmp_path / "p")
    assert torch.equal(again.encode(images), codes) and again.canvas == base.canvas
    with pytest.raises(UserError, match="permutes a world's exact tokenizer"):
        PermutedTokenizer(image_tokenizer("patch", world=cfg), 7)
