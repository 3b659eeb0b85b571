import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from unifylab.errors import UserError
from unifylab.eval.compare import compare
from unifylab.eval.generators import Item
from unifylab.eval.harness import run_task, summarise
from unifylab.eval.protocol import ImageRequest, LoglikelihoodRequest, OracleModel, RandomModel, TextRequest
from unifylab.eval.scorers import normalise, parse_letter, score_caption
from unifylab.eval.stats import paired_difference
from unifylab.eval.task_registry import SCORERS, items, load_task, resolve_tasks, task_files
from unifylab.world.shapes.canvas import ShapesConfig, render, sample_scene

Cli = Callable[..., tuple[int, str, str]]
TASKS = [
    "caption",
    "caption_cells",
    "vqa",
    "mc",
    "t2i",
    "t2i_cells",
    "geneval",
    "facts_draw",
    "facts_draw_stepwise",
    "facts_ask",
    "facts_ask_stepwise",
    "self_consistency",
]


def test_registry_holds_every_task() -> None:
    assert set(TASKS) <= set(task_files())
    for name in TASKS:
        assert load_task(name).name == name


def test_an_included_task_is_its_base_but_for_the_keys_it_declares() -> None:
    """Every built-in task written as `include:` of another equals that task except in the keys it writes out, and
    each of those keys changes something."""
    raws = {name: yaml.safe_load(path.read_text()) for name, path in task_files().items()}
    included = {name: raw for name, raw in raws.items() if "include" in raw}
    assert {f"{b}_stepwise" for b in ("ueg", "geu", "facts_ask", "watch_later_draw")} <= set(included)
    assert {"watch_caption", "watch_vqa", "t2i_cells", "geneval_strict"} <= set(included)
    for name, raw in included.items():
        spec, base = load_task(name), load_task(raw["include"].removesuffix(".yaml"))
        declared = set(raw) - {"include"}
        assert spec.model_dump(exclude=declared) == base.model_dump(exclude=declared), name
        assert all(getattr(spec, k) != getattr(base, k) for k in declared), name
        assert spec.model_fields_set == base.model_fields_set | declared, name


def test_include_is_read_relative_to_the_including_file_and_chains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bases").mkdir()
    (tmp_path / "bases" / "base.yaml").write_text("name: base\ngenerator: vqa\nscorer: exact\nn: 4\nseed: 9\n")
    (tmp_path / "bases" / "mid.yaml").write_text("include: base.yaml\nname: mid\nn: 7\n")
    (tmp_path / "top.yaml").write_text("include: bases/mid.yaml\nname: top\nseed: 3\n")
    monkeypatch.chdir(tmp_path / "bases")  # not the including file's folder
    spec = load_task(str(tmp_path / "top.yaml"))
    assert (spec.name, spec.generator, spec.n, spec.seed) == ("top", "vqa", 7, 3)


def test_resolve_tasks_names_files_and_all_on_a_world() -> None:
    specs, skipped = resolve_tasks(" vqa, t2i ,")
    assert [s.name for s in specs] == ["vqa", "t2i"] and skipped == []
    every, none_skipped = resolve_tasks("all")
    assert none_skipped == [] and {s.name for s in every} == set(task_files())
    kinds = [s.kind for s in every]
    assert kinds.index("gen") > max(i for i, k in enumerate(kinds) if k == "und")  # understanding first
    on_world, skipped = resolve_tasks("all", world=(64, 4))  # no built-in task is built on this world
    assert on_world == [] and set(skipped) == set(task_files())
    with pytest.raises(UserError, match="no task named"):
        resolve_tasks(" , ")


@pytest.mark.parametrize("task", TASKS)
def test_oracle_scores_everything_and_random_scores_chance(task: str, tmp_path: Path) -> None:
    spec = load_task(task)
    oracle = run_task(OracleModel(), spec, tmp_path / "oracle", limit=120)
    assert all(r["score"] == 1.0 for r in oracle), [r["reasons"] for r in oracle if r["score"] < 1][:3]
    rand = summarise(spec, run_task(RandomModel(0), spec, tmp_path / "random", limit=120))
    acc = rand["accuracy"]
    if rand["chance"] is not None and rand["chance"] * rand["n"] < 2:  # too few items to tell chance from zero
        assert acc["value"] <= 0.25
    elif rand["chance"] is not None:  # the interval must cover the chance level the answer spaces imply
        assert acc["lo"] - 0.02 <= rand["chance"] <= acc["hi"] + 0.02, (acc, rand["chance"])
    else:  # image and partial-credit tasks: random scenes and captions stay far from the target
        assert acc["value"] < 0.3


