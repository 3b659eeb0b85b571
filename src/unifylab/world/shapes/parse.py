"""The exact scene parser: image -> Scene, vectorised over a batch. It is the judge of generated images.

Per image: estimate the background from cell-window corners (always background on a render), label every pixel
with its nearest class (background or a palette colour), then per cell take the dominant colour and match that
colour's mask against every shape template at every +-1 px shift with one matrix product (IoU). A cell holds an
object only when enough pixels, a good template fit (IoU), a pure colour and a background surround (context)
agree; confidence = IoU x purity x context, 1.0 on a clean render.
When the grid is not given, every grid the canvas allows is tried and the one whose objects explain the most
foreground pixels wins (analysis by synthesis).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from unifylab.errors import UserError
from unifylab.world.base import MARGIN
from unifylab.world.shapes import canvas as W
from unifylab.world.shapes.scene import Obj, Scene

MIN_IOU = 0.6
MIN_PURITY = 0.6
MIN_CONTEXT = 0.6  # share of the window outside the matched template that must be background
MAX_CLASS_DIST = 80.0  # RGB distance beyond which a pixel is "other": neither background nor a palette colour
MIN_AREA_FRACTION = 0.5  # of the smallest template, below which a cell counts as empty


@dataclass(frozen=True)
class _Bank:
    """Shape templates at every shift, laid out in a cell's crop window, for one layout."""

    masks: np.ndarray  # [T, window*window] float32
    areas: np.ndarray  # [T]
    shape: np.ndarray  # [T] index into SHAPES
    size: np.ndarray  # [T] index into SIZES
    ys: np.ndarray  # [grid, window] pixel rows of each row's window
    xs: np.ndarray  # [grid, window]
    min_pixels: float


@lru_cache(maxsize=64)
def _bank(size: int, grid: int) -> _Bank:
    lay = W.Layout(size, grid)
    win, m = lay.window, MARGIN
    sizes = [s for s in W.SIZES if s == "large" or W.box_side(size, grid, s) >= W.MIN_SMALL_PX]
    masks, shape_idx, size_idx = [], [], []
    for zi, z in enumerate(W.SIZES):
        if z not in sizes:
            continue
        side, off = W.box_side(size, grid, z), lay.offset(z)
        for si, s in enumerate(W.SHAPES):
            t = W.template(s, side)
            for dy in range(-m, m + 1):
                for dx in range(-m, m + 1):
                    canvas = np.zeros((win, win), np.float32)
                    y, x = m + off + dy, m + off + dx
                    canvas[y : y + side, x : x + side] = t
                    masks.append(canvas.ravel())
                    shape_idx.append(si)
                    size_idx.append(zi)
    masks_arr = np.stack(masks)
    areas = masks_arr.sum(1)
    starts = lay.origins() - m
    idx = starts[:, None] + np.arange(win)[None, :]
    return _Bank(
        masks=masks_arr,
        areas=areas,
        shape=np.array(shape_idx),
        size=np.array(size_idx),
        ys=idx,
        xs=idx,
        min_pixels=MIN_AREA_FRACTION * float(areas.min()),
    )


@dataclass
class _Result:
    """Per-cell parse of a batch at one grid: arrays [n, grid*grid] plus how well objects explain the image."""

    grid: int
    present: np.ndarray
    shape: np.ndarray
    color: np.ndarray
    size: np.ndarray
    confidence: np.ndarray
    explained: np.ndarray  # [n]


OTHER = len(W.COLORS) + 1  # label of pixels far from every class


def _labels(images: np.ndarray, bank: _Bank) -> np.ndarray:
    """Label per pixel: 0 = background (estimated per image), 1..8 = nearest palette colour, OTHER = neither."""
    n = images.shape[0]
    first, last = bank.ys[:, 0], bank.ys[:, -1]
    cy = np.concatenate([first, first, last, last])
    cx = np.concatenate([bank.xs[:, 0], bank.xs[:, -1], bank.xs[:, 0], bank.xs[:, -1]])
    corners = images[:, cy[:, None], cx[None, :]].reshape(n, -1, 3)
    bg = np.median(corners, axis=1).astype(np.float32)  # [n, 3]
    px = images.reshape(n, -1, 3).astype(np.float32)
    # squared distance minus the |x|^2 term shared by all classes: |c|^2 - 2 x.c
    pal = W.PALETTE.astype(np.float32)
    d_pal = px.reshape(-1, 3) @ (-2 * pal.T) + (pal * pal).sum(1)
    d_bg = (bg * bg).sum(1)[:, None] - 2 * (px @ bg[:, :, None])[..., 0]
    d = np.concatenate([d_bg.reshape(-1, 1), d_pal], 1)
    labels = d.argmin(1)
    far = d[np.arange(d.shape[0]), labels] + (px.reshape(-1, 3) ** 2).sum(1) > MAX_CLASS_DIST**2
    labels[far] = OTHER
    return labels.reshape(images.shape[:3]).astype(np.int8)


