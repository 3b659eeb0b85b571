import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from unifylab.errors import UserError
from unifylab.eval.stats import bootstrap_statistic, hierarchical_paired_difference, seed_t_test, t_quantile, t_tail
from unifylab.study.claims import Part, adjust, primary, verdict
from unifylab.study.preset import load_preset, preset_files

Cli = Callable[..., tuple[int, str, str]]
TINY = {
    "model": {"dim": 32, "layers": 2, "heads": 2},
    "optim": {"steps": 6, "batch": 8, "warmup": 2},
    "checkpoint": {"every": 3, "keep": 2},
    "eval": {"every": 100, "examples": 4},
}


def test_one_column_bootstrap_is_the_hierarchical_paired_difference() -> None:
    rng = np.random.default_rng(1)
    diffs = {f"s{s}": list(rng.normal(0.05, 0.5, 40)) for s in range(3)}
    est, p = bootstrap_statistic({s: {"d": d} for s, d in diffs.items()}, ["d"], lambda m: m[..., 0])
    flat = [x for d in diffs.values() for x in d]
    groups = [s for s, d in diffs.items() for _ in d]
    ref, ref_p = hierarchical_paired_difference([0.0] * len(flat), flat, groups)
    assert (est.value, est.lo, est.hi, p) == pytest.approx((ref.value, ref.lo, ref.hi, ref_p))


def test_slope_statistic_recovers_a_known_slope_and_its_sign() -> None:
    rng = np.random.default_rng(2)
    x = np.log2([250.0, 1000.0, 4000.0, 16000.0])
    xc = x - x.mean()
    data = {f"s{s}": {str(i): list(0.03 * xi + rng.normal(0, 0.05, 60)) for i, xi in enumerate(x)} for s in range(5)}
    est, p = bootstrap_statistic(data, ["0", "1", "2", "3"], lambda m: (m * xc).sum(-1) / (xc**2).sum())
    assert est.lo < 0.03 < est.hi and est.lo > 0 and p < 0.05
    flat = {s: {c: [-v for v in vals] for c, vals in cols.items()} for s, cols in data.items()}
    neg, _ = bootstrap_statistic(flat, ["0", "1", "2", "3"], lambda m: (m * xc).sum(-1) / (xc**2).sum())
    assert neg.hi < 0


def test_a_p_far_below_one_resample_in_two_thousand_is_resolved_so_a_three_part_claim_can_be_called() -> None:
    rng = np.random.default_rng(3)
    data = {f"s{s}": {"d": list(rng.normal(-0.2, 0.3, 100))} for s in range(5)}
    est, p = bootstrap_statistic(data, ["d"], lambda m: m[..., 0])
    assert est.hi < 0 and p < 0.05 / (3 * 23)  # the floor of 2000 resamples, 2 / 2001, is not
    weak = {s: {"d": [v + 0.2 for v in cols["d"]]} for s, cols in data.items()}
    assert bootstrap_statistic(weak, ["d"], lambda m: m[..., 0])[1] > 0.05


def test_one_seed_one_cluster_has_no_interval() -> None:
    est, p = bootstrap_statistic({"s0": {"d": [0.4]}}, ["d"], lambda m: m[..., 0])
    assert np.isnan(est.lo) and p == 1.0


def _part(**kw: object) -> Part:
    return Part(**{"stat": "difference", "a": "x", "b": "y", "predict": "greater", **kw})


def test_a_claim_is_supported_only_when_every_part_goes_its_way() -> None:
    decl = [_part(), _part(predict="less")]
    both = primary([{"value": 0.1, "p_value": 0.01}, {"value": -0.2, "p_value": 0.03}], decl)
    assert both == {"for": True, "p_value": 0.03}
    against = primary([{"value": 0.1, "p_value": 0.01}, {"value": 0.2, "p_value": 0.002}], decl)
    assert against == {"for": False, "p_value": pytest.approx(0.004)}  # Bonferroni over the two parts
    assert primary([None, {"value": 0.1, "p_value": 0.01}], decl) is None
    family = [dict(both), dict(against), None]
    adjust(family)
    assert family[0]["p_adjusted"] == pytest.approx(0.06) and family[1]["p_adjusted"] == pytest.approx(0.012)
    assert verdict(family[0], seeds=5, min_seeds=5) == "no evidence"
    assert verdict(family[1], seeds=5, min_seeds=5) == "contradicted"
    assert verdict(family[1], seeds=3, min_seeds=5) == "not called yet (3 of 5 seeds)"
    assert verdict({"for": True, "p_adjusted": 0.01}, seeds=5, min_seeds=5) == "supported"
    assert verdict(None, seeds=0, min_seeds=5) == "not run yet"


