"""Trainer speed on the quick study's data: real (non-padding) training tokens per second with packed rows
(data.pack, the default) against plain right-padded batches (the baseline), same model, same examples, same run;
and the share of each batch that is padding.

Prints one JSON line per figure. Run: python benchmarks/train.py [--steps 30 --batch 32 --dim 96]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from unifylab.study.preset import load_preset, merge
from unifylab.train.config import load_tree
from unifylab.train.loop import Trainer


def measure(tree: dict, pack: bool, steps: int, folder: Path) -> tuple[float, float]:
    """(real tokens per second, padding share) over `steps` training steps after one warm-up step."""
    cfg = load_tree(merge(tree, {"data": {"pack": pack}}), [], "benchmark")
    trainer = Trainer(cfg, folder / f"pack-{pack}", progress=False)
    trainer._step(0)
    real = slots = 0
    t = time.perf_counter()
    for s in range(1, steps + 1):
        real += trainer._step(s)["tokens"]
    seconds = time.perf_counter() - t
    for s in range(1, steps + 1):
        for b in trainer._micro_batches(s):
            slots += b["attention_mask"].numel()
    return real / seconds, 1 - real / slots


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--dim", type=int, default=96)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tree = merge(load_preset("quick").base, {"model": {"dim": args.dim}, "optim": {"batch": args.batch}})
    with tempfile.TemporaryDirectory() as tmp:
        padded, pad_share = measure(tree, False, args.steps, Path(tmp))
        packed, packed_pad = measure(tree, True, args.steps, Path(tmp))
    common = {"batch": args.batch, "dim": args.dim, "threads": torch.get_num_threads(), "steps": args.steps}
    print(
        json.dumps(
            {
                "figure": "train_real_tokens_per_s",
                "rows": "padded",
                "tokens_per_s": round(padded),
                "padding_share": round(pad_share, 3),
                **common,
            }
        )
    )
    print(
        json.dumps(
            {
                "figure": "train_real_tokens_per_s",
                "rows": "packed",
                "tokens_per_s": round(packed),
                "padding_share": round(packed_pad, 3),
                "vs_padded": round(packed / padded, 2),
                **common,
            }
        )
    )


if __name__ == "__main__":
    main()
