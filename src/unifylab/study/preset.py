"""Study presets: YAML files naming the runs (variants x seeds x sweep values), the tasks, and the comparisons."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from unifylab.analysis import KINDS
from unifylab.config import FileName, Seed, load_named, packaged_yaml
from unifylab.errors import UserError
from unifylab.eval.task_registry import TaskSpec, tasks_of_kind
from unifylab.io import file_name
from unifylab.study.claims import Claim, ClaimWorld


class Variant(BaseModel):
    """One model to train: a name, its role in the comparison, and its config overrides (a TrainConfig tree)."""

    model_config = ConfigDict(extra="forbid")

    name: FileName = Field(description="names the variant's run and eval folders and its report rows")
    role: Literal["unified", "und", "gen", "control"] = Field(
        description="unified or a specialist (und, gen) in the study's comparisons; control: trained and scored, "
        "outside them (a claims test's control, e.g. a misaligned image space or a frozen backbone)"
    )
    set: dict[str, Any] = Field(default_factory=dict)
    tokenizer: Literal["grid", "vq", "patch+vq"] = "grid"
    init_from: FileName | None = Field(None, description="name of a variant whose trained run this one starts from")
    contrast: bool = Field(
        False,
        description="a specialist at another budget (data.budget): its synergy goes to "
        "the report's budget table, not the answer; scored on its own kind only",
    )

    def scored_on(self, tasks: list[TaskSpec]) -> list[TaskSpec]:
        """The tasks this variant is evaluated on (a budget contrast skips the other kind's, never trained)."""
        if not self.contrast:
            return list(tasks)
        return [t for t in tasks if t.kind == self.role]


class Sweep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
        description="a dotted TrainConfig key, e.g. data.n_scenes",
    )
    values: list[Any]
    labels: list[str] | None = Field(
        None,
        description="names for the values (needed when they are not plain "
        "numbers or words), used in run folders and the report",
    )

    @model_validator(mode="after")
    def _check(self) -> Sweep:
        names = self.names()
        if len(set(names)) != len(names):
            raise ValueError(f"sweep labels must be distinct, got {names}")
        for n in names:
            try:
                file_name(n, "sweep value")
            except UserError as e:
                raise ValueError(f"{e}; it names run folders, so give `labels`") from None
        return self

    def names(self) -> list[str]:
        """One name per value: its label, or the value itself."""
        if self.labels is not None and len(self.labels) != len(self.values):
            raise ValueError(f"sweep has {len(self.values)} values but {len(self.labels)} labels")
        return list(self.labels) if self.labels is not None else [str(v) for v in self.values]


class Preset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: FileName = Field(description="names the study's folder (study-<name>, or OUT/<name> in a side-by-side one)")
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict, description="TrainConfig tree shared by every run")
    variants: list[Variant] = Field(default_factory=list)
    studies: list[str] = Field(
        default_factory=list,
        description="a side-by-side preset: these presets (names or YAML files, e.g. one per world) each run into "
        "OUT/<its name>, and the report sets their answers side by side; it has no base or variants of its own",
    )
    seeds: list[Seed] = Field([0], min_length=1, description="one run per variant per seed (distinct)")
    contrast_seeds: Literal["first", "all"] = Field(
        "first",
        description="budget contrasts (variants with contrast: true) train at the first seed only, or at every seed",
    )
    sweep: Sweep | None = None
    tasks: list[str] = Field(
        default_factory=lambda: tasks_of_kind("und") + tasks_of_kind("gen"),
        description="task names or YAML paths (default: every built-in understanding, then generation task)",
    )
    limit: int | None = Field(100, ge=1, description="items per task (None: the task's full size)")
    vq: dict[str, Any] = Field(default_factory=dict, description="VQTrainConfig overrides when a variant needs vq")
    analyses: list[Literal[KINDS]] = Field(default_factory=lambda: list(KINDS), description="looking inside every run")
    analysis_n: int = Field(100, ge=12, description="scenes per analysis (alignment pairs, entropy sequences)")
    claims: list[Claim] = Field(
        default_factory=list, description="a side-by-side preset's declared claim tests (the claims study)"
    )
    claim_worlds: dict[str, ClaimWorld] = Field(
        default_factory=dict, description="per world: the studies its claims read (main, scaling) and its aliases"
    )
    min_seeds: int = Field(5, ge=1, description="a claim's verdict is called only at this many seeds or more")
    learned_floor: float = Field(
        0.5,
        ge=0,
        le=1,
        description="a run whose own accuracy on new scenes (per kind it was trained for, the lower) is below this is "
        "flagged as not learned",
    )
    image_temperature: float = Field(
        0.0,
        ge=0,
        description="image sampling temperature when scoring: 0 draws each model's most likely image (greedy, so an "
        "exact score measures the model, not a draw); 1 samples with per-item seeds",
    )

    @model_validator(mode="after")
    def _check(self) -> Preset:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        if self.studies:
            if self.variants or self.base or self.sweep:
                raise ValueError("a preset with studies runs those presets; it takes no base, variants or sweep")
            if len(set(self.studies)) != len(self.studies):
                raise ValueError(f"studies must be distinct, got {self.studies}")
            ids = [c.id for c in self.claims]
            if len(set(ids)) != len(ids):
                raise ValueError(f"claim ids must be unique, got {ids}")
            if self.claims and not self.claim_worlds:
                raise ValueError("claims need claim_worlds: the studies each world's tests read")
            roles = {r for cw in self.claim_worlds.values() for r in cw.studies}
            for c in self.claims:  # a world without a role's study reads its claims as not testable there
                for part in [*c.parts, *c.breakdowns]:
                    if part.study not in roles:
                        raise ValueError(
                            f"claim {c.id}: study {part.study!r} is not a study of any world {sorted(roles)}"
                        )
            return self
        if self.claims or self.claim_worlds:
            raise ValueError("claims belong to a side-by-side preset (one with studies)")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        for v in self.variants:
            if v.init_from is not None and v.init_from not in names[: names.index(v.name)]:
                raise ValueError(f"variant {v.name}: init_from {v.init_from!r} must name a variant listed before it")
        if not any(v.role == "unified" for v in self.variants):
            raise ValueError("a study needs at least one unified variant")
        for v in self.variants:
            if v.contrast and (
                v.role == "unified" or not any(w.role == v.role and not w.contrast for w in self.variants)
            ):
                raise ValueError(
                    f"variant {v.name}: contrast is for a specialist beside a non-contrast specialist of the same role"
                )
        return self


def preset_files() -> dict[str, Path]:
    return packaged_yaml("unifylab.study", "presets")


def load_preset(name_or_path: str) -> Preset:
    """A built-in preset by name, or a preset YAML file."""
    return load_named(Preset, name_or_path, preset_files(), "preset", "--preset")


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of config trees (`over` wins)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def dotted(key: str, value: Any) -> dict[str, Any]:
    """'a.b.c', v -> {'a': {'b': {'c': v}}}."""
    tree: Any = value
    for k in reversed(key.split(".")):
        tree = {k: tree}
    return tree
