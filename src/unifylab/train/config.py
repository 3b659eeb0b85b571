"""Training configuration: one pydantic tree, loaded from YAML with `--set a.b=c` overrides, saved resolved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from unifylab.config import Seed, build, load_yaml, parse_yaml
from unifylab.data.forms import FACT_TASKS, MOVE_TASKS, TASKS
from unifylab.errors import UserError
from unifylab.models.config import ModelArgs
from unifylab.tokenize.image import exact_kinds
from unifylab.world import World, WorldConfig, default_config, world_of

MAX_STEPS = 10_000_000  # optimiser steps: weeks of a fast GPU on the smallest model; more is a typo
MAX_BATCH = 65_536  # sequences per step


class Strict(BaseModel):
    """Unknown keys, NaN and infinities are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


SIDES = ("both", "und", "gen", "none")  # where a fact or skill is taught: text, drawings, both, nowhere


class DataConfig(Strict):
    """Where examples come from and how tasks are mixed."""

    source: Literal["world", "folder"] = "world"
    folder: Path | None = Field(None, description="a `unifylab world sample` output folder (source: folder)")
    mixture: dict[str, float] = Field(default_factory=lambda: {"caption": 1.0, "vqa": 2.0, "t2i": 3.0})
    mode: Literal["unified", "und-only", "gen-only"] = "unified"
    budget: Literal["equal-task-data", "equal-steps", "equal-compute"] = Field(
        "equal-task-data",
        description="a specialist's budget: the unified run's examples of its tasks in fewer "
        "steps (equal-task-data) or in the same steps and schedule (equal-steps), "
        "or as many tokens as the unified run (equal-compute)",
    )
    holdout_pairs: list[tuple[str, str]] | None = Field(
        None,
        description="compositions ((shape, colour) pairs; (weather, face colour) on the watch world) that never "
        "appear in training scenes; the held-out split uses them. None: the world's default pairs",
    )
    und_only_pairs: list[tuple[str, str]] = Field(
        default_factory=list,
        description="(shape, colour) pairs whose scenes teach understanding tasks only; "
        "generating them measures understanding-to-generation transfer",
    )
    gen_only_pairs: list[tuple[str, str]] = Field(
        default_factory=list,
        description="(shape, colour) pairs whose scenes teach generation tasks only; "
        "understanding them measures generation-to-understanding transfer",
    )
    facts: dict[str, Literal[SIDES]] = Field(
        default_factory=dict,
        description="where each fact of the world's knowledge (what the sun looks like, what colour red light "
        "mixed with green light is, what two plus one is, ...) is taught: 'und' as text (knowledge questions, "
        "rewrites), 'gen' as drawings from prompts that name it, 'both', or 'none'; unlisted facts are never taught",
    )
    moves: dict[str, Literal[SIDES]] = Field(
        default_factory=dict,
        description="where each skill word is taught (shapes world: a one-cell move: right, left, down, up; a turn "
        "of the picture: clockwise, anticlockwise, half, mirror; a recolouring: fade, ripen, freeze, rust; watch "
        "world: turning the hands on, '10 minutes', ...): 'und' as questions about an image (move_ask), 'gen' as "
        "edits (move_draw), 'both', or 'none'; unlisted skills are never taught",
    )
    cfg_dropout: float = Field(0.1, ge=0, le=1, description="share of t2i prompts replaced by the empty prompt")
    n_scenes: int | None = Field(
        None, ge=1, description="training-set size: distinct training scenes (None: unlimited)"
    )
    loss_on: dict[str, list[str]] = Field(
        default_factory=dict,
        description="segments trained per sequence form, e.g. {gen: [prompt, image]}; unset forms keep the default "
        "(und: answer, gen: image)",
    )
    pack: bool = Field(
        True,
        description="pack several training sequences per row (block-diagonal attention, "
        "restarted positions): the same loss with far less padding",
    )
    seed: Seed = 0

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        bad = sorted(set(self.mixture) - set(TASKS))
        if bad:
            raise ValueError(f"mixture: unknown task(s) {bad}; valid tasks: {list(TASKS)}")
        if any(w < 0 for w in self.mixture.values()) or not any(self.mixture.values()):
            raise ValueError("mixture weights must be >= 0 with at least one > 0")
        for field, what, table in (("facts", "fact", FACT_TASKS), ("moves", "skill", MOVE_TASKS)):
            for task, sides in table.items():
                if self.mixture.get(task, 0) > 0 and not any(s in sides for s in getattr(self, field).values()):
                    raise ValueError(
                        f"mixture gives {task!r} weight, but data.{field} teaches no {what} as "
                        f"{' or '.join(repr(s) for s in sides)}; set data.{field} or drop {task} from "
                        "the mixture"
                    )
        if self.source == "folder" and self.folder is None:
            raise ValueError("source 'folder' needs data.folder")
        return self

    def check_pairs(self, world: World) -> None:
        """Raise ValueError unless every listed pair is a composition of `world`, in at most one list, and no fact
        taught somewhere is drawn as a listed pair."""
        owner: dict[tuple[str, str], str] = {}
        for field in ("holdout_pairs", "und_only_pairs", "gen_only_pairs"):
            for pair in getattr(self, field) or []:
                try:
                    world.check_pair(pair)
                except ValueError as e:
                    raise ValueError(f"data.{field}: {e}") from None
                if owner.get(pair, field) != field:
                    raise ValueError(
                        f"({pair[0]}, {pair[1]}) is in both {owner[pair]} and {field}; a pair belongs to at most "
                        "one of them"
                    )
                owner[pair] = field
        facts = world.facts()
        for name, side in self.facts.items():
            pair = facts[name].pair
            if side != "none" and pair in owner:
                raise ValueError(
                    f"facts: {name!r} is drawn as {pair}, which is in {owner[pair]}; teach it as 'none' or free "
                    "the pair"
                )


