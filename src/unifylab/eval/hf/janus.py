"""Janus (and Janus-Pro) in the transformers format behind the protocol."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from unifylab.errors import UserError
from unifylab.eval.hf.base import (
    QUESTION,
    HFModel,
    _pil,
    _positions,
)
from unifylab.eval.protocol import HiddenRequest, HiddenStates


class HFJanus(HFModel):
    """DeepSeek Janus / Janus-Pro (`JanusForConditionalGeneration`): a SigLIP encoder for understanding, a VQ tokenizer
    with its own embeddings and head for generation, one Llama backbone."""

    family = "janus"
    default_guidance = 5.0
    text_kwargs = {"generation_mode": "text"}

    def _setup(self) -> None:
        """Janus's generation always runs guidance; restore the begin-of-image id its generation config may lose."""
        if self.guidance <= 1:
            raise UserError(
                f"{self.name}: Janus's transformers image generation always runs classifier-free guidance; "
                f"give a scale above 1 (its default is {self.default_guidance:g})"
            )
        config = self.model.generation_config
        extra = getattr(config, "generation_kwargs", None) or {}
        if "boi_token_id" not in extra:
            # generate() reads the begin-of-image id from here; a generation_config.json saved with
            # "_from_model_config": true loses it on loading
            boi = self.tokenizer.convert_tokens_to_ids(self.processor.image_start_token)
            config.generation_kwargs = {**extra, "boi_token_id": boi}

    def _gen_text(self, prompts: list[str]) -> Any:
        texts = [self._marked(True, False, False).replace(QUESTION, p) for p in prompts]
        return self._encode(texts, None, generation_mode="image")

    def _vq_codes(self, images: list[np.ndarray]) -> torch.Tensor:
        """The generation VQ's codes [B, N] for images, at the resolution and normalisation of the processor."""
        pixels = self.processor.image_processor([_pil(im) for im in images], return_tensors="pt")["pixel_values"]
        codes = self.model.model.vqmodel.encode(pixels.to(self.device, self.dtype)).image_tokens
        return codes.view(len(images), -1)

    def _gen_states(self, chunk: list[HiddenRequest]) -> list[HiddenStates]:
        enc = self._gen_text([r.text for r in chunk])
        empty = self._ids([self._marked(True, False, False).replace(QUESTION, "")], None, generation_mode="image")[0]
        spans = self._prompt_spans(enc["input_ids"], enc["attention_mask"], empty)
        embeds = self.model.get_input_embeddings()(enc["input_ids"])
        mask = enc["attention_mask"]
        n_image = 0
        if chunk[0].image is not None:
            image_embeds = self.model.prepare_embeddings_for_image_generation(self._vq_codes([r.image for r in chunk]))
            n_image = image_embeds.shape[1]
            embeds = torch.cat([embeds, image_embeds.to(embeds.dtype)], 1)
            mask = torch.cat([mask, mask.new_ones(len(chunk), n_image)], 1)
        result = self.model.model.language_model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=_positions(mask), output_hidden_states=True
        )
        image = torch.zeros(mask.shape[1], dtype=torch.bool)
        if n_image:
            image[-n_image:] = True
        return self._gen_rows(result.hidden_states, mask, spans, image)

    def _draw(self, prompts: list[str]) -> torch.Tensor:
        enc = self._gen_text(prompts)
        codes = self.model.generate(
            **enc,
            generation_mode="image",
            do_sample=True,
            guidance_scale=self.guidance,
            temperature=self.temperature,
            top_k=self.top_k,
        )
        return self.model.decode_image_tokens(codes).permute(0, 3, 1, 2)