def test_records_explain_failures_and_resume_skips_done_items(tmp_path: Path) -> None:
    spec = load_task("vqa")
    first = run_task(RandomModel(0), spec, tmp_path, limit=10)
    wrong = [r for r in first if r["score"] == 0]
    assert wrong and all("expected" in r["reasons"][0] for r in wrong)
    assert {"id", "input", "output", "target", "score", "reasons", "meta"} <= set(first[0])
    lines = (tmp_path / "vqa.jsonl").read_text()
    (tmp_path / "vqa.jsonl").write_text(lines + '{"id": "torn')  # an interrupted write
    again = run_task(RandomModel(0), spec, tmp_path, limit=20)
    assert [r["score"] for r in again[:10]] == [r["score"] for r in first] and len(again) == 20  # kept
    with pytest.raises(UserError, match=r"model.name: 'random' there, 'oracle' now.*--force"):
        run_task(OracleModel(), spec, tmp_path, limit=20)  # another model's records are never mixed in
    with pytest.raises(UserError, match=r"task.seed: 202 there, 7 now"):
        run_task(RandomModel(0), spec.model_copy(update={"seed": 7}), tmp_path, limit=20)
    forced = run_task(OracleModel(), spec, tmp_path, limit=20, force=True)
    assert all(r["score"] == 1.0 for r in forced) and len((tmp_path / "vqa.jsonl").read_text().splitlines()) == 20


def test_answer_normalisation_and_letter_parsing() -> None:
    assert (
        normalise("Three.") == "3" and normalise("A Red") == "red" and normalise("Row 1, Column 2") == "row 1, column 2"
    )
    assert parse_letter("B") == "B" and parse_letter("(c)") == "C" and parse_letter("D. blue") == "D"
    assert parse_letter("a red circle") is None and parse_letter("the answer is B") == "B"
    assert parse_letter("A") == "A" and parse_letter("no") is None


def test_caption_scorer_names_missing_and_invented_objects() -> None:
    target = {
        "world": "shapes",
        "size": 32,
        "grid": 3,
        "objects": [{"shape": "ring", "color": "red", "row": 0, "col": 0}],
    }
    item = Item("x", target=target)
    assert score_caption(item, ["a red ring at row 1, column 1."], [])[0] == 1.0
    score, reasons = score_caption(item, ["a blue ring at row 1, column 1."], [])
    assert score == 0.0 and any("missed" in r for r in reasons) and any("invented" in r for r in reasons)
    assert score_caption(item, ["what a nice picture"], [])[0] == 0.0


