"""Layer-wise modality alignment: how similarly a model's image and text representations of the same scenes are
organised, per layer, measured by mutual k-nearest-neighbour overlap (as in the Platonic-representation work that
UniFork uses) and by linear CKA."""

from __future__ import annotations

from typing import Any

import torch

from unifylab.analysis.capture import Pooled, pooled_features, pooled_part, scene_requests
from unifylab.eval.protocol import HiddenRequest
from unifylab.world import WorldConfig


def knn_overlap(a: torch.Tensor, b: torch.Tensor, k: int = 10) -> torch.Tensor:
    """Per item, the share of its k nearest neighbours (cosine, excluding itself) that the two feature sets agree on
    [N]: a [N, Da] and b [N, Db] describe the same N items."""
    n = a.shape[0]
    if b.shape[0] != n:
        raise ValueError(f"mutual_knn needs paired features, got {n} and {b.shape[0]} rows")
    if not 1 <= k < n:
        raise ValueError(f"k must lie in 1..{n - 1} for {n} items, got {k}")

    def knn(x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.normalize(x.double(), dim=1)
        sim = x @ x.T
        sim.fill_diagonal_(-float("inf"))
        return sim.topk(k, dim=1).indices

    ia, ib = knn(a), knn(b)
    hits = torch.zeros(n, n, dtype=torch.bool)
    hits[torch.arange(n)[:, None], ia] = True
    return hits.gather(1, ib).sum(1).double() / k


def mutual_knn(a: torch.Tensor, b: torch.Tensor, k: int = 10) -> float:
    """Mean `knn_overlap`: 1 = identical neighbourhoods, about k / (N - 1) for unrelated features."""
    return float(knn_overlap(a, b, k).mean())


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear centred kernel alignment of paired features a [N, Da], b [N, Db]: 1 for features equal up to rotation
    and scale, near 0 for independent ones."""
    a = a.double() - a.double().mean(0)
    b = b.double() - b.double().mean(0)
    cross = (b.T @ a).pow(2).sum()
    norm = (a.T @ a).pow(2).sum().sqrt() * (b.T @ b).pow(2).sum().sqrt()
    return float(cross / norm) if norm > 0 else 0.0


def layer_alignment(pooled: Pooled, k: int) -> list[dict[str, Any]]:
    """Mutual kNN (with each item's overlap in `items`, for intervals over scenes) and CKA between mean-pooled image
    and text states at every layer."""
    rows = []
    for layer in range(pooled.image.shape[0]):
        img, txt = pooled.image[layer], pooled.text[layer]
        per_item = knn_overlap(img, txt, k)
        rows.append(
            {
                "layer": layer,
                "mutual_knn": float(per_item.mean()),
                "cka": linear_cka(img, txt),
                "items": [round(float(x), 4) for x in per_item],
            }
        )
    return rows


def alignment(
    model: Any, world: WorldConfig, n: int = 200, k: int = 10, seed: int = 0, batch: int = 64
) -> list[dict[str, Any]]:
    """Per layer, for understanding inputs (image, then its caption), generation inputs (prompt, then the image) and
    `separate` inputs (each scene's image alone and its caption alone, two sequences: no token has attended to the
    other modality, so this measures shared representations, not attention mixing): rows {input, layer,
    mutual_knn, cka, chance} with chance = k / (n - 1), the mutual-kNN of unrelated features."""
    out = []
    for kind in ("und", "gen", "separate"):
        if kind == "separate":
            reqs = scene_requests("und", world, n, seed)
            pooled = Pooled(
                pooled_part(model, [HiddenRequest("und", image=r.image) for r in reqs], "image", batch),
                pooled_part(model, [HiddenRequest("gen", r.answer) for r in reqs], "text", batch),
            )
        else:
            pooled = pooled_features(model, scene_requests(kind, world, n, seed), batch)
        for row in layer_alignment(pooled, k):
            out.append({"input": kind, **row, "chance": k / (n - 1)})
    return out
