"""Adding a world is adding one folder: a toy world, written here as a package of its own and registered only in
this test (an entry point in the `unifylab.worlds` group), is sampled, evaluated by the oracle, trained and evaluated
through the ordinary commands, with no line of the lab changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

TOY = '''"""A toy world: one coloured lamp in one cell of a 3x3 grid on a black canvas."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from unifylab.tokenize.image import ImageTokenizer
from unifylab.world.base import QA, SceneError, Verdict, World

COLORS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 80, 230), "yellow": (230, 210, 40)}
ROWS, COLS = ("top", "middle", "bottom"), ("left", "centre", "right")


class ToyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["toy"] = "toy"
    size: int = Field(24, ge=12, le=96, multiple_of=3)

    @property
    def canvas(self) -> tuple[str, int, int]:
        return "toy", self.size, 0

    def describe(self) -> str:
        return f"{self.size} px toy world"


@dataclass(frozen=True)
class Lamp:
    world: ClassVar[str] = "toy"
    size: int
    color: str
    row: int
    col: int

    def key(self) -> str:
        return f"toy/{self.size}/{self.color}/{self.row}/{self.col}"

    def to_dict(self) -> dict[str, Any]:
        return {"world": "toy", "size": self.size, "color": self.color, "row": self.row, "col": self.col}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Lamp:
        if d.get("color") not in COLORS or d.get("row") not in range(3) or d.get("col") not in range(3):
            raise SceneError(f"not a toy scene: {d}")
        return Lamp(int(d["size"]), d["color"], d["row"], d["col"])

    def words(self) -> tuple[str, str, str]:
        return self.color, ROWS[self.row], COLS[self.col]


def render(lamp: Lamp, nuisance: Any = None) -> np.ndarray:
    img, c = np.zeros((lamp.size, lamp.size, 3), np.uint8), lamp.size // 3
    img[lamp.row * c + 1 : (lamp.row + 1) * c - 1, lamp.col * c + 1 : (lamp.col + 1) * c - 1] = COLORS[lamp.color]
    return img


def parse_one(image: np.ndarray) -> Lamp:
    c = image.shape[0] // 3
    cells = image[: 3 * c, : 3 * c].reshape(3, c, 3, c, 3).mean(axis=(1, 3))  # [row, col, rgb]
    row, col = np.unravel_index(cells.sum(-1).argmax(), (3, 3))
    palette = np.array(list(COLORS.values()), float)
    mean = image[row * c + 1 : (row + 1) * c - 1, col * c + 1 : (col + 1) * c - 1].reshape(-1, 3).mean(0)
    return Lamp(image.shape[0], list(COLORS)[int(((palette - mean) ** 2).sum(-1).argmin())], int(row), int(col))


def caption(lamp: Lamp) -> str:
    return "a {} lamp at the {} {}.".format(*lamp.words())


QUESTIONS = {
    "color": ("what colour is the lamp?", lambda s: s.color, lambda: list(COLORS)),
    "row": ("which row is the lamp in?", lambda s: ROWS[s.row], lambda: list(ROWS)),
    "column": ("which column is the lamp in?", lambda s: COLS[s.col], lambda: list(COLS)),
}


