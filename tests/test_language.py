import numpy as np
import pytest

from unifylab.world.base import QA
from unifylab.world.relations import RELATIONS
from unifylab.world.shapes import language as L
from unifylab.world.shapes.canvas import ShapesConfig, sample_scenes
from unifylab.world.shapes.scene import Obj, Scene

SCENES = sample_scenes(ShapesConfig(size=64, grid=5, min_objects=0, max_objects=6, sizes=("large", "small")), 300, 4)


def test_captions_are_varied_and_invert_exactly() -> None:
    rng = np.random.default_rng(0)
    caps = [L.caption(s, rng) for s in SCENES]
    assert len({c.split(" ")[0] for c in caps}) >= 3
    for s, c in zip(SCENES, caps):
        assert L.parse_caption(c) == list(s.objects), c
    assert L.parse_caption("a cat on a mat") is None
    assert "an orange" in L.caption(Scene(32, 3, (Obj("ring", "orange", 0, 0),)), rng)


def test_prompts_are_satisfied_by_their_own_scene_only() -> None:
    rng = np.random.default_rng(1)
    for s in SCENES:
        prompt, spec = L.t2i_prompt(s, rng)
        assert L.satisfies(s, spec).ok, prompt
        if s.objects:
            dropped = Scene(s.size, s.grid, s.objects[1:])
            verdict = L.satisfies(dropped, spec)
            assert not verdict.ok and verdict.reasons


def _answer(scene: Scene, qa: QA) -> str:
    """An independent oracle for the question forms, written from the question text."""
    q = qa.question
    objs = scene.objects
    if qa.kind == "exist":
        color, shape = q.removeprefix("is there ").removesuffix("?").split(" ")[-2:]
        return "yes" if any(o.color == color and o.shape == shape for o in objs) else "no"
    if qa.kind == "count":
        word = q.split(" ")[2]
        if q.endswith("objects are there?"):
            return str(sum(o.color == word for o in objs))
        return str(sum(L.plural(o.shape) == word for o in objs))
    if qa.kind == "color_of":
        shape = q.removeprefix("what color is the ").removesuffix("?")
        return next(o.color for o in objs if o.shape == shape)
    if qa.kind == "shape_of":
        color = q.split(" ")[4]
        return next(o.shape for o in objs if o.color == color)
    if qa.kind == "where":
        color, shape = q.removesuffix("?").split(" ")[-2:]
        o = next(o for o in objs if o.color == color and o.shape == shape)
        return f"row {o.row + 1}, column {o.col + 1}"
    rel = next(r for r in RELATIONS if f" {r} the " in q)
    a, b = q.removeprefix("is the ").removesuffix("?").split(f" {rel} the ")
    oa = next(o for o in objs if f"{o.color} {o.shape}" == a)
    ob = next(o for o in objs if f"{o.color} {o.shape}" == b)
    return "yes" if rel in L.relations(oa, ob, scene.size, scene.grid) else "no"


def test_questions_have_correct_answers_for_every_kind() -> None:
    rng = np.random.default_rng(2)
    seen = {k: 0 for k in L.QA_KINDS}
    for s in SCENES:
        for kind in L.QA_KINDS:
            qa = L.ask(s, kind, rng)
            if qa is not None:
                assert qa.answer == _answer(s, qa), (s.to_json(), qa)
                seen[kind] += 1
    assert min(seen.values()) > 50
    answers = [L.ask(s, "relation", rng) for s in SCENES]
    yes = [a.answer for a in answers if a is not None].count("yes")
    assert 0.2 < yes / sum(a is not None for a in answers) < 0.8


def test_relations_follow_geneval_meaning() -> None:
    a, b = Obj("circle", "red", 0, 0), Obj("square", "blue", 1, 1)
    assert L.relations(a, b, 32, 3) == {"left of", "above"}
    assert L.relations(b, a, 32, 3) == {"right of", "below"}
    same_row = Obj("ring", "green", 0, 2)
    assert L.relations(a, same_row, 32, 3) == {"left of"}


def test_satisfies_checks_counts_colours_positions_and_excludes() -> None:
    scene = Scene(32, 3, (Obj("circle", "red", 0, 0), Obj("circle", "blue", 0, 1), Obj("cross", "green", 2, 2)))
    R, S = L.Requirement, L.Spec
    assert L.satisfies(scene, S((R("circle", count=2),), (R("circle", count=3),))).ok
    assert not L.satisfies(scene, S((R("circle", count=1),), (R("circle", count=2),))).ok
    assert L.satisfies(scene, S((R("circle", "blue"),))).ok
    v = L.satisfies(scene, S((R("circle", "green"),)))
    assert not v.ok and "green circle" in v.reasons[0]
    assert L.satisfies(scene, S((R("circle", "red"), R("cross", position=("below", 0))))).ok
    assert not L.satisfies(scene, S((R("circle", "red"), R("cross", position=("above", 0))))).ok
    with pytest.raises(Exception, match="relation"):
        L.satisfies(scene, S((R("circle"), R("cross", position=("near", 0)))))


def test_cell_credit_gives_thirds_per_cell_and_nothing_for_inventions() -> None:
    def o(shape: str, color: str, row: int, col: int) -> Obj:
        return Obj(shape, color, row, col)

    want = [o("circle", "red", 0, 0), o("square", "blue", 1, 1)]
    assert L.cell_credit(want, want) == (1.0, [])
    assert L.cell_credit([], want)[0] == 0.0 and L.cell_credit([], [])[0] == 1.0
    score, reasons = L.cell_credit([o("ring", "red", 0, 0), o("square", "green", 1, 1)], want)
    assert score == pytest.approx((2 / 3 + 2 / 3) / 2) and len(reasons) == 2
    score, reasons = L.cell_credit(want + [o("cross", "white", 2, 2)], want)
    assert score == pytest.approx(2 / 3) and reasons == ["invented white cross at row 3, column 3"]
    assert L.cell_credit([o("circle", "red", 0, 1)], [o("circle", "red", 0, 0)])[0] == 0.0  # wrong cell: no credit
