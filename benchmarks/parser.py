"""Parser throughput: `parse_batch` images/s against a per-image `parse` loop (the
unbatched baseline), same images; and the watch world's `parse_faces` against a per-face loop.

Prints one JSON line per figure: {"figure", "images_per_s", "baseline_images_per_s", "ratio", ...}.
Run: python benchmarks/parser.py [--n 4096] [--size 32] [--grid 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from unifylab.world import Nuisance
from unifylab.world.shapes.canvas import ShapesConfig, render, sample_scenes
from unifylab.world.shapes.parse import parse, parse_batch
from unifylab.world.watch import face as watch
from unifylab.world.watch.parse import parse_faces


def _rate(fn, n: int, repeats: int = 3) -> float:  # noqa: ANN001 (a zero-argument callable)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--grid", type=int, default=3)
    ap.add_argument("--minute-step", type=int, default=5, help="the watch world's minute resolution")
    args = ap.parse_args()
    scenes = sample_scenes(ShapesConfig(size=args.size, grid=args.grid, max_objects=min(4, args.grid**2)), args.n, 0)
    images = np.stack([render(s, Nuisance(noise=8.0, jitter=1, seed=i)) for i, s in enumerate(scenes)])
    base_n = min(args.n, 512)
    for figure, grid in (("parse_batch_grid_given", args.grid), ("parse_batch_grid_inferred", None)):
        baseline = _rate(lambda grid=grid: [parse(im, grid) for im in images[:base_n]], base_n)
        rate = _rate(lambda grid=grid: parse_batch(images, grid), args.n)
        _print(figure, rate, baseline, size=args.size, grid=args.grid, n=args.n)
    faces = watch.sample_faces(watch.WatchConfig(size=args.size, minute_step=args.minute_step), args.n, 0)
    images = np.stack([watch.render(f, Nuisance(noise=8.0, jitter=1, seed=i)) for i, f in enumerate(faces)])
    step = args.minute_step
    baseline = _rate(lambda: [parse_faces(im[None], minute_step=step) for im in images[:base_n]], base_n)
    rate = _rate(lambda: parse_faces(images, minute_step=step), args.n)
    _print("watch_parse_faces", rate, baseline, size=args.size, minute_step=step, n=args.n)


def _print(figure: str, rate: float, baseline: float, **fields: int) -> None:
    """One figure's JSON line: the batched rate against the per-image baseline, and the target."""
    line = {
        "figure": figure,
        **fields,
        "images_per_s": round(rate, 1),
        "baseline_images_per_s": round(baseline, 1),
        "ratio": round(rate / baseline, 2),
        "target_images_per_s": 2000,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
