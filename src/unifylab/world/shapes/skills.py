"""Skills a study can teach on one side: moving an object one cell in a named direction, turning or mirroring
the whole picture, and recolouring an object by a verb that means a colour ("fade": white).

Understanding learns a skill as a question about an image ("the red ring moves one cell left. where is it now?" ->
"row 2, column 1"; "the picture turns a quarter turn clockwise. where is the red ring now?"; "the red ring fades.
what colour is it now?" -> "white"); generation as an edit (the image and "move the red ring one cell left.", "turn
the picture a quarter turn clockwise." or "fade the red ring." -> the edited image). Both stepwise routes go through
the explicit edit, which names the result and no skill word ("move the red ring to row 2, column 1.", "paint the red
ring white."), so a skill word can be taught on one side only and tested on the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from unifylab.world.shapes.canvas import COLORS
from unifylab.world.shapes.knowledge import cell
from unifylab.world.shapes.language import unique
from unifylab.world.shapes.scene import Obj, Scene

DIRECTIONS: dict[str, tuple[int, int]] = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}
# turns of the whole picture: where cell (r, c) of a g x g grid goes, the edit and the question's first sentence
TURNS: dict[str, tuple[Callable[[int, int, int], tuple[int, int]], str, str]] = {
    "clockwise": (
        lambda r, c, g: (c, g - 1 - r),
        "turn the picture a quarter turn clockwise.",
        "the picture turns a quarter turn clockwise.",
    ),
    "anticlockwise": (
        lambda r, c, g: (g - 1 - c, r),
        "turn the picture a quarter turn anticlockwise.",
        "the picture turns a quarter turn anticlockwise.",
    ),
    "half": (lambda r, c, g: (g - 1 - r, g - 1 - c), "turn the picture half a turn.", "the picture turns half a turn."),
    "mirror": (
        lambda r, c, g: (r, g - 1 - c),
        "mirror the picture left to right.",
        "the picture is mirrored left to right.",
    ),
}
# recolouring verbs and the colour each means
RECOLOURS: dict[str, str] = {"fade": "white", "ripen": "red", "freeze": "cyan", "rust": "orange"}
SKILLS = (*DIRECTIONS, *TURNS, *RECOLOURS)  # the keys of data.moves


@dataclass(frozen=True)
class Move:
    """One object of `before` (named by its colour and shape, unique in the scene) moved to (row, col), or recoloured
    to `color` in its cell; `direction` is the skill: a direction word of a one-cell move, a turn of the whole
    picture or a recolouring verb (None for an explicit relocation or repaint)."""

    before: Scene
    obj: Obj
    row: int
    col: int
    direction: str | None = None
    color: str | None = None

    @property
    def after(self) -> Scene:
        g = self.before.grid
        if self.direction in TURNS:
            turn = TURNS[self.direction][0]
            objs = tuple(Obj(o.shape, o.color, *turn(o.row, o.col, g), o.size) for o in self.before.objects)
            return Scene(self.before.size, g, objs)
        moved = Obj(self.obj.shape, self.color or self.obj.color, self.row, self.col, self.obj.size)
        return Scene(self.before.size, g, tuple(moved if o == self.obj else o for o in self.before.objects))

    @property
    def name(self) -> str:
        return f"the {self.obj.color} {self.obj.shape}"

    @property
    def instruction(self) -> str:
        """The edit that names the skill: 'move the red ring one cell left.', 'mirror the picture left to right.'"""
        if self.direction in TURNS:
            return TURNS[self.direction][1]
        if self.direction in RECOLOURS:
            return f"{self.direction} {self.name}."
        return f"move {self.name} one cell {self.direction}."

    @property
    def question(self) -> str:
        """The question that names the skill: 'the red ring moves one cell left. where is it now?', 'the picture
        turns half a turn. where is the red ring now?'"""
        if self.direction in TURNS:
            return f"{TURNS[self.direction][2]} where is {self.name} now?"
        if self.direction in RECOLOURS:
            return f"{self.name} {self.direction}s. what colour is it now?"
        return f"{self.name} moves one cell {self.direction}. where is it now?"

    @property
    def answer(self) -> str:
        """Where the object ends, or for a recolouring its new colour."""
        return self.color if self.color is not None else cell(self.row, self.col)

    @property
    def explicit(self) -> str:
        """The edit that names the result and no skill word: 'move the red ring to row 2, column 1.', 'paint the
        red ring white.'"""
        return explicit_edit(self.name, self.answer, repaint=self.color is not None)

    @property
    def follow_up(self) -> str:
        """The question about the edited image whose answer is `answer` (the stepwise understanding route):
        'where is the red ring?', or for a recolouring 'what color is the ring?' (its shape is unique)."""
        return f"what color is the {self.obj.shape}?" if self.color is not None else f"where is {self.name}?"


def explicit_edit(name: str, result: str, *, repaint: bool = False) -> str:
    """'move the red ring to row 2, column 1.' from the object's name and a cell, or with `repaint` 'paint the red
    ring white.' from its name and a colour."""
    return f"paint {name} {result}." if repaint else f"move {name} to {result}."


def _named(scene: Scene) -> list[Obj]:
    """Objects no other object shares a (colour, shape) with: the ones 'the <colour> <shape>' names."""
    return unique(scene, lambda o: (o.color, o.shape))


def moves(scene: Scene, direction: str) -> list[Move]:
    """Every one-cell move in `direction` of a named object to an empty cell of the grid; for a turn, the turn of
    the picture once per named object it moves (the object a question asks about)."""
    if direction in TURNS:
        turn = TURNS[direction][0]
        ends = [(o, turn(o.row, o.col, scene.grid)) for o in _named(scene)]
        return [Move(scene, o, r, c, direction) for o, (r, c) in ends if (r, c) != (o.row, o.col)]
    if direction in RECOLOURS:
        color = RECOLOURS[direction]
        return [Move(scene, o, o.row, o.col, direction, color) for o in _shape_named(scene) if o.color != color]
    dr, dc = DIRECTIONS[direction]
    out = []
    for o in _named(scene):
        r, c = o.row + dr, o.col + dc
        if 0 <= r < scene.grid and 0 <= c < scene.grid and scene.at(r, c) is None:
            out.append(Move(scene, o, r, c, direction))
    return out


def _shape_named(scene: Scene) -> list[Obj]:
    """Objects whose shape no other object has: recoloured, 'what color is the <shape>?' still names them."""
    return unique(scene, lambda o: o.shape)


def relocations(scene: Scene) -> list[Move]:
    """Every move of a named object to any empty cell (the explicit edit's examples)."""
    empty = [(r, c) for r in range(scene.grid) for c in range(scene.grid) if scene.at(r, c) is None]
    return [Move(scene, o, r, c) for o in _named(scene) for r, c in empty]


def repaints(scene: Scene) -> list[Move]:
    """Every repaint of an object with a unique shape to another colour (the explicit recolouring's examples)."""
    return [Move(scene, o, o.row, o.col, None, c) for o in _shape_named(scene) for c in COLORS if c != o.color]
