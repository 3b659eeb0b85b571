"""The shared adapter: batching, chat-template marks, content masks, image decoding; a family (janus.py,
emu3.py) supplies encoding and drawing."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
def quiet_transformers() -> Iterator[None]:
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


class HFModel(ABC):
    """What Janus and Emu3 share: chat rendering, batched text answers, loglikelihoods and understanding states."""

    family = ""
    default_guidance = 1.0
    text_kwargs: dict[str, Any] = {}

    default_top_k = 0  # 0: sample from the full distribution

    def __init__(
        self,
        model: Any,
        processor: Any,
        name: str,
        guidance: float | None = None,
        seed: int = 0,
        batch: int = 8,
        *,
        temperature: float | None = None,
        top_k: int | None = None,
    ) -> None:
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.name = name
        self.seed = seed
        self.batch = batch
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        config = model.generation_config
        self.guidance = (
            guidance if guidance is not None else (getattr(config, "guidance_scale", None) or self.default_guidance)
        )
        self.temperature = temperature if temperature is not None else (getattr(config, "temperature", None) or 1.0)
        self.top_k = top_k if top_k is not None else (getattr(config, "top_k", None) or self.default_top_k)
        self._setup()

    def _setup(self) -> None:  # noqa: B027 (a hook: most families need nothing)
        """What a family checks or fixes once the model is loaded (nothing by default)."""

    @property
    def fingerprint(self) -> dict[str, Any]:
        """The image-sampling recipe (and weights' name and precision): what a re-run must match to reuse outputs."""
        return {
            "name": self.name,
            "dtype": str(self.dtype),
            "guidance": self.guidance,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "seed": self.seed,
        }

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
            with quiet_transformers():
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
            with quiet_transformers():
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
