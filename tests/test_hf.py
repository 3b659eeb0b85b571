"""The transformers adapters (Janus, Emu3) on tiny random models built offline: every protocol method, the CLI's eval
and analyze commands, and the loader's errors."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    Emu3Config,
    Emu3ForConditionalGeneration,
    Emu3Processor,
    JanusConfig,
    JanusForConditionalGeneration,
    JanusProcessor,
    PreTrainedTokenizerFast,
)
from transformers.models.emu3.image_processing_emu3 import Emu3ImageProcessor  # noqa: E402
from transformers.models.janus.image_processing_pil_janus import JanusImageProcessorPil  # noqa: E402

from unifylab.errors import UserError  # noqa: E402
from unifylab.eval.hf import HFEmu3, HFJanus, load_hf  # noqa: E402
from unifylab.eval.models import load_model  # noqa: E402
from unifylab.eval.protocol import HiddenRequest, ImageRequest, LoglikelihoodRequest, TextRequest  # noqa: E402
from unifylab.world.shapes.canvas import ShapesConfig, render, sample_scene  # noqa: E402

SIZE = 32  # world images and model inputs: 32 px, 4 x 4 image tokens
CORPUS = [
    "what colour is the circle?",
    "a red circle left of a blue square.",
    "describe the image.",
    "yes",
    "no",
    "there is a green triangle in the top left cell.",
    "how many objects are there?",
    "12*34",
] * 4
JANUS_CHAT = (
    "{% for m in messages %}{% if m['role'] == 'user' %}<|User|>: {% else %}<|Assistant|>: {% endif %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image_placeholder>\n{% else %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% if m['role'] == 'user' %}\n\n{% else %}<eos>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|Assistant|>:{% endif %}"
)
EMU3_CHAT = (
    "{% for m in messages %}{% if m['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% if m['role'] != 'user' %}<|extra_204|>{% endif %} {% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def _tokenizer(specials: list[str], bos: str | None, **named: str) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on a few world sentences (no downloads), with the model's special tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    if bos is not None:  # like Janus's Llama tokenizer, which starts every text with <bos>
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, **named)


def _text_config(tok: PreTrainedTokenizerFast) -> dict:
    return dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )


def _janus(folder: Path) -> None:
    tok = _tokenizer(
        [
            "<pad>",
            "<bos>",
            "<eos>",
            "<image_placeholder>",
            "<begin_of_image>",
            "<end_of_image>",
            "<|User|>",
            "<|Assistant|>",
        ],
        "<bos>",
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        extra_special_tokens={
            "image_token": "<image_placeholder>",
            "boi_token": "<begin_of_image>",
            "eoi_token": "<end_of_image>",
        },
    )
    config = JanusConfig(
        text_config=dict(model_type="llama", **_text_config(tok)),
        vision_config=dict(
            image_size=SIZE,
            patch_size=8,
            num_image_tokens=16,
            hidden_size=32,
            projection_dim=32,
            num_hidden_layers=1,
            num_attention_heads=4,
            mlp_ratio=2,
        ),
        vq_config=dict(
            embed_dim=8,
            num_embeddings=32,
            latent_channels=16,
            base_channels=32,
            channel_multiplier=[1, 1, 2, 2],
            num_res_blocks=1,
            projection_dim=32,
            image_token_embed_dim=32,
        ),
        image_token_id=tok.convert_tokens_to_ids("<image_placeholder>"),
    )
    torch.manual_seed(0)
    model = JanusForConditionalGeneration(config)
    gen = model.generation_config  # as the transformers conversion of Janus-Pro writes it
    gen._from_model_config = False
    gen.guidance_scale = 5
    gen.pad_token_id = tok.pad_token_id
    gen.generation_kwargs = {"boi_token_id": tok.convert_tokens_to_ids("<begin_of_image>")}
    image_processor = JanusImageProcessorPil(
        size={"height": SIZE, "width": SIZE}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    model.save_pretrained(folder)
    JanusProcessor(
        image_processor, tok, chat_template=JANUS_CHAT, use_default_system_prompt=True, num_image_tokens=16
    ).save_pretrained(folder)


def _emu3(folder: Path) -> None:
    visual = [f"<|visual token {i:06d}|>" for i in range(32)]
    tok = _tokenizer(
        [
            "<|endoftext|>",
            "<|extra_203|>",
            "<|extra_204|>",
            "<image>",
            "<|image start|>",
            "<|image end|>",
            "<|image token|>",
            "<|extra_200|>",
            "<|extra_201|>",
            *visual,
        ],
        None,
        bos_token="<|extra_203|>",
        eos_token="<|extra_204|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "image_token": "<image>",
            "boi_token": "<|image start|>",
            "eoi_token": "<|image end|>",
            "image_wrapper_token": "<|image token|>",
            "eof_token": "<|extra_201|>",
        },
    )
    config = Emu3Config(
        text_config=_text_config(tok),
        vq_config=dict(
            codebook_size=32,
            embed_dim=4,
            latent_channels=4,
            base_channels=32,
            channel_multiplier=[1, 1, 1, 1],
            num_res_blocks=1,
            attn_resolutions=[],
            hidden_size=32,
        ),
        vocabulary_map=tok.get_vocab(),
    )
    torch.manual_seed(0)
    Emu3ForConditionalGeneration(config).save_pretrained(folder)
    image_processor = Emu3ImageProcessor(
        min_pixels=SIZE * SIZE, max_pixels=SIZE * SIZE, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    Emu3Processor(image_processor, tok, chat_template=EMU3_CHAT).save_pretrained(folder)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory):
    """Tiny saved models {'hf-janus': DIR, 'hf-emu3': DIR}; Emu3 draws 32 x 32 px (4 x 4 tokens), not 720 x 720."""
    root = tmp_path_factory.mktemp("hf")
    _janus(root / "janus")
    _emu3(root / "emu3")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Emu3Processor, "image_area", SIZE * SIZE)
        yield {"hf-janus": root / "janus", "hf-emu3": root / "emu3"}


@pytest.fixture(scope="module")
def adapters(folders):
    return {kind: load_hf(kind, str(folder), "cpu") for kind, folder in folders.items()}


def _images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [render(sample_scene(ShapesConfig(size=SIZE), rng)) for _ in range(n)]


KINDS = ["hf-janus", "hf-emu3"]


@pytest.mark.parametrize("kind", KINDS)
def test_text_and_loglikelihood(adapters, kind):
    m = adapters[kind]
    assert isinstance(m, HFJanus if kind == "hf-janus" else HFEmu3)
    a, b = _images(2)
    answers = m.generate_text(
        [
            TextRequest("what colour is the circle?", a, max_tokens=3),
            TextRequest("describe the image.", None, max_tokens=2),
            TextRequest("a red circle", b, mode="rewrite", max_tokens=2),
        ]
    )
    assert len(answers) == 3 and all(isinstance(x, str) for x in answers)
    reqs = [
        LoglikelihoodRequest("what colour is the circle?", "red", a),
        LoglikelihoodRequest("how many objects are there?", "two blue squares", b),
        LoglikelihoodRequest("is there a circle?", "yes", None),
    ]
    batched = m.loglikelihood(reqs)
    alone = [m.loglikelihood([r])[0] for r in reqs]
    assert all(np.isfinite(x) and x < 0 for x in batched)
    np.testing.assert_allclose(batched, alone, rtol=1e-4)  # left padding changes nothing


@pytest.mark.parametrize("kind", KINDS)
def test_generate_images(adapters, kind):
    m = adapters[kind]
    out = m.generate_images(
        [
            ImageRequest("a red circle", ShapesConfig(size=32)),
            ImageRequest("a blue square", ShapesConfig(size=48), seed=1),
        ]
    )
    assert [x.shape for x in out] == [(32, 32, 3), (48, 48, 3)]
    assert all(x.dtype == np.uint8 for x in out)
    with pytest.raises(UserError, match="cannot edit"):
        m.generate_images([ImageRequest("make it blue", ShapesConfig(), source=_images(1)[0])])


@pytest.mark.parametrize("kind", KINDS)
def test_hidden_states(adapters, kind):
    m = adapters[kind]
    image = _images(1)[0]
    reqs = [
        HiddenRequest("und", "describe the image.", image, "a red circle."),
        HiddenRequest("und", "", image),
        HiddenRequest("und", "is there a circle?", None, "yes"),
        HiddenRequest("gen", "a red circle left of a blue square.", image),
        HiddenRequest("gen", "a red circle."),
    ]
    states = m.hidden_states(reqs)
    layers = m.model.config.text_config.num_hidden_layers + 1
    for s in states:
        assert s.layers.dtype == torch.float32 and s.layers.device.type == "cpu"
        assert s.layers.shape[0] == layers and s.layers.shape[2] == 32
        assert set(s.masks) == {"text", "image", "prompt", "response"}
        for mask in s.masks.values():
            assert mask.dtype == torch.bool and mask.shape == (s.layers.shape[1],)
        assert not (s.masks["text"] & s.masks["image"]).any()
        assert not (s.masks["prompt"] & s.masks["response"]).any()
        assert torch.equal(s.masks["prompt"] | s.masks["response"], s.masks["text"] | s.masks["image"])
    und, image_only, text_only, gen, gen_text = (s.masks for s in states)
    assert int(und["image"].sum()) == 16 and und["response"].any()
    assert torch.equal(und["response"] & und["text"], und["response"])
    assert int(image_only["image"].sum()) == 16 and not image_only["text"].any()
    assert not text_only["image"].any() and text_only["prompt"].any() and text_only["response"].any()
    assert int(gen["image"].sum()) == 16 and torch.equal(gen["response"], gen["image"])
    assert torch.equal(gen["prompt"], gen["text"]) and gen["text"].any()
    assert not gen_text["image"].any() and gen_text["text"].any()
    alone = m.hidden_states([reqs[3]])[0]  # batching and padding change nothing
    torch.testing.assert_close(alone.layers, states[3].layers, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_masks_cover_exactly_the_text(adapters, kind):
    m = adapters[kind]
    enc, spans = m._und_inputs([("describe the image.", _images(1)[0], "a red circle.")])
    ids = enc["input_ids"][0]
    assert m.tokenizer.decode(ids[slice(*spans[0]["text"])]).strip() == "describe the image."
    assert m.tokenizer.decode(ids[slice(*spans[0]["answer"])]).strip() == "a red circle."


@pytest.mark.parametrize("kind", KINDS)
def test_cli_eval(cli, folders, tmp_path, kind):
    tasks = ["caption", "caption_cells", "vqa", "mc", "geu", "t2i", "t2i_cells", "geneval", "ueg", "ueg_stepwise"]
    code, _, err = cli(
        "eval",
        f"{kind}:{folders[kind]}",
        "--tasks",
        ",".join(tasks),
        "--limit",
        "2",
        "--out",
        tmp_path,
        "--device",
        "cpu",
    )
    assert code == 0, err
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["model"] == folders[kind].name and set(results["tasks"]) == set(tasks)
    assert len(list((tmp_path / "t2i").glob("*.png"))) == 2
    code, _, err = cli(
        "eval",
        f"{kind}:{folders[kind]}",
        "--tasks",
        "geu_stepwise",
        "--limit",
        "1",
        "--out",
        tmp_path,
        "--device",
        "cpu",
    )  # drawing an edit of an image: not in these models' ports
    last = err.strip().splitlines()[-1]  # after transformers' weight-loading bar
    assert code == 2 and last.startswith("error:") and "cannot edit images" in last


def test_cli_analyze_alignment(cli, folders, tmp_path):
    code, _, err = cli(
        "analyze",
        "alignment",
        f"hf-janus:{folders['hf-janus']}",
        "--out",
        tmp_path,
        "--n",
        "12",
        "--k",
        "3",
        "--device",
        "cpu",
    )
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "alignment.jsonl").read_text().splitlines()]
    assert {r["input"] for r in rows} == {"und", "gen", "separate"} and len(rows) == 3 * 3


def test_hf_prefix_detects_the_family(folders):
    assert isinstance(load_model(f"hf:{folders['hf-emu3']}", device="cpu"), HFEmu3)
    janus = load_model(f"hf:{folders['hf-janus']}", device="cpu", guidance=2.0)
    assert isinstance(janus, HFJanus) and janus.guidance == 2.0
    assert load_model(f"hf-janus:{folders['hf-janus']}", device="cpu").guidance == 5  # the model's own default


def _error(cli, *args: str) -> str:
    code, _, err = cli(*args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_errors(cli, folders, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "config.json" in _error(cli, "eval", f"hf-janus:{empty}", "--tasks", "vqa", "--out", tmp_path / "o1")
    line = _error(cli, "eval", f"hf-emu3:{folders['hf-janus']}", "--tasks", "vqa", "--out", tmp_path / "o2")
    assert "'emu3'" in line and "'janus'" in line and "hf-janus:" in line
    partial = tmp_path / "partial"
    shutil.copytree(folders["hf-janus"], partial)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (partial / f).unlink()
    assert "tokenizer.json" in _error(cli, "eval", f"hf-janus:{partial}", "--tasks", "vqa", "--out", tmp_path / "o3")
    pickled = tmp_path / "pickled"
    shutil.copytree(folders["hf-janus"], pickled)
    for f in pickled.glob("*.safetensors"):
        f.unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04 never unpickled")
    line = _error(cli, "eval", f"hf-janus:{pickled}", "--tasks", "vqa", "--out", tmp_path / "o5")
    assert "only pickle files: pytorch_model.bin" in line and "safetensors only" in line
    llava = tmp_path / "llava"
    llava.mkdir()
    (llava / "config.json").write_text(json.dumps({"model_type": "llava"}))
    assert "draws images" in _error(cli, "eval", f"hf:{llava}", "--tasks", "vqa", "--out", tmp_path / "o4")
    (llava / "config.json").write_text(json.dumps({"model_type": "multi_modality"}))
    assert "deepseek-community/Janus-Pro-1B" in _error(
        cli, "analyze", "alignment", f"hf-janus:{llava}", "--out", tmp_path / "o5"
    )
    assert "not found" in _error(cli, "eval", "hf-janus:./no-such-model", "--tasks", "vqa", "--out", tmp_path / "o6")
    assert "after the colon" in _error(cli, "eval", "hf-emu3:", "--tasks", "vqa", "--out", tmp_path / "o7")


def test_janus_needs_guidance_above_one(folders):
    with pytest.raises(UserError, match="above 1"):
        load_hf("hf-janus", str(folders["hf-janus"]), "cpu", guidance=1.0)


def test_without_transformers(monkeypatch, folders):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(UserError, match=r'pip install -e "\.\[hf\]"'):
        load_hf("hf-janus", str(folders["hf-janus"]), "cpu")
