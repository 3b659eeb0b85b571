"""Published unified models from Hugging Face `transformers` (Janus, Emu3) behind unifylab's model protocol, so the
same evaluations and analyses that run on lab models run on them.

Every input goes through the model's own processor (chat template, image resize and normalisation) and every image
is drawn by the model's own generation path (classifier-free guidance, then its VQ decoder). Requests are processed
in batches of `batch`, left-padded: text generation, loglikelihoods, hidden states and image generation alike.
Sequences are built from the chat template with marks where the question and the answer go, and content tokens are
found by comparing the processor's tokens with and without each piece, so the masks follow the model's exact input.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from unifylab.errors import UserError
from unifylab.eval.protocol import HiddenRequest, HiddenStates, ImageRequest, LoglikelihoodRequest, TextRequest

FAMILIES = {"hf-janus": "janus", "hf-emu3": "emu3"}
INSTALL = 'pip install -e ".[hf]"'
# model_type values of formats that need remote code, and the transformers-format repository to use instead
ORIGINAL_FORMATS = {
    "multi_modality": "the original DeepSeek Janus format; use the transformers-format deepseek-community/Janus-Pro-1B",
    "Emu3": "the original BAAI Emu3 format (remote code); use BAAI/Emu3-Gen-hf or BAAI/Emu3-Chat-hf",
}
REWRITE = (
    "Rewrite this image description so that it names exactly the objects to draw, with their colours, shapes "
    "and positions. Answer with the rewritten description only.\n"
)
QUESTION, ANSWER = "\ue000", "\ue001"  # private-use marks for where the text and the answer go in a rendered chat


def _inserted(full: list[int], short: list[int]) -> tuple[int, int]:
    """[start, stop) of the tokens of `full` that `short` (the same input without one piece of text) lacks."""
    n = min(len(full), len(short))
    start = 0
    while start < n and full[start] == short[start]:
        start += 1
    tail = 0
    while tail < n - start and full[-1 - tail] == short[-1 - tail]:
        tail += 1
    return start, len(full) - tail


def _chunks(items: list[Any], key: Callable[[Any], Any], size: int) -> Iterator[list[int]]:
    """Indices of `items` in batches of at most `size` whose items share `key` (batches need one input layout)."""
    groups: dict[Any, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(key(item), []).append(i)
    for idx in groups.values():
        for s in range(0, len(idx), size):
            yield idx[s : s + size]


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-call generation warnings (about its own generation-config handling), which would
    otherwise repeat for every batch through the progress bar."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def _pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding, so a padded row sees the positions it would see alone."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


class _HFModel(ABC):
    """What Janus and Emu3 share: chat rendering, batched text answers, loglikelihoods and understanding states."""

    family = ""
    default_guidance = 1.0
    text_kwargs: dict[str, Any] = {}

    def __init__(
        self, model: Any, processor: Any, name: str, guidance: float | None = None, seed: int = 0, batch: int = 8
    ) -> None:
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.name = name
        self.seed = seed
        self.batch = batch
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        config_guidance = getattr(model.generation_config, "guidance_scale", None)
        self.guidance = guidance if guidance is not None else (config_guidance or self.default_guidance)
        self.fingerprint = {"name": name, "dtype": str(self.dtype), "guidance": self.guidance, "seed": seed}

    # ------------------------------------------------------------------------------------------ inputs

    def _marked(self, text: bool, image: bool, answer: bool) -> str:
        """The chat-template rendering of a user turn (image first, then text) and, with `answer`, the reply, with
        marks where the text and the answer go; without a chat template, the plain concatenation."""
        if self.processor.chat_template is None:
            return (
                (self.processor.image_token if image else "")
                + (QUESTION if text else "")
                + (" " + ANSWER if answer else "")
            )
        content = ([{"type": "image"}] if image else []) + ([{"type": "text", "text": QUESTION}] if text else [])
        messages = [{"role": "user", "content": content}]
        if answer:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": ANSWER}]})
        return self.processor.apply_chat_template(messages, add_generation_prompt=not answer)

    def _dialogue(self, text: str, image: bool, answer: str) -> tuple[str, str, str]:
        """(full, without the text, without the answer) renderings of one understanding input."""
        marked = self._marked(bool(text) or not image, image, bool(answer))

        def fill(t: str, a: str) -> str:
            return marked.replace(QUESTION, t).replace(ANSWER, a)

        return fill(text, answer), fill("", answer), fill(text, "")

    def _process(self, texts: list[str], images: list[np.ndarray] | None, **kwargs: Any) -> Any:
        """The processor's output for a batch: left-padded tensors."""
        pil = [_pil(im) for im in images] if images else None
        return self.processor(text=texts, images=pil, padding=True, padding_side="left", return_tensors="pt", **kwargs)

    def _encode(self, texts: list[str], images: list[np.ndarray] | None, **kwargs: Any) -> Any:
        """The model's inputs, on its device and in its dtype."""
        return self._process(texts, images, **kwargs).to(self.device, dtype=self.dtype)

    def _ids(self, texts: list[str], images: list[np.ndarray] | None, **kwargs: Any) -> list[list[int]]:
        """The processor's token ids of each text, without padding."""
        enc = self._process(texts, images, **kwargs)
        return [ids[m.bool()].tolist() for ids, m in zip(enc["input_ids"], enc["attention_mask"])]

    def _und_inputs(self, rows: list[tuple[str, np.ndarray | None, str]]) -> tuple[Any, list[dict[str, tuple]]]:
        """Batch inputs for (text, image, answer) rows (all with images or none), and per row the padded spans of
        the text and the answer tokens."""
        images = [im for _, im, _ in rows] if rows[0][1] is not None else None
        full, no_text, no_answer = zip(*(self._dialogue(t, im is not None, a) for t, im, a in rows))
        enc = self._encode(list(full), images, **self.text_kwargs)
        ref = self._ids(list(no_text) + list(no_answer), images * 2 if images else None, **self.text_kwargs)
        width, n = enc["input_ids"].shape[1], len(rows)
        spans = []
        for k in range(n):
            ids = enc["input_ids"][k][enc["attention_mask"][k].bool()].tolist()
            pad = width - len(ids)
            t, a = _inserted(ids, ref[k]), _inserted(ids, ref[n + k])
            spans.append({"text": (pad + t[0], pad + t[1]), "answer": (pad + a[0], pad + a[1])})
        return enc, spans

    def _und_image_mask(self, enc: Any, k: int) -> torch.Tensor:
        """Positions of row k that hold the image's content tokens."""
        return enc["input_ids"][k] == self.model.config.image_token_id

    # ------------------------------------------------------------------------------------------ protocol

    @torch.no_grad()
    def generate_text(self, requests: list[TextRequest]) -> list[str]:
        """Greedy answers; 'rewrite' requests and requests without an image are text-only chats."""
        out = [""] * len(requests)

        def has_image(r: TextRequest) -> bool:
            return r.image is not None and r.mode != "rewrite"

        for idx in _chunks(requests, has_image, self.batch):
            chunk = [requests[i] for i in idx]
            texts = [
                self._dialogue(REWRITE + r.prompt if r.mode == "rewrite" else r.prompt, has_image(r), "")[0]
                for r in chunk
            ]
            enc = self._encode(texts, [r.image for r in chunk] if has_image(chunk[0]) else None, **self.text_kwargs)
            with _quiet_transformers():
                ids = self.model.generate(
                    **enc, max_new_tokens=max(r.max_tokens for r in chunk), do_sample=False, **self.text_kwargs
                )
            answers = self.tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            for i, a in zip(idx, answers):
                out[i] = a.strip()
        return out

    @torch.no_grad()
    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[float]:
        """Sum of the log-probabilities of the continuation's tokens as the model's reply to prompt (and image)."""
        out = [0.0] * len(requests)
        for idx in _chunks(requests, lambda r: r.image is not None, self.batch):
            enc, spans = self._und_inputs(
                [(requests[i].prompt, requests[i].image, requests[i].continuation) for i in idx]
            )
            hidden = self.model.model(**enc, position_ids=_positions(enc["attention_mask"])).last_hidden_state
            for k, i in enumerate(idx):
                a, b = spans[k]["answer"]
                if a < b:
                    logp = self.model.lm_head(hidden[k, a - 1 : b - 1]).float().log_softmax(-1)
                    out[i] = float(logp.gather(1, enc["input_ids"][k, a:b, None]).sum())
        return out

    @torch.no_grad()
    def hidden_states(self, requests: list[HiddenRequest]) -> list[HiddenStates]:
        """Per-layer states of the language model ([layers + 1, L, D], float32 on the CPU) with content masks:
        und = image, then text, then answer; gen = prompt text, then the image's own generation tokens."""
        bad = [r.kind for r in requests if r.kind not in ("und", "gen")]
        if bad:
            raise UserError(f"hidden-state request kind {bad[0]!r}; expected 'und' or 'gen'")
        out: dict[int, HiddenStates] = {}
        for idx in _chunks(requests, lambda r: (r.kind, r.image is not None), self.batch):
            chunk = [requests[i] for i in idx]
            states = self._und_states(chunk) if chunk[0].kind == "und" else self._gen_states(chunk)
            out.update(zip(idx, states))
        return [out[i] for i in range(len(requests))]

    @torch.no_grad()
    def generate_images(self, requests: list[ImageRequest]) -> list[np.ndarray]:
        """The model's own text-to-image path with classifier-free guidance, decoded to uint8 RGB and resized to each
        request's `size` (box filter, i.e. area averaging) so the world's parser can score it."""
        edits = [r for r in requests if r.source is not None]
        if edits:
            raise UserError(
                f"{self.name}: the transformers {self.family} model cannot edit images (it only draws from "
                "text); leave editing tasks out of --tasks"
            )
        self._check_generation()
        out: list[np.ndarray] = []
        for s in range(0, len(requests), self.batch):
            chunk = requests[s : s + self.batch]
            torch.manual_seed(self.seed + chunk[0].seed)
            with _quiet_transformers():
                drawn = self._draw([r.prompt for r in chunk])
            out += [
                np.asarray(Image.fromarray(image).resize((r.size, r.size), Image.Resampling.BOX))
                for r, image in zip(chunk, self._to_uint8(drawn))
            ]
        return out

    # ------------------------------------------------------------------------------------------ states

    def _und_states(self, chunk: list[HiddenRequest]) -> list[HiddenStates]:
        enc, spans = self._und_inputs([(r.text, r.image, r.answer) for r in chunk])
        mask = enc["attention_mask"]
        result = self.model(**enc, position_ids=_positions(mask), output_hidden_states=True, logits_to_keep=1)
        layers = torch.stack(result.hidden_states, 1).float().cpu()
        out = []
        for k in range(len(chunk)):
            image = self._und_image_mask(enc, k).cpu()
            text = torch.zeros_like(image)
            answer = torch.zeros_like(image)
            text[slice(*spans[k]["text"])] = True
            answer[slice(*spans[k]["answer"])] = True
            out.append(
                self._states(
                    layers[k],
                    mask[k],
                    {"text": text | answer, "image": image, "prompt": image | text, "response": answer},
                )
            )
        return out

    @abstractmethod
    def _gen_states(self, chunk: list[HiddenRequest]) -> list[HiddenStates]:
        """States of generation inputs (prompt, then the image's own generation tokens); family specific."""

    def _gen_rows(
        self, hidden: tuple[torch.Tensor, ...], mask: torch.Tensor, spans: list[tuple[int, int]], image: torch.Tensor
    ) -> list[HiddenStates]:
        """States of generation inputs: each row's prompt span is its text (and prompt), the image positions, the
        same in every row of the batch, its image (and response)."""
        layers = torch.stack(hidden, 1).float().cpu()
        out = []
        for k, span in enumerate(spans):
            text = torch.zeros_like(image)
            text[slice(*span)] = True
            out.append(
                self._states(
                    layers[k], mask[k].cpu(), {"text": text, "image": image, "prompt": text, "response": image}
                )
            )
        return out

    @staticmethod
    def _states(layers: torch.Tensor, mask: torch.Tensor, masks: dict[str, torch.Tensor]) -> HiddenStates:
        """One row's states and masks without its left padding."""
        pad = int((~mask.bool()).sum())
        return HiddenStates(layers[:, pad:].clone(), {m: v[pad:].clone() for m, v in masks.items()})

    def _prompt_spans(self, ids: torch.Tensor, mask: torch.Tensor, empty: list[int]) -> list[tuple[int, int]]:
        """Padded span of the prompt text in each row, against the tokens of the same input with an empty prompt."""
        out = []
        for k in range(ids.shape[0]):
            row = ids[k][mask[k].bool()].tolist()
            pad = ids.shape[1] - len(row)
            a, b = _inserted(row, empty)
            out.append((pad + a, pad + b))
        return out

    # ------------------------------------------------------------------------------------------ images

    def _check_generation(self) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """A clear error for checkpoints that cannot draw (a family overrides it where that can happen)."""

    @abstractmethod
    def _draw(self, prompts: list[str]) -> torch.Tensor:
        """Images [B, 3, H, W] in the processor's normalised pixel space."""

    def _to_uint8(self, pixels: torch.Tensor) -> list[np.ndarray]:
        """Undo the processor's normalisation: [B, 3, H, W] -> uint8 [H, W, 3] arrays."""
        ip = self.processor.image_processor
        mean = torch.tensor(ip.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(ip.image_std).view(1, 3, 1, 1)
        rgb = ((pixels.float().cpu() * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
        return list(rgb.permute(0, 2, 3, 1).numpy())


class HFJanus(_HFModel):
    """DeepSeek Janus / Janus-Pro (`JanusForConditionalGeneration`): a SigLIP encoder for understanding, a VQ tokenizer
    with its own embeddings and head for generation, one Llama backbone."""

    family = "janus"
    default_guidance = 5.0
    text_kwargs = {"generation_mode": "text"}

    def __init__(
        self, model: Any, processor: Any, name: str, guidance: float | None = None, seed: int = 0, batch: int = 8
    ) -> None:
        super().__init__(model, processor, name, guidance, seed, batch)
        if self.guidance <= 1:
            raise UserError(
                f"{name}: Janus's transformers image generation always runs classifier-free guidance; "
                f"give a scale above 1 (its default is {self.default_guidance:g})"
            )
        config = model.generation_config
        extra = getattr(config, "generation_kwargs", None) or {}
        if "boi_token_id" not in extra:
            # generate() reads the begin-of-image id from here; a generation_config.json saved with
            # "_from_model_config": true loses it on loading
            boi = self.tokenizer.convert_tokens_to_ids(processor.image_start_token)
            config.generation_kwargs = {**extra, "boi_token_id": boi}
        self.top_k = config.top_k if config.top_k is not None else 0  # Janus samples from the full distribution

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
            **enc, generation_mode="image", do_sample=True, guidance_scale=self.guidance, top_k=self.top_k
        )
        return self.model.decode_image_tokens(codes).permute(0, 3, 1, 2)


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


class HFEmu3(_HFModel):
    """BAAI Emu3 (`Emu3ForConditionalGeneration`): one VQ tokenizer for reading and drawing, images as tokens of the
    text vocabulary (rows closed by end-of-line tokens). Chat checkpoints answer, Gen checkpoints draw.

    `image_area` (px), when set, is the resolution of every image the model reads or draws: understanding inputs,
    drawings and generation hidden-state inputs. None keeps the processor's own: inputs resized to 512^2 to 1024^2
    px (4,000 or more tokens) and drawings of 720 x 720 px (90 x 90 tokens, 8,193 generation steps)."""

    family = "emu3"
    default_guidance = 3.0  # the Emu3 authors' classifier-free guidance
    default_top_k = 2048  # the Emu3 authors' image sampling

    def __init__(
        self,
        model: Any,
        processor: Any,
        name: str,
        guidance: float | None = None,
        seed: int = 0,
        batch: int = 8,
        image_area: int | None = None,
    ) -> None:
        super().__init__(model, processor, name, guidance, seed, batch)
        self.image_area = image_area or processor.image_area
        if image_area:
            processor.image_processor.min_pixels = processor.image_processor.max_pixels = image_area
        self.spatial = model.model.vqmodel.vision_spatial_factor
        self.top_k = model.generation_config.top_k or self.default_top_k

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
            top_k=self.top_k,
            logits_processor=LogitsProcessorList([grid]),
            **cfg,
        )
        codes = out[:, enc["input_ids"].shape[1] :]
        return self.model.decode_image_tokens(image_tokens=codes, height=height, width=width)


# ---------------------------------------------------------------------------------------------- loading


def _local(path_or_id: str) -> bool:
    """True for an existing folder, False for a hub id (owner/name); a missing path is a UserError."""
    p = Path(path_or_id).expanduser()
    if p.is_dir():
        return True
    if p.exists():
        raise UserError(f"{path_or_id}: is a file; give the model's folder (with config.json) or a hub id")
    if path_or_id.startswith((".", "/", "~")) or path_or_id.count("/") != 1 or "\\" in path_or_id:
        raise UserError(
            f"{path_or_id}: model folder not found; download one first, e.g. "
            "`hf download deepseek-community/Janus-Pro-1B --local-dir ./Janus-Pro-1B`"
        )
    return False


def _model_type(path_or_id: str, local: bool) -> str:
    """config.json's model_type, read from the folder or fetched from the hub."""
    if local:
        config = Path(path_or_id).expanduser() / "config.json"
        if not config.is_file():
            raise UserError(
                f"{path_or_id}: no config.json, so it is not a transformers model folder; download the "
                "whole model repository into it (hf download OWNER/NAME --local-dir DIR)"
            )
    else:
        from huggingface_hub import hf_hub_download

        try:
            config = Path(hf_hub_download(path_or_id, "config.json"))
        except Exception as e:  # offline, unknown repository, gated model: all mean "download it yourself"
            raise UserError(
                f"{path_or_id}: could not fetch config.json from the Hugging Face hub "
                f"({type(e).__name__}); download the model where the hub is reachable "
                f"(hf download {path_or_id} --local-dir DIR) and pass the folder"
            ) from None
    try:
        return str(json.loads(config.read_text(encoding="utf-8")).get("model_type", ""))
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise UserError(f"{config}: not a valid JSON config file") from None


def _check_processor_files(folder: Path) -> None:
    """A local model folder needs its tokenizer and image-processor files, not just the weights."""
    needed = {
        "the tokenizer": ("tokenizer.json", "tokenizer_config.json"),
        "the image processor": ("preprocessor_config.json", "processor_config.json"),
    }
    for what, any_of in needed.items():
        if not any((folder / f).is_file() for f in any_of):
            raise UserError(
                f"{folder}: missing {' or '.join(any_of)} ({what} of the model's processor); download the "
                "whole repository, not only the weights"
            )


def load_hf(
    kind: str,
    path_or_id: str,
    device: str = "cpu",
    guidance: float | None = None,
    seed: int = 0,
    batch: int = 8,
    image_area: int | None = None,
) -> HFJanus | HFEmu3:
    """A transformers unified model behind the protocol. kind: 'hf-janus', 'hf-emu3', or 'hf' (chosen from
    config.json's model_type). Folders load offline; hub ids are passed through to transformers. Weights load in
    bfloat16 on CUDA and float32 on the CPU; remote code is never trusted. guidance None: the model's own scale;
    image_area: Emu3's image resolution in px (see HFEmu3)."""
    try:
        import transformers
    except ImportError:
        raise UserError(f"{kind}:{path_or_id} needs the `transformers` package: {INSTALL}") from None
    local = _local(path_or_id)
    found = _model_type(path_or_id, local)
    families = {v: k for k, v in FAMILIES.items()}
    if kind == "hf":
        if found not in families:
            hint = ORIGINAL_FORMATS.get(
                found,
                "unifylab's HF adapters need a unified model that also draws images: "
                "janus (hf-janus) or emu3 (hf-emu3)",
            )
            raise UserError(f"{path_or_id}: config.json has model_type {found!r}; {hint}")
        kind = families[found]
    if kind not in FAMILIES:
        raise UserError(f"unknown HF adapter {kind!r}; expected hf-janus, hf-emu3 or hf")
    expected = FAMILIES[kind]
    if found != expected:
        hint = (
            f"; use {families[found]}:{path_or_id}"
            if found in families
            else f"; {ORIGINAL_FORMATS[found]}"
            if found in ORIGINAL_FORMATS
            else ""
        )
        raise UserError(f"{path_or_id}: {kind} expects config.json model_type {expected!r}, found {found!r}{hint}")
    if local:
        folder = Path(path_or_id).expanduser()
        _check_processor_files(folder)
        if not any(folder.glob("*.safetensors")):
            pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
            only = f" (only pickle files: {', '.join(pickles)})" if pickles else ""
            raise UserError(
                f"{folder}: no *.safetensors weights{only}; "
                "unifylab loads safetensors only (pickle files can run code): convert the weights, e.g. "
                "save_pretrained(..., safe_serialization=True) in a trusted environment"
            )
    cls = HFJanus if expected == "janus" else HFEmu3
    model_class = (
        transformers.JanusForConditionalGeneration if expected == "janus" else transformers.Emu3ForConditionalGeneration
    )
    processor_class = transformers.JanusProcessor if expected == "janus" else transformers.Emu3Processor
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        processor = processor_class.from_pretrained(path_or_id, local_files_only=local)
        model = model_class.from_pretrained(path_or_id, dtype=dtype, local_files_only=local, use_safetensors=True)
    except (OSError, ValueError, KeyError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path_or_id}: could not load the {expected} model: {reason}") from None
    name = Path(path_or_id.rstrip("/")).name or path_or_id
    options = {"image_area": image_area} if expected == "emu3" else {}
    return cls(model.to(device), processor, name, guidance=guidance, seed=seed, batch=batch, **options)