def test_a_test_short_of_its_seeds_counts_as_p_one_for_the_others_so_no_call_rests_on_it() -> None:
    early = {"for": True, "p_value": 0.001}  # one seed: a small p that more seeds may raise
    called = {"for": True, "p_value": 0.02}
    family = [dict(called), dict(early), None]
    adjust(family, final=[True, False, True])
    assert family[0]["p_adjusted"] == pytest.approx(0.06)  # ranked first of three, not second
    assert family[1]["p_adjusted"] == pytest.approx(0.003)  # its own, provisional: its p back in the family
    as_before = [dict(called), dict(early), None]
    adjust(as_before)
    assert as_before[0]["p_adjusted"] == pytest.approx(0.04)  # what the early test would have bought


def test_a_two_sided_claim_is_contradicted_by_equivalence() -> None:
    part = _part(predict="differ", margin=0.02)
    assert primary([{"value": 0.3, "p_value": 0.001, "p_equivalent": 1.0}], [part]) == {"for": True, "p_value": 0.001}
    inside = primary([{"value": 0.001, "p_value": 0.8, "p_equivalent": 0.003}], [part])
    assert inside == {"for": False, "p_value": 0.003}
    with pytest.raises(ValueError, match="margin > 0"):
        _part(predict="differ")


def test_bad_claim_declarations_are_one_error_naming_the_field(tmp_path: Path) -> None:
    raw = yaml.safe_load(preset_files()["claims"].read_text())
    raw["claims"][0]["parts"][0]["stat"] = "layers"  # layers needs an analysis and terms
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match=r"claims\.0\.parts\.0: stat layers needs analysis"):
        load_preset(str(bad))
    raw = yaml.safe_load(preset_files()["claims"].read_text())
    raw["claims"][0]["parts"][0]["study"] = "nowhere"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match="study 'nowhere' is not a study of any world"):
        load_preset(str(bad))
    raw = yaml.safe_load(preset_files()["quick"].read_text())
    raw["min_seeds"] = 3
    raw["claims"] = yaml.safe_load(preset_files()["claims"].read_text())["claims"][:1]
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match="claims belong to a side-by-side preset"):
        load_preset(str(bad))


def test_the_claims_preset_declares_every_claim_of_the_issue() -> None:
    p = load_preset("claims")
    assert [c.id for c in p.claims] == [f"C{i}" for i in range(1, 14)]
    assert set(p.claim_worlds) == {"shapes", "watch"} and p.min_seeds >= 5
    for name in p.studies:
        sub = load_preset(name)
        flow = sub.base["model"].get("image_output") == "flow"  # its own budget: flow needs more steps
        assert len(sub.seeds) >= 5 and (flow or sub.base["optim"]["steps"] == 1800)  # the current recipe
        assert "mc" not in sub.tasks
    variants = {v.name for v in load_preset("claims-shapes").variants}
    assert {"shared", "unifork", "mot", "und-only", "gen-only", "permuted", "locus-pretrained"} <= variants


def _tiny_claims(tmp: Path) -> Path:
    """The claims preset over tiny copies of its three shapes studies (the watch world left out)."""
    names = {}
    for sub in ("claims-shapes", "claims-shapes-scaling", "claims-shapes-flow"):
        raw = yaml.safe_load(preset_files()[sub].read_text())
        raw["base"] = {**raw["base"], **TINY}
        raw.update(limit=6, analysis_n=12, seeds=[0, 1])
        if raw.get("sweep"):
            raw["sweep"]["values"] = [40, 160]
        for v in raw["variants"]:
            if v["set"].get("model", {}).get("fork_layer"):
                v["set"]["model"]["fork_layer"] = 1
        path = tmp / f"{sub}.yaml"
        path.write_text(yaml.safe_dump(raw))
        names[sub] = str(path)
    raw = yaml.safe_load(preset_files()["claims"].read_text())
    raw["studies"] = list(names.values())
    raw["claim_worlds"] = {"shapes": raw["claim_worlds"]["shapes"]}
    raw["min_seeds"] = 2
    path = tmp / "claims.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
