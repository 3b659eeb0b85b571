"""The field's claims as tests declared before any run: each claim names its statistic (one or more parts, all of
which must go its way), the direction it predicts and the models it compares; `judge` turns measured parts into
one verdict per claim and world, Holm-adjusted over the primary tests of every claim and world."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from unifylab.eval.stats import holm

ALPHA = 0.05
Layer = int | Literal["first", "mid", "last"]


class Term(BaseModel):
    """One analysis value per item: a series (an alignment or entropy input, or a response kind) at one layer."""

    model_config = ConfigDict(extra="forbid")

    input: str | None = Field(None, description="alignment input (und, gen, separate) or entropy input (text, image)")
    response: Literal["text", "image"] | None = Field(None, description="response entropy of this kind")
    layer: Layer = Field(
        description="state index (0: embeddings, L: after the last of L blocks), or first / mid (L // 2, the depth "
        "at which UniFork forks) / last"
    )
    sign: Literal[1, -1] = 1

    @model_validator(mode="after")
    def _check(self) -> Term:
        if (self.input is None) == (self.response is None):
            raise ValueError("a term names exactly one of input or response")
        return self


class Part(BaseModel):
    """One statistic with the direction the claim predicts. Names of models and tasks may be a world's aliases."""

    model_config = ConfigDict(extra="forbid")

    stat: Literal["difference", "stepwise", "slope", "deficit", "layers", "conflict"] = Field(
        description="difference: b minus a, paired by item; stepwise: a's stepwise task minus its direct twin, "
        "paired by fact or direction; slope: synergy of a over the specialists (the mean of the two kinds) against "
        "log2 of the swept value; deficit: how far a trails its specialist on its worse kind (0 if on neither) minus "
        "how far b does; layers: a signed sum of analysis values per item; conflict: a's understanding-generation "
        "gradient cosine in its shared deep blocks over its checkpoints"
    )
    study: str = Field("main", description="which of the world's studies holds the runs")
    group: str | None = Field(
        None, description="difference in a sweep study: the sweep value's label, or last (the largest value swept)"
    )
    a: str
    b: str | None = None
    kind: Literal["und", "gen", "both"] = "both"
    split: Literal["all", "new_scenes", "heldout_pairs", "new_or_heldout", "transfer"] | None = Field(
        None,
        description="items by where they stand against training (default: new_or_heldout for scene statistics, so "
        "no item holds a pair one model saw and the other did not; all for stepwise probes)",
    )
    tasks: list[str] = Field(default_factory=list, description="stepwise: [direct task, stepwise task]")
    analysis: Literal["alignment", "entropy"] | None = None
    terms: list[Term] = Field(default_factory=list)
    specialists: dict[Literal["und", "gen"], str] = Field(
        default_factory=lambda: {"und": "und-only", "gen": "gen-only"}
    )
    predict: Literal["greater", "less", "differ", "at_least"]
    margin: float = Field(
        0.0,
        ge=0,
        description="at_least: how far below 0 the statistic may fall; differ: the equivalence margin (a value "
        "shown to lie within +-margin contradicts the claim)",
    )
    label: str = Field("", description="what the part measures, in words")

    @model_validator(mode="after")
    def _check(self) -> Part:
        need = {
            "difference": ("b (the model compared with a)", self.b is not None),
            "stepwise": ("tasks: [direct task, stepwise task]", len(self.tasks) == 2),
            "slope": ("", True),
            "deficit": ("b (the model compared with a)", self.b is not None),
            "layers": ("analysis (alignment or entropy) and terms", self.analysis is not None and bool(self.terms)),
            "conflict": ("", True),
        }
        what, ok = need[self.stat]
        if not ok:
            raise ValueError(f"stat {self.stat} needs {what}")
        if self.predict == "differ" and self.margin <= 0:
            raise ValueError("predict differ needs margin > 0: the equivalence margin that would contradict it")
        return self

    @property
    def null(self) -> float:
        """The value the test is against: 0, or -margin for a non-inferiority claim."""
        return -self.margin if self.predict == "at_least" else 0.0

    @property
    def items(self) -> str:
        """The split of items the statistic reads."""
        return self.split or ("all" if self.stat == "stepwise" else "new_or_heldout")