class TokenizerConfig(Strict):
    text: Path | None = Field(None, description="tokenizer.json folder; None trains one on the world's language")
    text_vocab: int = Field(
        512, ge=300, description="vocabulary of the text BPE trained when `text` is None (more words need more)"
    )
    image: str = Field(
        "grid",
        description="the world's exact oracle ('grid' on shapes, 'attributes' on watch) or a trained image tokenizer "
        "folder (vq)",
    )
    und_image: str | None = Field(None, description="None (same as image), 'patch', or a tokenizer folder")
    permute_output: int | None = Field(
        None,
        description="draw images in the exact tokenizer's codes under a fixed random permutation (this seed) while "
        "reading them in the original codes: the same information in misaligned input and output spaces",
    )


class OptimConfig(Strict):
    lr: float = Field(3e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = Field(
        (0.9, 0.95), description="Adam's (beta1, beta2), each in [0, 1)"
    )
    weight_decay: float = Field(0.05, ge=0)
    warmup: int = Field(50, ge=0)
    steps: int = Field(
        600,
        ge=0,
        le=MAX_STEPS,
        description="optimiser steps of the unified run; specialists derive theirs (0: the initial model, saved "
        "untrained as a reference for the analyses)",
    )
    batch: int = Field(
        32, ge=1, le=MAX_BATCH, description="global sequences per optimiser step (all ranks, all micro-batches)"
    )
    accum: int = Field(1, ge=1, description="micro-batches per optimiser step")
    clip: float = Field(1.0, gt=0)
    name: Literal["adamw", "muon"] = Field(
        "adamw",
        description="adamw: AdamW for every parameter; muon: Muon (orthogonalised momentum, at AdamW's update RMS so "
        "the same lr applies) for the 2-D weight matrices of the transformer blocks, AdamW for the rest (embeddings, "
        "heads, norms, biases, patch projection)",
    )
    schedule: Literal["cosine", "wsd"] = Field(
        "cosine",
        description="after the linear warmup: cosine to min_lr_ratio (cosine), or constant, then linear to "
        "min_lr_ratio over the last decay_fraction of the steps (wsd: warmup-stable-decay)",
    )
    decay_fraction: float | None = Field(
        None, gt=0, le=1, description="wsd: share of the steps spent decaying (None: 0.2); cosine takes none"
    )

    @model_validator(mode="after")
    def _check(self) -> OptimConfig:
        if self.decay_fraction is not None and self.schedule != "wsd":
            raise ValueError(
                f"optim.decay_fraction {self.decay_fraction:g} applies to schedule wsd only, but schedule is "
                f"{self.schedule!r}; drop decay_fraction or set optim.schedule=wsd"
            )
        return self


class CheckpointConfig(Strict):
    every: int = Field(100, ge=1)
    keep: int = Field(2, ge=1)


class EvalConfig(Strict):
    every: int = Field(100, ge=1)
    examples: int = Field(64, ge=1, description="examples per task per split for the held-out losses")


class TrainConfig(Strict):
    """Everything a run needs; RUN/config.yaml holds the resolved form."""

    world: WorldConfig = Field(default_factory=default_config)
    data: DataConfig = DataConfig()
    tokenizers: TokenizerConfig = TokenizerConfig()
    model: ModelArgs = ModelArgs()
    optim: OptimConfig = OptimConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    eval: EvalConfig = EvalConfig()
    init_from: Path | None = Field(None, description="start from this run's weights and tokenizers (fine-tuning)")
    init_parts: list[Literal["embeddings", "backbone", "heads"]] = Field(
        default_factory=lambda: ["embeddings", "backbone", "heads"],
        description="the parameter groups taken from init_from; the others keep this run's own initialisation "
        "(e.g. [backbone]: a pretrained backbone under fresh embeddings and heads)",
    )
    freeze: list[Literal["embeddings", "backbone", "heads"]] = Field(
        default_factory=list, description="parameter groups kept fixed: embeddings, backbone (all blocks), heads"
    )
    distributed: Literal["none", "ddp", "fsdp2"] = "none"
    compile: bool = Field(
        False,
        description="torch.compile each transformer block on its own (dynamic shapes; on the CPU inductor needs a "
        "C++ compiler)",
    )
    device: str = "auto"
    seed: Seed = 0

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if len(self.freeze) == 3:
            raise ValueError("freeze: freezing embeddings, backbone and heads leaves nothing to train")
        if not self.init_parts or len(set(self.init_parts)) != len(self.init_parts):
            raise ValueError(
                f"init_parts: name each of embeddings, backbone, heads at most once, got {self.init_parts}"
            )
        if self.init_from is None and len(self.init_parts) != 3:
            raise ValueError("init_parts: selects what init_from provides; set init_from or drop init_parts")
        if self.optim.batch % self.optim.accum:
            raise ValueError(f"optim.batch {self.optim.batch} must be divisible by optim.accum {self.optim.accum}")
        if self.model.flow_guidance not in (None, 1.0) and self.data.cfg_dropout == 0:
            raise ValueError(
                f"model.flow_guidance {self.model.flow_guidance:g} needs a model trained with prompt dropout; set "
                "data.cfg_dropout > 0 (e.g. 0.1) or drop flow_guidance"
            )
        world = world_of(self.world)
        self._check_world_fits(world)
        if self.data.holdout_pairs is None:
            self.data.holdout_pairs = list(world.default_holdout)
        self.data.check_pairs(world)
        skills = world.skills()
        if bad := sorted(set(self.data.moves) - set(skills)):
            raise ValueError(
                f"data.moves: unknown skill(s) {bad} on the {self.world.describe()}; expected some of "
                f"{', '.join(skills)}"
            )
        return self

    def _check_world_fits(self, world: World) -> None:
        """Raise ValueError when the data asks the world for what it lacks: facts, or training from a folder."""
        if self.data.source == "folder" and not world.reads_folders:
            raise ValueError(
                f"data.source folder: the {world.name} world does not train from a `world sample` folder; use "
                "data.source generator"
            )
        facts = world.facts()
        taught = [t for t in FACT_TASKS if self.data.mixture.get(t, 0) > 0]
        if not facts and (taught or self.data.facts):
            raise ValueError(
                f"{taught[0] if taught else 'data.facts'}: the {world.name} world has no facts to teach; drop it "
                f"(it trains {', '.join(t for t in TASKS if t not in FACT_TASKS)} as its skills allow)"
            )
        if bad := [name for name in self.data.facts if name not in facts]:
            raise ValueError(f"data.facts: unknown fact {bad[0]!r}; known facts: {', '.join(facts)}")


def _set(tree: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        if not isinstance(node.setdefault(k, {}), dict):
            raise UserError(f"{source}: --set {dotted}: {k} is not a section")
        node = node[k]
    node[keys[-1]] = value


def load_config(path: Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Read YAML (or start from defaults), apply `key=value` overrides (values parsed as YAML), validate."""
    tree: dict[str, Any] = {}
    source = str(path) if path else "defaults"
    if path is not None:
        path = Path(path)
        loaded = load_yaml(path, "config file")
        if loaded is not None and not isinstance(loaded, dict):
            raise UserError(f"{path}: expected a mapping of config sections at the top level")
        tree = loaded or {}
    return load_tree(tree, overrides, source)


def load_tree(tree: dict[str, Any], overrides: list[str] = (), source: str = "config") -> TrainConfig:
    """Validate a config tree after `key=value` overrides (values parsed as YAML)."""
    tree = json.loads(json.dumps(tree, default=str))
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected key=value, e.g. --set optim.lr=1e-3")
        key, raw = item.split("=", 1)
        _set(tree, key.strip(), parse_yaml(raw, f"--set {item}", plain_ok=True), source)
    _check_keys(tree, TrainConfig, source, "")
    return build(TrainConfig, tree, source)


def _check_keys(tree: Any, model: type[BaseModel], source: str, prefix: str) -> None:
    """Unknown keys name the key and list the valid ones (clearer than pydantic's generic message)."""
    if not isinstance(tree, dict):
        return
    fields = model.model_fields
    for k, v in tree.items():
        if k not in fields:
            raise UserError(f"{source}: unknown key '{prefix}{k}'; valid keys here: {', '.join(fields)}")
        ann = fields[k].annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            _check_keys(v, ann, source, f"{prefix}{k}.")


def dump_config(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def resolve_paths(cfg: TrainConfig, root: Path | None) -> TrainConfig:
    """`cfg` with its relative folder paths (init_from, text and image tokenizer folders) read against `root`: a
    study's run configs name them relative to the study folder, so they hold on every machine that mounts it
    (None: as they are, i.e. against the working folder)."""
    if root is None:
        return cfg

    kinds = exact_kinds() | {"patch"}  # tokenizer values that name a kind, not a folder

    def at(p: Path | str | None) -> Path | str | None:
        if p is None or str(p) in kinds or Path(p).is_absolute():
            return p
        return str(root / p) if isinstance(p, str) else root / p

    tok = cfg.tokenizers.model_copy(
        update={
            "text": at(cfg.tokenizers.text),
            "image": at(cfg.tokenizers.image),
            "und_image": at(cfg.tokenizers.und_image),
        }
    )
    return cfg.model_copy(update={"init_from": at(cfg.init_from), "tokenizers": tok})
