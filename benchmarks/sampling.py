"""Image sampling speed: images/s of the token model's KV-cached decoding against the flow model's integration
(Heun or Euler, at the given steps), at batch 1 and a large batch, in one run on one machine. Both models are a
preset's shared model (the same width and depth; the flow model draws pixel patches), with untrained weights: speed
does not depend on them. Prompts are the world's own fully specified prompts; tokens unguided (the lab's token
models draw best so), flow at --flow-guidance (a scale other than 1 doubles its batch: prompt and empty prompt).

Prints one JSON line per model and batch, then their ratio.
Run: python benchmarks/sampling.py [--preset claims-shapes --batches 1,64 --flow-steps 20 --solver heun
     --flow-guidance 1 --seconds 5]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch

from unifylab.models.generate import Sampling, generate_flow, generate_images
from unifylab.study.preset import load_preset
from unifylab.tokenize.sequence import Example, Packer
from unifylab.train.build import build_model, build_tokenizers
from unifylab.train.config import load_tree
from unifylab.world import world_of


def timed(fn: Callable[[], object], seconds: float) -> float:
    """Seconds per call: one warm-up call, then calls until `seconds` have passed (at least three)."""
    fn()
    n, start = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - start < seconds:
        fn()
        n += 1
    return (time.perf_counter() - start) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="claims-shapes", help="study preset whose base model and world are used")
    ap.add_argument("--batches", default="1,64", help="comma-separated batch sizes")
    ap.add_argument("--flow-steps", type=int, default=20, help="flow integration steps")
    ap.add_argument("--solver", default="heun", choices=("euler", "heun"))
    ap.add_argument("--flow-guidance", type=float, default=1.0, help="flow guidance scale (the claims flow tier: 3)")
    ap.add_argument("--seconds", type=float, default=5.0, help="time per figure")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the study samples on one per run)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = load_preset(args.preset).base
    token_cfg = load_tree(base, ["model.backbone=shared"])
    if token_cfg.model.image_output != "tokens":
        ap.error(f"--preset {args.preset}: its models draw by flow; name its token twin (the flow model is derived)")
    reads = token_cfg.tokenizers.und_image or token_cfg.tokenizers.image
    flow_cfg = load_tree(
        base,
        ["model.backbone=shared", "model.image_output=flow", "tokenizers.image=patch", f"tokenizers.und_image={reads}"],
    )
    world = world_of(token_cfg.world)
    rng = np.random.default_rng(0)
    prompts = [world.prompt(world.sample(rng), rng) for _ in range(max(int(b) for b in args.batches.split(",")))]
    seconds: dict[tuple[str, int], float] = {}

    def draw(model: torch.nn.Module, prefixes: list) -> torch.Tensor:
        if model.cfg.image_output == "flow":
            guided = {"uncond": uncond, "guidance": args.flow_guidance} if args.flow_guidance != 1 else {}
            return generate_flow(model, prefixes, steps=args.flow_steps, solver=args.solver, **guided)
        return generate_images(model, prefixes, sampling=Sampling(temperature=0.0))

    for name, cfg in (("tokens", token_cfg), ("flow", flow_cfg)):
        tok = build_tokenizers(cfg)
        model = build_model(cfg, tok.text, tok.und, tok.gen).eval()
        packer = Packer(tok.text, tok.und, tok.gen)
        uncond = packer.pack(Example("gen", ""), with_target=False)
        for batch in [int(b) for b in args.batches.split(",")]:
            prefixes = [packer.pack(Example("gen", p), with_target=False) for p in prompts[:batch]]
            seconds[name, batch] = timed(lambda: draw(model, prefixes), args.seconds)  # noqa: B023 (called here)
            figure = {
                "figure": "images_per_s",
                "model": name,
                "batch": batch,
                "images_per_s": round(batch / seconds[name, batch], 2),
                "image_slots": model.cfg.image_tokens,
                "threads": args.threads,
            }
            if name == "flow":
                figure.update(steps=args.flow_steps, solver=args.solver, guidance=args.flow_guidance)
            print(json.dumps(figure), flush=True)
    for batch in [int(b) for b in args.batches.split(",")]:
        print(
            json.dumps(
                {
                    "figure": "flow_vs_tokens_images_per_s",
                    "batch": batch,
                    "ratio": round(seconds["tokens", batch] / seconds["flow", batch], 3),
                }
            )
        )


if __name__ == "__main__":
    main()
