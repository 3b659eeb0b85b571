"""Emu3 (Chat and Gen, transformers format) behind the protocol, with its image-grid logits processor."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from unifylab.errors import UserError
from unifylab.eval.hf.base import (
    HFModel,
    _pil,
    _positions,
)
from unifylab.eval.protocol import HiddenRequest, HiddenStates


class _Emu3ImageGrid:
    """Emu3's image layout as a logits constraint: `height` rows of `width` visual tokens, each row closed by an
    end-of-line token, then end-of-frame, end-of-image and end-of-sequence (the prefix constraint the transformers
    docs use, computed once per step for the whole batch)."""

    def __init__(
        self, start: int, height: int, width: int, visual: torch.Tensor, closing: list[int], pad: int, eol: int
    ) -> None:
        self.start, self.height, self.width = start, height, width
        self.visual, self.closing, self.pad, self.eol = visual, closing, pad, eol

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        offset = input_ids.shape[1] - self.start + 1  # 1 for the first image token
        grid = (self.width + 1) * self.height
        if offset <= grid:
            allowed: Any = self.eol if offset % (self.width + 1) == 0 else self.visual
        else:
            allowed = self.closing[offset - grid - 1] if offset - grid <= len(self.closing) else self.pad
        bias = torch.full_like(scores, -float("inf"))
        bias[:, allowed] = 0
        return scores + bias


class HFEmu3(HFModel):
    """BAAI Emu3 (`Emu3ForConditionalGeneration`): one VQ tokenizer for reading and drawing, images as tokens of the
    text vocabulary (rows closed by end-of-line tokens). Chat checkpoints answer, Gen checkpoints draw.

    `image_area` (px), when set, is the resolution of every image the model reads or draws: understanding inputs,
    drawings and generation hidden-state inputs. None keeps the processor's own: inputs resized to 512^2 to 1024^2
    px (4,000 or more tokens) and drawings of 720 x 720 px (90 x 90 tokens, 8,193 generation steps)."""

    family = "emu3"
    default_guidance = 3.0  # the Emu3 authors' classifier-free guidance
    default_top_k = 2048  # the Emu3 authors' image sampling

    def __init__(self, *args: Any, image_area: int | None = None, **kwargs: Any) -> None:
        """HFModel's arguments, plus `image_area`: the drawing and reading resolution in px (None: the processor's)."""
        super().__init__(*args, **kwargs)
        processor = self.processor
        self.image_area = image_area or processor.image_area
        if image_area:
            processor.image_processor.min_pixels = processor.image_processor.max_pixels = image_area
        self.spatial = self.model.model.vqmodel.vision_spatial_factor

    def _grid(self) -> tuple[int, int]:
        """Token rows and columns of generated images."""
        return self.processor.calculate_generate_size(self.processor.ratio, self.image_area, self.spatial)

    def _not_eol(self, n: int, width: int) -> torch.Tensor:
        """Which of n image-grid positions (rows of width + 1, the last one end-of-line) are visual tokens."""
        return torch.arange(n) % (width + 1) != width

    def _und_image_mask(self, enc: Any, k: int) -> torch.Tensor:
        placeholders = enc["input_ids"][k] == self.processor.image_token_id
        width = int(enc["image_sizes"][k][1]) // self.spatial if "image_sizes" in enc else 0
        mask = placeholders.clone()
        mask[placeholders] = self._not_eol(int(placeholders.sum()), width).to(mask.device)
        return mask

    def _gen_kwargs(self) -> dict[str, Any]:
        return {"return_for_image_generation": True, "image_area": self.image_area}

    def _gen_text(self, prompts: list[str]) -> Any:
        return self._encode(prompts, None, **self._gen_kwargs())

    def _check_generation(self) -> None:
        if not self.model.vocabulary_mapping.image_tokens:
            raise UserError(
                f"{self.name}: its vocabulary has no visual tokens ('<|visual token ...|>' in config.json "
                "vocabulary_map), so it cannot generate images; use an Emu3 Gen checkpoint"
            )

    def _gen_states(self, chunk: list[HiddenRequest]) -> list[HiddenStates]:
        enc = self._gen_text([r.text for r in chunk])
        enc.pop("image_sizes")
        empty = self._ids([""], None, **self._gen_kwargs())[0]
        spans = self._prompt_spans(enc["input_ids"], enc["attention_mask"], empty)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        n_grid = 0
        if chunk[0].image is not None:
            self._check_generation()
            height, width = self._grid()
            size = (width * self.spatial, height * self.spatial)
            pixels = self.processor.image_processor(
                [_pil(r.image).resize(size, Image.Resampling.BICUBIC) for r in chunk],
                do_resize=False,
                return_tensors="pt",
            )
            tokens = self.model.model.get_image_tokens(
                pixels["pixel_values"].to(self.device, self.dtype), pixels["image_sizes"]
            ).view(len(chunk), -1)
            n_grid = tokens.shape[1]
            closing = ids.new_tensor([self.tokenizer.eof_token_id, self.tokenizer.eoi_token_id]).expand(len(chunk), 2)
            ids = torch.cat([ids, tokens.to(ids.dtype), closing], 1)
            mask = torch.cat([mask, mask.new_ones(len(chunk), n_grid + 2)], 1)
        result = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=_positions(mask),
            output_hidden_states=True,
            logits_to_keep=1,
        )
        image = torch.zeros(ids.shape[1], dtype=torch.bool)
        if n_grid:
            start = enc["input_ids"].shape[1]
            image[start : start + n_grid] = self._not_eol(n_grid, self._grid()[1])
        return self._gen_rows(result.hidden_states, mask, spans, image)

    def _draw(self, prompts: list[str]) -> torch.Tensor:
        from transformers import LogitsProcessorList

        enc = self._gen_text(prompts)
        height, width = (int(x) for x in enc.pop("image_sizes")[0])
        tok = self.tokenizer
        grid = _Emu3ImageGrid(
            enc["input_ids"].shape[1],
            height,
            width,
            torch.tensor(self.model.vocabulary_mapping.image_tokens, device=self.device),
            [tok.eof_token_id, tok.eoi_token_id, tok.eos_token_id],
            tok.pad_token_id,
            self.model.vocabulary_mapping.eol_token_id,
        )
        cfg: dict[str, Any] = {}
        if self.guidance != 1:
            # the unconditional branch: an empty prompt with the same image header
            negative = self._gen_text([""] * len(prompts))
            cfg = {
                "guidance_scale": self.guidance,
                "negative_prompt_ids": negative["input_ids"],
                "negative_prompt_attention_mask": negative["attention_mask"],
            }
        out = self.model.generate(
            **enc,
            max_new_tokens=(width + 1) * height + 3,
            do_sample=True,
            temperature=self.temperature,
            top_k=self.top_k,
            logits_processor=LogitsProcessorList([grid]),
            **cfg,
        )
        codes = out[:, enc["input_ids"].shape[1] :]
        return self.model.decode_image_tokens(image_tokens=codes, height=height, width=width)