def test_paired_difference_and_compare(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = (rng.random(200) < 0.5).astype(float)
    b = np.where(rng.random(200) < 0.3, 1.0, a)
    est, p = paired_difference(a, b)
    assert est.lo <= est.value <= est.hi and est.value > 0 and p < 0.01
    _, p_same = paired_difference(a, a)
    assert p_same == 1.0
    spec = load_task("vqa")
    run_task(OracleModel(), spec, tmp_path / "o", limit=30)
    run_task(RandomModel(1), spec, tmp_path / "r", limit=30)
    res = compare(tmp_path / "r", tmp_path / "o")
    assert res["vqa"]["n"] == 30 and res["vqa"]["diff"]["value"] > 0.5 and res["vqa"]["p_value"] < 0.01


def test_eval_and_compare_commands(cli: Cli, tmp_path: Path) -> None:
    code, out, err = cli("eval", "oracle", "--tasks", "vqa,t2i", "--out", tmp_path / "o", "--limit", "12")
    assert code == 0, err
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["model"] == "oracle" and results["tasks"]["t2i"]["accuracy"]["value"] == 1.0
    assert len(list((tmp_path / "o" / "t2i").glob("*.png"))) == 12
    assert cli("eval", "random", "--tasks", "vqa,t2i", "--out", tmp_path / "r", "--limit", "12")[0] == 0
    code, out, _ = cli("compare", tmp_path / "r", tmp_path / "o", "--json")
    assert code == 0 and json.loads(out)["t2i"]["diff"]["value"] == 1.0
    code, _, err = cli("eval", "random", "--tasks", "vqa", "--out", tmp_path / "o", "--limit", "2")
    assert code == 2 and "oracle" in err and "another --out" in err
    code, _, err = cli("eval", "oracle", "--tasks", "nope", "--out", tmp_path / "x")
    assert code == 2 and "unknown task 'nope'" in err
    code, _, err = cli("eval", tmp_path / "missing", "--tasks", "vqa", "--out", tmp_path / "x")
    assert code == 2 and "model folder not found" in err
    code, _, err = cli("compare", tmp_path / "o", tmp_path / "none")
    assert code == 2 and "not found" in err


def test_native_model_runs_every_task(cli: Cli, tmp_path: Path) -> None:
    import yaml

    from unifylab.eval.native import NativeModel
    from unifylab.train import Trainer, load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "model": {"dim": 32, "layers": 1, "heads": 2},
                "optim": {"steps": 3, "batch": 8},
                "eval": {"every": 3, "examples": 4},
            }
        )
    )
    Trainer(load_config(cfg, []), tmp_path / "run", progress=False).fit()
    model = NativeModel(tmp_path / "run")
    with pytest.raises(
        UserError,
        match="task geu is built on the 32 px 4x4 shapes world but run reads and draws images of the 32 px 3x3 shapes",
    ):
        run_task(model, load_task("geu"), tmp_path / "ev", limit=4)  # never re-encoded at the wrong grid
    recipe = ("--guidance", "1.5", "--temperature", "0.7", "--top-k", "5", "--seed", "3")
    code, _, err = cli("eval", tmp_path / "run", "--out", tmp_path / "all", "--limit", "1", "--device", "cpu", *recipe)
    assert code == 0 and "skipping geu, geu_stepwise" in err and not (tmp_path / "all" / "geu.jsonl").exists()
    recorded = json.loads((tmp_path / "all" / "results.json").read_text())["recipe"]
    assert {k: recorded[k] for k in ("guidance", "temperature", "top_k", "seed")} == {
        "guidance": 1.5,
        "temperature": 0.7,
        "top_k": 5,
        "seed": 3,
    }
    for task in TASKS:
        recs = run_task(model, load_task(task), tmp_path / "ev", limit=4)
        assert len(recs) == 4 and all(0.0 <= r["score"] <= 1.0 for r in recs)
        assert task.endswith("_cells") or all(r["score"] in (0.0, 1.0) for r in recs)
    ll = model.loglikelihood([LoglikelihoodRequest("is there a red ring?", "yes", np.zeros((32, 32, 3), np.uint8))])
    assert len(ll) == 1 and ll[0] < 0
    assert model.generate_text([TextRequest("draw a red ring.", mode="rewrite", max_tokens=3)])[0] is not None
    rambling = "draw a red ring and then " * 100  # longer than max_len: keeps its start, still draws
    assert model.generate_images([ImageRequest(rambling, ShapesConfig())])[0].shape == (32, 32, 3)


@pytest.mark.parametrize("task", ["ueg", "ueg_stepwise", "geu", "geu_stepwise"])
def test_reasoning_tasks_oracle_and_random(task: str, tmp_path: Path) -> None:
    spec = load_task(task)
    oracle = run_task(OracleModel(), spec, tmp_path / "o", limit=96)
    assert all(r["score"] == 1.0 for r in oracle), [r["reasons"] for r in oracle if r["score"] < 1][:3]
    kinds = {r["meta"]["kind"] for r in oracle}
    assert len(kinds) == (6 if task.startswith("ueg") else 4)
    rand = summarise(spec, run_task(RandomModel(0), spec, tmp_path / "r", limit=96))
    if task.startswith("geu"):
        assert rand["accuracy"]["lo"] - 0.02 <= 0.25 <= rand["accuracy"]["hi"] + 0.02
    else:
        assert rand["accuracy"]["value"] < 0.05


def test_geu_answers_hold_on_the_imagined_image_and_ueg_questions_on_the_scene() -> None:
    from unifylab.world.shapes import reasoning as R
    from unifylab.world.shapes.canvas import ShapesConfig

    world = ShapesConfig(size=32, grid=4, max_objects=4)
    rng = np.random.default_rng(0)
    for k in range(200):
        g = R.geu_item(R.GEU_KINDS[k % 4], world, rng)
        assert g["options"]["ABCD".index(g["answer"])] == R.answer_on(g["target"], g["step_question"]), g
    for k in range(120):
        prompt, scene, wrong = R.ueg_item(R.UEG_KINDS[k % 6], ShapesConfig(), rng)
        for q in R.questions_for(scene, rng, wrong):
            assert R.verify(scene, q["question"]) == q["answer"], (prompt, q)