def test_claims_study_end_to_end_at_tiny_size(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "claims"
    preset = _tiny_claims(tmp_path)
    code, _, err = cli("study", "--preset", preset, "--out", out, "--device", "cpu", "--only", "claims-shapes")
    assert code == 0, err
    rows = {r["id"]: r for r in json.loads((out / "results.json").read_text())["claims"]["claims"]}
    assert rows["C2"]["verdict"] == "not run yet"  # the scaling study is another tier
    assert rows["C12"]["verdict"] == "not testable here"
    assert rows["C13"]["verdict"] == "not run yet"  # the flow tier is another study
    for cid in ("C1", "C3", "C4", "C5", "C6", "C7", "C8", "C9", "C10", "C11"):
        r = rows[cid]
        assert all(p is not None and p["seeds"] == 2 for p in r["parts"]), cid
        assert (out / "figures" / f"claim-{cid}-shapes.png").is_file()
        below = r["not_learned"] + r["controls_not_learned"]
        assert below  # six steps learn nothing: every test names the runs below the floor
        called = ("supported", "contradicted", "no evidence")
        if r["not_learned"]:
            assert r["verdict"] == "not called: a compared model did not learn"
        else:
            assert r["verdict"] in called
    code, _, err = cli("study", "--preset", preset, "--out", out, "--device", "cpu", "--report-only")
    assert code == 0, err  # a render of every tier trains none: the untrained scaling tier is named and left out
    for tier in ("claims-shapes-scaling", "claims-shapes-flow"):
        assert f"study {tier}: no run trained, left out (--report-only)" in err
        assert not (out / tier).exists()
    again = {r["id"]: r["verdict"] for r in json.loads((out / "results.json").read_text())["claims"]["claims"]}
    assert again == {cid: r["verdict"] for cid, r in rows.items()}
    code, _, err = cli("study", "--preset", preset, "--out", out, "--device", "cpu", "--only", "claims-shapes-scaling")
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    c2 = next(r for r in results["claims"]["claims"] if r["id"] == "C2")
    assert c2["parts"][0]["panel"]["x"] == ["40", "160"] and c2["verdict"] != "not run yet"
    md = (out / "report.md").read_text()
    assert md.index("## Verdicts") < md.index("## Answer, world by world")
    assert "figures/claim-C1-shapes.png" in md and "### Breakdowns" in md
    learned = results["claims"]["learned"]["claims-shapes"]
    assert set(learned["shared"]) == {"0", "1"} and "| claims-shapes | shared |" in md  # every run's own accuracy
    untrained = next(r for r in results["claims"]["claims"] if r["id"] == "C7")["breakdowns"][0]
    assert untrained["seeds"] == 2 and set(learned["untrained"]) == {"0", "1"}  # the analyses' reference, at step 0


def test_only_names_a_study_of_the_preset(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("study", "--preset", "claims", "--out", tmp_path / "c", "--only", "nope")
    assert code == 2 and "--only: ['nope'] are not studies of preset claims" in err
    code, _, err = cli("study", "--preset", "quick", "--out", tmp_path / "q", "--only", "x")
    assert code == 2 and "runs no studies of its own" in err


def test_a_unified_run_that_learned_one_kind_only_is_below_the_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    from unifylab.eval.task_registry import load_task
    from unifylab.study.evidence import StudyView
    from unifylab.train.config import load_tree

    view = StudyView.__new__(StudyView)
    view.specs = {t: load_task(t) for t in ("caption", "vqa", "t2i")}
    unified, reader = load_tree({}), load_tree({"data": {"mode": "und-only"}})
    monkeypatch.setattr(view, "config", lambda rid: unified if rid == "u" else reader)
    acc = {"caption": 0.9, "vqa": 0.8, "t2i": 0.1}
    view.evals = {r: {t: {"accuracy": {"value": v}} for t, v in acc.items()} for r in ("u", "r")}
    assert view.learned("u") == pytest.approx(0.1)  # reads well, draws badly: its worse kind
    assert view.learned("r") == pytest.approx(0.85)  # trained to read only: drawing is not its to learn


def test_a_world_without_a_claims_study_reads_it_as_not_testable_there(tmp_path: Path) -> None:
    from unifylab.study.verdicts import judge_claims

    rows = {(r["id"], r["world"]): r for r in judge_claims(load_preset("claims"), tmp_path)["claims"]}
    assert rows["C13", "shapes"]["verdict"] == "not run yet"
    watch = rows["C13", "watch"]
    assert watch["verdict"] == "not testable here" and "declares no flow study" in watch["reason"]


def test_the_flow_tier_studies_flow_models_and_scores_their_drawings(cli: Cli, tmp_path: Path) -> None:
    raw = yaml.safe_load(preset_files()["claims-shapes-flow"].read_text())
    raw["base"] = {**raw["base"], **TINY, "model": {**TINY["model"], "image_output": "flow", "flow_steps": 2}}
    raw.update(limit=4, seeds=[0])
    raw["variants"] = [v for v in raw["variants"] if v["name"] in ("shared", "gen-only")]
    preset = tmp_path / "flow.yaml"
    preset.write_text(yaml.safe_dump(raw))
    out = tmp_path / "flow"
    code, _, err = cli("study", "--preset", preset, "--out", out, "--device", "cpu")
    assert code == 0, err
    runs = json.loads((out / "results.json").read_text())["runs"].values()
    assert {r["variant"] for r in runs} == {"shared", "gen-only"}
    for r in runs:  # drawn by flow, parsed exactly: a score per item, not a greedy token match
        assert r["eval"]["t2i"]["n"] == 4 and 0 <= r["eval"]["t2i"]["accuracy"]["value"] <= 1


def test_a_breakdown_short_of_its_seeds_is_not_final_even_when_its_row_is() -> None:
    from unifylab.study.verdicts import finality

    late = {"seeds": 2}  # a model added to the tier after the others had run
    on_time = {"seeds": 5}
    row = {"seeds": 5, "breakdowns": [late, on_time, None]}
    short = {"seeds": 3, "breakdowns": [{"seeds": 5}]}
    final = finality([row, short], min_seeds=5)
    assert final[id(row)] and final[id(on_time)] and not final[id(late)]
    assert not final[id(short)] and not final[id(short["breakdowns"][0])]  # a short row's breakdowns wait with it


def test_a_called_verdict_names_the_seeds_it_rests_on() -> None:
    from unifylab.study.verdicts import rests_on

    called = {"for": True, "p_value": 0.001}
    family = [0.001, 0.04, 1.0]  # this test first, adjusted against two others
    retests = {
        0: {"for": True, "p_value": 0.002},
        1: {"for": True, "p_value": 0.03},
        2: {"for": False, "p_value": 0.01},
    }
    assert rests_on(called, family, 0, retests.get, [0, 1, 2, 3]) == [1, 2, 3]  # 0.09 adjusted; turned; unmeasured
    assert rests_on(called, family, 0, lambda s: {"for": True, "p_value": 0.01}, [0, 1]) == []  # 0.03 adjusted
    against = {"for": False, "p_value": 0.001}
    assert rests_on(against, family, 0, lambda s: {"for": True, "p_value": 0.001}, [4]) == [4]  # it turned for


def test_the_seed_level_t_test_is_students() -> None:
    assert t_tail(2.776445, 4) == pytest.approx(0.05, abs=1e-6)  # the textbook 97.5 % points
    assert t_quantile(0.05, 1) == pytest.approx(12.7062, abs=1e-3)
    est, p = seed_t_test([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (est.value, est.lo, p) == pytest.approx((3.0, 3.0 - 2.776445 * np.sqrt(2.5 / 5), 0.013236), abs=1e-5)
    assert seed_t_test([0.5] * 5)[1] == 0.0 and seed_t_test([0.5] * 5, null=0.5)[1] == 1.0
    one, p_one = seed_t_test([0.5])
    assert np.isnan(one.lo) and p_one == 1.0


def test_five_seeds_one_way_can_pass_the_seeds_then_items_bootstrap_and_not_the_t_test() -> None:
    rng = np.random.default_rng(4)
    centres = [-0.01, -0.04, -0.07, -0.10, -0.14]  # every seed below 0, widely spread
    data = {f"s{s}": {"d": list(rng.normal(c, 0.3, 400))} for s, c in enumerate(centres)}
    _, p_boot = bootstrap_statistic(data, ["d"], lambda m: m[..., 0])
    _, p_t = seed_t_test([float(np.mean(cols["d"])) for cols in data.values()])
    assert p_boot < 0.005 < p_t  # the bootstrap's seeds spread like 4 / 5 of theirs, with normal tails


def test_a_part_p_needs_the_bootstrap_and_the_t_test_over_seeds_to_agree() -> None:
    from unifylab.study.evidence import _estimate

    rng = np.random.default_rng(4)
    spread = {f"s{s}": {"d": list(rng.normal(c, 0.3, 400))} for s, c in enumerate([-0.01, -0.04, -0.07, -0.1, -0.14])}
    got = _estimate(spread, ["d"], lambda m: m[..., 0], _part(predict="less"))
    assert got["p_bootstrap"] < 0.005 < got["seed_level"]["p_value"] == got["p_value"]  # the larger of the two
    assert got["seed_level"]["per_seed"] == pytest.approx([np.mean(c["d"]) for c in spread.values()])
    # a non-linear statistic whose seeds' pseudo-values point the other way than its estimate: p 1
    cols = {f"s{s}": {"a": [x], "b": [y]} for s, (x, y) in enumerate([(1.0, -3.0), (-3.0, 1.0), (0.2, 0.2)])}
    worst = _estimate(cols, ["a", "b"], lambda m: np.minimum(m[..., 0], m[..., 1]), _part())
    assert worst["value"] * worst["seed_level"]["value"] < 0 and worst["p_value"] == 1.0


def test_a_call_the_bootstrap_alone_would_make_is_said_beside_no_evidence() -> None:
    from unifylab.study.claims_report import stability

    said = stability({"verdict": "no evidence", "bootstrap_alone": {"verdict": "contradicted", "p_adjusted": 0.005}})
    assert "alone would call it contradicted, adjusted p 0.005" in said
    assert stability({"verdict": "supported", "rests_on": []}) == " (holds with any one seed left out)"
    assert "rests on seed 3" in stability({"verdict": "supported", "rests_on": [3]})
    assert stability({"verdict": "no evidence"}) == ""


def test_a_study_view_without_a_seed_reads_the_other_seeds_and_shares_their_items() -> None:
    from unifylab.study.evidence import StudyView

    view = StudyView.__new__(StudyView)
    view.runs = {("shared", s, None): f"shared-s{s}" for s in range(3)} | {("und-only", 1, None): "und-only-s1"}
    view._items = {("shared-s0", "t2i"): {}}
    fewer = view.without_seed(1)
    assert fewer.run_ids("shared") == {0: "shared-s0", 2: "shared-s2"} and fewer.run_ids("und-only") == {}
    assert view.run_ids("shared")[1] == "shared-s1" and fewer._items is view._items


def test_gradient_conflict_averages_the_deep_blocks_over_checkpoints_one_value_a_seed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from unifylab.study.evidence import StudyView, conflict
    from unifylab.train.config import load_tree

    view = StudyView.__new__(StudyView)
    view.runs = {("shared", s, None): f"shared-s{s}" for s in range(5)}
    monkeypatch.setattr(view, "config", lambda rid: load_tree({"model": {"layers": 4}}))

    def rows(rid: str) -> dict[str, list[dict[str, object]]]:
        pull = -0.1 * (1 + int(rid[-1]))  # deep blocks pull apart, more at each seed; shallow ones agree
        cos = {-1: 0.9, 0: 0.5, 1: 0.5, 2: pull, 3: pull, 4: 0.9}
        return {"gradients": [{"step": t, "depth": d, "cosine": c} for t in (10, 20) for d, c in cos.items()]}

    monkeypatch.setattr(view, "analysis", rows)
    got = conflict(view, _part(stat="conflict", a="shared", b=None, predict="less"), lambda n: n)
    assert got["value"] == pytest.approx(-0.3) and got["hi"] < 0 and got["seeds"] == 5
    assert got["panel"]["x"] == ["10", "20"] and got["panel"]["lines"]["deep blocks"][0] == pytest.approx([-0.1, -0.1])
    monkeypatch.setattr(view, "analysis", lambda rid: {"gradients": []})  # a fork's deep blocks are its own
    assert conflict(view, _part(stat="conflict", a="shared", b=None, predict="less"), lambda n: n) is None
