"""The interface every world implements, and the types its parts speak (a scene error, image nuisances, a question
with its answer, a check's verdict). A world is a package under `world/` whose `World` subclass names everything
the lab needs of it; `world/__init__.py` registers it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

from unifylab.errors import UserError

MARGIN = 1  # pixels around a part that jitter may move it into; the parsers search this far


class SceneError(UserError):
    """A scene that breaks the world's rules; the message names the field and the valid values."""


@dataclass(frozen=True)
class Nuisance:
    """Seeded image nuisances: Gaussian pixel noise (std in 0..255 units), per-object jitter, background tint."""

    noise: float = 0.0
    jitter: int = 0
    tint: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.noise < 0:
            raise ValueError(f"noise std must be >= 0, got {self.noise}")
        if not 0 <= self.jitter <= MARGIN:
            raise ValueError(f"jitter must be within 0..{MARGIN} px, got {self.jitter}")
        if not 0 <= self.tint <= 64:
            raise ValueError(f"tint must be within 0..64, got {self.tint}")


@dataclass(frozen=True)
class QA:
    """A question about a scene with its exact answer; `kind` is one of the world's question kinds."""

    question: str
    answer: str
    kind: str


@dataclass
class Verdict:
    """The result of a check: `ok`, and one reason per failed requirement (empty when ok)."""

    ok: bool
    reasons: list[str] = field(default_factory=list)


def scene_of_line(d: dict[str, Any], where: str, parse: Callable[[Any], Any]) -> Any:
    """A GenEval line's ground-truth `scene` read by `parse` (None when absent); a bad one names the line."""
    if d.get("scene") is None:
        return None
    try:
        return parse(d["scene"])
    except SceneError as e:
        raise UserError(f"{where}.scene: {e}") from None


@dataclass(frozen=True)
class WorldTasks:
    """A world's own evaluation tasks: item generators and scorers by name (beside the generic ones), the scorers
    that fit each generator (generic generators included: its grammar may score them too), and which of its scorers
    give partial credit."""

    generators: dict[str, Callable[..., Any]] = field(default_factory=dict)
    scorers: dict[str, Callable[..., Any]] = field(default_factory=dict)
    fits: dict[str, tuple[str, ...]] = field(default_factory=dict)
    graded: frozenset[str] = frozenset()


