"""The task registry: task YAMLs in `eval/tasks/` validated into TaskSpecs, every item generator and scorer by name
(the one place to register one), which scorers fit which generator, and `--tasks` resolved into specs.

A task YAML names its `generator`, `scorer`, item count `n`, `seed` and `world`; the generator turns (spec, index)
into an Item holding the protocol requests and the target; the scorer turns model outputs into (score, reasons).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypedDict

from unifylab.config import FileName, Seed, build, load_yaml, named_file, packaged_yaml
from unifylab.data.forms import TASKS as TRAINING_TASKS
from unifylab.errors import UserError
from unifylab.eval import generators as G
from unifylab.eval import scorers as Sc
from unifylab.eval.generators import Item
from unifylab.world import CLASSES, WorldConfig, default_config, world_of
from unifylab.world.base import WorldTasks


class TaskOptions(TypedDict, total=False):
    """A task's `options` (each generator reads those it needs); unknown keys and wrong types are errors."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    mode: Literal["direct", "stepwise"]  # stepwise: split into an understanding step and a generation step
    kinds: list[str]  # vqa: the question kinds asked (default: all of the world's)
    moves: list[str]  # moves_* and watch_later_*: the skills asked, in turn
    family: list[str]  # facts_*: the fact families asked, in turn


class TaskSpec(BaseModel):
    """One task YAML."""

    model_config = ConfigDict(extra="forbid")

    name: FileName = Field(description="names its files in an eval folder")
    description: str = ""
    generator: str
    scorer: str
    kind: Literal["und", "gen"] | None = Field(
        None,
        description="what the task scores: 'und' (answers about images) or 'gen' (images); a study pools "
        "each kind's tasks into its understanding / generation comparison (None: into neither)",
    )
    n: int = Field(200, ge=1, le=1_000_000)
    seed: Seed = 12345
    world: WorldConfig = Field(default_factory=default_config)
    options: TaskOptions = Field(default_factory=dict)
    outputs_of: FileName | None = Field(
        None,
        description="a task with the same items whose model outputs, when already "
        "in the eval folder, are re-scored instead of generated again",
    )
    probe: bool = Field(
        False,
        description="a transfer probe (its items split by where the study taught what they "
        "need): reported in the report's transfer section, never pooled into a "
        "headline comparison",
    )
    trained_by: Literal[TRAINING_TASKS] | None = Field(
        None, description="the training task whose examples teach this task; None when no training form does"
    )

    @model_validator(mode="after")
    def _check(self) -> TaskSpec:
        if self.generator not in GENERATORS:
            raise ValueError(f"generator {self.generator!r} unknown; expected one of {', '.join(GENERATORS)}")
        if self.scorer not in SCORERS:
            raise ValueError(f"scorer {self.scorer!r} unknown; expected one of {', '.join(SCORERS)}")
        for part in (self.generator, self.scorer):
            if OWNER.get(part, self.world.name) != self.world.name:
                raise ValueError(
                    f"{part!r} belongs to the {OWNER[part]} world, but the task's world is {self.world.name}; "
                    f"set world: {{name: {OWNER[part]}}} or use a generator and scorer of the {self.world.name} world"
                )
        if self.scorer not in FITS[self.generator]:
            raise ValueError(
                f"scorer {self.scorer!r} cannot score the items of generator {self.generator!r}; use "
                f"{' or '.join(repr(s) for s in FITS[self.generator])}"
            )
        if self.generator == "geneval" and not world_of(self.world).geneval_tags:
            raise ValueError(f"the {self.world.name} world has no GenEval-style tasks; use another generator or world")
        known = world_of(self.world).qa_kinds
        if bad := [k for k in self.options.get("kinds", []) if k not in known]:
            raise ValueError(f"options.kinds: unknown question kind(s) {bad}; expected some of {', '.join(known)}")
        return self


# the generators every world answers and the scorers that read them through any world's parser and checks
GENERIC = WorldTasks(
    generators={"caption": G.gen_caption, "vqa": G.gen_vqa, "t2i": G.gen_t2i, "geneval": G.gen_geneval},
    scorers={"exact": Sc.score_exact, "caption": Sc.score_caption, "mc": Sc.score_mc, "image": Sc.score_image},
    fits={"caption": ("caption",), "vqa": ("exact",), "t2i": ("image",), "geneval": ("image",)},
)


