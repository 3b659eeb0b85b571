import json

import numpy as np
import pytest

from unifylab.world import Nuisance, SceneError
from unifylab.world.shapes.canvas import COLORS, SHAPES, ShapesConfig, render, sample_scenes
from unifylab.world.shapes.scene import Obj, Scene


def test_world_constants_are_far_apart() -> None:
    assert len(SHAPES) >= 6 and len(COLORS) >= 8
    pal = np.array(list(COLORS.values()), float)
    d = np.linalg.norm(pal[:, None] - pal[None], axis=-1) + np.eye(len(pal)) * 1e9
    assert d.min() > 10 * 8  # ten noise sigmas: nearest-palette classification stays exact under sigma = 8


def test_json_round_trip_and_contract_form() -> None:
    s = Scene(32, 4, (Obj("circle", "red", 0, 2),))
    assert s.to_json() == (
        '{"world": "shapes", "size": 32, "grid": 4, "objects": '
        '[{"shape": "circle", "color": "red", "row": 0, "col": 2}]}'
    )
    for scene in sample_scenes(ShapesConfig(size=64, grid=5, sizes=("large", "small")), 50, 1):
        assert Scene.from_json(scene.to_json()) == scene


@pytest.mark.parametrize(
    "objects, field",
    [
        ([{"shape": "star", "color": "red", "row": 0, "col": 0}], "objects[0].shape"),
        ([{"shape": "circle", "color": "pink", "row": 0, "col": 0}], "objects[0].color"),
        ([{"shape": "circle", "color": "red", "row": 3, "col": 0}], "objects[0].row"),
        ([{"shape": "circle", "color": "red", "row": 0, "col": -1}], "objects[0].col"),
        (
            [
                {"shape": "circle", "color": "red", "row": 1, "col": 1},
                {"shape": "ring", "color": "blue", "row": 1, "col": 1},
            ],
            "objects[1]",
        ),
        ([{"shape": "circle", "color": "red", "row": 0, "col": 0, "colour": "red"}], "objects[0]"),
    ],
)
def test_invalid_scenes_name_the_field(objects: list, field: str) -> None:
    with pytest.raises(SceneError, match=field.replace("[", r"\[").replace("]", r"\]")):
        Scene.from_dict({"world": "shapes", "size": 32, "grid": 3, "objects": objects})


def test_invalid_canvas_and_malformed_json() -> None:
    with pytest.raises(SceneError, match="grid"):
        Scene(32, 6)
    with pytest.raises(SceneError, match="malformed JSON"):
        Scene.from_json('{"size": 32,')
    with pytest.raises(SceneError, match="missing"):
        Scene.from_dict({"grid": 3})


def test_render_is_deterministic_and_nuisance_is_seeded() -> None:
    scene = sample_scenes(ShapesConfig(), 1, 3)[0]
    a, b = render(scene), render(scene)
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3) and np.array_equal(a, b)
    n1, n2 = Nuisance(8.0, 1, 20, seed=5), Nuisance(8.0, 1, 20, seed=6)
    assert np.array_equal(render(scene, n1), render(scene, n1))
    assert not np.array_equal(render(scene, n1), render(scene, n2))


def test_sampling_is_seeded() -> None:
    cfg = ShapesConfig(size=48, grid=4, max_objects=6)
    assert sample_scenes(cfg, 20, 7) == sample_scenes(cfg, 20, 7)
    assert sample_scenes(cfg, 20, 7) != sample_scenes(cfg, 20, 8)
    assert all(1 <= len(s.objects) <= 6 for s in sample_scenes(cfg, 100, 0))
    assert json.loads(sample_scenes(cfg, 1, 0)[0].to_json())["grid"] == 4
