"""The claims study's answer: every declared claim measured on every world's study folders, its primary tests
Holm-adjusted as one family (breakdowns as another), a verdict per claim and world, the runs behind each test
checked against the learned floor, and each called verdict re-tested with every seed left out in turn."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from unifylab.eval.stats import holm
from unifylab.study.claims import ALPHA, Claim, adjust, family_p, primary, verdict
from unifylab.study.evidence import StudyView, measure
from unifylab.study.preset import Preset


def _views(preset: Preset, out: Path) -> dict[str, StudyView]:
    """Each study the claims read (by name) that has results.json in OUT/<name> (one not run yet has none)."""
    views = {}
    for name in {s for cw in preset.claim_worlds.values() for s in cw.studies.values()}:
        if (out / name / "results.json").is_file():
            views[name] = StudyView(out / name)
    return views


def _flags(views: dict[str, StudyView], runs: dict[str, list[str]], floor: float) -> tuple[list[str], list[str]]:
    """'study/run (accuracy)' of every run behind a test whose own accuracy on new scenes is below the floor: those
    of the compared models, and those of controls (a control may fail to learn by design, e.g. over a frozen random
    backbone: it is named, and does not stop a verdict)."""
    models, controls = [], []
    for study, ids in runs.items():
        for rid in sorted(set(ids)):
            acc = views[study].learned(rid)
            if acc is not None and acc < floor:
                (controls if views[study].role(rid) == "control" else models).append(f"{study}/{rid} ({acc:.2f})")
    return models, controls


def judge_claims(preset: Preset, out: Path) -> dict[str, Any]:
    """Per claim and world: each part's estimate, the primary test, its Holm-adjusted p and the verdict; the
    breakdowns likewise in their own family. A compared model below `preset.learned_floor` stops the verdict (not
    called); a control below it is named beside the verdict. Each test's p needs the bootstrap and a t test over the
    seeds to agree (evidence._estimate); where the bootstrap alone would call another verdict, the row says so."""
    views = _views(preset, out)
    rows: list[dict[str, Any]] = []
    retests: list[Callable[[int], dict[str, Any] | None]] = []
    for claim in preset.claims:
        for world, cw in preset.claim_worlds.items():
            rows.append(_measure_claim(claim, world, cw.studies, cw.aliases, views, preset.learned_floor))
            retests.append(_retest(claim, cw.studies, cw.aliases, views, preset.learned_floor))
    for r in rows:
        r["seeds"] = min((p["seeds"] for p in r["parts"] if p), default=0)
    final = finality(rows, min_seeds=preset.min_seeds)
    tested = [r for r in rows if r["testable"]]
    tests, finals = [r["test"] for r in tested], [final[id(r)] for r in tested]
    adjust(tests, final=finals)
    adjust([r["test_bootstrap"] for r in tested], final=finals)
    family = family_p(tests, finals)
    position = {id(r): i for i, r in enumerate(tested)}
    breakdowns = [b for r in rows for b in r["breakdowns"]]
    adjust(breakdowns, final=[b is not None and final[id(b)] for b in breakdowns])
    for r, retest in zip(rows, retests):
        seeds = r["seeds"]
        if not r["testable"]:
            r["verdict"] = "not testable here"
        elif any(p is None for p in r["parts"]):
            r["verdict"] = "not run yet"
        elif r["not_learned"]:
            r["verdict"] = "not called: a compared model did not learn"
        else:
            r["verdict"] = verdict(r["test"], seeds=seeds, min_seeds=preset.min_seeds)
            alone = verdict(r["test_bootstrap"], seeds=seeds, min_seeds=preset.min_seeds)
            if alone != r["verdict"]:
                r["bootstrap_alone"] = {"verdict": alone, "p_adjusted": r["test_bootstrap"]["p_adjusted"]}
        if r["verdict"] in ("supported", "contradicted"):
            r["rests_on"] = rests_on(r["test"], family, position[id(r)], retest, _seed_list(views, r))
    learned = {name: _learned(view) for name, view in sorted(views.items())}
    return {"claims": rows, "min_seeds": preset.min_seeds, "learned_floor": preset.learned_floor, "learned": learned}


def _learned(view: StudyView) -> dict[str, dict[str, float | None]]:
    """Every run's own accuracy (see StudyView.learned) by model and seed ('variant' or 'variant at label' in a
    sweep), so a reader sees that the models behind the verdicts learned, and which did not."""
    out: dict[str, dict[str, float | None]] = {}
    order = [label for label, _ in view.groups]
    for (variant, seed, label), rid in sorted(
        view.runs.items(), key=lambda kv: (kv[0][0], order.index(kv[0][2]), kv[0][1])
    ):
        model = variant if label is None else f"{variant} at {label}"
        out.setdefault(model, {})[str(seed)] = view.learned(rid)
    return out


def rests_on(
    test: dict[str, Any],
    family: list[float],
    index: int,
    retest: Callable[[int], dict[str, Any] | None],
    seeds: list[int],
) -> list[int]:
    """The seeds a called verdict rests on: left out of every study the claim reads, the claim's primary test,
    put back into the family (`family`: the raw p-values Holm adjusts, this test's at `index`), no longer points the
    same way with an adjusted p below ALPHA. Empty: the verdict holds with any one seed left out."""
    fragile = []
    for seed in seeds:
        t = retest(seed)
        if t is None or t["for"] != test["for"]:
            fragile.append(seed)
            continue
        if holm([t["p_value"] if j == index else p for j, p in enumerate(family)])[index] >= ALPHA:
            fragile.append(seed)
    return fragile


def _seed_list(views: dict[str, StudyView], row: dict[str, Any]) -> list[int]:
    """The seeds of the studies a row's parts read."""
    studies = {p["study"] for p in row["parts"] if p}
    return sorted({seed for name in studies for (_, seed, _) in views[name].runs})


def _retest(
    claim: Claim, studies: dict[str, str], aliases: dict[str, str], views: dict[str, StudyView], floor: float
) -> Callable[[int], dict[str, Any] | None]:
    """The claim's primary test on one world with one seed's runs left out of every study (None: not measurable)."""

    def without(seed: int) -> dict[str, Any] | None:
        fewer = {name: view.without_seed(seed) for name, view in views.items()}
        return _measure_claim(claim, "", studies, aliases, fewer, floor)["test"]

    return without


def finality(rows: list[dict[str, Any]], *, min_seeds: int) -> dict[int, bool]:
    """By id(): whether each row, and each of its breakdowns, is measured at every declared seed. A breakdown may
    read a model with fewer seeds than the row's parts (a variant added to a tier later), so it is judged alone."""
    final = {id(r): r["seeds"] >= min_seeds for r in rows}
    for r in rows:
        for b in r["breakdowns"]:
            if b is not None:
                final[id(b)] = final[id(r)] and b["seeds"] >= min_seeds
    return final


def _measure_claim(
    claim: Claim,
    world: str,
    studies: dict[str, str],
    aliases: dict[str, str],
    views: dict[str, StudyView],
    floor: float,
) -> dict[str, Any]:
    missing = sorted({p.study for p in claim.parts + claim.breakdowns} - set(studies))
    reason = claim.not_testable or (
        f"the {world} world declares no {' or '.join(missing)} study (claim_worlds.{world}.studies)"
        if missing
        else None
    )
    row: dict[str, Any] = {
        "id": claim.id,
        "world": world,
        "claim": claim.claim,
        "source": claim.source,
        "measured": claim.measured,
        "testable": reason is None,
        "reason": reason,
    }
    if missing:
        row.update(parts=[], breakdowns=[], test=None, test_bootstrap=None, not_learned=[], controls_not_learned=[])
        return row

    def one(part: Any) -> dict[str, Any] | None:
        view = views.get(studies[part.study])
        res = measure(view, part, aliases) if view is not None else None
        if res is not None:
            res.update(label=part.label, predict=part.predict, null=part.null, study=studies[part.study])
        return res

    row["parts"] = [one(p) for p in claim.parts]
    row["breakdowns"] = [one(p) for p in claim.breakdowns]
    row["test"] = primary(row["parts"], claim.parts) if claim.parts else None
    alone = [
        p and {**p, "p_value": p["p_bootstrap"], "p_equivalent": p.get("p_equivalent_bootstrap")} for p in row["parts"]
    ]
    row["test_bootstrap"] = primary(alone, claim.parts) if claim.parts else None
    runs: dict[str, list[str]] = {}
    for p in row["parts"]:
        if p is not None:
            runs.setdefault(p["study"], []).extend(p.get("learned_runs", p["runs"]))
    row["not_learned"], row["controls_not_learned"] = _flags(views, runs, floor)
    return row
