"""The native adapter: a run folder from `unifylab train` (or any `save_pretrained` folder) behind the protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unifylab.config import file_digest, load_yaml
from unifylab.errors import UserError
from unifylab.eval.protocol import HiddenRequest, HiddenStates, ImageRequest, LoglikelihoodRequest, TextRequest
from unifylab.layout import RunFolder
from unifylab.models.config import ModelConfig
from unifylab.models.generate import Sampling, generate_flow, generate_images, generate_text
from unifylab.models.hub import WEIGHTS, from_pretrained, load_tokenizers
from unifylab.tokenize.sequence import IMAGE, Example, Packed, Packer


class NativeModel:
    """Greedy text answers, loglikelihoods from the training loss, and CFG-guided image sampling (tokens, or a flow
    integrated in the model's own steps and solver from per-item seeded noise; temperature and top-k then do not
    apply)."""

    def __init__(
        self,
        folder: Path,
        device: str = "cpu",
        guidance: float | None = None,
        top_k: int = 0,
        temperature: float = 1.0,
        batch: int = 64,
        seed: int = 0,
    ) -> None:
        folder = Path(folder)
        self.name = folder.name
        self.model = from_pretrained(folder, device)
        guidance = self.model.cfg.guidance if guidance is None else guidance  # None: the model's own scale
        self.text, self.und, self.gen = load_tokenizers(folder)
        self.packer = Packer(self.text, self.und, self.gen)
        if guidance != 1.0 and _trained_without_dropout(folder):
            raise UserError(
                f"{folder}: guidance {guidance:g} needs a model trained with prompt dropout, but its config.yaml has "
                "data.cfg_dropout 0 (it never saw the empty prompt); evaluate without guidance or retrain with "
                "data.cfg_dropout > 0"
            )
        self.guidance, self.batch, self.seed = guidance, batch, seed
        self.image_sampling = Sampling(temperature=temperature, top_k=top_k)
        worlds = {t.canvas for t in (self.und, self.gen) if t.canvas is not None}
        self.world = worlds.pop() if len(worlds) == 1 else None  # the canvas an exact tokenizer fixes
        self.fingerprint = recipe(
            self.model.cfg,
            file_digest(folder / WEIGHTS),
            guidance=guidance,
            temperature=temperature,
            top_k=top_k,
            seed=seed,
        )

    def _und_tokens(self, images: list[np.ndarray]) -> list[torch.Tensor]:
        return list(self.und.encode(np.stack(images))) if images else []

    def _examples(self, requests: list[TextRequest | LoglikelihoodRequest], answers: list[str] | None) -> list[Example]:
        with_image = [r.image for r in requests if r.image is not None]
        tokens = iter(self._und_tokens(with_image))
        out = []
        for k, r in enumerate(requests):
            answer = answers[k] if answers else ""
            if r.image is None or getattr(r, "mode", "und") == "rewrite":
                out.append(Example("rewrite", r.prompt, answer))
            else:
                out.append(Example("und", r.prompt, answer, image=next(tokens)))
        return out

    def generate_text(self, requests: list[TextRequest]) -> list[str]:
        out: list[str] = []
        for i in range(0, len(requests), self.batch):
            chunk = requests[i : i + self.batch]
            prefixes = [self.packer.pack(e, with_target=False) for e in self._examples(chunk, None)]
            ids = generate_text(self.model, prefixes, max_new_tokens=max(r.max_tokens for r in chunk))
            out += [self.text.decode(x) for x in ids]
        return out

    @torch.no_grad()
    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[float]:
        out: list[float] = []
        for i in range(0, len(requests), self.batch):
            chunk = requests[i : i + self.batch]
            packed = [self.packer.pack(e) for e in self._examples(chunk, [r.continuation for r in chunk])]
            batch = {k: v.to(next(self.model.parameters()).device) for k, v in self.packer.collate(packed).items()}
            out += (-self.model.loss(batch).seq_sum).tolist()
        return out

    def _image_prefix(self, prompt: str, source: torch.Tensor | None) -> Packed:
        """The packed prompt (and source image) before <boi>; a prompt too long to leave room for the image within
        max_len (e.g. a model's own rambling rewrite in a stepwise task) keeps only its first tokens."""

        def pack(text: str) -> Packed:
            ex = Example("gen", text) if source is None else Example("edit", text, source=source)
            return self.packer.pack(ex, with_target=False)

        prefix = pack(prompt)
        while (excess := len(prefix) + self.model.cfg.image_tokens - self.model.cfg.max_len) > 0 and prompt:
            n = len(self.text.encode(prompt))  # cut characters in proportion; at least one, so this ends
            prompt = prompt[: min(len(prompt) - 1, len(prompt) * max(0, n - excess) // max(n, 1))]
            prefix = pack(prompt)
        return prefix

    def generate_images(self, requests: list[ImageRequest]) -> list[np.ndarray]:
        bad = [r for r in requests if r.size != self.gen.size]
        if bad:
            raise UserError(f"{self.name}: draws {self.gen.size} px images, but a task asks for {bad[0].size} px")
        uncond = self.packer.pack(Example("gen", ""), with_target=False)
        out: list[np.ndarray] = []
        for i in range(0, len(requests), self.batch):
            chunk = requests[i : i + self.batch]
            sources = iter(self._und_tokens([r.source for r in chunk if r.source is not None]))
            prefixes = [self._image_prefix(r.prompt, None if r.source is None else next(sources)) for r in chunk]
            seeds = [self.seed * 1_000_003 + r.seed for r in chunk]
            if self.model.cfg.image_output == "flow":
                drawn = generate_flow(self.model, prefixes, uncond=uncond, guidance=self.guidance, seeds=seeds)
            else:
                drawn = generate_images(
                    self.model,
                    prefixes,
                    uncond=uncond,
                    guidance=self.guidance,
                    sampling=self.image_sampling,
                    seeds=seeds,
                )
            out += list(self.gen.decode(drawn))
        return out

    @torch.no_grad()
    def hidden_states(self, requests: list[HiddenRequest], attention: bool = False) -> list[HiddenStates]:
        """Per-layer states of each request's sequence (batched, returned on the CPU in float32); with `attention`,
        also each block's attention-sublayer output (what it adds to the residual stream)."""
        out: list[HiddenStates] = []
        device = next(self.model.parameters()).device
        for i in range(0, len(requests), self.batch):
            chunk = requests[i : i + self.batch]
            und = iter(self._und_tokens([r.image for r in chunk if r.kind == "und" and r.image is not None]))
            gen = iter(
                list(self.gen.encode(np.stack(imgs)))
                if (imgs := [r.image for r in chunk if r.kind == "gen" and r.image is not None])
                else []
            )
            packed = []
            for r in chunk:
                if r.kind == "und":
                    ex = Example("und", r.text, r.answer, image=next(und) if r.image is not None else None)
                    packed.append(
                        self.packer.pack(ex, with_target=True)
                        if r.image is not None
                        else self.packer.pack(Example("rewrite", r.text, r.answer))
                    )
                elif r.kind == "gen":
                    img = next(gen) if r.image is not None else None
                    packed.append(self.packer.pack(Example("gen", r.text, image=img), with_target=img is not None))
                else:
                    raise UserError(f"hidden-state request kind {r.kind!r}; expected 'und' or 'gen'")
            batch = {k: v.to(device) for k, v in self.packer.collate(packed).items()}
            layers: list[torch.Tensor] = []
            with _attention_outputs(self.model, attention, len(chunk)) as attn:
                self.model(
                    batch["input_ids"],
                    modality=batch["modality"],
                    pos2d=batch["pos2d"],
                    cont=batch["cont"],
                    features=batch["features"],
                    flow=batch["flow"],  # a flow model reads a given image as clean patches (t = 1)
                    layers=layers,
                )
            states = torch.stack(layers, 1).float().cpu()  # [B, layers + 1, L, D]
            attn_states = torch.stack([attn[d] for d in sorted(attn)], 1).float().cpu() if attention else None
            for k, (r, p) in enumerate(zip(chunk, packed)):
                n = len(p)
                masks = {m: torch.zeros(n, dtype=torch.bool) for m in ("text", "image", "prompt", "response")}
                for name, a, b in p.segments:
                    if name.startswith("<"):
                        continue
                    is_image = bool((p.modality[a:b] == IMAGE).all())
                    masks["image" if is_image else "text"][a:b] = True
                    response = name == "answer" or (r.kind == "gen" and is_image)
                    masks["response" if response else "prompt"][a:b] = True
                out.append(
                    HiddenStates(
                        states[k, :, :n].clone(),
                        masks,
                        attn_states[k, :, :n].clone() if attn_states is not None else None,
                    )
                )
        return out


@contextmanager
def _attention_outputs(model: torch.nn.Module, enabled: bool, batch: int) -> Iterator[dict[int, torch.Tensor]]:
    """Collect every block's attention output [B, L, D] by depth while the model runs (forward hooks; a forked
    depth's two branch blocks each fill their own rows)."""
    store: dict[int, torch.Tensor] = {}
    if not enabled:
        yield store
        return
    blocks = [(d, blk) for d, blk in enumerate(model.trunk)]
    for branch in model.branches or []:
        blocks += [(len(model.trunk) + j, blk) for j, blk in enumerate(branch)]

    def hook(depth: int) -> Callable[..., None]:
        def fn(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
            rows = args[6] if len(args) > 6 else None
            if rows is None:
                store[depth] = output.detach()
            else:  # a branch that got only some rows: place them in the full batch
                store.setdefault(depth, output.new_zeros(batch, *output.shape[1:]))[rows] = output.detach()

        return fn

    handles = [blk.attn.register_forward_hook(hook(d)) for d, blk in blocks]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def recipe(
    cfg: ModelConfig, weights: str, *, guidance: float, temperature: float, top_k: int, seed: int
) -> dict[str, Any]:
    """What determines a native model's answers: its weights' digest and how it samples (the eval records' stamp)."""
    out: dict[str, Any] = {
        "weights": weights,
        "guidance": guidance,
        "temperature": temperature,
        "top_k": top_k,
        "seed": seed,
    }
    if cfg.image_output == "flow":
        steps, solver = cfg.flow_sampler
        out.update(flow_steps=steps, flow_solver=solver)
    return out


def _trained_without_dropout(folder: Path) -> bool:
    """True when the run's config.yaml (absent in a bare save_pretrained folder) trained no empty prompts."""
    file = RunFolder(folder).config
    if not file.is_file():
        return False
    run = load_yaml(file, "run config")
    data = run.get("data") if isinstance(run, dict) else None
    return isinstance(data, dict) and data.get("cfg_dropout", 1) == 0
