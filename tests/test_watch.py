"""The watch world: faces validate and round-trip as JSON, render deterministically, and the parser reads them
back exactly on clean renders and almost always under the shapes world's noise."""

import numpy as np
import pytest
import torch

from unifylab.errors import UserError
from unifylab.tokenize.attributes import AttributeTokenizer
from unifylab.tokenize.image import load_image_tokenizer, tokenizer_kinds
from unifylab.world import watch_language as WL
from unifylab.world.scene import SceneError
from unifylab.world.shapes import Nuisance
from unifylab.world.watch import (
    CORNERS,
    Dial,
    WatchConfig,
    WatchScene,
    check_dial,
    parse_faces,
    render,
    sample_faces,
)

ATTRS = ("hour", "minute", "face", "weather", "weather_corner", "battery", "battery_corner")
SIZES = [(32, 5), (48, 5), (64, 1), (96, 1), (128, 1)]


@pytest.mark.parametrize("size, step", SIZES, ids=[f"{s}px-step{m}" for s, m in SIZES])
def test_parser_is_exact_on_every_clean_render(size: int, step: int) -> None:
    faces = sample_faces(WatchConfig(size=size, minute_step=step), 2000, seed=size)
    parsed = parse_faces(np.stack([render(f) for f in faces]), minute_step=step)
    wrong = [(f.to_dict(), p.to_dict()) for f, p in zip(faces, parsed) if f != p]
    assert not wrong, wrong[:3]


@pytest.mark.parametrize("size, step", [(32, 5), (64, 5), (128, 1)])
def test_parser_survives_noise_jitter_and_tint(size: int, step: int) -> None:
    faces = sample_faces(WatchConfig(size=size, minute_step=step), 1000, seed=7)
    images = np.stack([render(f, Nuisance(noise=8.0, jitter=1, tint=30, seed=i)) for i, f in enumerate(faces)])
    parsed = parse_faces(images, minute_step=step)
    for attr in ATTRS:
        acc = np.mean([getattr(f, attr) == getattr(p, attr) for f, p in zip(faces, parsed)])
        assert acc >= 0.99, (attr, acc)


def test_every_allowed_time_draws_distinct_hands_and_too_fine_a_step_is_refused() -> None:
    dial = Dial(32)
    masks = {dial.hands(h, m).tobytes() for h in range(1, 13) for m in range(0, 60, 5)}
    assert len(masks) == 144
    # the minute hand points at 3 o'clock for :15, the hour hand a quarter of the way from 3 to 4
    y, x = dial.grid()
    right = dial.hands(12, 15) & (x > 3) & (np.abs(y) < 1.5)
    assert right.sum() >= 4
    with pytest.raises(ValueError, match="does not divide the hour"):
        check_dial(32, 7)
    with pytest.raises(ValueError, match="outside 32..128"):
        WatchConfig(size=16)


def test_scene_validates_and_round_trips() -> None:
    face = WatchScene(32, 3, 40, "blue", "rain", "top left", 2, "bottom right")
    assert face.time == "3:40"
    assert WatchScene.from_dict(face.to_dict()) == face and face.to_dict()["world"] == "watch"
    bad = [
        ({"hour": 13}, "hour: 13"),
        ({"minute": 60}, "minute: 60"),
        ({"face": "pink"}, "face: 'pink'"),
        ({"weather": "snow"}, "weather: 'snow'"),
        ({"battery": 0}, "battery: 0"),
        ({"battery_corner": "top left"}, "different corners"),
        ({"world": "shapes"}, "world"),
    ]
    for change, message in bad:
        with pytest.raises(SceneError, match=message):
            WatchScene.from_dict({**face.to_dict(), **change})
    with pytest.raises(SceneError, match="unknown watch field"):
        WatchScene.from_dict({**face.to_dict(), "colour": "red"})
    with pytest.raises(SceneError, match="missing watch field"):
        WatchScene.from_dict({"size": 32})


def test_render_is_deterministic_and_sampling_covers_the_world() -> None:
    faces = sample_faces(WatchConfig(), 600, seed=3)
    assert faces == sample_faces(WatchConfig(), 600, seed=3)
    a, b = render(faces[0], Nuisance(8.0, 1, 20, seed=5)), render(faces[0], Nuisance(8.0, 1, 20, seed=5))
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3) and np.array_equal(a, b)
    assert {f.minute for f in faces} == set(range(0, 60, 5)) and {f.hour for f in faces} == set(range(1, 13))
    assert {f.weather_corner for f in faces} == set(CORNERS) and {f.battery for f in faces} == {1, 2, 3, 4}
    assert all(f.weather_corner != f.battery_corner for f in faces)


def test_bad_images_get_one_clear_error() -> None:
    with pytest.raises(UserError, match="uint8 array"):
        parse_faces(np.zeros((2, 32, 32, 3), np.float32), minute_step=5)
    with pytest.raises(UserError, match="square"):
        parse_faces(np.zeros((2, 32, 40, 3), np.uint8), minute_step=5)
    with pytest.raises(UserError, match="outside 32..128"):
        parse_faces(np.zeros((2, 200, 200, 3), np.uint8), minute_step=5)


def test_captions_questions_and_prompts_are_exact() -> None:
    rng = np.random.default_rng(0)
    faces = sample_faces(WatchConfig(), 300, seed=4)
    for f in faces:
        assert WL.parse_caption(WL.caption(f, rng), 32) == f
    assert WL.parse_caption("a blue watch showing 13:05, with rain in the top left corner", 32) is None
    f = WatchScene(32, 3, 40, "blue", "rain", "top left", 1, "bottom right")
    assert WL.ask(f, "time").answer == "3:40" and WL.ask(f, "battery").answer == "one bar"
    assert WL.ask(f, "battery_corner").answer == "bottom right"
    assert {WL.sample_qa(f, rng).kind for _ in range(200)} == set(WL.QA_KINDS)
    assert all(WL.ask(f, k).answer in WL.answer_space(k, minutes=(0, 20, 40)) for k in WL.QA_KINDS)
    assert WL.satisfies(f, f).ok
    late = WatchScene(32, 3, 45, "blue", "rain", "top left", 1, "bottom right")
    verdict = WL.satisfies(late, f)
    assert not verdict.ok and verdict.reasons == ["minute: drew 45, asked for 40"]
    prompt = WL.t2i_prompt(f, rng)
    assert "3:40" in prompt and "blue" in prompt and "one bar" in prompt


def test_attribute_tokenizer_round_trips_and_every_code_decodes(tmp_path) -> None:
    tok = AttributeTokenizer(32, 5)
    faces = sample_faces(WatchConfig(), 200, seed=5)
    images = np.stack([render(f) for f in faces])
    codes = tok.encode(images)
    assert codes.shape == (200, 7) and tok.token_grid == (1, 7) and tok.vocab_size == 12
    assert torch.equal(codes, tok.encode_scenes(faces))
    assert np.array_equal(tok.decode(codes), images)
    every = torch.randint(0, tok.vocab_size, (500, 7))
    assert len(tok.decode_scenes(every)) == 500  # any code sequence is a valid face
    with pytest.raises(ValueError, match="0..11"):
        tok.decode_scenes(torch.full((1, 7), 12))
    tok.save_pretrained(tmp_path / "tok")
    loaded = load_image_tokenizer(tmp_path / "tok")
    assert isinstance(loaded, AttributeTokenizer) and loaded.minute_step == 5
    assert "attributes" in tokenizer_kinds()
    with pytest.raises(UserError, match="does not divide"):
        AttributeTokenizer(32, 7)
