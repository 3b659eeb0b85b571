"""The watch world's exact parser: each pixel labelled by its nearest palette colour, the hands matched against
every allowed time's hand mask at once (one matrix product), the face colour by majority, each corner's icon by its
colour and the battery level by its area."""

from __future__ import annotations

import numpy as np

from unifylab.errors import UserError
from unifylab.world.base import MARGIN
from unifylab.world.watch.face import (
    BATTERY,
    CORNERS,
    FACES,
    HANDS,
    LEVELS,
    WEATHER,
    Dial,
    WatchScene,
    check_dial,
    hand_masks,
    segment_pixels,
)

# pixel classes: 0 background, then faces, hands, weather icons, battery; OTHER for pixels far from every class
PALETTE = np.array([*FACES.values(), HANDS, *WEATHER.values(), BATTERY], np.float32)
_FACE0, _HANDS, _WEATHER0, _BATTERY = 1, 1 + len(FACES), 2 + len(FACES), 2 + len(FACES) + len(WEATHER)
OTHER = len(PALETTE) + 1
MAX_CLASS_DIST = 60.0


def _labels(images: np.ndarray) -> np.ndarray:
    """Label per pixel: 0 = background (estimated per image from the edge midpoints, never drawn on), 1.. = the
    palette classes, OTHER = far from every class."""
    n, s = images.shape[:2]
    mid = s // 2
    ys = np.array([0, 0, s - 1, s - 1, mid - 1, mid, mid - 1, mid])
    xs = np.array([mid - 1, mid, mid - 1, mid, 0, 0, s - 1, s - 1])
    bg = np.median(images[:, ys, xs].astype(np.float32), axis=1)  # [n, 3]
    px = images.reshape(n, -1, 3).astype(np.float32)
    d_pal = px @ (-2 * PALETTE.T) + (PALETTE * PALETTE).sum(1)  # [n, P, C] less the shared |x|^2
    d_bg = (bg * bg).sum(1)[:, None] - 2 * (px @ bg[:, :, None])[..., 0]
    d = np.concatenate([d_bg[..., None], d_pal], -1)
    labels = d.argmin(-1)
    nearest = np.take_along_axis(d, labels[..., None], -1)[..., 0] + (px * px).sum(-1)
    labels[nearest > MAX_CLASS_DIST**2] = OTHER
    return labels.astype(np.int8)  # [n, P]


def _counts(labels: np.ndarray, k: int) -> np.ndarray:
    """Per row of `labels` [n, m], how many of each label 0..k-1: [n, k]."""
    n = labels.shape[0]
    flat = (np.arange(n, dtype=np.int64) * k)[:, None] + labels
    return np.bincount(flat.ravel(), minlength=n * k).reshape(n, k)


def parse_faces(images: np.ndarray, *, minute_step: int) -> list[WatchScene]:
    """Parse RGB uint8 faces [N, S, S, 3] into watch scenes: hands to the nearest allowed time (IoU against every
    time's hand mask), face colour by majority on the dial, each corner's icon by its colour, the battery level by
    its green area."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise UserError(
            f"parse_faces expects a uint8 array [N, S, S, 3], got {getattr(images, 'dtype', type(images).__name__)} "
            f"of shape {list(getattr(images, 'shape', []))}"
        )
    n, size = images.shape[0], images.shape[1]
    if images.shape[2] != size:
        raise UserError(f"watch faces are square, got {size}x{images.shape[2]}; crop or pad to the canvas")
    try:
        check_dial(size, minute_step)
    except ValueError as e:
        raise UserError(f"cannot parse {size} px watch faces: {e}") from None
    chunk = max(1, 2**18 // (size * size))
    out: list[WatchScene] = []
    for start in range(0, n, chunk):
        out += _parse_chunk(np.ascontiguousarray(images[start : start + chunk]), minute_step)
    return out


def _parse_chunk(images: np.ndarray, minute_step: int) -> list[WatchScene]:
    n, size = images.shape[0], images.shape[1]
    dial, bank = Dial(size), hand_masks(size, minute_step)
    labels = _labels(images)
    on_dial = labels[:, dial.disc]
    faces = _counts(on_dial.astype(np.int64), OTHER + 1)[:, _FACE0:_HANDS].argmax(1)
    hands = (on_dial == _HANDS).astype(np.float32)
    inter = hands @ bank.masks.T
    iou = inter / (hands.sum(1, keepdims=True) + bank.areas[None, :] - inter + 1e-9)
    times = [bank.times[k] for k in iou.argmax(1)]
    side, pad = dial.icon, MARGIN
    grid = labels.reshape(n, size, size)
    per_corner = []
    for corner in CORNERS:
        y0, x0 = dial.corner(corner)
        window = grid[:, max(0, y0 - pad) : y0 + side + pad, max(0, x0 - pad) : x0 + side + pad]
        per_corner.append(_counts(window.reshape(n, -1).astype(np.int64), OTHER + 1))
    counts = np.stack(per_corner, 1)  # [n, 4 corners, classes]
    weather = counts[..., _WEATHER0:_BATTERY]
    weather_corner = weather.sum(-1).argmax(1)
    icon = weather[np.arange(n), weather_corner].argmax(-1)
    green = counts[..., _BATTERY]
    battery_corner = np.where(
        green.argmax(1) == weather_corner, np.argsort(-green, 1)[:, 1], green.argmax(1)
    )  # two corners, never the same
    level = np.clip(np.rint(green[np.arange(n), battery_corner] / segment_pixels(size)), 1, LEVELS).astype(int)
    return [
        WatchScene(
            size=size,
            hour=times[i][0],
            minute=times[i][1],
            face=list(FACES)[faces[i]],
            weather=list(WEATHER)[icon[i]],
            weather_corner=CORNERS[weather_corner[i]],
            battery=int(level[i]),
            battery_corner=CORNERS[battery_corner[i]],
        )
        for i in range(n)
    ]
