import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unifylab.errors import UserError
from unifylab.models import (
    GEN,
    UND,
    ModelConfig,
    Sampling,
    UnifiedTransformer,
    from_pretrained,
    generate_images,
    generate_text,
    load_tokenizers,
)
from unifylab.tokenize import Example, Packer, PatchTokenizer, TextTokenizer, world_corpus
from unifylab.world.shapes import language as L
from unifylab.world.shapes.canvas import ShapesConfig, render, sample_scenes
from unifylab.world.shapes.tokenizer import GridTokenizer

VARIANTS = [
    dict(backbone="shared"),
    dict(backbone="fork", fork_layer=1),
    dict(backbone="fork", fork_layer=0),
    dict(backbone="mot"),
    dict(backbone="shared", rope="2d", output_heads="split", image_pos=True, qk_norm=True),
    dict(backbone="mot", image_input="patch", patch_dim=48, input_grid=(8, 8), rope="2d", image_pos=True),
]
IDS = ["shared", "fork1", "fork0", "mot", "shared-2d-split-qknorm", "mot-patch"]


@pytest.fixture(scope="module")
def text() -> TextTokenizer:
    return TextTokenizer.train(world_corpus(300, seed=0), 400)


def _setup(text: TextTokenizer, variant: dict, n: int = 8, seed: int = 0):
    model, packer, items, und_tokens, codes = _build(text, variant, n, seed)
    return model, packer, packer.collate(items), und_tokens, codes