class Claim(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    claim: str
    source: str
    measured: str = Field(description="what the lab measures, in words")
    parts: list[Part] = Field(default_factory=list, description="the primary test: every part must go its way")
    breakdowns: list[Part] = Field(default_factory=list, description="reported, adjusted as a family of their own")
    not_testable: str | None = Field(None, description="why the lab cannot test it (then no parts)")

    @model_validator(mode="after")
    def _check(self) -> Claim:
        if bool(self.parts) == bool(self.not_testable):
            raise ValueError(f"claim {self.id}: give parts (its test) or not_testable (why not), exactly one")
        return self


class ClaimWorld(BaseModel):
    """A world's studies (by the role a part names, e.g. main, scaling) and its aliases for models and tasks."""

    model_config = ConfigDict(extra="forbid")

    studies: dict[str, str]
    aliases: dict[str, str] = Field(default_factory=dict)


def direction_of(part: Part, measured: dict[str, Any]) -> bool:
    """True when the measured part points the way it predicts (differ: its difference test is stronger than its
    equivalence test)."""
    if part.predict == "differ":
        return measured["p_value"] <= measured["p_equivalent"]
    if part.predict == "less":
        return measured["value"] < part.null
    return measured["value"] > part.null


def primary(parts: list[dict[str, Any] | None], decl: list[Part]) -> dict[str, Any] | None:
    """One test from a claim's measured parts. When every part points the predicted way, an intersection-union
    test: p is the largest of their p-values. Otherwise the claim is tested against: the smallest p among the parts
    that point the other way (a differ part's: its equivalence test), times the number of parts (Bonferroni: any
    one of them could have gone against). None when a part could not be measured."""
    if any(p is None for p in parts):
        return None
    pro = [direction_of(d, p) for p, d in zip(parts, decl)]
    if all(pro):
        return {"for": True, "p_value": max(p["p_value"] for p in parts)}
    against = [
        p["p_equivalent"] if d.predict == "differ" else p["p_value"] for p, d, ok in zip(parts, decl, pro) if not ok
    ]
    return {"for": False, "p_value": min(1.0, len(parts) * min(against))}


def verdict(test: dict[str, Any] | None, *, seeds: int, min_seeds: int) -> str:
    """supported / contradicted / no evidence from the Holm-adjusted p; a test on fewer seeds than declared is not
    called yet."""
    if test is None:
        return "not run yet"
    if seeds < min_seeds:
        return f"not called yet ({seeds} of {min_seeds} seeds)"
    if test["p_adjusted"] >= ALPHA:
        return "no evidence"
    return "supported" if test["for"] else "contradicted"


def family_p(tests: list[dict[str, Any] | None], final: list[bool]) -> list[float]:
    """The raw p-values a Holm family adjusts: a test not measured yet, or not final, counts as p = 1."""
    return [1.0 if t is None or not f else t["p_value"] for t, f in zip(tests, final)]


def adjust(tests: list[dict[str, Any] | None], *, final: list[bool] | None = None) -> None:
    """Holm over a family in place; a test not measured yet counts as p = 1 so the family is the declared one. A
    test not final (fewer seeds than declared) also counts as p = 1 for the others, so no called verdict rests on
    an early p that more seeds may raise; its own adjusted p (provisional) puts its p back into that family."""
    final = final or [True] * len(tests)
    base = family_p(tests, final)
    for t, p in zip(tests, holm(base) if base else []):
        if t is not None:
            t["p_adjusted"] = p
    for i, (t, f) in enumerate(zip(tests, final)):
        if t is not None and not f:
            t["p_adjusted"] = holm([t["p_value"] if j == i else p for j, p in enumerate(base)])[i]
