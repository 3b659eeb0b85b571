import numpy as np
import pytest
import torch

from unifylab.errors import UserError
from unifylab.tokenize import IGNORE, IMAGE, TEXT, Example, Packer, PatchTokenizer, TextTokenizer
from unifylab.tokenize.sequence import VocabLayout
from unifylab.world.shapes.canvas import render
from unifylab.world.shapes.scene import Obj, Scene
from unifylab.world.shapes.tokenizer import GridTokenizer


@pytest.fixture(scope="module")
def text() -> TextTokenizer:
    corpus = ["what color is the circle?", "red", "draw a red circle.", "make it blue", "yes", "no"] * 5
    return TextTokenizer.train(corpus, vocab_size=300)


SCENE = Scene(32, 3, (Obj("circle", "red", 0, 1), Obj("ring", "blue", 2, 2)))


def _sp(t: TextTokenizer, *names: str) -> list[int]:
    return [t.id(n) for n in names]


def test_vocab_layout_maps_both_ways() -> None:
    lay = VocabLayout(n_text=300, n_image=97)
    codes = torch.tensor([0, 5, 96])
    ids = lay.image_to_vocab(codes)
    assert ids.tolist() == [300, 305, 396] and lay.size == 397 and lay.image_offset == 300
    assert torch.equal(lay.vocab_to_image(ids), codes)
    assert lay.is_image(torch.tensor([299, 300, 396, 397])).tolist() == [False, True, True, False]
    with pytest.raises(ValueError):
        lay.image_to_vocab(torch.tensor([97]))
    with pytest.raises(ValueError):
        lay.vocab_to_image(torch.tensor([5]))


def test_understanding_and_generation_with_grid_tokens(text: TextTokenizer) -> None:
    grid = GridTokenizer(32, 3)
    packer = Packer(text, grid)
    codes = grid.encode_scenes([SCENE])[0]
    img_ids = (codes + text.vocab_size).tolist()
    q, a = text.encode("what color is the circle?"), text.encode("red")

    und = packer.pack(Example("und", "what color is the circle?", "red", image=codes))
    want = _sp(text, "<bos>", "<und>", "<boi>") + img_ids + _sp(text, "<eoi>") + q + a + _sp(text, "<eos>")
    assert und.input_ids.tolist() == want
    n_pre = len(want) - len(a) - 1
    assert und.labels.tolist() == [IGNORE] * n_pre + a + _sp(text, "<eos>")
    assert und.modality.tolist() == [TEXT] * 3 + [IMAGE] * 9 + [TEXT] * (len(want) - 12)
    assert und.pos2d[3:12].tolist() == [[r, c] for r in range(3) for c in range(3)]
    assert (und.pos2d[:3] == -1).all() and (und.pos2d[12:] == -1).all()
    assert not und.cont.any() and und.features.shape[0] == 0

    gen = packer.pack(Example("gen", "draw a red circle.", image=codes))
    p = text.encode("draw a red circle.")
    want = _sp(text, "<bos>", "<gen>") + p + _sp(text, "<boi>") + img_ids + _sp(text, "<eoi>", "<eos>")
    assert gen.input_ids.tolist() == want
    k = 2 + len(p) + 1
    assert gen.labels.tolist() == [IGNORE] * k + img_ids + _sp(text, "<eoi>") + [IGNORE]
    prefix = packer.pack(Example("gen", "draw a red circle."), with_target=False)
    assert prefix.input_ids.tolist() == want[:k]
    assert packer.layout.vocab_to_image(gen.input_ids[k : k + 9]).tolist() == codes.tolist()


def test_edit_rewrite_and_configurable_loss(text: TextTokenizer) -> None:
    grid = GridTokenizer(32, 3)
    codes = grid.encode_scenes([SCENE])[0]
    target = grid.encode_scenes([Scene(32, 3, (Obj("circle", "blue", 0, 1),))])[0]
    packer = Packer(text, grid, loss_on={"edit": ("instruction", "target"), "rewrite": ("prompt", "answer")})
    edit = packer.pack(Example("edit", "make it blue", image=target, source=codes))
    names = [n for n, _, _ in edit.segments]
    assert names == ["<bos>", "<edit>", "<boi>", "source", "<eoi>", "instruction", "<boi>", "target", "<eoi>", "<eos>"]
    trained = {n for n, a, b in edit.segments if (edit.labels[a:b] != IGNORE).any()}
    assert trained == {"instruction", "target", "<eoi>"}
    assert int(edit.modality.sum()) == 18
    rw = packer.pack(Example("rewrite", "draw a red circle.", "yes"))
    assert (rw.labels != IGNORE).sum() == len(text.encode("draw a red circle.")) + len(text.encode("yes")) + 1
    with pytest.raises(UserError, match="unknown segment"):
        Packer(text, grid, loss_on={"gen": ("answer",)})


def test_continuous_understanding_input_and_collation(text: TextTokenizer) -> None:
    grid, patch = GridTokenizer(32, 3), PatchTokenizer(32, 8)
    packer = Packer(text, und_image=patch, gen_image=grid)
    img = render(SCENE)
    und = packer.pack(Example("und", "what color is the circle?", "red", image=patch.encode(img)[0]))
    gen = packer.pack(Example("gen", "draw a red circle.", image=grid.encode(img)[0]))
    assert und.cont.sum() == 16 and und.features.shape == (16, 192)
    assert (und.input_ids[und.cont] == text.id("<pad>")).all() and (und.modality[und.cont] == IMAGE).all()
    batch = packer.collate([und, gen])
    n = max(len(und), len(gen))
    assert batch["input_ids"].shape == (2, n) and batch["features"].shape == (16, 192)
    short = 0 if len(und) < len(gen) else 1
    k = min(len(und), len(gen))
    assert batch["attention_mask"][short].tolist() == [True] * k + [False] * (n - k)
    assert (batch["labels"][short, k:] == IGNORE).all() and (batch["input_ids"][short, k:] == 0).all()
    assert torch.equal(batch["features"], und.features)
    assert np.array_equal(patch.decode(batch["features"][None]), img[None])
    with pytest.raises(UserError, match="continuous"):
        Packer(text, und_image=patch, gen_image=grid, loss_on={"und": ("image",)}).pack(
            Example("und", "q", "a", image=patch.encode(img)[0])
        )
    assert Packer(text, und_image=patch, gen_image=patch).flow  # continuous output: flow slots (tests/test_flow.py)
    with pytest.raises(UserError, match="image tokens have shape"):
        packer.pack(Example("gen", "x", image=torch.zeros(4, dtype=torch.long)))