class World(ABC):
    """What the lab needs of a world, for one config of it."""

    name: ClassVar[str]
    config_class: ClassVar[type[BaseModel]]  # the world's config (its `name` field is a Literal of `name`)
    scene_class: ClassVar[type]  # the exact ground truth of one image
    default_holdout: ClassVar[tuple[tuple[str, str], ...]]  # data.holdout_pairs when a config names none
    qa_kinds: ClassVar[tuple[str, ...]]  # the kinds of question `sample_qa` asks
    attribute_words: ClassVar[tuple[str, ...]] = ()  # the words its questions name attributes with ('red', 'rings')
    geneval_tags: ClassVar[tuple[str, ...]] = ()  # the world's GenEval-style tasks (none: it has no GenEval)
    geneval_classes: ClassVar[tuple[str, ...]] = ()  # the classes its GenEval lines name
    reads_folders: ClassVar[bool]  # whether `data.source: folder` (a `world sample` folder) can train on it

    def __init__(self, config: Any) -> None:
        self.config = config

    @property
    def size(self) -> int:
        return self.config.size

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Any:
        """One random scene."""

    @staticmethod
    @abstractmethod
    def render(scene: Any, nuisance: Nuisance | None = None) -> np.ndarray:
        """The scene's RGB uint8 image (a scene knows its canvas, so no config is needed)."""

    @abstractmethod
    def parse(self, images: np.ndarray) -> list[Any]:
        """The exact parser over a batch [N, S, S, 3]."""

    @abstractmethod
    def scene_from_dict(self, d: dict[str, Any]) -> Any:
        """A scene from its JSON form (SceneError when invalid)."""

    @abstractmethod
    def caption(self, scene: Any, rng: np.random.Generator) -> str:
        """A complete caption."""

    @abstractmethod
    def sample_qa(self, scene: Any, rng: np.random.Generator, kinds: tuple[str, ...] | None = None) -> QA:
        """A question about the scene with its exact answer."""

    @abstractmethod
    def answer_space(self, kind: str, scene: Any) -> list[str]:
        """Every answer a question of `kind` about such a scene can have."""

    @abstractmethod
    def prompt(self, scene: Any, rng: np.random.Generator) -> str:
        """A fully specified text-to-image prompt of the scene."""

    @abstractmethod
    def check(self, parsed: Any, scene: Any) -> Verdict:
        """Whether a parsed drawing is the prompted scene, with reasons."""

    def geneval_items(
        self, n_per_task: int, seed: int, tasks: tuple[str, ...] | None = None
    ) -> list[tuple[str, str, Any, Any, BaseModel | None]]:
        """`n_per_task` prompts of each GenEval-style task (all by default): (tag, prompt, spec, a ground-truth scene,
        the config a metadata line must name, or None when its scene fixes the canvas). A world without GenEval
        (no `geneval_tags`) keeps this default, which refuses."""
        raise UserError(f"the {self.name} world has no GenEval-style tasks; evaluate GenEval on a world that has them")

    @staticmethod
    def geneval_line(d: dict[str, Any], where: str) -> tuple[Any, Any, BaseModel | None]:
        """A validated GenEval-schema line of this world: its spec, ground-truth scene (or None) and line config."""
        raise UserError(f"{where}: this world has no GenEval-style lines")

    @staticmethod
    def geneval_requirements(spec: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """A spec as a line's include and exclude lists."""
        raise TypeError("a world without GenEval-style tasks has no specs")

    @staticmethod
    def check_spec(parsed: Any, spec: Any) -> Verdict:
        """Whether a parsed drawing meets a GenEval-schema spec of this world, with reasons."""
        raise TypeError("a world without GenEval-style tasks has no specs")

    @staticmethod
    @abstractmethod
    def check_caption(text: str, truth: dict[str, Any]) -> Verdict:
        """Whether a caption states exactly the scene whose JSON form is `truth`, with reasons."""

    @abstractmethod
    def check_target(self, parsed: Any, target: dict[str, Any]) -> Verdict:
        """Whether a parsed drawing meets an image task's target (the JSON of a spec, or of a whole scene)."""

    @abstractmethod
    def pairs(self, scene: Any) -> set[tuple[str, str]]:
        """The compositions (pairs of attribute values) a scene holds: what a study can hold out."""

    @abstractmethod
    def with_pair(self, scene: Any, pairs: list[tuple[str, str]], rng: np.random.Generator) -> Any | None:
        """The scene changed to hold one of `pairs` drawn by `rng` (the held-out split's scenes), or None when it
        cannot hold one."""

    def facts(self) -> dict[str, Any]:
        """The facts a study can teach on one side (the keys of `data.facts`; each with its `family` and the `pair`
        it is drawn as, or None), empty for a world without knowledge."""
        return {}

    def fact_drawings(self, fact: Any, rng: np.random.Generator) -> list[Any]:
        """Training drawings of a fact (one of `facts()`) in one look drawn by `rng` (the fact's own, when it has
        one), at every place not reserved for evaluating it."""
        raise ValueError(f"the {self.name} world has no facts")

    def skills(self) -> tuple[str, ...]:
        """The skill words a study can teach on one side (the keys of `data.moves`)."""
        return ()

    def skill_edits(self, skills: list[str], *, design: Collection[str], rng: np.random.Generator) -> list[Any]:
        """Candidate edits of one random scene, each with `before`, `after`, `question` and `answer` (the skill
        asked about), `instruction` (the edit naming the skill) and `explicit` (the edit naming only the result):
        by one of `skills` drawn by `rng`, or with no skills the explicit edits (as `design`, the skills a study
        teaches, allows)."""
        return []

    def skill_shortfall(self) -> str:
        """Why 1000 scenes may give no edit that fits, and the fix (the end of that error line)."""
        return f"the {self.name} world has no edits; leave the edit tasks out of data.mixture"

    @abstractmethod
    def check_pair(self, pair: tuple[str, str]) -> None:
        """Raise ValueError when `pair` is no composition of this world."""

    @staticmethod
    def verify(scene: Any, question: str) -> str:
        """The exact yes/no answer of a verification question ('is there a red ring at row 1, column 2?') on a
        (parsed) scene; ValueError for a question the world does not read (by default it reads none)."""
        raise ValueError(f"not a verification question this world reads: {question!r}")

    @staticmethod
    def tasks() -> WorldTasks:
        """The world's own evaluation tasks (none by default); imported when the task registry asks, since they
        build on eval's items."""
        return WorldTasks()

    @staticmethod
    def exact_target(scene: Any) -> dict[str, Any]:
        """What `check_target` reads to pass exactly this scene drawn (by default the scene's JSON form)."""
        return scene.to_dict()

    def exact_tokenizer(self) -> Any:
        """The oracle image tokenizer: encoding a clean render and decoding it gives back the same bytes."""
        _, size, detail = self.config.canvas
        return self.tokenizer_class()(size, detail)

    @staticmethod
    @abstractmethod
    def tokenizer_class() -> type:
        """The class of the exact tokenizer (so a saved one loads by its `kind`)."""

    @classmethod
    @abstractmethod
    def of_canvas(cls, size: int, detail: int) -> World:
        """The world of a canvas `(name, size, detail)` (detail: the world's second canvas field), unvalidated."""

    @classmethod
    @abstractmethod
    def corpus(cls, n_scenes: int, seed: int, *, knowledge: Collection[str] = (), moves: bool = False) -> list[str]:
        """The world's language over scenes of every canvas it allows: what its text tokenizer is trained on, with
        every fact of the `knowledge` families and, with `moves`, every skill's sentences, so each name and skill
        word is whole words whatever a study teaches."""

    @classmethod
    @abstractmethod
    def varied_config(cls) -> BaseModel:
        """A config whose scenes span the world's variety (for training an image tokenizer on its renders)."""

    @classmethod
    def config_fields(cls, options: dict[str, Any]) -> dict[str, Any]:
        """The world's config fields among `options` (a command's world options, every world's mixed)."""
        return {"name": cls.name, **{k: v for k, v in options.items() if k in cls.config_class.model_fields}}

    @staticmethod
    @abstractmethod
    def scene_from_json(d: dict[str, Any], *, settings: dict[str, Any]) -> Any:
        """A scene from its JSON form, checked against whatever config `settings` give (SceneError when invalid)."""

    @staticmethod
    @abstractmethod
    def parse_image(image: np.ndarray, *, settings: dict[str, Any], confidence: bool = False) -> Any:
        """The scene one image [S, S, 3] shows, read with whatever config `settings` give (others inferred);
        the parser's confidences kept only when asked."""

    @staticmethod
    @abstractmethod
    def pairs_of_dict(d: dict[str, Any]) -> set[tuple[str, str]]:
        """The compositions a scene's JSON form holds (see `pairs`), without validating it."""

    @staticmethod
    @abstractmethod
    def rerender_error(image: np.ndarray) -> float:
        """Mean absolute pixel error between `image` and this world's render of what its parser reads there (the
        config inferred from the image): near 0 for this world's images, large for another world's."""
