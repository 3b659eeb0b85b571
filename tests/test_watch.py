"""The watch world: faces validate and round-trip as JSON, render deterministically, and the parser reads them
back exactly on clean renders and almost always under the shapes world's noise."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from pydantic import ValidationError
from test_study import Cli, _tiny

from unifylab.errors import UserError
from unifylab.eval.task_registry import TaskSpec, items, load_task
from unifylab.study.preset import Preset
from unifylab.tokenize.image import load_image_tokenizer, tokenizer_kinds
from unifylab.tokenize.sequence import Packer
from unifylab.train.build import build_tokenizers
from unifylab.train.config import load_tree
from unifylab.train.data import Batches, SceneSource
from unifylab.world.base import Nuisance, SceneError
from unifylab.world.watch import language as WL
from unifylab.world.watch.face import (
    CORNERS,
    Dial,
    WatchConfig,
    WatchScene,
    check_dial,
    render,
    sample_faces,
)
from unifylab.world.watch.parse import parse_faces
from unifylab.world.watch.tokenizer import AttributeTokenizer

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
    both = (
        "a red watch showing 1:05, with a sun in the top left corner and a battery of one bar in the top left corner."
    )
    assert WL.parse_caption(both, 32) is None  # a caption may state an impossible face: it states none
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


def test_a_training_config_on_the_watch_world() -> None:
    cfg = load_tree({"world": "watch", "tokenizers": {"image": "attributes"}})
    assert cfg.world.name == "watch" and cfg.world.minute_step == 5
    assert cfg.data.holdout_pairs == [("sun", "blue"), ("rain", "red"), ("cloud", "green")]
    assert load_tree({}).data.holdout_pairs[0] == ("circle", "red")  # the shapes world's, as before
    text, und, gen = build_tokenizers(cfg)
    assert isinstance(gen, AttributeTokenizer) and gen.canvas == ("watch", 32, 5)
    source = SceneSource(cfg)
    held = [source.get("heldout", i)[0] for i in range(20)]
    assert all((f.weather, f.face) in cfg.data.holdout_pairs for f in held)
    batches = Batches(cfg, Packer(text, und, gen), SceneSource(cfg))
    idx = np.arange(400)
    samples = batches.samples("train", idx, batches.task_of(idx))
    assert {s.task for s in samples} == {"caption", "vqa", "t2i"}
    assert not any((s.scene.weather, s.scene.face) in cfg.data.holdout_pairs for s in samples)
    caption = next(s for s in samples if s.task == "caption")
    assert WL.parse_caption(caption.answer, 32) == caption.scene
    batch = batches.collate(samples[:16])
    assert batch["input_ids"].shape[0] >= 1


@pytest.mark.parametrize(
    "tree, message",
    [
        ({"world": "moon"}, "unknown world 'moon'"),
        ({"world": "watch"}, "'grid' is another world's exact tokenizer"),
        (
            {"world": "watch", "tokenizers": {"image": "attributes"}, "data": {"holdout_pairs": [["circle", "red"]]}},
            "not a \\(weather, face colour\\)",
        ),
        (
            {"world": "watch", "tokenizers": {"image": "attributes"}, "data": {"facts": {"the sun": "und"}}},
            "data.facts: the watch world has no facts to teach",
        ),
        ({"world": {"name": "watch", "minute_step": 7}}, "does not divide the hour"),
    ],
)
def test_bad_watch_configs_fail_with_one_clear_error(tree: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        cfg = load_tree(tree)
        build_tokenizers(cfg)


@pytest.mark.parametrize("preset", ["quick-watch", "quick-watch-pixels"])
def test_quick_watch_study_end_to_end_at_tiny_size(cli: Cli, tmp_path: Path, preset: str) -> None:
    out = tmp_path / "study"
    code, _, err = cli("study", "--preset", _tiny(preset, tmp_path), "--out", out, "--device", "cpu")
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert set(results["runs"]["shared-s0"]["eval"]) == {"watch_caption", "watch_vqa", "watch_t2i", "watch_geneval"}
    assert "shared" in results["comparisons"]["all"]["synergy"]
    record = json.loads((out / "eval" / "shared-s0" / "watch_t2i.jsonl").read_text().splitlines()[0])
    assert record["meta"]["scene"]["world"] == "watch" and "parsed" in record["meta"]
    config = yaml.safe_load((out / "runs" / "shared-s0" / "config.yaml").read_text())
    assert config["tokenizers"]["und_image"] == ("patch" if preset == "quick-watch-pixels" else None)
    # a watch-world model is refused the shapes world's tasks with one clear error
    code, _, err = cli("eval", out / "runs" / "shared-s0", "--tasks", "caption", "--out", tmp_path / "e")
    assert code != 0 and "built on the 32 px 3x3 shapes world" in err


@pytest.mark.parametrize("model", ["oracle", "random"])
def test_watch_tasks_score_oracle_fully_and_random_near_chance(cli: Cli, tmp_path: Path, model: str) -> None:
    code, _, err = cli(
        "eval", model, "--tasks", "watch_caption,watch_vqa,watch_t2i", "--limit", "40", "--out", tmp_path / model
    )
    assert code == 0, err
    results = json.loads((tmp_path / model / "results.json").read_text())["tasks"]
    for task in ("watch_caption", "watch_vqa", "watch_t2i"):
        acc = results[task]["accuracy"]["value"]
        assert acc == 1.0 if model == "oracle" else acc < 0.3, (task, acc)


def test_world_commands_sample_render_and_parse_faces(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("world", "sample", "--world", "watch", "--n", "4", "--out", tmp_path / "faces")
    assert code == 0, err
    first = json.loads((tmp_path / "faces" / "scenes.jsonl").read_text().splitlines()[0])
    (tmp_path / "face.json").write_text(json.dumps(first))
    code, _, err = cli("world", "render", tmp_path / "face.json", "--out", tmp_path / "face.png")
    assert code == 0, err
    code, out, err = cli("world", "parse", tmp_path / "face.png", "--world", "watch")
    assert code == 0 and json.loads(out) == first
    code, _, err = cli("world", "sample", "--world", "watch", "--minute-step", "7", "--out", tmp_path / "bad")
    assert code != 0 and "does not divide the hour" in err


def test_worlds_preset_sets_the_answers_side_by_side(cli: Cli, tmp_path: Path) -> None:
    shapes, watch = _tiny("quick", tmp_path), _tiny("quick-watch", tmp_path)
    for path in (shapes, watch):  # two models per world keep it short
        raw = yaml.safe_load(path.read_text())
        raw["variants"] = [v for v in raw["variants"] if v["name"] in ("shared", "und-only", "gen-only")]
        raw["tasks"] = [t for t in raw["tasks"] if t in ("caption", "t2i", "watch_caption", "watch_t2i")]
        raw["analyses"] = []
        path.write_text(yaml.safe_dump(raw))
    composite = tmp_path / "worlds.yaml"
    composite.write_text(
        yaml.safe_dump({"name": "worlds", "description": "both", "studies": [str(shapes), str(watch)]})
    )
    out = tmp_path / "study"
    code, _, err = cli("study", "--preset", composite, "--out", out, "--device", "cpu")
    assert code == 0, err
    combined = json.loads((out / "results.json").read_text())
    assert set(combined["studies"]) == {"quick", "quick-watch"}
    assert combined["studies"]["quick-watch"]["world"] == "watch world"
    first = combined["rows"][0]
    assert first["question"] == "Understanding" and set(first["cells"]) == {"quick", "quick-watch"}
    assert all(cell and "adjusted p" in cell for cell in first["cells"].values())
    md = (out / "report.md").read_text()
    assert "| question | quick (shapes world) | quick-watch (watch world) |" in md
    assert (out / "quick" / "report.html").is_file() and (out / "quick-watch" / "results.json").is_file()
    assert "Understanding (shared vs und-only): quick:" in err


def test_a_side_by_side_preset_takes_no_runs_of_its_own() -> None:
    with pytest.raises(ValidationError, match="takes no base, variants or sweep"):
        Preset(name="x", studies=["quick"], variants=[{"name": "a", "role": "unified"}])
    with pytest.raises(ValidationError, match="at least one unified variant"):
        Preset(name="x")


def test_image_tokenizers_build_for_the_watch_world(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("tokenizer", "train-image", "--world", "watch", "--kind", "attributes", "--out", tmp_path / "a")
    assert code == 0, err
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["identical_images"] == 1.0 and metrics["parse_exact"] == 1.0
    args = ["--world", "watch", "--kind", "vq", "--steps", "2", "--n-train", "64", "--n-val", "16", "--batch", "8"]
    code, _, err = cli("tokenizer", "train-image", *args, "--out", tmp_path / "vq", "--device", "cpu")
    assert code == 0, err
    assert json.loads((tmp_path / "vq" / "train.json").read_text())["world"]["name"] == "watch"
    code, _, err = cli("tokenizer", "train-image", "--world", "watch", "--kind", "grid", "--out", tmp_path / "g")
    assert code == 2 and "the watch world's is 'attributes'" in err
    code, _, err = cli("tokenizer", "train-text", "--world", "watch", "--n-scenes", "200", "--out", tmp_path / "t")
    assert code == 0, err


def test_watch_ueg_asks_for_a_worked_out_time(cli: Cli, tmp_path: Path) -> None:
    for it in items(load_task("watch_ueg")):
        m = re.search(r"the time (\d+) minutes after (\d+):(\d+)", it.meta["prompt"])
        scene = it.meta["scene"]
        total = (int(m.group(2)) % 12) * 60 + int(m.group(3)) + int(m.group(1))
        assert (total // 60 % 12 or 12, total % 60) == (scene["hour"], scene["minute"])
        assert f"{scene['hour']}:{scene['minute']:02d}" not in it.meta["prompt"]
    step = items(load_task("watch_ueg_stepwise"), 1)[0]
    assert step.chain == "text_then_image" and "the time" not in step.text[0].truth
    code, _, err = cli("eval", "oracle", "--tasks", "watch_ueg,watch_ueg_stepwise", "--limit", "20", "--out", tmp_path)
    assert code == 0, err
    results = json.loads((tmp_path / "results.json").read_text())["tasks"]
    assert all(results[t]["accuracy"]["value"] == 1.0 for t in ("watch_ueg", "watch_ueg_stepwise"))
    with pytest.raises(ValidationError, match="'watch_ueg' belongs to the watch world, but the task's world is shapes"):
        TaskSpec(name="x", generator="watch_ueg", scorer="image")  # refused when the task loads, not at its items


def test_later_probes_ask_for_the_time_after_the_hands_turn(cli: Cli, tmp_path: Path) -> None:
    asked = items(load_task("watch_later_ask"))
    assert sorted({it.meta["move"] for it in asked}) == sorted(WL.skills(5))  # every offset, equally often
    for it in asked[:40]:
        m = re.search(r"show (\d+) minutes later", it.text[0].prompt)
        shown = it.meta["scene"]
        total = (shown["hour"] % 12) * 60 + shown["minute"] + int(m.group(1))
        assert it.target == f"{total // 60 % 12 or 12}:{total % 60:02d}" and it.target in it.text[0].choices
        assert it.meta["move"] == f"{m.group(1)} minutes"
    step = items(load_task("watch_later_ask_stepwise"), 1)[0]
    assert step.chain == "image_then_text" and step.images[0].source is not None and step.text[0].image is None
    draw = items(load_task("watch_later_draw_stepwise"), 1)[0]
    assert draw.chain == "text_then_image" and draw.chain_prompt.format("4:35") == "draw this watch showing 4:35."
    assert draw.target == draw.meta["after"] and draw.images[0].source is not None
    tasks = "watch_later_ask,watch_later_ask_stepwise,watch_later_draw,watch_later_draw_stepwise"
    code, _, err = cli("eval", "oracle", "--tasks", tasks, "--limit", "22", "--out", tmp_path / "o")
    assert code == 0, err
    results = json.loads((tmp_path / "o" / "results.json").read_text())["tasks"]
    assert all(results[t]["accuracy"]["value"] == 1.0 for t in tasks.split(","))
    code, _, err = cli("eval", "random", "--tasks", "watch_later_ask", "--limit", "44", "--out", tmp_path / "r")
    assert code == 0, err
    assert (
        json.loads((tmp_path / "r" / "results.json").read_text())["tasks"]["watch_later_ask"]["accuracy"]["value"] < 0.1
    )
    with pytest.raises(ValidationError, match="'watch_later_ask' belongs to the watch world"):
        TaskSpec(name="x", generator="watch_later_ask", scorer="exact")
    with pytest.raises(UserError, match="options.moves must list offsets"):
        spec = load_task("watch_later_draw")
        items(spec.model_copy(update={"options": {"moves": ["7 minutes"]}}), 1)


def test_world_parse_never_answers_in_another_world(cli: Cli, tmp_path: Path) -> None:
    """A face parsed without --world is read as a face (world.json beside it, or recognised from the pixels), a
    face given as --world shapes is refused, and an image no world explains asks for --world."""
    import shutil

    import numpy as np
    from PIL import Image

    assert cli("world", "sample", "--world", "watch", "--n", "2", "--out", tmp_path / "faces")[0] == 0
    truth = json.loads((tmp_path / "faces" / "scenes.jsonl").read_text().splitlines()[0])
    code, out, err = cli("world", "parse", tmp_path / "faces" / "images" / "000000.png")  # world.json one folder up
    assert code == 0 and json.loads(out) == truth, err
    shutil.copy(tmp_path / "faces" / "images" / "000000.png", tmp_path / "face.png")  # nothing beside it
    code, out, err = cli("world", "parse", tmp_path / "face.png")
    assert code == 0 and json.loads(out) == truth, err
    code, out, err = cli("world", "parse", tmp_path / "face.png", "--world", "shapes")
    assert code == 2 and out == "" and "is a watch-world image" in err and "--world watch" in err
    assert len(err.strip().splitlines()) == 1
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    code, out, err = cli("world", "parse", tmp_path / "noise.png")
    assert code == 2 and out == "" and "cannot tell which world" in err
