"""Transfer design: fact and pair assignment to one side, leakage, item splits, intervals, and the study section."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_study import TINY, Cli

from unifylab.data.forms import FACT_TASKS, TRANSFER_TASKS, UND_TASKS
from unifylab.data.splits import is_eval_scene
from unifylab.errors import UserError
from unifylab.eval.harness import split_of
from unifylab.eval.stats import clustered_difference, clustered_mean
from unifylab.eval.task_registry import items, load_task
from unifylab.study.preset import load_preset, preset_files
from unifylab.tokenize.sequence import Packer
from unifylab.train.build import build_tokenizers
from unifylab.train.config import load_tree
from unifylab.train.data import Batches, SceneSource
from unifylab.world.english import NUMBER_WORDS
from unifylab.world.shapes import knowledge as K
from unifylab.world.shapes import language as L
from unifylab.world.shapes import skills as S
from unifylab.world.shapes.scene import Obj, Scene
from unifylab.world.shapes.tasks import score_described


def _transfer_cfg(**data: object):
    base = load_preset("transfer").base
    return load_tree({**base, "data": {**base["data"], **data}})


def _stream(cfg, n: int = 6000):
    text, und, gen = build_tokenizers(cfg)
    batches = Batches(cfg, Packer(text, und, gen), SceneSource(cfg))
    idx = np.arange(n)
    return batches.samples("train", idx, batches.task_of(idx))


def test_no_side_sees_what_the_other_side_alone_was_taught() -> None:
    cfg = _transfer_cfg()
    facts = cfg.data.facts
    only = {side: {n for n, s in facts.items() if s == side} for side in ("und", "gen", "none")}

    def named(text: str) -> set[str]:  # the facts a text names ('red light mixed with green light and blue light'
        # names only itself, not its prefix 'red light mixed with green light')
        found = {n for n in K.FACTS if re.search(rf"\b{re.escape(n)}\b", text)}
        return {n for n in found if not any(n != m and n in m for m in found)}

    seen = {"und": set(), "gen": set()}
    tasks = set()
    for it in _stream(cfg):
        tasks.add(it.task)
        side = "und" if it.task in UND_TASKS else "gen"
        said = named(it.text) | named(it.answer)
        assert not said & only["none"], f"{it.task} example names an untaught fact: {it.text!r}"
        assert not said & only["gen" if side == "und" else "und"], f"{side} example names the other side's fact"
        seen[side] |= said
        if it.scene is not None:
            pairs = {(o.shape, o.color) for o in it.scene.objects}
            barred = cfg.data.gen_only_pairs if side == "und" else cfg.data.und_only_pairs
            assert not pairs & {tuple(p) for p in barred}, f"{it.task} scene holds a pair barred from {side}"
            assert not pairs & {tuple(p) for p in cfg.data.holdout_pairs}
            assert not is_eval_scene(it.scene), f"{it.task} trains on a scene reserved for evaluation"
        if it.task in ("draw_named", "rewrite") and it.text:
            o = it.scene.objects[0]
            assert (o.row, o.col) not in K.FACTS[next(iter(named(it.text)))].eval_places(cfg.world.grid)
    assert tasks == set(TRANSFER_TASKS) | {"caption", "vqa", "t2i"}
    assert seen["und"] == only["und"] | {n for n, s in facts.items() if s == "both"}
    assert seen["gen"] == only["gen"] | {n for n, s in facts.items() if s == "both"}
    # each side still sees its own pairs
    pairs = {side: set() for side in ("und", "gen")}
    for it in _stream(cfg, 3000):
        if it.scene is not None and it.task not in FACT_TASKS:
            pairs["und" if it.task in UND_TASKS else "gen"] |= {(o.shape, o.color) for o in it.scene.objects}
    assert {tuple(p) for p in cfg.data.und_only_pairs} <= pairs["und"]
    assert {tuple(p) for p in cfg.data.gen_only_pairs} <= pairs["gen"]


def test_fact_forms_pack_into_their_sequence_forms() -> None:
    cfg = _transfer_cfg()
    text, und, gen = build_tokenizers(cfg)
    batches = Batches(cfg, Packer(text, und, gen), SceneSource(cfg))
    its = _stream(cfg, 400)
    by = {t: next(it for it in its if it.task == t) for t in FACT_TASKS}
    assert by["knowledge"].answer in {f.answer for f in K.FACTS.values()} and by["knowledge"].scene is None
    packed = batches.pack([by["knowledge"], by["rewrite"], by["draw_named"]])
    first = [text.decode(p.input_ids[:2].tolist(), skip_special=False) for p in packed]
    assert first == ["<bos><rewrite>", "<bos><rewrite>", "<bos><gen>"]
    assert int((packed[2].modality == 1).sum()) == gen.num_tokens  # the drawing, between <boi> and <eoi>
    assert by["draw_named"].text in text.decode(packed[2].input_ids.tolist())
    for name in K.family("things"):  # the tokenizer knows every name as whole words, taught or not
        assert len(text.encode(name)) <= 3, name
    for name in K.FACTS:  # and a rule's name word by word (the first word may split where it starts the text)
        assert len(text.encode(name)) <= len(name.split()) + 1, name


@pytest.mark.parametrize(
    "data, message",
    [
        ({"facts": {"the moon": "und", "a unicorn": "gen"}}, "unknown fact 'a unicorn'"),
        ({"holdout_pairs": [["ring", "white"]], "facts": {"the moon": "und"}}, "'the moon' is drawn as"),
        ({"und_only_pairs": [["cross", "blue"]], "gen_only_pairs": [["cross", "blue"]]}, "is in both und_only_pairs"),
        (
            {"facts": {"the moon": "gen"}, "mixture": {"vqa": 1.0, "knowledge": 1.0}},
            "teaches no fact as 'und' or 'both'",
        ),
        (
            {"moves": {"left": "und"}, "mixture": {"t2i": 1.0, "move_draw": 1.0}},
            "teaches no skill as 'gen' or 'both'",
        ),
        ({"moves": {"sideways": "und"}}, "sideways"),
    ],
)
def test_bad_transfer_designs_fail_at_load(data: dict, message: str) -> None:
    base = {"world": {"size": 32, "grid": 3}, "data": {"facts": {}, **data}}
    with pytest.raises(UserError, match=message):
        load_tree(base)


def test_items_split_by_where_their_fact_or_pair_was_taught() -> None:
    cfg = _transfer_cfg()
    draw, ask = load_task("facts_draw"), load_task("facts_ask")
    recs = [{"id": it.id, "meta": it.meta} for it in items(draw)]
    splits = {r["meta"]["fact"]: split_of(r, draw, cfg.data) for r in recs}
    assert splits["the moon"] == "transfer" and splits["a ruby"] == "here"
    assert splits["the sun"] == "both" and splits["a violet"] == "none"
    assert split_of({"id": "x", "meta": {"fact": "a ruby"}}, ask, cfg.data) == "transfer"
    assert split_of({"id": "x", "meta": {"fact": "the moon"}}, ask, cfg.data) == "here"
    vqa, t2i = load_task("vqa"), load_task("t2i")
    scene = {"objects": [{"shape": "cross", "color": "cyan"}]}  # generation-only pair
    assert split_of({"meta": {"scene": scene}}, vqa, cfg.data) == "transfer"
    assert split_of({"meta": {"scene": scene}}, t2i, cfg.data) == "new_scenes"
    held = {"objects": [{"shape": "cross", "color": "red"}, {"shape": "circle", "color": "red"}]}
    assert split_of({"meta": {"scene": held}}, vqa, cfg.data) == "heldout_pairs"
    # a held-out pair beside one the unified model saw only on the other side: kept out of both comparisons
    both = {"objects": [{"shape": "cross", "color": "cyan"}, {"shape": "circle", "color": "red"}]}
    assert split_of({"meta": {"scene": both}}, vqa, cfg.data) == "other_pairs"
    assert split_of({"meta": {"scene": both}}, t2i, cfg.data) == "heldout_pairs"  # drawn: no one-side pair there
    # every fact is tested only at places where it is never drawn in training, and each place set is a third
    for fact in K.FACTS.values():
        assert len(fact.eval_places(3)) == len(fact.places(3)) // 3
    assert {it.meta["fact"] for it in items(ask)} == set(K.family("things"))
    rules = items(load_task("rules_ask"))
    assert {it.meta["fact"] for it in rules} == set(K.family("light")) | set(K.family("sums"))


def test_clustered_intervals_carry_between_cluster_variance() -> None:
    rng = np.random.default_rng(0)
    # four facts per set: two facts always right, two always wrong -> a wide interval despite many items
    a = [("s0", f"f{k}", 0.0) for k in range(4) for _ in range(30)]
    b = [("s0", f"g{k}", float(k < 2)) for k in range(4) for _ in range(30)]
    diff, p = clustered_difference(a, b)
    assert diff.value == pytest.approx(0.5) and diff.lo <= 0.25 and diff.hi >= 0.75 and p > 0.01
    many = [("s0", f"i{k}", float(rng.random() < 0.5)) for k in range(240)]
    assert clustered_mean(many).hi - clustered_mean(many).lo < 0.2
    # a seed without items in one set is left out; two seeds average
    c = [("s1", "x", 1.0)] + [("s0", "y", 1.0)]
    assert clustered_difference([("s0", "z", 0.0)], c)[0].value == pytest.approx(1.0)
    with pytest.raises(ValueError):
        clustered_difference([("s0", "z", 0.0)], [("s1", "z", 1.0)])
    # one seed and one cluster (a single move direction): nothing to resample, so no interval and no evidence
    one, zero = [("s0", "left", 1.0)] * 20, [("s0", "up", 0.0)] * 20
    diff, p = clustered_difference(zero, one)
    assert diff.value == 1.0 and np.isnan(diff.lo) and diff.to_dict()["lo"] is None and p == 1.0
    assert clustered_mean(one).to_dict()["hi"] is None
    three = [(f"s{k}", "left", float(k > 0)) for k in range(3)]
    assert clustered_mean(three).hi > clustered_mean(three).lo  # seeds are units again


def run_tiny_transfer(cli: Cli, tmp_path: Path, preset: str, *, limit: int) -> Path:
    """A transfer preset at tiny size, one seed, without UniFork, run into tmp_path/study; the study folder."""
    raw = yaml.safe_load(preset_files()[preset].read_text())
    raw["base"] = {**raw["base"], **TINY}
    raw["limit"] = limit
    raw["seeds"] = [0]
    raw["variants"] = [v for v in raw["variants"] if v["name"] != "unifork"]
    path = tmp_path / f"{preset}.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "study"
    code, _, err = cli("study", "--preset", path, "--out", out, "--device", "cpu")
    assert code == 0, err
    return out


def test_transfer_study_end_to_end_at_tiny_size(cli: Cli, tmp_path: Path) -> None:
    out = run_tiny_transfer(cli, tmp_path, "transfer", limit=16)
    results = json.loads((out / "results.json").read_text())
    shared = results["transfer"]["all"]["shared"]
    assert {"facts_draw", "facts_draw_stepwise", "facts_ask", "facts_ask_stepwise"} <= set(shared)
    row = shared["facts_draw"]
    assert row["direction"] == "UEG" and shared["facts_ask"]["direction"] == "GEU"
    assert all(row[k]["n"] == 4 for k in ("ceiling", "here", "transfer", "floor"))  # 16 facts, 4 per side
    assert "p_adjusted" in row["transfer_minus_floor"]
    assert set(results["transfer"]["all"]) == {"shared", "und-only", "gen-only"}
    # probes never enter the headline's pooled tasks
    pooled = results["comparisons"]["all"]["synergy"]["shared"]["understanding"]["pooled_tasks"]
    assert "facts_ask" not in pooled and "vqa" in pooled
    md = (out / "report.md").read_text()
    assert "## Transfer" in md and "| shared | facts_draw (direct) | UEG |" in md
    answer = [line for line in md.split("## Summary")[0].splitlines() if line.startswith("- Transfer")]
    assert sorted(line.split(" (")[0] for line in answer) == [
        f"- Transfer {d} by {family}_{form}"
        for d, form in (("GEU", "ask"), ("UEG", "draw"))
        for family in ("facts", "moves", "recolour", "rules", "turns")
    ]
    for line in answer:
        family = line.split(" (")[0].split(" by ")[1]
        assert f"direct ({family})" in line and f"; stepwise ({family}_stepwise)" in line
    moves = shared["moves_ask"]
    assert moves["direction"] == "GEU" and shared["moves_draw_stepwise"]["direction"] == "UEG"
    assert all(moves[k] is not None for k in ("ceiling", "here", "transfer", "floor"))


MOVES = {
    **{"right": "both", "left": "gen", "down": "und", "up": "none"},
    **{"clockwise": "both", "anticlockwise": "gen", "half": "und", "mirror": "none"},
    **{"fade": "both", "ripen": "gen", "freeze": "und", "rust": "none"},
}


def _moves_cfg(**data: object):
    return _transfer_cfg(
        moves=MOVES,
        mixture={"caption": 1.0, "vqa": 1.0, "t2i": 1.0, "move_ask": 1.0, "move_draw": 1.0, "move_to": 1.0},
        **data,
    )


def test_move_skill_stays_on_the_sides_it_is_taught() -> None:
    cfg = _moves_cfg()
    words = {side: {d for d, s in MOVES.items() if s == side} for side in ("und", "gen", "none")}
    seen = {"und": set(), "gen": set()}
    tasks = set()
    for it in _stream(cfg, 3000):
        if not it.task.startswith("move"):
            continue
        tasks.add(it.task)
        side = "und" if it.task in UND_TASKS else "gen"
        said = {d for d in S.DIRECTIONS if f"cell {d}" in it.text}
        said |= {t for t, (_, edit, told) in S.TURNS.items() if it.text.startswith((edit, told))}
        said |= {v for v in S.RECOLOURS if it.text.startswith(f"{v} the ") or f" {v}s. what colour" in it.text}
        assert not said & words["none"], f"{it.task} example names an untaught direction: {it.text!r}"
        assert not said & words["gen" if side == "und" else "und"], f"{side} example names the other side's move"
        if it.task == "move_to":
            assert not said and (" to row " in it.text or it.text.startswith("paint the "))
        seen[side] |= said
        for scene in (it.scene, it.source):
            if scene is not None:
                assert not is_eval_scene(scene), f"{it.task} trains on a scene reserved for evaluation"
                assert {(o.shape, o.color) for o in scene.objects}.isdisjoint(map(tuple, cfg.data.holdout_pairs))
    assert tasks == {"move_ask", "move_draw", "move_to"}
    assert seen == {
        "und": {"right", "down", "clockwise", "half", "fade", "freeze"},
        "gen": {"right", "left", "clockwise", "anticlockwise", "fade", "ripen"},
    }


def test_move_forms_pack_as_question_and_edit() -> None:
    cfg = _moves_cfg()
    text, und, gen = build_tokenizers(cfg)
    batches = Batches(cfg, Packer(text, und, gen), SceneSource(cfg))
    its = _stream(cfg, 200)
    ask, edit = (next(it for it in its if it.task == t and " one cell " in it.text) for t in ("move_ask", "move_draw"))
    packed = batches.pack([ask, edit])
    heads = [text.decode(p.input_ids[:2].tolist(), skip_special=False) for p in packed]
    assert heads == ["<bos><und>", "<bos><edit>"]
    assert int((packed[1].modality == 1).sum()) == und.num_tokens + gen.num_tokens  # source and target images
    # the edit's target is the source with exactly the named object one cell away
    before, after = ({(o.shape, o.color): (o.row, o.col) for o in sc.objects} for sc in (edit.source, edit.scene))
    moved = [k for k in before if before[k] != after[k]]
    assert (
        len(moved) == 1
        and abs(before[moved[0]][0] - after[moved[0]][0]) + abs(before[moved[0]][1] - after[moved[0]][1]) == 1
    )
    d = next(d for d in S.DIRECTIONS if f"cell {d}." in ask.text)
    o = next(o for o in ask.scene.objects if ask.text.startswith(f"the {o.color} {o.shape} moves"))
    assert ask.answer == K.cell(o.row + S.DIRECTIONS[d][0], o.col + S.DIRECTIONS[d][1])
    for d in S.DIRECTIONS:  # every direction is whole words for the tokenizer, taught or not
        ids = text.encode(f"move the red ring one cell {d}.")
        assert text.decode(ids[-2:-1]).strip() == d, d


def test_move_items_split_by_direction_and_probe_chains() -> None:
    cfg = _moves_cfg()
    ask, draw = load_task("moves_ask"), load_task("moves_draw_stepwise")
    recs = [{"id": it.id, "meta": it.meta} for it in items(ask)]
    clean = [r for r in recs if split_of(r, ask, cfg.data) != "other_pairs"]
    assert len(clean) >= 48
    by = {r["meta"]["move"]: split_of(r, ask, cfg.data) for r in clean}
    assert by == {"right": "both", "left": "transfer", "down": "here", "up": "none"}
    assert {r["meta"]["move"]: split_of(r, draw, cfg.data) for r in clean}["down"] == "transfer"
    for it in items(ask):
        assert is_eval_scene(Scene.from_dict(it.meta["scene"]))
    # stepwise UEG: the model's answer becomes the explicit edit's destination
    it = items(draw, 1)[0]
    assert it.chain == "text_then_image" and it.chain_prompt.format("row 2, column 3").endswith(" to row 2, column 3.")


def test_turns_move_every_object_and_split_by_turn() -> None:
    one = Scene(32, 3, (Obj("ring", "red", 0, 0),))
    two = Scene(32, 3, (Obj("ring", "red", 0, 0), Obj("cross", "blue", 1, 2)))
    ends = {"clockwise": (0, 2), "anticlockwise": (2, 0), "half": (2, 2), "mirror": (0, 2)}
    for turn, end in ends.items():
        (m,) = [m for m in S.moves(two, turn) if m.obj.shape == "ring"]
        assert (m.row, m.col) == end and m.answer == K.cell(*end)
        assert m.question == f"{S.TURNS[turn][2]} where is the red ring now?" and m.instruction == S.TURNS[turn][1]
        assert len(m.after.objects) == 2 and m.after.at(*end) == Obj("ring", "red", *end)
        assert m.after != two  # the other object turned too
        # on a one-object scene the turn is the explicit edit to the answer's cell (the stepwise bridge)
        (solo,) = S.moves(one, turn)
        assert solo.after == S.Move(one, one.objects[0], *end).after
    assert S.moves(Scene(32, 3, (Obj("ring", "red", 1, 1),)), "half") == []  # the centre does not move
    cfg = _moves_cfg()
    ask, draw = load_task("turns_ask"), load_task("turns_draw_stepwise")
    recs = [{"id": it.id, "meta": it.meta} for it in items(ask)]
    clean = [r for r in recs if split_of(r, ask, cfg.data) != "other_pairs"]
    assert {r["meta"]["move"]: split_of(r, ask, cfg.data) for r in clean} == {
        "clockwise": "both",
        "anticlockwise": "transfer",
        "half": "here",
        "mirror": "none",
    }
    assert {r["meta"]["move"]: split_of(r, draw, cfg.data) for r in clean}["half"] == "transfer"
    for it in items(draw):
        before = Scene.from_dict(it.meta["scene"])
        assert len(before.objects) == 1 and is_eval_scene(before) and it.meta["after"] != it.meta["scene"]


def test_rules_teach_and_test_light_and_arithmetic() -> None:
    facts = K.FACTS
    assert facts["red light mixed with green light"].answer == "yellow"
    assert facts["red light mixed with green light and blue light"].answer == "white"
    assert facts["four minus one"].answer == "three" and facts["two times one"].answer == "two"
    assert all(1 <= f.value <= 3 for f in map(facts.get, K.family("sums")))
    cfg = _transfer_cfg()
    for it in _stream(cfg, 3000):
        if it.task == "knowledge" and (
            m := re.fullmatch(r"(?:what|how much) is (\w+) (plus|minus|times) (\w+)\?", it.text)
        ):
            a, op, b = m.groups()
            value = {"plus": int.__add__, "minus": int.__sub__, "times": int.__mul__}[op](
                *(NUMBER_WORDS.index(w) for w in (a, b))
            )
            assert it.answer == NUMBER_WORDS[value]
        if it.task in ("draw_named", "rewrite") and " as " in it.text:
            name = it.text.split(" as ")[2].split(" in row")[0]
            assert len(it.scene.objects) == facts[name].value and all(
                o.col < facts[name].value for o in it.scene.objects
            )
    # a drawing item holds exactly the fact's scene; its prompt names the rule
    for it in items(load_task("rules_draw")):
        fact, scene = facts[it.meta["fact"]], Scene.from_dict(it.meta["scene"])
        assert fact.read(scene.objects) == fact.answer and fact.name in it.meta["prompt"]
        assert (scene.objects[0].row, scene.objects[0].col) in fact.eval_places(3)  # never drawn there in training
    # stepwise understanding: the description of one's own drawing is read for the answer
    step = items(load_task("rules_ask_stepwise"))
    sums = next(it for it in step if K.FACTS[it.meta["fact"]].family == "sums")
    fact = K.FACTS[sums.meta["fact"]]
    right = L.caption(fact.scene((0, 0), ("circle", "red"), size=32, grid=3), np.random.default_rng(0))
    assert score_described(sums, [right], [])[0] == 1.0
    other = Scene(32, 3, tuple(Obj("circle", "red", 2, k) for k in range(1 if fact.value > 1 else 2)))
    wrong = L.caption(other, np.random.default_rng(0))
    assert score_described(sums, [wrong], [])[0] == 0.0
    # a drawing in a free look that happens to hold a one-side or held-out pair is kept out of the comparison
    draw = load_task("rules_draw")
    rec = {"id": "x", "meta": {"fact": "one plus one", "scene": {"objects": [{"shape": "cross", "color": "cyan"}]}}}
    assert split_of(rec, draw, cfg.data) == "other_pairs"
    rec["meta"]["scene"] = {"objects": [{"shape": "cross", "color": "red"}]}
    assert split_of(rec, draw, cfg.data) == "both"


def test_recolouring_verbs_mean_a_colour_and_split_by_verb() -> None:
    two = Scene(32, 3, (Obj("ring", "red", 0, 0), Obj("cross", "blue", 1, 2)))
    (fade,) = [m for m in S.moves(two, "fade") if m.obj.shape == "ring"]
    assert fade.answer == "white" and fade.question == "the red ring fades. what colour is it now?"
    assert fade.instruction == "fade the red ring." and fade.explicit == "paint the red ring white."
    assert fade.after.at(0, 0) == Obj("ring", "white", 0, 0) and fade.after.at(1, 2) == two.objects[1]
    assert fade.follow_up == "what color is the ring?"
    assert S.moves(Scene(32, 3, (Obj("ring", "white", 0, 0),)), "fade") == []  # nothing to change
    same_shape = Scene(32, 3, (Obj("ring", "red", 0, 0), Obj("ring", "blue", 1, 2)))
    assert S.moves(same_shape, "rust") == []  # 'what color is the ring?' would not name one object
    cfg = _moves_cfg()
    ask, draw = load_task("recolour_ask"), load_task("recolour_draw_stepwise")
    recs = [{"id": it.id, "meta": it.meta} for it in items(ask)]
    clean = [r for r in recs if split_of(r, ask, cfg.data) != "other_pairs"]
    assert {r["meta"]["move"]: split_of(r, ask, cfg.data) for r in clean} == {
        "fade": "both",
        "ripen": "transfer",
        "freeze": "here",
        "rust": "none",
    }
    it = items(draw, 1)[0]
    assert it.chain == "text_then_image" and it.chain_prompt.format("white").startswith("paint the ")
    # explicit repaints join move_to only when a recolouring is in the design
    texts = [s.text for s in _stream(cfg, 3000) if s.task == "move_to"]
    assert any(t.startswith("paint the ") for t in texts) and any(" to row " in t for t in texts)