def test_partial_credit_tasks_rescore_their_siblings_outputs(tmp_path: Path) -> None:
    class Refuses:
        name = "refuses"

        def generate_text(self, requests: list) -> list:
            raise AssertionError("the sibling's answers should have been reused")

        generate_images = generate_text

    run_task(RandomModel(1), load_task("caption"), tmp_path, limit=8)
    run_task(RandomModel(1), load_task("t2i"), tmp_path, limit=8)
    cells = run_task(Refuses(), load_task("caption_cells"), tmp_path, limit=8)
    images = run_task(Refuses(), load_task("t2i_cells"), tmp_path, limit=8)
    first = [json.loads(ln) for ln in (tmp_path / "caption.jsonl").read_text().splitlines()]
    assert [r["output"] for r in cells] == [r["output"] for r in first]
    assert all(0 <= r["score"] <= 1 for r in cells + images) and images[0]["output"]["images"][0].startswith("t2i/")
    with pytest.raises(AssertionError, match="reused"):  # items the sibling has not scored are generated
        run_task(Refuses(), load_task("t2i_cells"), tmp_path, limit=9)


def test_strict_geneval_fails_clutter_that_geneval_rules_accept() -> None:
    faithful, strict = load_task("geneval"), load_task("geneval_strict")
    assert strict.outputs_of == "geneval" and items(strict, 12)[3].target == items(faithful, 12)[3].target
    rng = np.random.default_rng(0)
    cases = items(strict, 30)
    truth = [render(it.images[0].truth) for it in cases]
    clutter = [render(sample_scene(ShapesConfig(min_objects=8, max_objects=9), rng)) for _ in cases]
    assert all(SCORERS["image_strict"](it, [], [im])[0] == 1.0 for it, im in zip(cases, truth))
    loose = [SCORERS["image"](it, [], [im])[0] for it, im in zip(cases, clutter)]
    tight = [SCORERS["image_strict"](it, [], [im]) for it, im in zip(cases, clutter)]
    assert sum(loose) >= 3 and all(s == 0.0 for s, _ in tight)
    assert any("at most" in r for _, reasons in tight for r in reasons)


def test_geu_answers_are_balanced_so_a_blind_prior_is_near_a_quarter() -> None:
    from collections import Counter

    from unifylab.world.shapes import reasoning as R

    world = ShapesConfig(size=32, grid=4, min_objects=1, max_objects=4)
    rng = np.random.default_rng(1)
    for kind in R.GEU_KINDS:
        cases = [R.geu_item(kind, world, rng) for _ in range(300)]
        answers = Counter(it["options"]["ABCD".index(it["answer"])] for it in cases)
        letters = Counter(it["answer"] for it in cases)
        # the best blind rule, fitted on these very items: pick the option that is most often right a priori
        blind = np.mean(
            [max(it["options"], key=lambda o: answers[o]) == it["options"]["ABCD".index(it["answer"])] for it in cases]
        )
        assert answers.most_common(1)[0][1] / len(cases) < 0.32 and max(letters.values()) / len(cases) < 0.32, kind
        assert blind < 0.37, (kind, blind)


def test_a_drawn_image_depends_on_the_item_not_on_its_batch_or_a_resume(tmp_path: Path) -> None:
    """`--limit 3` then `--limit 7` (a resume that starts mid-batch), or other batch sizes, draw the same images as
    one uninterrupted `--limit 7`: each item samples with its own seed."""
    import yaml

    from unifylab.eval.native import NativeModel
    from unifylab.train import Trainer, load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"dim": 32, "layers": 1, "heads": 2}, "optim": {"steps": 2, "batch": 8}}))
    Trainer(load_config(cfg, []), tmp_path / "run", progress=False).fit()
    model = NativeModel(tmp_path / "run", temperature=1.0, seed=5)  # an untrained model samples near-uniform codes
    spec = load_task("t2i")
    run_task(model, spec, tmp_path / "resumed", limit=3, batch=2)
    resumed = run_task(model, spec, tmp_path / "resumed", limit=7, batch=2)
    whole = run_task(model, spec, tmp_path / "whole", limit=7, batch=4)

    def pixels(folder: str, recs: list) -> list[bytes]:
        return [(tmp_path / folder / p).read_bytes() for r in recs for p in r["output"]["images"]]

    assert pixels("resumed", resumed) == pixels("whole", whole)
    assert len(set(pixels("whole", whole))) > 1  # the images differ between items: sampling is not degenerate