def _merged() -> tuple[WorldTasks, dict[str, str]]:
    """The generic tasks with every registered world's own (`World.tasks`), and the world that owns each of a
    world's own generators and scorers."""
    generators, scorers, fits = dict(GENERIC.generators), dict(GENERIC.scorers), dict(GENERIC.fits)
    owner: dict[str, str] = {}
    graded = set(GENERIC.graded)
    for name, cls in CLASSES.items():
        own = cls.tasks()
        if clash := (own.generators.keys() & generators.keys()) | (own.scorers.keys() & scorers.keys()):
            raise RuntimeError(f"world {name} registers generators or scorers whose names are taken: {sorted(clash)}")
        generators |= own.generators
        scorers |= own.scorers
        owner |= dict.fromkeys([*own.generators, *own.scorers], name)
        for gen, fit in own.fits.items():
            fits[gen] = fits.get(gen, ()) + fit
        graded |= own.graded
    return WorldTasks(generators, scorers, fits, frozenset(graded)), owner


# every item generator and scorer by name (a task's `generator` and `scorer`), the scorers that read what each
# generator's items hold, the partial-credit scorers (no chance level from answer spaces), and the world that
# owns a world's own generator or scorer
_ALL, OWNER = _merged()
GENERATORS, SCORERS, FITS, GRADED = _ALL.generators, _ALL.scorers, _ALL.fits, _ALL.graded


def task_files() -> dict[str, Path]:
    """Built-in task YAMLs by name."""
    return packaged_yaml("unifylab.eval", "tasks")


def tasks_of_kind(kind: str) -> list[str]:
    """Built-in tasks that score `kind` ('und' or 'gen'), by name."""
    return [name for name in sorted(task_files()) if load_task(name).kind == kind]


def resolve_tasks(tasks: str, *, world: tuple[str, int, int] | None = None) -> tuple[list[TaskSpec], list[str]]:
    """The tasks `tasks` names (comma-separated built-in names or YAML files), or for 'all' every built-in task
    (understanding, then generation, then the rest) built on `world` (its canvas) when given; returns them and the
    names 'all' left out for another world."""
    if tasks == "all":
        order = {"und": 0, "gen": 1}
        specs = sorted((load_task(t) for t in sorted(task_files())), key=lambda s: order.get(s.kind, 2))
        skipped = [s.name for s in specs if world is not None and s.world.canvas != world]
        return [s for s in specs if s.name not in skipped], skipped
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names:
        raise UserError(f"--tasks {tasks!r}: no task named; give task names or YAML files separated by commas, or all")
    return [load_task(t) for t in names], []


def _task_mapping(path: Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A task YAML's keys; with `include: other.yaml` (a task YAML, relative to this one) the other file's keys come
    first and this file's override them one by one (`_chain`: the files whose includes led here)."""
    raw = load_yaml(path, "task file")
    if not isinstance(raw, dict):
        if _chain:
            raise UserError(f"{_chain[-1]}: include {path.name!r}: {path} holds no task mapping; include a task YAML")
        return {}
    if "include" not in raw:
        return raw
    base = raw.pop("include")
    if not isinstance(base, str) or not base.strip():
        raise UserError(f"{path}: include must name a task YAML file (relative to this one), got {base!r}")
    target = path.parent / base
    chain = (*_chain, path.resolve())
    if target.resolve() in chain:
        raise UserError(
            f"{path}: include {base!r} leads back to {target} (a cycle of includes); include a task YAML that does "
            "not include this one"
        )
    if not target.is_file():
        raise UserError(f"{path}: include {base!r}: no such file {target} (an include is read relative to its file)")
    return {**_task_mapping(target, chain), **raw}


def load_task(name_or_path: str, _via: tuple[str, ...] = ()) -> TaskSpec:
    """A built-in task by name, or a task YAML file (`_via`: the names and files of the tasks whose `outputs_of`
    led here)."""
    path = named_file(name_or_path, task_files(), "task", "--tasks")
    spec = build(TaskSpec, _task_mapping(path), str(path))
    if spec.outputs_of is not None:
        via = (*_via, name_or_path, spec.name)
        if spec.outputs_of in via:
            raise UserError(
                f"{path}: outputs_of {spec.outputs_of!r} leads back to itself (a cycle of tasks re-scoring each "
                "other's outputs); name a task that generates its own outputs"
            )
        other = load_task(spec.outputs_of, via)
        same = ("generator", "seed", "world", "options")
        if any(getattr(other, k) != getattr(spec, k) for k in same):
            raise UserError(f"{path}: outputs_of {spec.outputs_of!r} must have the same {', '.join(same)}")
    return spec


def items(spec: TaskSpec, limit: int | None = None) -> list[Item]:
    """The first `limit` items of `spec` (all `n` without a limit), made by its generator."""
    n = spec.n if limit is None else min(spec.n, limit)
    return [GENERATORS[spec.generator](spec, i) for i in range(n)]