def _parse_grid(images: np.ndarray, grid: int) -> _Result:
    n, size = images.shape[0], images.shape[1]
    bank = _bank(size, grid)
    labels = _labels(images, bank)
    g2, win2 = grid * grid, bank.ys.shape[1] ** 2
    cells = labels[:, bank.ys[:, None, :, None], bank.xs[None, :, None, :]].reshape(n, g2, win2)
    k = OTHER + 1
    flat = (np.arange(n * g2, dtype=np.int64) * k)[:, None] + cells.reshape(n * g2, win2)
    counts = np.bincount(flat.ravel(), minlength=n * g2 * k).reshape(n, g2, k)  # [n, g2, bg+8+other]
    color = counts[..., 1:OTHER].argmax(-1)
    hits = np.take_along_axis(counts, color[..., None] + 1, -1)[..., 0].astype(np.float32)
    purity = hits / np.maximum(counts[..., 1:].sum(-1), 1)
    mask = (cells == (color + 1)[..., None].astype(np.int8)).astype(np.float32).reshape(n * g2, win2)
    inter = mask @ bank.masks.T  # [n*g2, T]
    iou = inter / (hits.reshape(-1, 1) + bank.areas[None, :] - inter + 1e-9)
    best = iou.argmax(1)
    rows = np.arange(n * g2)
    best_iou = iou[rows, best].reshape(n, g2)
    outside = 1.0 - bank.masks[best]  # [n*g2, win2]
    is_bg = (cells.reshape(n * g2, win2) == 0).astype(np.float32)
    context = ((is_bg * outside).sum(1) / np.maximum(outside.sum(1), 1)).reshape(n, g2)
    present = (hits >= bank.min_pixels) & (best_iou >= MIN_IOU) & (purity >= MIN_PURITY) & (context >= MIN_CONTEXT)
    fit = (2 * inter[rows, best] - bank.areas[best]).reshape(n, g2)
    total_fg = (labels > 0).reshape(n, -1).sum(1)
    explained = np.where(present, fit, 0).sum(1) / np.maximum(total_fg, 1)
    return _Result(
        grid=grid,
        present=present,
        shape=bank.shape[best].reshape(n, g2),
        color=color,
        size=bank.size[best].reshape(n, g2),
        confidence=best_iou * purity * context,
        explained=explained,
    )


def candidate_grids(size: int) -> list[int]:
    """Grids the shapes world allows on a canvas of `size` px."""
    out = []
    for g in range(W.MIN_GRID, W.MAX_GRID + 1):
        try:
            W.check_canvas(size, g)
        except ValueError:
            continue
        out.append(g)
    return out


def _check_batch(images: np.ndarray) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise UserError(
            f"parse_batch expects a uint8 numpy array [N, H, W, 3], got {type(images).__name__} "
            f"of dtype {getattr(images, 'dtype', None)}"
        )
    if images.ndim != 4 or images.shape[-1] != 3:
        raise UserError(f"parse_batch expects shape [N, H, W, 3], got {list(images.shape)}")
    h, w = images.shape[1:3]
    if h != w:
        raise UserError(f"images must be square, got {h}x{w}; crop or pad to the world's canvas")
    if not W.MIN_CANVAS <= h <= W.MAX_CANVAS:
        raise UserError(
            f"image is {h}x{w} px; the shapes world draws {W.MIN_CANVAS}..{W.MAX_CANVAS} px canvases: "
            "resize it to the world size before parsing"
        )


def parse_batch(images: np.ndarray, grid: int | None = None) -> list[Scene]:
    """Parse a batch of RGB uint8 images [N, H, W, 3] into scenes (with a confidence per object).

    `grid` fixes the grid (as known from a scene file); None infers it per image.
    """
    _check_batch(images)
    n, size = images.shape[0], images.shape[1]
    grids = candidate_grids(size) if grid is None else [grid]
    if grid is not None:
        try:
            W.check_canvas(size, grid)
        except ValueError as e:
            raise UserError(f"cannot parse a {size} px image with grid {grid}: {e}") from None
    chunk = max(1, 2**20 // (size * size))
    scenes: list[Scene] = []
    for start in range(0, n, chunk):
        batch = np.ascontiguousarray(images[start : start + chunk])
        results = [_parse_grid(batch, g) for g in grids]
        choice = np.stack([r.explained for r in results]).argmax(0)
        for i in range(batch.shape[0]):
            scenes.append(_to_scene(results[choice[i]], i, size))
    return scenes


def _to_scene(r: _Result, i: int, size: int) -> Scene:
    cells = np.flatnonzero(r.present[i])
    colors = list(W.COLORS)
    objs = tuple(
        Obj(
            W.SHAPES[r.shape[i, c]],
            colors[r.color[i, c]],
            int(c) // r.grid,
            int(c) % r.grid,
            W.SIZES[r.size[i, c]],
            float(r.confidence[i, c]),
        )
        for c in cells
    )
    return Scene(size=size, grid=r.grid, objects=objs)


def parse(image: np.ndarray, grid: int | None = None) -> Scene:
    """Parse one RGB uint8 image [H, W, 3]; see `parse_batch`."""
    if not isinstance(image, np.ndarray) or image.ndim != 3:
        raise UserError(f"parse expects an RGB array [H, W, 3], got shape {getattr(image, 'shape', None)}")
    return parse_batch(image[None], grid)[0]
