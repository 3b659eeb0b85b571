"""A run's parts built from its TrainConfig: the tokenizers (trained or loaded), the model (seeded by the config),
and the parameter groups that init_parts and freeze name."""

from __future__ import annotations

import torch

from unifylab.config import build
from unifylab.errors import UserError
from unifylab.models.config import ModelConfig
from unifylab.models.unified import UnifiedTransformer
from unifylab.tokenize.image import ImageTokenizer, image_tokenizer
from unifylab.tokenize.permuted import PermutedTokenizer
from unifylab.tokenize.sequence import Tokenizers
from unifylab.tokenize.text import TextTokenizer, world_corpus
from unifylab.train.config import TrainConfig
from unifylab.world import world_of


def build_tokenizers(cfg: TrainConfig) -> Tokenizers:
    """(text, und, gen) from the config: trained or loaded text BPE, grid, patch or a saved image tokenizer."""
    facts = world_of(cfg.world).facts()
    text = (
        TextTokenizer.from_pretrained(cfg.tokenizers.text)
        if cfg.tokenizers.text
        else TextTokenizer.train(
            world_corpus(
                2000,
                cfg.seed,
                world=cfg.world.name,
                knowledge={facts[n].family for n in cfg.data.facts},
                moves=bool(cfg.data.moves),
            ),
            cfg.tokenizers.text_vocab,
        )
    )

    gen = image_tokenizer(cfg.tokenizers.image, world=cfg.world)
    und_spec = cfg.tokenizers.und_image
    und = image_tokenizer(und_spec, world=cfg.world) if und_spec else gen
    if cfg.tokenizers.permute_output is not None:
        gen = PermutedTokenizer(gen, cfg.tokenizers.permute_output)
    return Tokenizers(text, und, gen)


def build_model(cfg: TrainConfig, text: TextTokenizer, und: ImageTokenizer, gen: ImageTokenizer) -> UnifiedTransformer:
    flow = cfg.model.image_output == "flow"
    if gen.discrete == flow:
        need, other = ("a continuous", "tokens") if flow else ("a discrete", "flow")
        raise UserError(
            f"model.image_output {cfg.model.image_output!r} draws with {need} generation tokenizer, but it is the "
            f"{gen.kind} tokenizer; set tokenizers.image to {'patch' if flow else 'the world exact one'} or "
            f"model.image_output to {other}"
        )
    spec = cfg.model.model_dump()
    codes = [t.vocab_size for t in (gen, und) if t.discrete]
    values = {**spec, "n_text": text.vocab_size, "n_image": codes[0] if codes else 0, "image_grid": gen.token_grid}
    if flow:
        values["flow_dim"] = gen.feature_dim
    if not und.discrete:
        values.update(image_input="patch", patch_dim=und.feature_dim, input_grid=und.token_grid)
    mc = build(ModelConfig, values, "model (config.yaml)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return UnifiedTransformer(mc)


def param_group(name: str) -> str:
    """A parameter's group: embeddings (token + patch), heads (output projections) or backbone (every block and
    final norm)."""
    if name.startswith(("embed.", "patch_proj.", "flow_in.", "time_embed.")):
        return "embeddings"
    if name.startswith(("head.", "text_head.", "image_head.", "flow_out.")):
        return "heads"
    return "backbone"


def freeze_groups(model: UnifiedTransformer, groups: list[str]) -> None:
    """Stop gradients for whole parameter groups (`param_group`)."""
    for name, p in model.named_parameters():
        p.requires_grad_(param_group(name) not in groups)
