"""The `shapes` world: coloured shapes on a grid, with exact geometry shared by the renderer and the parser.

Every object is drawn as a binary template (no anti-aliasing) centred in its grid cell, so a clean render holds
only palette colours and the background, and the parser can invert it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from unifylab.world.base import MARGIN, Nuisance

if TYPE_CHECKING:
    from unifylab.world.shapes.scene import Scene

WORLD = "shapes"
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "ring")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 25, 25),
    "green": (20, 190, 40),
    "blue": (30, 60, 230),
    "yellow": (240, 220, 20),
    "magenta": (220, 40, 220),
    "cyan": (30, 220, 230),
    "white": (245, 245, 245),
    "orange": (250, 140, 10),
}
SIZES: tuple[str, ...] = ("large", "small")
BACKGROUND: tuple[int, int, int] = (0, 0, 0)

MIN_CANVAS, MAX_CANVAS = 32, 128
MIN_GRID, MAX_GRID = 3, 6
MIN_CELL_PX = 8
BOX_FRACTION = 0.75  # side of a large object's box relative to the cell
SMALL_FRACTION = 0.6  # side of a small object relative to a large one
MIN_SMALL_PX = 6  # a small template below this is too coarse to tell the shapes apart


def _round(x: float) -> int:
    """Round half up (Python's round() is banker's rounding, which would make boxes depend on parity)."""
    return int(np.floor(x + 0.5))


def check_canvas(size: int, grid: int, sizes: tuple[str, ...] = ("large",)) -> None:
    """Raise ValueError with the fix when a canvas/grid/size-variant combination cannot be drawn unambiguously."""
    if not MIN_CANVAS <= size <= MAX_CANVAS:
        raise ValueError(f"size {size} px is outside {MIN_CANVAS}..{MAX_CANVAS}; pick a canvas in that range")
    if not MIN_GRID <= grid <= MAX_GRID:
        raise ValueError(f"grid {grid} is outside {MIN_GRID}..{MAX_GRID}; pick a grid in that range")
    if size / grid < MIN_CELL_PX:
        raise ValueError(
            f"a {grid}x{grid} grid on {size} px gives {size / grid:.1f} px cells, below the {MIN_CELL_PX} px "
            f"needed to tell shapes apart; use grid <= {size // MIN_CELL_PX} or size >= {grid * MIN_CELL_PX}"
        )
    if "small" in sizes and box_side(size, grid, "small") < MIN_SMALL_PX:
        need = next(s for s in range(size, MAX_CANVAS + 1) if box_side(s, grid, "small") >= MIN_SMALL_PX)
        raise ValueError(
            f"small objects on a {grid}x{grid} grid at {size} px would be {box_side(size, grid, 'small')} px, "
            f"below {MIN_SMALL_PX} px; use size >= {need} or drop 'small' from sizes"
        )


def box_side(size: int, grid: int, obj_size: str = "large") -> int:
    """Side in pixels of an object's square box."""
    large = _round(BOX_FRACTION * size / grid)
    return large if obj_size == "large" else _round(SMALL_FRACTION * large)


@dataclass(frozen=True)
class Layout:
    """Pixel geometry of one (canvas size, grid): box origins per cell and crop windows for the parser."""

    size: int
    grid: int

    @property
    def side(self) -> int:
        return box_side(self.size, self.grid, "large")

    @property
    def window(self) -> int:
        """Side of the parser's crop: a large box plus the jitter margin on each side."""
        return self.side + 2 * MARGIN

    def origins(self) -> np.ndarray:
        """Top/left pixel of the large box in each row/column, shape [grid]."""
        centres = (np.arange(self.grid) + 0.5) * self.size / self.grid
        return np.floor(centres - self.side / 2 + 0.5).astype(np.int64)

    def offset(self, obj_size: str) -> int:
        """Offset of an object's box inside the large box (small objects sit centred in it)."""
        return (self.side - box_side(self.size, self.grid, obj_size)) // 2

    def centre(self, row: int, col: int) -> tuple[float, float]:
        """Pixel centre (x, y) of a cell's large box."""
        o = self.origins()
        return float(o[col] + self.side / 2), float(o[row] + self.side / 2)