def _build(text: TextTokenizer, variant: dict, n: int, seed: int):
    grid = GridTokenizer(32, 3)
    und = PatchTokenizer(32, 4) if variant.get("image_input") == "patch" else grid
    packer = Packer(text, und, grid)
    cfg = ModelConfig(
        n_text=text.vocab_size,
        n_image=grid.vocab_size,
        image_grid=(3, 3),
        dim=32,
        layers=2,
        heads=2,
        max_len=128,
        **variant,
    )
    torch.manual_seed(seed)
    model = UnifiedTransformer(cfg)
    rng = np.random.default_rng(seed)
    scenes = sample_scenes(ShapesConfig(), n, seed)
    images = np.stack([render(s) for s in scenes])
    und_tokens, codes = und.encode(images), grid.encode(images)
    items = []
    for i, s in enumerate(scenes):
        qa = L.sample_qa(s, rng)
        items.append(packer.pack(Example("und", qa.question, qa.answer, image=und_tokens[i])))
        items.append(packer.pack(Example("gen", L.t2i_prompt(s, rng)[0], image=codes[i])))
    return model, packer, items, und_tokens, codes


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_packed_rows_give_the_unpacked_loss_and_gradients(text: TextTokenizer, variant: dict) -> None:
    model, packer, items, _, _ = _build(text, variant, 6, 1)
    plain, packed = packer.collate(items), packer.collate(items, pack=True)
    assert packed["input_ids"].shape[0] < plain["input_ids"].shape[0]  # rows were actually shared
    results = []
    for batch in (plain, packed):
        model.zero_grad()
        out = model.loss(batch)
        out.sum.backward()
        results.append((out, [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (a, ga), (b, gb) = results
    assert float(a.count) == float(b.count)
    torch.testing.assert_close(b.sum, a.sum, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(b.seq_sum, a.seq_sum, rtol=1e-4, atol=1e-4)
    assert len(ga) == len(gb)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(y, x, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_each_backbone_trains_with_falling_loss(text: TextTokenizer, variant: dict) -> None:
    model, _, batch, _, _ = _setup(text, variant)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        out = model.loss(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    assert losses[-1] < 0.6 * losses[0], losses
    assert torch.isfinite(out.text_loss) and torch.isfinite(out.image_loss)


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_cached_logits_match_uncached(text: TextTokenizer, variant: dict) -> None:
    model, _, batch, _, _ = _setup(text, variant, n=3)
    model.eval()
    ids, mod, pos2d, cont = batch["input_ids"], batch["modality"], batch["pos2d"], batch["cont"]
    mask = batch["attention_mask"]
    with torch.no_grad():
        full = model(ids, modality=mod, pos2d=pos2d, cont=cont, features=batch["features"], attention_mask=mask)
        pos = model.positions(mod, pos2d, mask)
        branch = model.branch_of(ids, mask)
        cache = model.new_cache(ids.shape[0], ids.shape[1])
        k = max(20, int(cont.nonzero()[:, 1].max()) + 1 if cont.any() else 0)  # prefill holds every continuous slot
        parts = [
            model(
                ids[:, :k],
                modality=mod[:, :k],
                pos2d=pos2d[:, :k],
                cont=cont[:, :k],
                features=batch["features"],
                attention_mask=mask[:, :k],
                branch=branch,
                positions=pos[:, :k],
                cache=cache,
                start=0,
            )
        ]
        for t in range(k, ids.shape[1]):
            step = slice(t, t + 1)
            parts.append(
                model(
                    ids[:, step],
                    modality=mod[:, step],
                    pos2d=pos2d[:, step],
                    attention_mask=mask[:, : t + 1],
                    branch=branch,
                    positions=pos[:, step],
                    cache=cache,
                    start=t,
                )
            )
    cached = torch.cat(parts, 1)
    real = mask[..., None].expand_as(full)
    assert torch.allclose(full[real], cached[real], atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_generation_is_seeded_cached_and_restricted(text: TextTokenizer, variant: dict) -> None:
    model, packer, _, und_tokens, _ = _setup(text, variant, n=2)
    model.eval()
    prompts = [packer.pack(Example("gen", p), with_target=False) for p in ("draw a red ring.", "an image of a cross")]
    uncond = packer.pack(Example("gen", ""), with_target=False)
    s = Sampling(temperature=1.0, top_k=30, top_p=0.9)
    a = generate_images(model, prompts, uncond=uncond, guidance=3.0, sampling=s, seeds=[7, 8])
    assert a.shape == (2, 9) and int(a.min()) >= 0 and int(a.max()) < 97
    assert torch.equal(a, generate_images(model, prompts, uncond=uncond, guidance=3.0, sampling=s, seeds=[7, 8]))
    assert torch.equal(
        a, generate_images(model, prompts, uncond=uncond, guidance=3.0, sampling=s, seeds=[7, 8], use_cache=False)
    )
    assert not torch.equal(a, generate_images(model, prompts, uncond=uncond, guidance=3.0, sampling=s, seeds=[9, 10]))
    # a row's image depends on its own seed only, not on the batch it is drawn in (resume and --limit redraw it)
    alone = generate_images(model, prompts[1:], uncond=uncond, guidance=3.0, sampling=s, seeds=[8])
    assert torch.equal(a[1:], alone)
    questions = [
        packer.pack(Example("und", "what color is the circle?", image=und_tokens[i]), with_target=False)
        for i in range(2)
    ]
    t1 = generate_text(model, questions, max_new_tokens=6, sampling=s, seeds=[3, 4])
    assert t1 == generate_text(model, questions, max_new_tokens=6, sampling=s, seeds=[3, 4], use_cache=False)
    assert all(len(x) <= 6 and all(i < text.vocab_size for i in x) for x in t1)
    greedy = generate_text(model, questions, max_new_tokens=6)
    assert greedy == generate_text(model, questions, max_new_tokens=6, use_cache=False)


def test_text_generation_stops_at_eos_after_training(text: TextTokenizer) -> None:
    model, packer, batch, und_tokens, _ = _setup(text, dict(backbone="shared"), n=4)
    fixed = packer.pack(Example("und", "what color is the circle?", "red", image=und_tokens[0]))
    batch = packer.collate([fixed] * 4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = model.loss(batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    prefix = packer.pack(Example("und", "what color is the circle?", image=und_tokens[0]), with_target=False)
    assert text.decode(generate_text(model.eval(), [prefix], max_new_tokens=10)[0]) == "red"


def test_parameter_counts_per_component(text: TextTokenizer) -> None:
    counts = {name: _setup(text, v)[0].parameter_counts() for name, v in zip(IDS, VARIANTS)}
    for c in counts.values():
        assert c["total"] == sum(v for k, v in c.items() if k != "total")
    assert counts["fork1"]["und_branch"] == counts["fork1"]["gen_branch"] == counts["fork1"]["shared_layers"]
    assert counts["fork0"]["shared_layers"] == 0
    assert counts["mot"]["text_experts"] == counts["mot"]["image_experts"] == counts["shared"]["shared_layers"]


def test_branch_routing_uses_the_task_tag(text: TextTokenizer) -> None:
    model, _, batch, _, _ = _setup(text, dict(backbone="fork", fork_layer=1), n=2)
    assert model.branch_of(batch["input_ids"], batch["attention_mask"]).tolist() == [UND, GEN, UND, GEN]
    bad = batch["input_ids"].clone()
    bad[:, 1] = 20
    with pytest.raises(ValueError, match="task tag"):
        model(bad)


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_save_and_load_round_trip(text: TextTokenizer, variant: dict, tmp_path: Path) -> None:
    model, packer, batch, _, _ = _setup(text, variant, n=2)
    model.eval()
    model.save_pretrained(tmp_path, text=text, gen_image=packer.gen_image, und_image=packer.und_image)
    back = UnifiedTransformer.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(model.loss(batch).loss, back.loss(batch).loss)
    t, u, g = load_tokenizers(tmp_path)
    assert t.encode("a red ring") == text.encode("a red ring") and g.kind == "grid"
    assert u.kind == packer.und_image.kind
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.bin"))


def test_loading_a_mismatched_folder_names_the_tensor(text: TextTokenizer, tmp_path: Path) -> None:
    model, _, _, _, _ = _setup(text, dict(backbone="shared"))
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "dim": 64, "heads": 4}))
    with pytest.raises(
        UserError, match=r"tensor embed.weight has shape \[\d+, 32\] but config.json implies \[\d+, 64\]"
    ):
        from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "layers": 3}))
    with pytest.raises(UserError, match="missing.*trunk.2"):
        from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "backbone": "fork"}))
    with pytest.raises(UserError, match="fork_layer"):
        from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "dimension": 3}))
    with pytest.raises(UserError, match="dimension"):
        from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="safetensors"):
        from_pretrained(tmp_path)
    with pytest.raises(UserError, match="not found"):
        from_pretrained(tmp_path / "nope")


def test_per_row_sampling_draws_from_the_softmax() -> None:
    """Gumbel-max with counter-based noise: over many row seeds, token frequencies match softmax(logits / T)."""
    from unifylab.models.generate import sample

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).expand(20000, -1)
    seeds = torch.arange(20000)
    freq = torch.bincount(sample(logits, Sampling(temperature=1.0), seeds, 3), minlength=4).double() / 20000
    assert torch.allclose(freq, logits[0].double().softmax(-1), atol=0.015)
    assert not torch.equal(sample(logits, Sampling(), seeds, 3), sample(logits, Sampling(), seeds, 4))
    top1 = sample(logits, Sampling(temperature=1.0, top_k=1), seeds, 3)
    assert bool((top1 == 0).all())