class LampTokenizer(ImageTokenizer):
    """The exact oracle: one token per image, colour x cell."""

    kind = "lamp"
    discrete = True

    def __init__(self, size: int = 24, detail: int = 0) -> None:
        self.size = size

    token_grid = property(lambda self: (1, 1))
    canvas = property(lambda self: ("toy", self.size, 0))
    vocab_size = property(lambda self: 36)

    def encode_scenes(self, lamps: list[Lamp]) -> torch.Tensor:
        return torch.tensor([[list(COLORS).index(s.color) * 9 + s.row * 3 + s.col] for s in lamps], dtype=torch.long)

    def decode_scenes(self, codes: torch.Tensor) -> list[Lamp]:
        codes = torch.as_tensor(codes).reshape(-1).tolist()
        return [Lamp(self.size, list(COLORS)[c // 9], c % 9 // 3, c % 3) for c in codes]

    def encode(self, images: np.ndarray) -> torch.Tensor:
        return self.encode_scenes([parse_one(im) for im in self.check_images(images)])

    def decode(self, tokens: torch.Tensor) -> np.ndarray:
        return np.stack([render(s) for s in self.decode_scenes(tokens)]).reshape(-1, self.size, self.size, 3)

    def config(self) -> dict[str, Any]:
        return {"size": self.size}

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any]) -> LampTokenizer:
        return cls(int(config["size"]))


class ToyWorld(World):
    name = "toy"
    config_class = ToyConfig
    scene_class = Lamp
    default_holdout = (("yellow", "right"),)
    qa_kinds = tuple(QUESTIONS)
    attribute_words = (*COLORS, *ROWS, *COLS)
    reads_folders = False

    def sample(self, rng: np.random.Generator) -> Lamp:
        return Lamp(self.size, list(COLORS)[int(rng.integers(4))], int(rng.integers(3)), int(rng.integers(3)))

    render = staticmethod(render)

    def parse(self, images: np.ndarray) -> list[Lamp]:
        return [parse_one(im) for im in images]

    def scene_from_dict(self, d: dict[str, Any]) -> Lamp:
        return Lamp.from_dict(d)

    def caption(self, scene: Lamp, rng: np.random.Generator) -> str:
        return caption(scene)

    def sample_qa(self, scene: Lamp, rng: np.random.Generator, kinds: tuple[str, ...] | None = None) -> QA:
        kind = (kinds or self.qa_kinds)[int(rng.integers(len(kinds or self.qa_kinds)))]
        question, answer, _ = QUESTIONS[kind]
        return QA(question, answer(scene), kind)

    def answer_space(self, kind: str, scene: Lamp) -> list[str]:
        return QUESTIONS[kind][2]()

    def prompt(self, scene: Lamp, rng: np.random.Generator) -> str:
        return "draw " + caption(scene)

    def check(self, parsed: Lamp, scene: Lamp) -> Verdict:
        return Verdict(parsed == scene, [] if parsed == scene else [f"drew {caption(parsed)!r}"])

    @staticmethod
    def check_caption(text: str, truth: dict[str, Any]) -> Verdict:
        ok = text.strip() == caption(Lamp.from_dict(truth))
        return Verdict(ok, [] if ok else [f"caption {text!r}"])

    def check_target(self, parsed: Lamp, target: dict[str, Any]) -> Verdict:
        return self.check(parsed, Lamp.from_dict(target))

    def pairs(self, scene: Lamp) -> set[tuple[str, str]]:
        return {(scene.color, COLS[scene.col])}

    def with_pair(self, scene: Lamp, pairs: list[tuple[str, str]], rng: np.random.Generator) -> Lamp:
        color, col = pairs[int(rng.integers(len(pairs)))]
        return Lamp(scene.size, color, scene.row, COLS.index(col))

    def check_pair(self, pair: tuple[str, str]) -> None:
        if pair[0] not in COLORS or pair[1] not in COLS:
            raise ValueError(f"{pair} is not a (colour, column) of the toy world")

    @staticmethod
    def tokenizer_class() -> type:
        return LampTokenizer

    @classmethod
    def of_canvas(cls, size: int, detail: int) -> ToyWorld:
        return cls(ToyConfig.model_construct(size=size))

    @classmethod
    def corpus(cls, n_scenes: int, seed: int, *, knowledge: Any = (), moves: bool = False) -> list[str]:
        world, rng = cls(ToyConfig()), np.random.default_rng(seed)
        lamps = [world.sample(rng) for _ in range(n_scenes)]
        return [t for s in lamps for t in (caption(s), "draw " + caption(s))] + [
            f"{q} {a(s)}" for s in lamps for q, a, _ in QUESTIONS.values()
        ]

    @classmethod
    def varied_config(cls) -> ToyConfig:
        return ToyConfig()

    @staticmethod
    def scene_from_json(d: dict[str, Any], *, settings: dict[str, Any]) -> Lamp:
        return Lamp.from_dict(d)

    @staticmethod
    def parse_image(image: np.ndarray, *, settings: dict[str, Any], confidence: bool = False) -> Lamp:
        return parse_one(image)

    @staticmethod
    def pairs_of_dict(d: dict[str, Any]) -> set[tuple[str, str]]:
        return {(d["color"], COLS[d["col"]])}

    @staticmethod
    def rerender_error(image: np.ndarray) -> float:
        if image.shape[0] < 3:
            return float("inf")
        return float(np.abs(render(parse_one(image)).astype(np.int16) - image[: image.shape[0]]).mean())
'''

CONFIG = {
    "world": {"name": "toy", "size": 24},
    "data": {"mixture": {"caption": 1.0, "vqa": 1.0, "t2i": 1.0}},
    "tokenizers": {"image": "lamp", "text_vocab": 300},
    "model": {"dim": 32, "layers": 2, "heads": 2, "max_len": 128},
    "optim": {"steps": 30, "warmup": 5, "batch": 16},
    "checkpoint": {"every": 30, "keep": 1},
    "eval": {"every": 30, "examples": 8},
}
TASKS = {
    "toy_caption": {"generator": "caption", "scorer": "caption", "kind": "und"},
    "toy_vqa": {"generator": "vqa", "scorer": "exact", "kind": "und"},
    "toy_t2i": {"generator": "t2i", "scorer": "image", "kind": "gen"},
}


def _install(root: Path) -> None:
    """The toy world as a package of its own: a module, and the metadata that registers its entry point."""
    (root / "toyworld").mkdir(parents=True)
    (root / "toyworld" / "__init__.py").write_text(TOY)
    info = root / "toyworld-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyworld\nVersion: 0.1\n")
    # a second, broken entry point: the lab loads the other worlds and names the cause when it is asked for
    (info / "entry_points.txt").write_text("[unifylab.worlds]\ntoy = toyworld:ToyWorld\nlamp = toyworld:Missing\n")


def test_a_toy_world_registered_as_a_package_runs_through_the_lab(tmp_path: Path) -> None:
    _install(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])}

    def lab(*args: str, code: int = 0) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "unifylab", *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert proc.returncode == code, proc.stderr[-2000:]
        return proc.stderr if code else proc.stdout

    err = lab("world", "sample", "--world", "lamp", "--out", "x", code=2)
    assert len(err.splitlines()) == 1 and "lamp = toyworld:Missing" in err and "cannot load (AttributeError" in err

    lab("world", "sample", "--world", "toy", "--size", "24", "--n", "4", "--out", "samples")
    assert len((tmp_path / "samples" / "scenes.jsonl").read_text().splitlines()) == 4
    for name, spec in TASKS.items():
        (tmp_path / f"{name}.yaml").write_text(
            yaml.safe_dump({"name": name, "n": 12, "world": {"name": "toy"}, **spec})
        )
    tasks = ",".join(f"{name}.yaml" for name in TASKS)
    (tmp_path / "geneval.yaml").write_text(
        yaml.safe_dump({"name": "g", "generator": "geneval", "scorer": "image", "world": "toy"})
    )
    assert "the toy world has no GenEval-style tasks" in lab(
        "eval", "oracle", "--tasks", "geneval.yaml", "--out", "g", code=2
    )
    lab("eval", "oracle", "--tasks", tasks, "--out", "oracle")
    oracle = json.loads((tmp_path / "oracle" / "results.json").read_text())["tasks"]
    assert {t: oracle[t]["accuracy"]["value"] for t in TASKS} == dict.fromkeys(TASKS, 1.0)

    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(CONFIG))
    lab("train", "toy.yaml", "--out", "run")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 30
    lab("eval", "run", "--tasks", tasks, "--limit", "6", "--out", "ev")
    scored = json.loads((tmp_path / "ev" / "results.json").read_text())["tasks"]
    assert set(scored) == set(TASKS) and all(0.0 <= s["accuracy"]["value"] <= 1.0 for s in scored.values())