@cache
def template(shape: str, side: int) -> np.ndarray:
    """Binary mask [side, side] of a shape, sampled at pixel centres in coordinates u, v in (-1, 1)."""
    c = (2 * (np.arange(side) + 0.5) / side) - 1
    v, u = np.meshgrid(c, c, indexing="ij")
    r2 = u * u + v * v
    eps = 1e-9
    if shape == "square":
        m = np.ones((side, side), bool)
    elif shape == "circle":
        m = r2 <= 1 + eps
    elif shape == "ring":
        m = (r2 <= 1 + eps) & (r2 >= 0.3)
    elif shape == "diamond":
        m = np.abs(u) + np.abs(v) <= 1 + eps
    elif shape == "cross":
        m = (np.abs(u) <= 0.34) | (np.abs(v) <= 0.34)
    elif shape == "triangle":
        m = np.abs(u) <= (v + 1) / 2 + 1 / side + eps
    else:
        raise ValueError(f"unknown shape {shape!r}")
    m.setflags(write=False)
    return m


class ShapesConfig(BaseModel):
    """How scenes of the shapes world are sampled: canvas, grid, object counts and size variants."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["shapes"] = "shapes"
    size: int = Field(32, description="canvas side in pixels")
    grid: int = Field(3, description="cells per side")
    min_objects: int = Field(1, ge=0)
    max_objects: int = Field(3, ge=0)
    sizes: tuple[str, ...] = Field(("large",), description="object size variants to sample from")

    @property
    def canvas(self) -> tuple[str, int, int]:
        """(world, size, grid): what an image of this world is, and what a model of it must read and draw."""
        return WORLD, self.size, self.grid

    def describe(self) -> str:
        return f"{self.size} px {self.grid}x{self.grid} shapes world"

    @model_validator(mode="after")
    def _check(self) -> ShapesConfig:
        bad = [s for s in self.sizes if s not in SIZES]
        if bad or not self.sizes:
            raise ValueError(f"sizes {list(self.sizes)} must be a non-empty subset of {list(SIZES)}")
        check_canvas(self.size, self.grid, self.sizes)
        if self.min_objects > self.max_objects:
            raise ValueError(f"min_objects {self.min_objects} > max_objects {self.max_objects}")
        if self.max_objects > self.grid**2:
            raise ValueError(f"max_objects {self.max_objects} exceeds the {self.grid**2} cells of the grid")
        return self


PALETTE = np.array(list(COLORS.values()), dtype=np.uint8)


def render(scene: Scene, nuisance: Nuisance | None = None) -> np.ndarray:
    """Draw a scene as an RGB uint8 array [size, size, 3]; identical inputs give identical bytes."""
    lay = Layout(scene.size, scene.grid)
    rng = np.random.default_rng(nuisance.seed) if nuisance else None
    bg = np.array(BACKGROUND, np.int64)
    if nuisance and nuisance.tint:
        bg = np.clip(bg + rng.integers(0, nuisance.tint + 1, 3), 0, 255)
    img = np.empty((scene.size, scene.size, 3), np.uint8)
    img[:] = bg
    origins = lay.origins()
    for obj in scene.objects:
        side = box_side(scene.size, scene.grid, obj.size)
        y0 = origins[obj.row] + lay.offset(obj.size)
        x0 = origins[obj.col] + lay.offset(obj.size)
        if nuisance and nuisance.jitter:
            dy, dx = rng.integers(-nuisance.jitter, nuisance.jitter + 1, 2)
            y0, x0 = y0 + dy, x0 + dx
        img[y0 : y0 + side, x0 : x0 + side][template(obj.shape, side)] = COLORS[obj.color]
    if nuisance and nuisance.noise:
        noisy = img.astype(np.float32) + rng.normal(0.0, nuisance.noise, img.shape).astype(np.float32)
        img = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return img


def sample_scene(config: ShapesConfig, rng: np.random.Generator) -> Scene:
    """Draw one random scene: object count, distinct cells, shape, colour and size all uniform."""
    from unifylab.world.shapes.scene import Obj, Scene

    n = int(rng.integers(config.min_objects, config.max_objects + 1))
    cells = rng.choice(config.grid**2, size=n, replace=False)
    shapes = rng.integers(0, len(SHAPES), n)
    colors = rng.integers(0, len(COLORS), n)
    sizes = rng.integers(0, len(config.sizes), n)
    names = list(COLORS)
    objs = [
        Obj(SHAPES[s], names[c], int(cell) // config.grid, int(cell) % config.grid, config.sizes[z])
        for cell, s, c, z in zip(cells, shapes, colors, sizes)
    ]
    return Scene(size=config.size, grid=config.grid, objects=tuple(objs))


def sample_scenes(config: ShapesConfig, n: int, seed: int) -> list[Scene]:
    """`n` scenes from one seed; the same seed always gives the same list."""
    rng = np.random.default_rng(seed)
    return [sample_scene(config, rng) for _ in range(n)]
